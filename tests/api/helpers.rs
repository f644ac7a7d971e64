use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use chatsdk_auth::app::StartError;
use chatsdk_auth::config::RawConfig;
use chatsdk_auth::{App, Config};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::oneshot;

use crate::pg;

pub const UUID: &str = "5c2f8a61-0d5e-4a5e-9d0f-2b7c1f3a9e10";

/// The store a contract test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the app's data directory.
    Sqlite,
    /// A database of its own on the tests' private PostgreSQL (tests/api/pg.rs).
    Postgres,
}

/// Runs each named contract test (an `async fn(Backend)` of the invoking module) once per
/// backend, as `<module>::sqlite::<name>` and `<module>::postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::need::need!(Postgres);
                    super::$name(crate::helpers::Backend::Postgres).await;
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;

/// The keys of a JSON object.
pub fn keys(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Points a config at PostgreSQL, with a short pool timeout so an outage answers quickly, and
/// one key-encryption secret for every app of the test (replicas must share it: the signing
/// keys are stored encrypted with it, tests/api/keyring_pg.rs).
pub fn use_postgres(c: &mut RawConfig, url: String) {
    c.storage.backend = "postgres".into();
    c.storage.postgres_url = url;
    c.storage.postgres_timeout_ms = 500;
    c.secrets.key_encryption_key = "key-encryption-secret-of-the-tests-0123456789".into();
}

/// The database a test's apps share: the data dir's SQLite file, or a new PostgreSQL database.
pub struct TestDb {
    pub postgres_url: Option<String>,
}

impl TestDb {
    pub async fn start(backend: Backend) -> TestDb {
        let postgres_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(pg::database().await),
        };
        TestDb { postgres_url }
    }

    /// Sets the storage backend (and URL) of a config to this database.
    pub fn configure(&self, c: &mut RawConfig) {
        if let Some(url) = &self.postgres_url {
            use_postgres(c, url.clone());
        }
    }
}

/// Everything the service does before binding (secrets, store, first key), as `serve` runs it.
pub async fn start_app(config: Config) -> Result<Arc<App>, StartError> {
    App::start(config, chatsdk_auth::telemetry::AccessLog::disabled()).await
}

/// A running server on 127.0.0.1:0 with its own data directory.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub key: String,
    pub app: Arc<App>,
    pub dir: PathBuf,
    /// The PostgreSQL URL when the app runs on PostgreSQL.
    pg_url: Option<String>,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<bool>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server on `backend`, with a database of its own.
    pub async fn spawn_on(backend: Backend) -> TestApp {
        Self::spawn_on_with(backend, |_| {}).await
    }

    pub async fn spawn_on_with(backend: Backend, f: impl FnOnce(&mut RawConfig)) -> TestApp {
        let db = TestDb::start(backend).await;
        Self::spawn_with(|c| {
            db.configure(c);
            f(c)
        })
        .await
    }

    pub async fn spawn_with(f: impl FnOnce(&mut RawConfig)) -> TestApp {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut t = Self::start_in(&dir, f).await;
        t._tmp = Some(tmp);
        t
    }

    /// Starts on an existing (or new) data dir; the caller keeps the temp dir alive.
    pub async fn start_in(dir: &Path, f: impl FnOnce(&mut RawConfig)) -> TestApp {
        let mut raw = RawConfig::default();
        raw.server.listen = "127.0.0.1:0".into();
        raw.storage.data_dir = dir.to_string_lossy().into_owned();
        raw.log.level = "warn".into();
        f(&mut raw);
        let pg_url = (raw.storage.backend == "postgres").then(|| raw.storage.postgres_url.clone());
        let config = raw.validate().expect("test config is valid");
        let app = start_app(config).await.unwrap();
        let key = match app
            .store
            .create_api_key(
                "test",
                &app.config.app.id,
                chatsdk_auth::now_unix(),
                &crate::helpers::test_event("api_key.created", "test"),
            )
            .await
        {
            Ok(k) => k,
            // Restarted on the same data dir: the key from the first run is in a file.
            Err(_) => std::fs::read_to_string(dir.join("test-key.txt")).unwrap(),
        };
        std::fs::write(dir.join("test-key.txt"), &key).unwrap();
        let listener = tokio::net::TcpListener::bind(app.config.server.listen)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = chatsdk_auth::Listeners {
            main: listener,
            metrics: None,
            admin: None,
        };
        let task = tokio::spawn(chatsdk_auth::serve_on(listeners, app.clone(), async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            client: reqwest::Client::new(),
            key,
            app,
            dir: dir.to_path_buf(),
            pg_url,
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits for the drain; returns whether it completed in time.
    pub async fn stop(&mut self) -> bool {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.unwrap(),
            None => true,
        }
    }

    /// Signals shutdown and hands back the server task, to watch the drain from outside.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<bool> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("server still running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET an admin path with the admin token: the status and the JSON body.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .header(
                "Authorization",
                format!("Bearer {}", self.app.secrets.admin_token.expose()),
            )
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Status and JSON of an admin POST of a JSON body with the admin token.
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .header(
                "Authorization",
                format!("Bearer {}", self.app.secrets.admin_token.expose()),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// POST /tokens with the test key and a JSON body.
    pub async fn tokens(&self, body: Value) -> (u16, Value) {
        self.tokens_with_key(&self.key.clone(), body).await
    }

    pub async fn tokens_with_key(&self, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/tokens"))
            .header("X-API-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sends `n` concurrent `POST /tokens` for one user (names n0..n{n-1}); asserts every 200.
    pub async fn concurrent_upserts(&self, user: &str, n: usize) {
        let mut handles = Vec::new();
        for i in 0..n {
            let (client, url, key) = (self.client.clone(), self.url("/tokens"), self.key.clone());
            let body = json!({"userId": user, "name": format!("n{i}")});
            handles.push(tokio::spawn(async move {
                client
                    .post(url)
                    .header("X-API-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), 200);
        }
    }

    /// Mints tokens for a user, asserting success.
    pub async fn mint(&self, user: &str) -> Value {
        let (s, b) = self.tokens(json!({"userId": user, "name": "Ada", "image": "https://cdn.example/ada.png", "custom": {"tenant": "acme"}})).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    pub fn proxy_secret(&self) -> String {
        self.app.secrets.proxy_secret.expose().to_string()
    }

    pub fn ws_key(&self) -> String {
        self.app.secrets.centrifugo_key.expose().to_string()
    }

    pub fn sub_key(&self) -> String {
        self.app.secrets.subscription_key.expose().to_string()
    }

    /// POST /tokens/subscription with `key` and a JSON body.
    pub async fn subscription_tokens_with_key(&self, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/tokens/subscription"))
            .header("X-API-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST /tokens/subscription with the test key.
    pub async fn subscription_tokens(&self, body: Value) -> (u16, Value) {
        self.subscription_tokens_with_key(&self.key.clone(), body)
            .await
    }

    pub fn rest_key(&self) -> String {
        self.app.secrets.rest_key.expose().to_string()
    }

    /// POSTs a proxy callback with the shared secret header (and optional extra headers).
    pub async fn proxy(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut rb = self
            .client
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .header("X-Chatsdk-Proxy-Secret", self.proxy_secret())
            .body(body.to_string());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.unwrap()
    }

    /// The value of one sample in /metrics, e.g. `chatsdk_auth_tokens_issued_total{kind="ws"}`;
    /// panics when the series is not exposed.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics_text().await, series)
    }

    /// Rows for user `id` in the store's users table, read with the database's own client.
    pub async fn user_rows(&self, id: &str) -> i64 {
        match &self.pg_url {
            Some(url) => {
                let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                db.query_one(
                    "SELECT count(*) FROM chatsdk_auth_users WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0)
            }
            None => {
                let db = rusqlite::Connection::open(self.dir.join("chatsdk-auth.db")).unwrap();
                db.query_row("SELECT count(*) FROM users WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap()
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The value of `series` (exact name and label text, as exposed) in a Prometheus exposition,
/// or None when it is not there.
pub fn find_metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| {
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{series}: {value:?} is not a number"))
        })
    })
}

/// The value of `series` in a Prometheus exposition. A missing series fails the test, naming
/// it and listing what its family does expose, so a renamed metric or label cannot pass as 0.
pub fn metric_value(text: &str, series: &str) -> f64 {
    find_metric(text, series).unwrap_or_else(|| {
        let family = series.split('{').next().unwrap_or(series);
        let present: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(family))
            .collect();
        panic!(
            "series {series} is not in /metrics; its family has:\n{}",
            present.join("\n")
        )
    })
}

/// Verifies an HS256 JWT with an HMAC computed here (independent of `jsonwebtoken`), and
/// returns (header, claims). Panics when the signature does not match.
pub fn verify_hs256(token: &str, key: &str) -> (Value, Value) {
    try_verify_hs256(token, key).expect("signature must verify")
}

pub fn try_verify_hs256(token: &str, key: &str) -> Option<(Value, Value)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS has three segments");
    for p in &parts {
        assert!(!p.contains('='), "segments are unpadded base64url");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    let sig = b64.decode(parts[2]).unwrap();
    mac.verify_slice(&sig).ok()?;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    Some((header, claims))
}

/// Signs arbitrary claims with HS256 by hand (for tokens the service would never mint).
pub fn sign_hs256(claims: &Value, key: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(serde_json::to_vec(claims).unwrap());
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// How often [`until`] looks again.
const POLL: std::time::Duration = std::time::Duration::from_millis(20);
/// How long [`until`] (and any wait for an event) looks before failing: so that a broken test
/// fails instead of hanging. The bound is no claim about speed (tests never assert wall-clock
/// time).
pub const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until `f` holds: [`until`] for a condition.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut f: impl FnMut() -> F,
) {
    until(what, || {
        let holds = f();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("not yet")
            }
        }
    })
    .await
}

/// The one poll loop of the suite: asks `f` until it answers `Ok`, and returns that value.
/// `Err` is what was seen instead; the last one is in the failure (`what: not within 60 s,
/// last seen ...`).
pub async fn until<T, E, F>(what: &str, f: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    match try_until(f).await {
        Ok(v) => v,
        Err(seen) => panic!(
            "{what}: not within {} s, last seen: {seen}",
            GIVE_UP.as_secs()
        ),
    }
}

/// [`until`] that answers the last `Err` once its bound has passed instead of failing, for a
/// caller with something to clean up first (a child process to kill).
pub async fn try_until<T, E, F>(mut f: impl FnMut() -> F) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + GIVE_UP;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(seen) if std::time::Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// [`until`] outside an async context (a child process's exit, from a `Drop` or a sync test).
pub fn until_blocking<T, E: std::fmt::Display>(
    what: &str,
    mut f: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = std::time::Instant::now() + GIVE_UP;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {} s, last seen: {seen}",
                GIVE_UP.as_secs()
            ),
        }
        std::thread::sleep(POLL);
    }
}

pub fn now() -> i64 {
    chatsdk_auth::now_unix()
}

/// The audit event of a change a test makes through the store itself (actor `test`).
pub fn test_event(event: &str, target: &str) -> chatsdk_auth::store::AuditEvent {
    let kind = event.split('.').next().unwrap_or(event);
    chatsdk_auth::store::AuditEvent::new(now(), event, "test", kind, target)
}

/// A connect request body as Centrifugo sends it, plus `extra` fields.
pub fn connect_body(extra: Value) -> String {
    let mut b =
        json!({"client": UUID, "transport": "websocket", "protocol": "json", "encoding": "json"});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b.to_string()
}

/// A connect request body carrying `token` in `data`, as a client's connect sends it.
pub fn connect_with(token: &str) -> String {
    connect_body(json!({"data": {"token": token}}))
}

/// A refresh (no channel) or subscribe/sub_refresh (channel) request body.
pub fn session_body(user: &str, channel: Option<&str>, meta: Option<Value>) -> String {
    let mut b = json!({"client": UUID, "transport": "websocket", "protocol": "json", "encoding": "json", "user": user});
    if let Some(c) = channel {
        b["channel"] = json!(c);
    }
    if let Some(m) = meta {
        b["meta"] = m;
    }
    b.to_string()
}

/// The proxies' view of a user agrees with the full record, field for field.
pub async fn assert_session_matches_user(t: &TestApp, id: &str) {
    let u = t.app.store.get_user(id).await.unwrap();
    let s = t.app.store.get_session(id).await.unwrap();
    match (u, s) {
        (Some(u), Some(s)) => assert_eq!(
            (s.name, s.image, s.custom, s.disabled, s.tokens_valid_after),
            (u.name, u.image, u.custom, u.disabled, u.tokens_valid_after)
        ),
        (None, None) => {}
        (u, s) => panic!("get_user {u:?} but get_session {s:?}"),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a query value).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
