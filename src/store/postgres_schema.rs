//! PostgreSQL's schema: the migrations in order, applied at start in one transaction under an
//! advisory lock, so replicas starting together do not race; a newer schema than this binary
//! knows stops the start.

use super::postgres::PgStore;
use super::postgres_rows::{col, map_err};
use super::StoreError;

/// Arbitrary constant identifying this service's migration lock.
pub(super) const MIGRATION_LOCK: i64 = 0x6368_6174_7364_6b01;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE chatsdk_auth_users (
    id TEXT PRIMARY KEY,
    name TEXT,
    image TEXT,
    custom TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    tokens_valid_after BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE chatsdk_auth_api_keys (
    name TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
"#,
    r#"
CREATE TABLE chatsdk_auth_kicks (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    code INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX chatsdk_auth_kicks_due ON chatsdk_auth_kicks (not_before_ms);
"#,
    r#"
CREATE TABLE chatsdk_auth_settings (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE chatsdk_auth_audit_events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    target_kind TEXT,
    target TEXT,
    source TEXT,
    detail TEXT
);
CREATE INDEX chatsdk_auth_audit_events_at ON chatsdk_auth_audit_events (at);
CREATE INDEX chatsdk_auth_audit_events_target ON chatsdk_auth_audit_events (target_kind, target, at);
CREATE FUNCTION chatsdk_auth_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END
$$;
CREATE TRIGGER chatsdk_auth_audit_events_append_only BEFORE UPDATE ON chatsdk_auth_audit_events
    FOR EACH ROW EXECUTE FUNCTION chatsdk_auth_audit_append_only();
"#,
    // The abuse limits every replica shares (src/store/shared_limits.rs).
    r#"
CREATE TABLE chatsdk_auth_limits (
    key TEXT PRIMARY KEY,
    tat_ms BIGINT NOT NULL,
    conformed BOOLEAN NOT NULL DEFAULT TRUE
);
"#,
    // The signing-key ring, encrypted (src/store/postgres_keyring.rs): one row.
    r#"
CREATE TABLE chatsdk_auth_signing_keys (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    kek_id TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
"#,
    // Segments (src/store/postgres_segments.rs): the declared fields, and one row per user,
    // declared field and scalar value (each element of an array) as canonical JSON text
    // (jsonb's), kept in step with every write by the trigger.
    r#"
CREATE TABLE chatsdk_auth_segment_fields (
    name TEXT COLLATE "C" PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE chatsdk_auth_user_segments (
    field TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (field, value, user_id)
);
CREATE INDEX chatsdk_auth_user_segments_user ON chatsdk_auth_user_segments (user_id);
CREATE FUNCTION chatsdk_auth_segment_values(v jsonb) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT v WHERE jsonb_typeof(v) IN ('string', 'number', 'boolean', 'null')
    UNION ALL
    SELECT e FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v) = 'array' THEN v ELSE '[]'::jsonb END) e
    WHERE jsonb_typeof(e) IN ('string', 'number', 'boolean', 'null')
$$;
CREATE FUNCTION chatsdk_auth_user_segments_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM chatsdk_auth_user_segments WHERE user_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.custom IS NOT NULL
       AND EXISTS (SELECT 1 FROM chatsdk_auth_segment_fields) THEN
        INSERT INTO chatsdk_auth_user_segments (field, value, user_id)
        SELECT f.name, e.v::text, NEW.id FROM chatsdk_auth_segment_fields f
        CROSS JOIN LATERAL chatsdk_auth_segment_values(NEW.custom::jsonb -> f.name) AS e(v)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER chatsdk_auth_users_segments_insert AFTER INSERT ON chatsdk_auth_users
    FOR EACH ROW WHEN (NEW.custom IS NOT NULL) EXECUTE FUNCTION chatsdk_auth_user_segments_sync();
CREATE TRIGGER chatsdk_auth_users_segments_update AFTER UPDATE OF custom ON chatsdk_auth_users
    FOR EACH ROW WHEN (NEW.custom IS DISTINCT FROM OLD.custom) EXECUTE FUNCTION chatsdk_auth_user_segments_sync();
CREATE TRIGGER chatsdk_auth_users_segments_delete AFTER DELETE ON chatsdk_auth_users
    FOR EACH ROW EXECUTE FUNCTION chatsdk_auth_user_segments_sync();
"#,
    // Segment counts (the overview's users per field and value, `''` the field's total). A
    // write appends its changes to `chatsdk_auth_segment_deltas` (an insert, no shared row to
    // lock: concurrent upserts never wait on each other for a popular value);
    // `chatsdk_auth_segment_fold` moves a bounded batch of them into the counts, one folder at
    // a time (advisory lock 0x6368_6174_7364_6b03), in (field, value) order.
    r#"
CREATE TABLE chatsdk_auth_segment_counts (
    field TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    users BIGINT NOT NULL,
    PRIMARY KEY (field, value)
);
CREATE INDEX chatsdk_auth_segment_counts_top ON chatsdk_auth_segment_counts (field, users DESC, value);
CREATE INDEX chatsdk_auth_segment_counts_zero ON chatsdk_auth_segment_counts (field, value) WHERE users <= 0;
CREATE TABLE chatsdk_auth_segment_deltas (
    id BIGSERIAL PRIMARY KEY,
    field TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    n INTEGER NOT NULL
);
INSERT INTO chatsdk_auth_segment_counts (field, value, users)
    SELECT field, value, count(*) FROM chatsdk_auth_user_segments GROUP BY field, value
    UNION ALL SELECT field, '', count(*) FROM chatsdk_auth_user_segments GROUP BY field;
CREATE OR REPLACE FUNCTION chatsdk_auth_user_segments_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        WITH gone AS (
            DELETE FROM chatsdk_auth_user_segments WHERE user_id = OLD.id RETURNING field, value
        )
        INSERT INTO chatsdk_auth_segment_deltas (field, value, n) SELECT field, value, -1 FROM gone;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.custom IS NOT NULL
       AND EXISTS (SELECT 1 FROM chatsdk_auth_segment_fields) THEN
        WITH added AS (
            INSERT INTO chatsdk_auth_user_segments (field, value, user_id)
            SELECT f.name, e.v::text, NEW.id FROM chatsdk_auth_segment_fields f
            CROSS JOIN LATERAL chatsdk_auth_segment_values(NEW.custom::jsonb -> f.name) AS e(v)
            ON CONFLICT DO NOTHING RETURNING field, value
        )
        INSERT INTO chatsdk_auth_segment_deltas (field, value, n) SELECT field, value, 1 FROM added;
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION chatsdk_auth_segment_fold(batch integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE folded bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7163082360112835331);
    WITH moved AS (
        DELETE FROM chatsdk_auth_segment_deltas WHERE id IN
            (SELECT id FROM chatsdk_auth_segment_deltas ORDER BY id LIMIT batch)
        RETURNING field, value, n
    ), sums AS (
        SELECT field, value, sum(n) AS n FROM moved GROUP BY field, value
        UNION ALL SELECT field, '', sum(n) FROM moved GROUP BY field
    ), applied AS (
        INSERT INTO chatsdk_auth_segment_counts AS c (field, value, users)
        SELECT field, value, n FROM sums ORDER BY field, value
        ON CONFLICT (field, value) DO UPDATE SET users = c.users + EXCLUDED.users
    )
    SELECT count(*) INTO folded FROM moved;
    DELETE FROM chatsdk_auth_segment_counts WHERE users <= 0;
    RETURN folded;
END $$;
"#,
    // Compact segment keys: `chatsdk_auth_segment_keys` numbers each declared field and value
    // once; `chatsdk_auth_user_segments` holds (key, user_id), so a segment's range of the
    // primary key compares one integer per entry instead of two strings (and the planner's
    // statistics on `key` are exact per value). The counts and their log stay by field and value.
    r#"
CREATE TABLE chatsdk_auth_segment_keys (
    key BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    field TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    UNIQUE (field, value)
);
INSERT INTO chatsdk_auth_segment_keys (field, value)
    SELECT DISTINCT field, value FROM chatsdk_auth_user_segments ORDER BY 1, 2;
CREATE TABLE chatsdk_auth_user_segments_by_key (
    key BIGINT NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL
);
INSERT INTO chatsdk_auth_user_segments_by_key (key, user_id)
    SELECT k.key, s.user_id FROM chatsdk_auth_user_segments s
    JOIN chatsdk_auth_segment_keys k ON k.field = s.field AND k.value = s.value
    ORDER BY 1, 2;
DROP TABLE chatsdk_auth_user_segments;
ALTER TABLE chatsdk_auth_user_segments_by_key RENAME TO chatsdk_auth_user_segments;
ALTER TABLE chatsdk_auth_user_segments
    ADD CONSTRAINT chatsdk_auth_user_segments_pkey PRIMARY KEY (key, user_id);
CREATE INDEX chatsdk_auth_user_segments_user ON chatsdk_auth_user_segments (user_id);
ANALYZE chatsdk_auth_user_segments;
CREATE OR REPLACE FUNCTION chatsdk_auth_user_segments_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        WITH gone AS (
            DELETE FROM chatsdk_auth_user_segments WHERE user_id = OLD.id RETURNING key
        )
        INSERT INTO chatsdk_auth_segment_deltas (field, value, n)
        SELECT k.field, k.value, -1 FROM gone JOIN chatsdk_auth_segment_keys k ON k.key = gone.key;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.custom IS NOT NULL
       AND EXISTS (SELECT 1 FROM chatsdk_auth_segment_fields) THEN
        -- A value seen for the first time gets its key (only then: no identity value is
        -- drawn for values that have one).
        INSERT INTO chatsdk_auth_segment_keys (field, value)
            SELECT f.name, e.v::text FROM chatsdk_auth_segment_fields f
            CROSS JOIN LATERAL chatsdk_auth_segment_values(NEW.custom::jsonb -> f.name) AS e(v)
            WHERE NOT EXISTS (SELECT 1 FROM chatsdk_auth_segment_keys k
                              WHERE k.field = f.name AND k.value = e.v::text)
            ON CONFLICT DO NOTHING;
        WITH added AS (
            INSERT INTO chatsdk_auth_user_segments (key, user_id)
            SELECT k.key, NEW.id FROM chatsdk_auth_segment_fields f
            CROSS JOIN LATERAL chatsdk_auth_segment_values(NEW.custom::jsonb -> f.name) AS e(v)
            JOIN chatsdk_auth_segment_keys k ON k.field = f.name AND k.value = e.v::text
            ON CONFLICT DO NOTHING RETURNING key
        )
        INSERT INTO chatsdk_auth_segment_deltas (field, value, n)
        SELECT k.field, k.value, 1 FROM added JOIN chatsdk_auth_segment_keys k ON k.key = added.key;
    END IF;
    RETURN NULL;
END $$;
"#,
];

/// The SQL of every migration in order (the one at index `n` takes the schema from version `n`
/// to `n + 1`), so a test can build an older schema and let [`PgStore`]'s start upgrade it.
#[doc(hidden)]
pub fn postgres_migrations() -> &'static [&'static str] {
    MIGRATIONS
}

impl PgStore {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(map_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS chatsdk_auth_schema (version INTEGER NOT NULL)",
        )
        .await
        .map_err(map_err)?;
        let version: i32 = tx
            .query_opt("SELECT version FROM chatsdk_auth_schema", &[])
            .await
            .map_err(map_err)?
            .map(|r| col::<i32>(&r, 0))
            .transpose()?
            .unwrap_or(0);
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::Internal(
                format!(
                    "database schema version {version} is newer than this binary understands ({}); upgrade chatsdk-auth",
                    MIGRATIONS.len()
                )
                .into(),
            ));
        }
        for sql in MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(sql).await.map_err(map_err)?;
        }
        let latest = MIGRATIONS.len() as i32;
        tx.execute("DELETE FROM chatsdk_auth_schema", &[])
            .await
            .map_err(map_err)?;
        tx.execute(
            "INSERT INTO chatsdk_auth_schema (version) VALUES ($1)",
            &[&latest],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }
}
