//! The embedded SQLite backend: one writer connection, a few reader connections, WAL mode.
//!
//! WAL lets readers (API-key checks, proxy user lookups) run while a write is in progress, and
//! `synchronous=NORMAL` makes a commit an append to the WAL with no fsync; checkpoints sync.
//! Calls run inline on the async worker: each statement is a few microseconds on an indexed
//! primary key, cheaper than a hop to a blocking thread. `busy_timeout` bounds the wait when
//! another process (the CLI) holds the write lock; past it the call fails as `Unavailable`.
//!
//! Trap avoided: SQLite only runs its WAL auto-checkpoint when a statement is stepped to the
//! end, so every `RETURNING` statement here is drained (`rows.next()` until `None`).
//!
//! Most `POST /tokens` calls repeat a profile the store already holds (clients mint again on
//! every login or reconnect), so the upsert first reads the row on a reader connection and
//! writes only when something would change: the common case takes no write lock, appends no
//! WAL frame and never waits for the writer.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{ApiKeyInfo, ApiKeyRecord, Field, SessionUser, StoreError, Upserted, User, UserPatch};

/// Reader connections; two cores rarely need more.
const READERS: usize = 4;

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
];

/// What the upsert needs to know about an existing row before deciding to write, and what a
/// proxy decision needs (one cached statement for both).
const PROFILE: &str =
    "SELECT name, image, custom, disabled, tokens_valid_after FROM users WHERE id = ?1";

/// The upsert: insert, or update only the fields the request carried. A disabled user is not
/// touched (the `WHERE` makes the conflict branch a no-op, so no row comes back).
const UPSERT: &str = "INSERT INTO users (id, name, image, custom, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?5)
ON CONFLICT(id) DO UPDATE SET
    name = CASE WHEN ?6 THEN excluded.name ELSE users.name END,
    image = CASE WHEN ?7 THEN excluded.image ELSE users.image END,
    custom = CASE WHEN ?8 THEN excluded.custom ELSE users.custom END,
    revision = users.revision + 1,
    updated_at = excluded.updated_at
WHERE users.disabled = 0
RETURNING id, name, image, tokens_valid_after, revision";

pub struct SqliteStore {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl SqliteStore {
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::secrets::ensure_data_dir(parent)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        let existed = path.exists();
        let writer = open_conn(path, busy_timeout, false)?;
        if !existed {
            // The database holds key hashes and user profiles: owner-only, like the secrets.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(map_err)?;
        migrate(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(open_conn(path, busy_timeout, true)?));
        }
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock means a panic mid-call; SQLite rolled back whatever was open.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // The first free reader, so that a lightly loaded server keeps reusing one connection
        // (its page and statement caches stay warm); only when all are busy, wait on one
        // chosen round-robin.
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return g;
            }
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn ping(&self) -> Result<(), StoreError> {
        let c = self.reader();
        c.prepare_cached("SELECT count(*) FROM api_keys")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map(|_| ())
            .map_err(map_err)
    }

    pub fn upsert_user(&self, p: &UserPatch<'_>, now: i64) -> Result<Upserted, StoreError> {
        if let Some(done) = self.upsert_without_write(p)? {
            return Ok(done);
        }
        let c = self.writer();
        let mut st = c.prepare_cached(UPSERT).map_err(map_err)?;
        let mut rows = st
            .query(params![
                p.id,
                p.name.value(),
                p.image.value(),
                p.custom.value(),
                now,
                p.name.is_given(),
                p.image.is_given(),
                p.custom.is_given(),
            ])
            .map_err(map_err)?;
        let first = match rows.next().map_err(map_err)? {
            Some(r) => Some(Upserted::Active {
                id: r.get(0).map_err(map_err)?,
                name: r.get(1).map_err(map_err)?,
                image: r.get(2).map_err(map_err)?,
                tokens_valid_after: r.get(3).map_err(map_err)?,
                created: r.get::<_, i64>(4).map_err(map_err)? == 1,
            }),
            None => None,
        };
        // Drain to completion so the statement finishes and the WAL can checkpoint.
        while rows.next().map_err(map_err)?.is_some() {}
        Ok(first.unwrap_or(Upserted::Disabled))
    }

    /// The upsert's outcome when it needs no write: the user exists and either is disabled
    /// (the upsert would not touch the row) or already holds every field the patch carries.
    /// `None` means a write is needed. Read on a reader connection, so it never waits for the
    /// writer; a write that commits in between is ordered after this call, as if it came later.
    fn upsert_without_write(&self, p: &UserPatch<'_>) -> Result<Option<Upserted>, StoreError> {
        let c = self.reader();
        let mut st = c.prepare_cached(PROFILE).map_err(map_err)?;
        let mut rows = st.query([p.id]).map_err(map_err)?;
        let Some(r) = rows.next().map_err(map_err)? else {
            return Ok(None);
        };
        if r.get::<_, i64>(3).map_err(map_err)? != 0 {
            return Ok(Some(Upserted::Disabled));
        }
        let same = |i: usize, f: &Field<&str>| -> Result<bool, StoreError> {
            let stored = r.get_ref(i).map_err(map_err)?;
            Ok(match f {
                Field::Keep => true,
                Field::Clear => stored == ValueRef::Null,
                Field::Set(v) => stored == ValueRef::Text(v.as_bytes()),
            })
        };
        if !(same(0, &p.name)? && same(1, &p.image)? && same(2, &p.custom)?) {
            return Ok(None);
        }
        Ok(Some(Upserted::Active {
            id: p.id.to_string(),
            name: r.get(0).map_err(map_err)?,
            image: r.get(1).map_err(map_err)?,
            tokens_valid_after: r.get(4).map_err(map_err)?,
            created: false,
        }))
    }

    pub fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let c = self.reader();
        let mut st = c
            .prepare_cached(
                "SELECT id, name, image, custom, disabled, tokens_valid_after, created_at, updated_at
                 FROM users WHERE id = ?1",
            )
            .map_err(map_err)?;
        st.query_row([id], |r| {
            Ok(User {
                id: r.get(0)?,
                name: r.get(1)?,
                image: r.get(2)?,
                custom: r.get(3)?,
                disabled: r.get::<_, i64>(4)? != 0,
                tokens_valid_after: r.get(5)?,
                created_at: r.get(6)?,
                updated_at: r.get(7)?,
            })
        })
        .optional()
        .map_err(map_err)
    }

    pub fn get_session(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        let c = self.reader();
        let mut st = c.prepare_cached(PROFILE).map_err(map_err)?;
        st.query_row([id], |r| {
            Ok(SessionUser {
                name: r.get(0)?,
                image: r.get(1)?,
                custom: r.get(2)?,
                disabled: r.get::<_, i64>(3)? != 0,
                tokens_valid_after: r.get(4)?,
            })
        })
        .optional()
        .map_err(map_err)
    }

    pub fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        let c = self.reader();
        let mut st = c
            .prepare_cached(
                "SELECT name, hash, revoked_at IS NOT NULL FROM api_keys WHERE hash = ?1",
            )
            .map_err(map_err)?;
        st.query_row([&hash[..]], |r| {
            let stored: Vec<u8> = r.get(1)?;
            let mut h = [0u8; 32];
            if stored.len() == 32 {
                h.copy_from_slice(&stored);
            }
            Ok(ApiKeyRecord {
                name: r.get(0)?,
                hash: h,
                revoked: r.get(2)?,
            })
        })
        .optional()
        .map_err(map_err)
    }

    pub fn touch_api_key(&self, name: &str, now: i64) -> Result<(), StoreError> {
        let c = self.writer();
        c.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE name = ?1")
            .and_then(|mut s| s.execute(params![name, now]))
            .map(|_| ())
            .map_err(map_err)
    }

    pub fn insert_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<(), StoreError> {
        let c = self.writer();
        let res = c.execute(
            "INSERT INTO api_keys (name, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, prefix, &hash[..], now],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
                Err(StoreError::Conflict(format!(
                    "an API key named \"{name}\" already exists (names stay taken after revocation); choose another name"
                )))
            }
            Err(e) => Err(map_err(e)),
        }
    }

    pub fn ensure_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<bool, StoreError> {
        let c = self.writer();
        let existing: Option<Vec<u8>> = c
            .query_row("SELECT hash FROM api_keys WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(map_err)?;
        match existing {
            // Same key: keep the row as it is (a revoked initial key stays revoked).
            Some(h) if h == hash[..] => Ok(false),
            Some(_) => c
                .execute(
                    "UPDATE api_keys SET prefix = ?2, hash = ?3, created_at = ?4, last_used_at = NULL, revoked_at = NULL WHERE name = ?1",
                    params![name, prefix, &hash[..], now],
                )
                .map(|_| true)
                .map_err(map_err),
            None => c
                .execute(
                    "INSERT INTO api_keys (name, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![name, prefix, &hash[..], now],
                )
                .map(|_| true)
                .map_err(map_err),
        }
    }

    pub fn count_api_keys(&self) -> Result<u64, StoreError> {
        let c = self.reader();
        c.query_row("SELECT count(*) FROM api_keys", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(map_err)
    }

    pub fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let c = self.reader();
        let mut st = c
            .prepare("SELECT name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, name")
            .map_err(map_err)?;
        let rows = st
            .query_map([], |r| {
                Ok(ApiKeyInfo {
                    name: r.get(0)?,
                    prefix: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used_at: r.get(3)?,
                    revoked_at: r.get(4)?,
                })
            })
            .map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    pub fn revoke_api_key(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let c = self.writer();
        c.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, now],
        )
        .map(|n| n > 0)
        .map_err(map_err)
    }

    pub fn set_user_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let c = self.writer();
        c.execute(
            "UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, disabled, now],
        )
        .map(|n| n > 0)
        .map_err(map_err)
    }

    pub fn revoke_user_tokens(&self, id: &str, before: i64, now: i64) -> Result<bool, StoreError> {
        let c = self.writer();
        c.execute(
            "UPDATE users SET tokens_valid_after = max(tokens_valid_after, ?2), updated_at = ?3 WHERE id = ?1",
            params![id, before, now],
        )
        .map(|n| n > 0)
        .map_err(map_err)
    }
}

fn open_conn(
    path: &Path,
    busy_timeout: Duration,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let c = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot open SQLite database {}: {e}",
            path.display()
        ))
    })?;
    c.busy_timeout(busy_timeout).map_err(map_err)?;
    if !read_only {
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(map_err)?;
    }
    c.set_prepared_statement_cache_capacity(32);
    Ok(c)
}

fn migrate(c: &Connection) -> Result<(), StoreError> {
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
        return Err(StoreError::Internal(format!(
            "database schema version {version} is newer than this binary understands ({}); upgrade chatsdk-auth",
            MIGRATIONS.len()
        )));
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
    Err(StoreError::Internal(format!(
        "cannot upgrade the SQLite schema to version 2: it rebuilds the users table, and the \
         database holds what this service did not create: {}. Back the file up, remove those \
         (or apply schema 2 by hand) and start again",
        found.join("; ")
    )))
}

fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed => StoreError::Unavailable(e.to_string()),
            ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        },
        _ => StoreError::Internal(e.to_string()),
    }
}
