//! SQLite's own schema migrations: an old database is migrated in place and keeps every row;
//! a database the service cannot safely migrate, or one newer than the binary, is refused.

use serde_json::json;

use crate::helpers::{start_app, TestApp};

#[tokio::test]
async fn a_database_from_schema_1_is_migrated_in_place_and_keeps_every_row() {
    // Schema 1 as the first release created it: users on a rowid table with a text key.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(schema_1_db(
        &dir,
        "INSERT INTO users VALUES ('old-1', 'Ada', NULL, '{\"team\":\"a\"}', 0, 17, 3, 100, 200);
         INSERT INTO users VALUES ('old-2', NULL, 'https://i/b.png', NULL, 1, 0, 1, 101, 101);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
           INSERT INTO users (id, name, image, custom, created_at, updated_at)
           SELECT 'bulk-' || i, 'Bulk', 'https://example.com/a/' || i || '.png', '{\"t\":1}', 1, 1 FROM n;",
    ));
    let t = TestApp::start_in(&dir, |_| {}).await;
    let a = t.app.store.get_user("old-1").await.unwrap().unwrap();
    assert_eq!(
        (a.name.as_deref(), a.image.as_deref(), a.custom.as_deref()),
        (Some("Ada"), None, Some(r#"{"team":"a"}"#))
    );
    assert_eq!(
        (a.disabled, a.tokens_valid_after, a.created_at, a.updated_at),
        (false, 17, 100, 200)
    );
    let b = t.app.store.get_user("old-2").await.unwrap().unwrap();
    assert!(b.disabled, "a disabled user stays disabled");
    assert_eq!(b.image.as_deref(), Some("https://i/b.png"));
    // The migrated table serves upserts: an update, and a new user.
    let (s, body) = t
        .tokens(json!({"userId": "old-1", "image": "https://i/a.png"}))
        .await;
    assert_eq!((s, body["user"]["name"].clone()), (200, json!("Ada")));
    assert_eq!(t.tokens(json!({"userId": "new-1"})).await.0, 200);
    assert_eq!(t.tokens(json!({"userId": "old-2"})).await.0, 403);

    let c = rusqlite::Connection::open(dir.join("chatsdk-auth.db")).unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, 8,
        "every schema step applied, the audit table included"
    );
    let sql: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'users'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    let n: i64 = c
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5004, "5,000 bulk, old-1, old-2, kept");
    // The rebuild's copy does not stay behind in the WAL file: the copy of 5,004 users is most
    // of the database, and what the WAL may hold after the checkpoint is the few pages the
    // writes since touched (their number grows with what a write records, so it is no bound).
    let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    let (wal, db) = (size("chatsdk-auth.db-wal"), size("chatsdk-auth.db"));
    assert!(
        wal < db / 2,
        "WAL after migration: {wal} bytes beside a {db}-byte database"
    );
}

/// Starts the service's setup on `dir` and returns its error message.
async fn prepare_error(dir: &std::path::Path) -> String {
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.storage.data_dir = dir.to_string_lossy().into_owned();
    match start_app(raw.validate().unwrap()).await {
        Ok(_) => panic!("setup succeeded on {}", dir.display()),
        Err(e) => chatsdk_auth::error_chain::Chain(&e).to_string(),
    }
}

/// A schema-1 database file in `dir`, plus `extra` SQL.
fn schema_1_db(dir: &std::path::Path, extra: &str) -> rusqlite::Connection {
    std::fs::create_dir_all(dir).unwrap();
    let c = rusqlite::Connection::open(dir.join("chatsdk-auth.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE users (id TEXT PRIMARY KEY NOT NULL, name TEXT, image TEXT, custom TEXT,
           disabled INTEGER NOT NULL DEFAULT 0, tokens_valid_after INTEGER NOT NULL DEFAULT 0,
           revision INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
         CREATE TABLE api_keys (name TEXT PRIMARY KEY NOT NULL, prefix TEXT NOT NULL,
           hash BLOB NOT NULL UNIQUE, created_at INTEGER NOT NULL, last_used_at INTEGER, revoked_at INTEGER);
         INSERT INTO users (id, name, created_at, updated_at) VALUES ('kept', 'Ada', 1, 1);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    c.execute_batch(extra).unwrap();
    c
}

#[tokio::test]
async fn the_users_rebuild_refuses_a_database_with_objects_it_did_not_create() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = schema_1_db(
        &dir,
        "CREATE INDEX users_by_name ON users(name); CREATE VIEW named AS SELECT id FROM users;",
    );
    let msg = prepare_error(&dir).await;
    assert!(
        msg.contains("cannot upgrade the SQLite schema to version 2"),
        "{msg}"
    );
    assert!(
        msg.contains("index users_by_name") && msg.contains("view named"),
        "{msg}"
    );
    // Nothing changed: still schema 1, the operator's objects and the row intact.
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let n: i64 = c
        .query_row("SELECT count(*) FROM named WHERE id = 'kept'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = schema_1_db(&dir, "PRAGMA user_version = 99;");
    let msg = prepare_error(&dir).await;
    assert!(
        msg.contains("schema version 99 is newer than this binary"),
        "{msg}"
    );
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99, "left as it was");
}
