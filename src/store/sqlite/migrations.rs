//! The SQLite schema steps, applied in order under the write lock, each after its precheck.

use rusqlite::Connection;

use super::map_err;
use crate::store::StoreError;

/// Refuses a database a migration step cannot safely apply to, before anything changes.
type Precheck = fn(&Connection) -> Result<(), StoreError>;

/// One schema step: an optional precheck, then the SQL.
struct Migration {
    check: Option<Precheck>,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        check: None,
        sql: r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT,
    image TEXT,
    custom TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    tokens_valid_after INTEGER NOT NULL DEFAULT 0,
    revision INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY NOT NULL,
    prefix TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
"#,
    },
    Migration {
        check: Some(users_rebuild_is_safe),
        sql: r#"
-- 2: users keyed by their text id directly (WITHOUT ROWID): a lookup or upsert walks one B-tree
-- instead of the primary-key index and then the table. Same columns, same rows.
CREATE TABLE users_by_id (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT,
    image TEXT,
    custom TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    tokens_valid_after INTEGER NOT NULL DEFAULT 0,
    revision INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO users_by_id (id, name, image, custom, disabled, tokens_valid_after, revision, created_at, updated_at)
    SELECT id, name, image, custom, disabled, tokens_valid_after, revision, created_at, updated_at FROM users;
DROP TABLE users;
ALTER TABLE users_by_id RENAME TO users;
"#,
    },
    Migration {
        check: None,
        sql: r#"
-- 3: the kick outbox. A row is a terminal disconnect of every connection of `user_id`, queued in
-- the transaction that disabled, revoked or deleted the user, deleted once Centrifugo answered.
-- `not_before_ms` is both the claim lease and the retry backoff.
CREATE TABLE kicks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    code INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX kicks_due ON kicks (not_before_ms);
"#,
    },
    Migration {
        check: None,
        sql: r#"
-- 4: app-wide settings; `tokens_valid_after` is the app-wide revocation instant.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    },
    Migration {
        check: None,
        sql: r#"
-- 5: the audit trail of security events. Append-only: updates are refused; rows leave only
-- through retention (audit.retention_days).
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    target_kind TEXT,
    target TEXT,
    source TEXT,
    detail TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_target ON audit_events (target_kind, target, at);
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
"#,
    },
    Migration {
        check: None,
        sql: r#"
-- 6: segments. `segment_fields` holds the declared `custom` keys (segments.fields, replaced on
-- start when the configuration changes); `user_segments` one row per user, declared field and
-- scalar value (each element of an array), the value as canonical JSON text, so a segment query
-- or count is a range of the primary key. The triggers keep it in step with every write.
CREATE TABLE segment_fields (
    name TEXT PRIMARY KEY NOT NULL,
    position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE user_segments (
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (field, value, user_id)
) WITHOUT ROWID;
CREATE INDEX user_segments_user ON user_segments (user_id);
CREATE TRIGGER users_segments_insert AFTER INSERT ON users WHEN NEW.custom IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO user_segments (field, value, user_id)
    SELECT f.name, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END, NEW.id
    FROM segment_fields f, json_each(NEW.custom, '$."' || f.name || '"') j
    WHERE json_type(NEW.custom, '$."' || f.name || '"') <> 'object' AND j.type NOT IN ('object', 'array');
END;
CREATE TRIGGER users_segments_update AFTER UPDATE OF custom ON users WHEN NEW.custom IS NOT OLD.custom
BEGIN
    DELETE FROM user_segments WHERE user_id = OLD.id;
    INSERT OR IGNORE INTO user_segments (field, value, user_id)
    SELECT f.name, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END, NEW.id
    FROM segment_fields f, json_each(NEW.custom, '$."' || f.name || '"') j
    WHERE NEW.custom IS NOT NULL AND json_type(NEW.custom, '$."' || f.name || '"') <> 'object' AND j.type NOT IN ('object', 'array');
END;
CREATE TRIGGER users_segments_delete AFTER DELETE ON users
BEGIN
    DELETE FROM user_segments WHERE user_id = OLD.id;
END;
"#,
    },
    Migration {
        check: None,
        sql: r#"
-- 7: segment counts, for the overview: users per declared field and value (`''` holds the
-- field's total), kept by triggers on `user_segments`, so a field's top values are the first
-- rows of `segment_counts_top` and never a count over the users.
CREATE TABLE segment_counts (
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    users INTEGER NOT NULL,
    PRIMARY KEY (field, value)
) WITHOUT ROWID;
CREATE INDEX segment_counts_top ON segment_counts (field, users DESC, value);
INSERT INTO segment_counts (field, value, users)
    SELECT field, value, count(*) FROM user_segments GROUP BY field, value
    UNION ALL SELECT field, '', count(*) FROM user_segments GROUP BY field;
CREATE TRIGGER user_segments_counted AFTER INSERT ON user_segments
BEGIN
    INSERT INTO segment_counts (field, value, users) VALUES (NEW.field, NEW.value, 1), (NEW.field, '', 1)
    ON CONFLICT (field, value) DO UPDATE SET users = users + 1;
END;
CREATE TRIGGER user_segments_uncounted AFTER DELETE ON user_segments
BEGIN
    UPDATE segment_counts SET users = users - 1 WHERE field = OLD.field AND value IN (OLD.value, '');
    DELETE FROM segment_counts WHERE field = OLD.field AND value IN (OLD.value, '') AND users <= 0;
END;
"#,
    },
    Migration {
        check: None,
        sql: r#"
-- 8: compact segment keys. `segment_keys` numbers each declared field and value once;
-- `user_segments` holds (key, user_id), so a segment's range of the primary key compares one
-- integer per entry instead of two strings, and its entries are half the size. (A trigger's
-- `OR IGNORE` gives way to an upsert's own conflict clause: new keys are inserted only where
-- none exists, and each key and entry once, so that an array repeating a value conflicts
-- with nothing.)
CREATE TABLE segment_keys (
    key INTEGER PRIMARY KEY,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (field, value)
);
INSERT INTO segment_keys (field, value) SELECT DISTINCT field, value FROM user_segments ORDER BY 1, 2;
DROP TRIGGER users_segments_insert;
DROP TRIGGER users_segments_update;
DROP TRIGGER users_segments_delete;
DROP TRIGGER user_segments_counted;
DROP TRIGGER user_segments_uncounted;
CREATE TABLE user_segments_by_key (
    key INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (key, user_id)
) WITHOUT ROWID;
INSERT INTO user_segments_by_key (key, user_id)
    SELECT k.key, s.user_id FROM user_segments s JOIN segment_keys k ON k.field = s.field AND k.value = s.value
    ORDER BY 1, 2;
DROP TABLE user_segments;
ALTER TABLE user_segments_by_key RENAME TO user_segments;
CREATE INDEX user_segments_user ON user_segments (user_id);
CREATE TRIGGER users_segments_insert AFTER INSERT ON users WHEN NEW.custom IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO segment_keys (field, value)
    SELECT DISTINCT f.name, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END
    FROM segment_fields f, json_each(NEW.custom, '$."' || f.name || '"') j
    WHERE json_type(NEW.custom, '$."' || f.name || '"') <> 'object' AND j.type NOT IN ('object', 'array')
      AND NOT EXISTS (SELECT 1 FROM segment_keys k WHERE k.field = f.name AND k.value = CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END);
    INSERT OR IGNORE INTO user_segments (key, user_id)
    SELECT DISTINCT k.key, NEW.id
    FROM segment_fields f, json_each(NEW.custom, '$."' || f.name || '"') j, segment_keys k
    WHERE json_type(NEW.custom, '$."' || f.name || '"') <> 'object' AND j.type NOT IN ('object', 'array')
      AND k.field = f.name AND k.value = CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END;
END;
CREATE TRIGGER users_segments_update AFTER UPDATE OF custom ON users WHEN NEW.custom IS NOT OLD.custom
BEGIN
    DELETE FROM user_segments WHERE user_id = OLD.id;
    INSERT OR IGNORE INTO segment_keys (field, value)
    SELECT DISTINCT f.name, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END
    FROM segment_fields f, json_each(NEW.custom, '$."' || f.name || '"') j
    WHERE NEW.custom IS NOT NULL AND json_type(NEW.custom, '$."' || f.name || '"') <> 'object' AND j.type NOT IN ('object', 'array')
      AND NOT EXISTS (SELECT 1 FROM segment_keys k WHERE k.field = f.name AND k.value = CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END);
    INSERT OR IGNORE INTO user_segments (key, user_id)
    SELECT DISTINCT k.key, NEW.id
    FROM segment_fields f, json_each(NEW.custom, '$."' || f.name || '"') j, segment_keys k
    WHERE NEW.custom IS NOT NULL AND json_type(NEW.custom, '$."' || f.name || '"') <> 'object' AND j.type NOT IN ('object', 'array')
      AND k.field = f.name AND k.value = CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END;
END;
CREATE TRIGGER users_segments_delete AFTER DELETE ON users
BEGIN
    DELETE FROM user_segments WHERE user_id = OLD.id;
END;
CREATE TRIGGER user_segments_counted AFTER INSERT ON user_segments
BEGIN
    INSERT INTO segment_counts (field, value, users)
    SELECT field, value, 1 FROM segment_keys WHERE key = NEW.key
    UNION ALL SELECT field, '', 1 FROM segment_keys WHERE key = NEW.key
    ON CONFLICT (field, value) DO UPDATE SET users = users + 1;
END;
CREATE TRIGGER user_segments_uncounted AFTER DELETE ON user_segments
BEGIN
    UPDATE segment_counts SET users = users - 1
    WHERE field = (SELECT field FROM segment_keys WHERE key = OLD.key)
      AND value IN ((SELECT value FROM segment_keys WHERE key = OLD.key), '');
    DELETE FROM segment_counts
    WHERE field = (SELECT field FROM segment_keys WHERE key = OLD.key)
      AND value IN ((SELECT value FROM segment_keys WHERE key = OLD.key), '') AND users <= 0;
END;
"#,
    },
];

pub(super) fn migrate(c: &Connection) -> Result<(), StoreError> {
    let version = |c: &Connection| {
        c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .map_err(map_err)
    };
    let before = version(c)?;
    refuse_if_newer(before)?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(before as usize) {
        // IMMEDIATE: take the write lock first and read the version again under it, so two
        // processes opening an old database at once (server and CLI) apply each step once.
        c.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
        let applied = (|| {
            if version(c)? <= i as i64 {
                if let Some(check) = step.check {
                    check(c)?;
                }
                c.execute_batch(step.sql).map_err(map_err)?;
                c.pragma_update(None, "user_version", (i + 1) as i64)
                    .map_err(map_err)?;
            }
            c.execute_batch("COMMIT").map_err(map_err)
        })();
        if let Err(e) = applied {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    // Again: a newer binary may have moved the schema on while this one waited for the lock.
    refuse_if_newer(version(c)?)?;
    if (before as usize) < MIGRATIONS.len() {
        // A rebuild leaves its copy in the WAL; give that space back now rather than keep a
        // WAL file the size of the table until the next restart.
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    Ok(())
}

fn refuse_if_newer(version: i64) -> Result<(), StoreError> {
    if version < 0 || version as usize > MIGRATIONS.len() {
        return Err(StoreError::Internal(
            format!(
                "database schema version {version} is newer than this binary understands ({}); upgrade chatsdk-auth",
                MIGRATIONS.len()
            )
            .into(),
        ));
    }
    Ok(())
}

/// Schema 2 rebuilds `users` (copy, drop, rename). Anything else in the database — an extra
/// column, index, trigger, view or table — would be dropped or would make the rebuild fail, so
/// the upgrade refuses, before changing anything, and says what it found.
fn users_rebuild_is_safe(c: &Connection) -> Result<(), StoreError> {
    const COLUMNS: [&str; 9] = [
        "id",
        "name",
        "image",
        "custom",
        "disabled",
        "tokens_valid_after",
        "revision",
        "created_at",
        "updated_at",
    ];
    let list = |sql: &str| -> Result<Vec<String>, StoreError> {
        let mut st = c.prepare(sql).map_err(map_err)?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    };
    let columns = list("SELECT name FROM pragma_table_info('users') ORDER BY cid")?;
    let mut found = list(
        r"SELECT type || ' ' || name FROM sqlite_master
          WHERE name NOT IN ('users', 'api_keys') AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
          ORDER BY name",
    )?;
    if columns != COLUMNS {
        found.insert(0, format!("users columns ({})", columns.join(", ")));
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(StoreError::Internal(
        format!(
            "cannot upgrade the SQLite schema to version 2: it rebuilds the users table, and the \
         database holds what this service did not create: {}. Back the file up, remove those \
         (or apply schema 2 by hand) and start again",
            found.join("; ")
        )
        .into(),
    ))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{migrate, MIGRATIONS};

    fn rows(c: &Connection, sql: &str) -> Vec<String> {
        let mut st = c.prepare(sql).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// Schema 8 moves the segment entries of schema 7 to compact keys: every entry and count
    /// kept, and the triggers go on following writes.
    #[test]
    fn schema_7_segments_move_to_compact_keys_entries_and_counts_kept() {
        let c = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..7] {
            c.execute_batch(step.sql).unwrap();
        }
        c.pragma_update(None, "user_version", 7).unwrap();
        c.execute_batch(
            r#"INSERT INTO segment_fields VALUES ('plan', 0), ('perms', 1);
            INSERT INTO users (id, custom, created_at, updated_at) VALUES
                ('u1', '{"plan": 7, "perms": ["a", "b"]}', 1, 1),
                ('u2', '{"plan": "7", "perms": "a"}', 1, 1),
                ('u3', '{"plan": {"x": 1}}', 1, 1);"#,
        )
        .unwrap();
        let entries =
            "SELECT field || '=' || value || ':' || user_id FROM user_segments_view ORDER BY 1";
        let counts = "SELECT field || '=' || value || ':' || users FROM segment_counts ORDER BY 1";
        c.execute_batch("CREATE TEMP VIEW user_segments_view AS SELECT field, value, user_id FROM user_segments")
            .unwrap();
        let (before, counted) = (rows(&c, entries), rows(&c, counts));
        assert_eq!(before.len(), 5, "{before:?}");
        c.execute_batch("DROP VIEW user_segments_view").unwrap();

        migrate(&c).unwrap();
        c.execute_batch(
            "CREATE TEMP VIEW user_segments_view AS SELECT k.field, k.value, s.user_id
             FROM user_segments s JOIN segment_keys k ON k.key = s.key",
        )
        .unwrap();
        assert_eq!(rows(&c, entries), before);
        assert_eq!(rows(&c, counts), counted);
        // Writes after the upgrade: a new value gets a key, a repeated one counts once.
        c.execute_batch(
            r#"UPDATE users SET custom = '{"plan": "pro", "perms": ["a", "a"]}' WHERE id = 'u2';
            DELETE FROM users WHERE id = 'u1';"#,
        )
        .unwrap();
        assert_eq!(rows(&c, entries), [r#"perms="a":u2"#, r#"plan="pro":u2"#]);
        assert_eq!(
            rows(&c, counts),
            [r#"perms="a":1"#, "perms=:1", r#"plan="pro":1"#, "plan=:1"]
        );
    }
}
