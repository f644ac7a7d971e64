//! A real HTTP server that speaks Centrifugo's server API the way Centrifugo v6 does
//! (https://centrifugal.dev/docs/server/server_api): `POST /api/<method>`, the key in
//! `X-API-Key` (401 with an empty body otherwise), JSON bodies, HTTP 200 replies with `result`
//! (or `replies` for `batch`). It records every call and can answer 401 or 5xx, hang past the
//! caller's timeout, go down (its port refuses connections) and come back on the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As Centrifugo does.
    Normal,
    /// Every call gets this HTTP status with an empty body (401 = wrong key, 5xx = trouble).
    Status(u16),
    /// Every call waits this long before answering normally.
    Hang(Duration),
}

/// One call as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub api_key: Option<String>,
    pub body: Value,
    pub status: u16,
    pub at: Instant,
}

/// A disconnect Centrifugo applied (answered with success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    pub user: String,
    pub code: u64,
    pub reason: String,
}

struct State {
    key: String,
    mode: Mutex<Mode>,
    calls: Mutex<Vec<Call>>,
    changed: Notify,
}

pub struct FakeCentrifugo {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Serves https with this certificate when set.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl FakeCentrifugo {
    /// Starts on a free loopback port, accepting `key`.
    pub async fn start(key: &str) -> FakeCentrifugo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            key: key.to_string(),
            mode: Mutex::new(Mode::Normal),
            calls: Mutex::new(Vec::new()),
            changed: Notify::new(),
        });
        let mut f = FakeCentrifugo {
            addr,
            state,
            task: None,
            tls: None,
        };
        f.serve(listener);
        f
    }

    /// Starts on a free loopback port serving https with this certificate chain and key (PEM).
    pub async fn start_tls(key: &str, cert_pem: &str, key_pem: &str) -> FakeCentrifugo {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let private = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .unwrap();
        let mut f = FakeCentrifugo::start(key).await;
        f.down();
        f.tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        f.up().await;
        f
    }

    /// `http(s)://127.0.0.1:<port>/api`, the sidecar's `centrifugo.api_url`.
    pub fn api_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/api", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Stops listening: connections to the port are refused until [`FakeCentrifugo::up`].
    pub fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        let addr = self.addr;
        let listener = crate::helpers::until(&format!("rebinding {addr}"), || async move {
            tokio::net::TcpListener::bind(addr).await
        })
        .await;
        self.serve(listener);
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let state = self.state.clone();
        let tls = self.tls.clone();
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let http = http1::Builder::new();
                    match tls {
                        // A handshake the client refuses (an unknown CA) is a call never made.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        }));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Every disconnect Centrifugo applied, in order (from `disconnect` and `batch` calls
    /// answered with success), with the instant it was applied.
    pub fn kicks(&self) -> Vec<(Kick, Instant)> {
        let mut out = Vec::new();
        for c in self.calls().into_iter().filter(|c| c.status == 200) {
            let one = |v: &Value| Kick {
                user: v["user"].as_str().unwrap_or_default().to_string(),
                code: v["disconnect"]["code"].as_u64().unwrap_or(0),
                reason: v["disconnect"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            match c.path.as_str() {
                "/api/disconnect" => out.push((one(&c.body), c.at)),
                "/api/batch" => {
                    for cmd in c.body["commands"].as_array().into_iter().flatten() {
                        out.push((one(&cmd["disconnect"]), c.at));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Kicks applied for `user`.
    pub fn kicks_of(&self, user: &str) -> Vec<Kick> {
        self.kicks()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.user == user)
            .collect()
    }

    /// Waits until a kick for `user` was applied (woken by each call the fake answers);
    /// returns when it was. Fails after the suite's bound ([`crate::helpers::GIVE_UP`]), which
    /// is no claim about how soon a kick arrives.
    pub async fn wait_kick(&self, user: &str) -> (Kick, Instant) {
        let within = crate::helpers::GIVE_UP;
        let deadline = Instant::now() + within;
        loop {
            let notified = self.state.changed.notified();
            if let Some(k) = self.kicks().into_iter().find(|(k, _)| k.user == user) {
                return k;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no kick for {user:?} within {within:?}; calls: {:?}",
                self.calls()
            );
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

impl Drop for FakeCentrifugo {
    fn drop(&mut self) {
        self.down();
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(if status == 200 {
        Bytes::from(body.to_string())
    } else {
        Bytes::new()
    }));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    if status == 200 {
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }
    r
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let api_key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let mode = *state.mode.lock().unwrap();
    if let Mode::Hang(d) = mode {
        tokio::time::sleep(d).await;
    }
    let (status, out) = match mode {
        Mode::Status(s) => (s, Value::Null),
        _ if method != "POST" => (405, Value::Null),
        _ if api_key.as_deref() != Some(state.key.as_str()) => (401, Value::Null),
        _ => match (path.as_str(), &body) {
            (_, None) => (400, Value::Null),
            ("/api/disconnect", Some(b)) if b["user"].is_string() => (200, json!({"result": {}})),
            ("/api/disconnect", Some(_)) => (
                200,
                json!({"error": {"code": 107, "message": "bad request"}}),
            ),
            ("/api/batch", Some(b)) => {
                let replies: Vec<Value> = b["commands"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| match c.get("disconnect") {
                        Some(d) if d["user"].is_string() => json!({"disconnect": {}}),
                        _ => json!({"error": {"code": 107, "message": "bad request"}}),
                    })
                    .collect();
                (200, json!({ "replies": replies }))
            }
            ("/api/info", Some(_)) => (
                200,
                json!({"result": {"nodes": [{"uid": "f1e2", "name": "fake", "version": "6.9.1",
                    "num_clients": 3, "num_users": 2, "num_channels": 4, "num_subs": 5, "uptime": 120}]}}),
            ),
            _ => (404, Value::Null),
        },
    };
    state.calls.lock().unwrap().push(Call {
        method,
        path,
        api_key,
        body: body.unwrap_or(Value::Null),
        status,
        at: Instant::now(),
    });
    state.changed.notify_waiters();
    Ok(reply(status, out))
}
