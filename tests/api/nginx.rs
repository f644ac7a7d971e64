//! A real nginx (Debian package `nginx`, installed by tests/run.sh) with `auth_request /verify`
//! in front of a small upstream: only requests the sidecar accepts reach the upstream, and they
//! arrive with the `X-User-Id` the sidecar answered (never one the client sent).

use std::convert::Infallible;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::helpers::{now, TestApp};
use crate::process::{serve_on_free_port, tool, KillOnDrop};

/// An HTTP upstream on 127.0.0.1:0 that counts its requests and echoes the identity headers.
pub(crate) async fn upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    };
                    let body = json!({
                        "path": req.uri().path(),
                        "x_user_id": h("x-user-id"),
                        "x_user_name": h("x-user-name"),
                        "authorization": h("authorization").is_some(),
                    });
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// nginx in the foreground, one process, every path under a temp prefix; killed on drop.
struct Nginx {
    /// Kept for its `Drop`: the server stops with the test.
    _child: KillOnDrop,
    port: u16,
}

impl Nginx {
    fn config(port: u16, prefix: &Path, sidecar: &str, upstream: &str) -> String {
        let p = prefix.display();
        format!(
            r#"daemon off;
master_process off;
pid {p}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /_verify {{
            internal;
            proxy_pass http://{sidecar}/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }}
        location / {{
            auth_request /_verify;
            auth_request_set $user_id $upstream_http_x_user_id;
            auth_request_set $user_name $upstream_http_x_user_name;
            proxy_set_header X-User-Id $user_id;
            proxy_set_header X-User-Name $user_name;
            proxy_pass http://{upstream};
        }}
    }}
}}
"#
        )
    }

    /// Starts nginx on a free port (again on another one when the port was taken meanwhile).
    async fn start(prefix: &Path, sidecar: &str, upstream: &str) -> Nginx {
        let bin = tool("nginx");
        let (child, port) = serve_on_free_port(
            "nginx",
            |port| {
                let conf = prefix.join("nginx.conf");
                std::fs::write(&conf, Self::config(port, prefix, sidecar, upstream)).unwrap();
                Command::new(&bin)
                    .arg("-p")
                    .arg(prefix)
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg("stderr")
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start nginx")
            },
            || "see its log above".into(),
        )
        .await;
        Nginx {
            _child: child,
            port,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_lets_only_valid_rest_tokens_through() {
    crate::need::need!(Nginx);
    let t = TestApp::spawn().await;
    let (up, hits) = upstream().await;
    let prefix = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(prefix.path(), &t.addr.to_string(), &up.to_string()).await;
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let c = reqwest::Client::new();
    let get = |auth: Option<String>, extra: Option<(&'static str, &'static str)>| {
        let mut rb = c.get(format!("{base}/api/messages?room=1"));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        if let Some((k, v)) = extra {
            rb = rb.header(k, v);
        }
        async move {
            let r = rb.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.text().await.unwrap())
        }
    };

    let minted = t.mint("user-n").await;
    let token = minted["token"].as_str().unwrap().to_string();
    let ws = minted["wsToken"].as_str().unwrap().to_string();

    // Valid: the upstream is reached with the sidecar's X-User-Id, not the client's.
    let (s, body) = get(
        Some(format!("Bearer {token}")),
        Some(("X-User-Id", "admin")),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["path"], "/api/messages");
    assert_eq!(b["x_user_id"], "user-n");
    assert_eq!(b["x_user_name"], "Ada");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // nginx's auth subrequest keeps the original method: a POST is checked the same way.
    let r = c
        .post(format!("{base}/api/messages"))
        .bearer_auth(&token)
        .body("{\"text\":\"hi\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let r = c
        .post(format!("{base}/api/messages"))
        .bearer_auth(&ws)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Refused by the sidecar: nginx answers 401/403 itself and the upstream never sees it.
    let expired = {
        let ring = t.app.keys.current();
        let key = ring.rest.signing(now());
        jsonwebtoken::encode(
            &key.header,
            &json!({"sub": "user-n", "iss": "chatsdk-auth", "aud": "chatsdk-api", "iat": now() - 100, "exp": now() - 1, "jti": "j"}),
            &key.encoding,
        )
        .unwrap()
    };
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for (what, auth, want) in [
        ("no token", None, 401),
        ("wsToken", Some(format!("Bearer {ws}")), 401),
        ("expired", Some(format!("Bearer {expired}")), 401),
        ("tampered", Some(format!("Bearer {tampered}")), 401),
    ] {
        let (s, body) = get(auth, Some(("X-User-Id", "user-n"))).await;
        assert_eq!(s, want, "{what}: {body}");
    }
    t.app.actions().disable("user-n", now()).await.unwrap();
    let (s, body) = get(Some(format!("Bearer {token}")), None).await;
    assert_eq!(s, 403, "disabled: {body}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the upstream saw only the valid ones"
    );

    // Enabled again: through again.
    t.app.actions().enable("user-n", now()).await.unwrap();
    assert_eq!(get(Some(format!("Bearer {token}")), None).await.0, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    drop(nginx);
}
