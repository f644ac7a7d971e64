use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use chatsdk_auth::config::RawConfig;
use chatsdk_auth::App;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::oneshot;

pub const UUID: &str = "5c2f8a61-0d5e-4a5e-9d0f-2b7c1f3a9e10";

/// A running server on 127.0.0.1:0 with its own data directory.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub key: String,
    pub app: Arc<App>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<bool>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
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
        let config = raw.validate().expect("test config is valid");
        let app = App::start(config, chatsdk_auth::telemetry::AccessLog::disabled())
            .await
            .unwrap();
        let key = match app
            .store
            .create_api_key("test", chatsdk_auth::now_unix())
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
        let task = tokio::spawn(chatsdk_auth::serve(listener, None, app.clone(), async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            client: reqwest::Client::new(),
            key,
            app,
            dir: dir.to_path_buf(),
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

    /// The value of one sample in /metrics, e.g. `chatsdk_auth_tokens_issued_total{kind="ws"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, series)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Finds `series` (exact name and label text) in a Prometheus exposition; 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
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

pub fn now() -> i64 {
    chatsdk_auth::now_unix()
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
