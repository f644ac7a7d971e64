//! An admin change and its audit row commit together: a change whose audit row cannot be
//! written is undone (both backends), and a change whose request is abandoned at its deadline
//! is never left without its row (PostgreSQL, where the row's write can be held up alone). A
//! signing-key rotation commits with its row in the ring's transaction on PostgreSQL; the ring
//! file, written apart from the trail, runs to its row even when its request is abandoned.

use std::path::Path;

use chatsdk_auth::keys::{KeyError, Kind};
use chatsdk_auth::store::AuditFilter;
use serde_json::{json, Value};

use crate::helpers::{eventually, on_both_backends, start_app, Backend, TestApp, TestDb};

async fn admin(t: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = t
        .client
        .request(method.parse().unwrap(), t.url(path))
        .bearer_auth(t.app.secrets.admin_token.expose());
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The audit events of user `id`.
async fn user_events(t: &TestApp, id: &str) -> Vec<String> {
    let f = AuditFilter {
        user: Some(id.into()),
        ..Default::default()
    };
    let events = t.app.store.list_audit(&f).await.unwrap();
    events.into_iter().map(|e| e.event).collect()
}

async fn disabled(t: &TestApp, id: &str) -> bool {
    t.app.store.get_user(id).await.unwrap().unwrap().disabled
}

/// Makes every insert into the audit table fail (a trigger of the test's own), or lets them
/// through again.
async fn refuse_audit_rows(dir: &Path, db: &TestDb, refuse: bool) {
    match &db.postgres_url {
        Some(url) => {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let sql = if refuse {
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION 'audit rows refused by the test'; END $$;
                 CREATE TRIGGER refuse_audit BEFORE INSERT ON chatsdk_auth_audit_events
                     FOR EACH ROW EXECUTE FUNCTION refuse_audit();"
            } else {
                "DROP TRIGGER refuse_audit ON chatsdk_auth_audit_events;
                 DROP FUNCTION refuse_audit();"
            };
            c.batch_execute(sql).await.unwrap();
        }
        None => {
            let c = rusqlite::Connection::open(dir.join("chatsdk-auth.db")).unwrap();
            let sql = if refuse {
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events
                 BEGIN SELECT RAISE(ABORT, 'audit rows refused by the test'); END;"
            } else {
                "DROP TRIGGER refuse_audit;"
            };
            c.execute_batch(sql).unwrap();
        }
    }
}

/// No change without its row: with the audit table refusing inserts, every admin change fails
/// and leaves the store as it was (the user still enabled, the app-wide cutoff unmoved, no new
/// key, the revoked key still minting); once the table takes rows again, the same change
/// commits with its row.
async fn a_change_whose_audit_row_fails_is_undone(backend: Backend) {
    let db = TestDb::start(backend).await;
    let t = TestApp::spawn_with(|c| db.configure(c)).await;
    t.mint("u1").await;
    let cutoff = t
        .app
        .store
        .get_session("u1")
        .await
        .unwrap()
        .unwrap()
        .tokens_valid_after;
    refuse_audit_rows(&t.dir, &db, true).await;

    for (method, path, body) in [
        ("POST", "/admin/users/u1/disable", None),
        ("POST", "/admin/users/u1/revoke-tokens", None),
        ("DELETE", "/admin/users/u1", None),
        ("POST", "/admin/revoke-tokens", None),
        ("POST", "/admin/api-keys", Some(json!({"name": "ci"}))),
        ("DELETE", "/admin/api-keys/test", None),
    ] {
        let (s, b) = admin(&t, method, path, body).await;
        assert_eq!(s, 500, "{backend:?} {method} {path}: {b}");
    }
    assert!(!disabled(&t, "u1").await, "{backend:?}");
    let session = t.app.store.get_session("u1").await.unwrap().unwrap();
    assert_eq!(session.tokens_valid_after, cutoff, "{backend:?}");
    let (_, keys) = admin(&t, "GET", "/admin/api-keys", None).await;
    let names: Vec<&str> = keys["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"ci"), "{backend:?} {keys}");
    assert_eq!(
        t.tokens(json!({"userId": "u2"})).await.0,
        200,
        "{backend:?}"
    );
    assert!(user_events(&t, "u1").await.is_empty(), "{backend:?}");

    refuse_audit_rows(&t.dir, &db, false).await;
    let (s, b) = admin(&t, "POST", "/admin/users/u1/disable", None).await;
    assert_eq!(s, 200, "{backend:?} {b}");
    assert!(disabled(&t, "u1").await);
    assert_eq!(
        user_events(&t, "u1").await,
        ["user.disabled"],
        "{backend:?}"
    );
}

/// The same at startup: `secrets.initial_api_key` changed while the audit table refuses rows
/// stops the start and leaves the stored key as it was; the next start installs it with its
/// `api_key.rotated` row.
async fn a_startup_key_change_whose_audit_row_fails_is_undone(backend: Backend) {
    let db = TestDb::start(backend).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let id = chatsdk_auth::api_key::DEFAULT_APP_ID;
    let (a, b) = (
        chatsdk_auth::api_key::generate(id),
        chatsdk_auth::api_key::generate(id),
    );
    let start = |key: &str| {
        let key = key.to_string();
        let db = &db;
        TestApp::start_in(&dir, move |c| {
            db.configure(c);
            c.secrets.initial_api_key = key;
        })
    };
    let mut t = start(&a).await;
    assert!(t.stop().await);
    drop(t);

    refuse_audit_rows(&dir, &db, true).await;
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.storage.data_dir = dir.to_string_lossy().into_owned();
    db.configure(&mut raw);
    raw.secrets.initial_api_key = b.clone();
    assert!(
        start_app(raw.validate().unwrap()).await.is_err(),
        "{backend:?}: started without the key change's audit row"
    );
    refuse_audit_rows(&dir, &db, false).await;

    // The stored key is still the first one, with the one row of its installation.
    let mut t = start(&a).await;
    assert_eq!(t.tokens_with_key(&a, json!({"userId": "u"})).await.0, 200);
    assert_eq!(t.tokens_with_key(&b, json!({"userId": "u"})).await.0, 401);
    assert_eq!(rotated(&t).await, 1, "{backend:?}");
    assert!(t.stop().await);
    drop(t);
    let t = start(&b).await;
    assert_eq!(t.tokens_with_key(&b, json!({"userId": "u"})).await.0, 200);
    assert_eq!(rotated(&t).await, 2, "{backend:?}");
}

/// The `api_key.rotated` rows (`secrets.initial_api_key` installed or replaced).
async fn rotated(t: &TestApp) -> usize {
    let events = t.app.store.list_audit(&AuditFilter::default()).await;
    events
        .unwrap()
        .iter()
        .filter(|e| e.event == "api_key.rotated")
        .count()
}

on_both_backends!(
    a_change_whose_audit_row_fails_is_undone,
    a_startup_key_change_whose_audit_row_fails_is_undone
);

/// On PostgreSQL a signing-key rotation writes its `signing_key.rotated` row in the ring's
/// transaction: with the audit table refusing rows, a rotation from the admin API (500) and one
/// as `keys rotate` runs it (the same action) both fail and leave the ring's row as it was;
/// once the table takes rows, the rotation commits with its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_audit_row_fails_is_undone() {
    crate::need::need!(Postgres);
    let db = TestDb::start(Backend::Postgres).await;
    let t = TestApp::spawn_with(|c| db.configure(c)).await;
    let ring = || async { t.app.store.load_key_ring().await.unwrap().unwrap() };
    let rows = || async {
        let events = t.app.store.list_audit(&AuditFilter::default()).await;
        let rotated = events.unwrap().into_iter();
        let rotated = rotated.filter(|e| e.event == "signing_key.rotated");
        rotated
            .map(|e| (e.actor, e.target, e.detail))
            .collect::<Vec<_>>()
    };
    let before = ring().await;
    refuse_audit_rows(&t.dir, &db, true).await;

    let (s, b) = admin(&t, "POST", "/admin/keys/rest/rotate", None).await;
    assert_eq!(s, 500, "{b}");
    let cli = chatsdk_auth::actions::Actions::new(&t.app.store, false, "cli");
    let (config, secrets) = (&t.app.config, &t.app.secrets);
    let now = crate::helpers::now();
    let r = cli.rotate_signing_key(config, secrets, Kind::Ws, now);
    let r = r.await;
    assert!(matches!(r, Err(KeyError::RingStore(_))), "{r:?}");
    assert!(
        ring().await == before,
        "the ring changed without its audit row"
    );
    assert!(rows().await.is_empty());

    refuse_audit_rows(&t.dir, &db, false).await;
    let (s, b) = admin(&t, "POST", "/admin/keys/rest/rotate", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ring().await.version, before.version + 1);
    let detail = format!(
        "{} -> {}, signs from {}",
        b["old_kid"].as_str().unwrap(),
        b["new_kid"].as_str().unwrap(),
        b["signs_from"]
    );
    let row = ("admin".to_string(), Some("rest".to_string()), Some(detail));
    assert_eq!(rows().await, [row]);
}

/// A disable whose audit row waits on a lock the test holds on the audit table: the request is
/// abandoned at its deadline (503), then PostgreSQL's statement_timeout (well past the
/// deadline, so a slow machine still sees the deadline first) ends the row's insert. The user is disabled exactly when its row is there: here
/// neither, and the retry once the table is free commits both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_change_is_never_kept_without_its_audit_row() {
    crate::need::need!(Postgres);
    let db = TestDb::start(Backend::Postgres).await;
    let url = db.postgres_url.clone().unwrap();
    let t = TestApp::spawn_with(|c| {
        db.configure(c);
        c.storage.postgres_url = format!("{url}?options=-c%20statement_timeout%3D5000");
        c.storage.postgres_timeout_ms = 60_000;
        c.server.request_timeout_seconds = 1;
    })
    .await;
    t.mint("u1").await;

    let (mut locker, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let (watcher, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE chatsdk_auth_audit_events IN EXCLUSIVE MODE")
        .await
        .unwrap();

    let (s, b) = admin(&t, "POST", "/admin/users/u1/disable", None).await;
    assert_eq!(s, 503, "{b}");
    // The insert of the abandoned request's row is gone (ended by statement_timeout).
    eventually("the audit insert ends", || async {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO chatsdk_auth_audit_events%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        waiting == 0
    })
    .await;
    lock.rollback().await.unwrap();

    let events = user_events(&t, "u1").await;
    assert_eq!(
        disabled(&t, "u1").await,
        events.contains(&"user.disabled".to_string()),
        "a change kept without its audit row: {events:?}"
    );
    let (s, b) = admin(&t, "POST", "/admin/users/u1/disable", None).await;
    assert_eq!(s, 200, "{b}");
    assert!(disabled(&t, "u1").await);
    assert!(user_events(&t, "u1")
        .await
        .contains(&"user.disabled".to_string()));
}

/// A rotation whose request is abandoned while the ring file's lock is held elsewhere (here by
/// the test, as by a CLI rotation) still runs to its end once the lock is free: the ring gains
/// its key and the trail its `signing_key.rotated` row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_rotation_still_writes_its_audit_row() {
    let t = TestApp::spawn_with(|c| c.server.request_timeout_seconds = 1).await;
    let before = t.app.keys.current().list(crate::helpers::now()).len();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(t.dir.join("keyring.lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let (s, b) = admin(&t, "POST", "/admin/keys/rest/rotate", None).await;
    assert_eq!(s, 503, "{b}");
    drop(lock);

    eventually("the rotation's audit row", || async {
        t.app
            .store
            .list_audit(&AuditFilter::default())
            .await
            .unwrap()
            .iter()
            .any(|e| e.event == "signing_key.rotated" && e.target.as_deref() == Some("rest"))
    })
    .await;
    eventually("the rotated ring in force", || async {
        t.app.keys.current().list(crate::helpers::now()).len() == before + 1
    })
    .await;
}
