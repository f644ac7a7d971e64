//! How store failures reach callers and logs: a conflict is answered with a fixed sentence (the
//! driver's text, PostgreSQL's `DETAIL:` line with the conflicting values, never leaves the
//! process), a row the store cannot decode is a 500 rather than a panic, and the log line of a
//! failed store operation carries its whole cause chain.

use serde_json::{json, Value};

use crate::helpers::{start_app, Backend, TestApp, TestDb};
use crate::pg::{self, PgServer};
use crate::process::Server;

async fn admin(t: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = t
        .client
        .request(method.parse().unwrap(), t.url(path))
        .header(
            "Authorization",
            format!("Bearer {}", t.app.secrets.admin_token.expose()),
        );
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Words that only a database driver's message carries.
fn has_driver_text(s: &str) -> bool {
    [
        "DETAIL",
        "duplicate key",
        "constraint",
        "db error",
        "UNIQUE",
    ]
    .iter()
    .any(|w| s.contains(w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_api_key_name_is_409_with_a_fixed_sentence_on_both_backends() {
    crate::need::need!(Postgres);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let t = TestApp::spawn_on(backend).await;
        let (s, b) = admin(&t, "POST", "/admin/api-keys", Some(json!({"name": "ci"}))).await;
        assert_eq!(s, 201, "{backend:?} {b}");
        let (s, b) = admin(&t, "POST", "/admin/api-keys", Some(json!({"name": "ci"}))).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (409, Some("api_key_exists")),
            "{b}"
        );
        let message = b["error"].as_str().unwrap();
        assert!(message.contains("already exists"), "{backend:?} {message}");
        assert!(!has_driver_text(message), "{backend:?} {message}");
    }
}

/// `secrets.initial_api_key` set to a key the store already holds under another name: the
/// service refuses to start with a typed conflict that says so in its own words, not the
/// driver's (PostgreSQL's `DETAIL: Key (hash)=(\x…)` is only the cause below it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_key_installed_under_another_name_is_refused_without_driver_text() {
    crate::need::need!(Postgres);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::start(backend).await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut first = TestApp::start_in(&dir, |c| db.configure(c)).await;
        let (s, b) = admin(
            &first,
            "POST",
            "/admin/api-keys",
            Some(json!({"name": "ci"})),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let key = b["key"].as_str().unwrap().to_string();
        assert!(first.stop().await);
        drop(first);

        let mut raw = chatsdk_auth::config::RawConfig::default();
        raw.server.listen = "127.0.0.1:0".into();
        raw.storage.data_dir = dir.to_string_lossy().into_owned();
        db.configure(&mut raw);
        raw.secrets.initial_api_key = key;
        let err = match start_app(raw.validate().unwrap()).await {
            Ok(_) => panic!("{backend:?}: started with a key installed twice"),
            Err(e) => e,
        };
        // The store's own sentence says what is wrong; the driver's message stays below it in
        // the chain, for the operator's log.
        let store = std::error::Error::source(&err).expect("the store's error");
        let sentence = store.to_string();
        assert!(sentence.contains("another name"), "{backend:?}: {sentence}");
        assert!(!has_driver_text(&sentence), "{backend:?}: {sentence}");
    }
}

/// A column whose type is not what this binary reads (an operator's `ALTER TABLE`, a schema
/// from another version) is a 500 `internal_error`, not a panic that drops the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_of_the_wrong_type_is_a_500_not_a_panic() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let t = TestApp::spawn_with(|c| crate::helpers::use_postgres(c, url.clone())).await;
    assert_eq!(t.tokens(json!({"userId": "u", "name": "Ada"})).await.0, 200);
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute(
        "ALTER TABLE chatsdk_auth_users ALTER COLUMN disabled DROP DEFAULT;
         ALTER TABLE chatsdk_auth_users ALTER COLUMN disabled TYPE INTEGER USING disabled::INTEGER;
         ALTER TABLE chatsdk_auth_users ALTER COLUMN created_at TYPE INTEGER;",
    )
    .await
    .unwrap();
    let (s, b) = t.tokens(json!({"userId": "u", "name": "Ada"})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (500, Some("internal_error")),
        "{b}"
    );
    let (s, b) = admin(&t, "GET", "/admin/users/u", None).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (500, Some("internal_error")),
        "{b}"
    );
    let (s, b) = admin(&t, "GET", "/admin/users", None).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (500, Some("internal_error")),
        "{b}"
    );
    // The server is still serving.
    let r = t.client.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The log line of a failed readiness check names the cause, not just "store unavailable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_is_logged_with_its_cause() {
    crate::need::need!(Postgres);
    let mut pg = PgServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let url = pg.url();
    let server = Server::start(
        tmp.path(),
        &[
            ("CHATSDK_AUTH_STORAGE__BACKEND", "postgres"),
            ("CHATSDK_AUTH_STORAGE__POSTGRES_URL", &url),
            ("CHATSDK_AUTH_STORAGE__POSTGRES_TIMEOUT_MS", "500"),
        ],
    );
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;
    pg.stop();
    let r = c.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let (_, logs) = server.terminate();
    let line = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "readiness check failed")
        .unwrap_or_else(|| panic!("no readiness log line in {logs:#?}"));
    let error = line["error"].as_str().unwrap();
    // The top ("store unavailable") and at least one cause below it.
    assert!(error.starts_with("store unavailable: "), "{line}");
    assert!(error.to_lowercase().contains("connect"), "{line}");
}
