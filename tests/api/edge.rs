//! The HTTP edge an attacker probes: the connection cap, `Connection: close` after an unread
//! body, half-closed clients, duplicate or padded API keys, `Cache-Control` on tokens, and who
//! may read `/metrics`.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{eventually, TestApp, GIVE_UP};

/// Sends raw bytes on a new connection and reads until the server closes it (failing after
/// the suite's bound, which is no claim about speed).
async fn raw(t: &TestApp, request: &[u8], half_close: bool) -> String {
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(GIVE_UP, s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn tokens_request(key: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /tokens HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let t = TestApp::spawn_with(|c| c.server.max_connections = 4).await;
    // Four silent connections take every slot (as a slowloris client would).
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(t.addr).await.unwrap());
    }
    eventually("the four slots fill", || async {
        t.app.metrics.connections_open.get() >= 4
    })
    .await;
    // The fifth is closed (while the four still hold every slot) instead of waiting for one.
    let mut fifth = TcpStream::connect(t.addr).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(GIVE_UP, fifth.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "a connection over the cap was kept open, waiting for a slot"
    );
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "",
        "a connection over the cap got an answer"
    );
    assert_eq!(t.app.metrics.connections_refused.get(), 1);
    assert_eq!(t.app.metrics.connections_max.get(), 4);
    // A slot frees when a connection closes, and service resumes.
    drop(idle.pop());
    eventually("a slot frees", || async {
        t.app.metrics.connections_open.get() <= 3
    })
    .await;
    let answer = raw(
        &t,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn the_default_cap_leaves_headroom_below_the_open_file_limit() {
    use chatsdk_auth::config::validate::derived_max_connections;
    assert_eq!(derived_max_connections(Some(1024)), 858);
    assert_eq!(derived_max_connections(Some(65_536)), 58_919);
    assert_eq!(derived_max_connections(Some(50)), 16);
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.server.max_connections = 0;
    let limit = chatsdk_auth::config::validate::open_file_limit();
    let config = raw.validate().unwrap();
    assert_eq!(
        config.server.max_connections,
        derived_max_connections(limit)
    );
    assert!(limit.is_none_or(|l| (config.server.max_connections as u64) < l));
}

#[tokio::test]
async fn an_early_answer_with_an_unread_body_says_connection_close() {
    let t = TestApp::spawn().await;
    let body = format!(
        r#"{{"userId":"u","custom":{{"pad":"{}"}}}}"#,
        "x".repeat(8000)
    );
    for (what, request) in [
        ("wrong key", tokens_request("chatsdk_wrong", &body, "")),
        (
            "wrong type",
            format!(
                "POST /tokens HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                t.key,
                body.len()
            )
            .into_bytes(),
        ),
        (
            "no proxy secret",
            format!(
                "POST /centrifugo/connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ),
        (
            "unknown route",
            format!(
                "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ),
    ] {
        let answer = raw(&t, &request, false).await;
        let head = answer.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 4"), "{what}: {head}");
        assert!(head.contains("connection: close"), "{what}: {head}");
    }
    // A request whose body was read keeps its connection: a second request on it is answered.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(&tokens_request(&t.key, r#"{"userId":"u"}"#, ""))
            .await
            .unwrap();
        let head = one_answer(&mut s).await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
}

/// Reads one whole answer (head, then its `content-length` bytes) from `s`; returns the head.
async fn one_answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the answer's head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; (end + len).saturating_sub(buf.len())];
    s.read_exact(&mut body).await.unwrap();
    head
}

#[tokio::test]
async fn keep_alive_clients_never_write_into_a_closed_socket_after_a_401() {
    let t = TestApp::spawn().await;
    let body = json!({"userId": "u", "custom": {"pad": "x".repeat(8000)}});
    // One pooled keep-alive client, alternating refused and good requests: the client must
    // see `Connection: close` and open a new connection instead of failing.
    for i in 0..100 {
        let key = if i % 2 == 0 {
            "chatsdk_wrong".to_string()
        } else {
            t.key.clone()
        };
        let r = t
            .client
            .post(t.url("/tokens"))
            .header("X-API-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(r.status().as_u16(), if i % 2 == 0 { 401 } else { 200 });
    }
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let t = TestApp::spawn().await;
    for i in 0..20 {
        let answer = raw(
            &t,
            &tokens_request(&t.key, &format!(r#"{{"userId":"half-{i}"}}"#), ""),
            true,
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "try {i}: {answer:?}");
        assert!(answer.contains("wsToken"), "try {i}: {answer:?}");
    }
}

#[tokio::test]
async fn token_responses_are_not_cacheable() {
    let t = TestApp::spawn().await;
    let r = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", &t.key)
        .json(&json!({"userId": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn two_api_keys_are_refused_and_padded_keys_are_not_trimmed() {
    let t = TestApp::spawn().await;
    let answer = raw(
        &t,
        &tokens_request(
            &t.key,
            r#"{"userId":"u"}"#,
            &format!("X-API-Key: {}\r\n", t.key),
        ),
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""code":"duplicate_api_key""#), "{answer}");
    // Spaces and tabs *around* a header value are HTTP's optional whitespace, removed by the
    // parser before the service sees the value (RFC 9110, section 5.5): " key " is the key.
    // Anything else that is not a printable character is refused, never trimmed.
    for padded in [format!("{}\t x", t.key), format!("{} {}", t.key, t.key)] {
        let (s, b) = t.tokens_with_key(&padded, json!({"userId": "u"})).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (401, Some("invalid_api_key")),
            "{padded:?}"
        );
    }
    // The exact key still works.
    assert_eq!(t.tokens(json!({"userId": "u"})).await.0, 200);
}

#[tokio::test]
async fn metrics_need_the_token_unless_served_on_loopback() {
    let open = TestApp::spawn().await;
    let r = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200, "loopback listener: open by default");

    let public = TestApp::spawn_with(|c| c.server.listen = "0.0.0.0:0".into()).await;
    let url = format!("http://127.0.0.1:{}/metrics", public.addr.port());
    let r = public.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401, "a non-loopback listener needs the token");
    let token = public.app.secrets.metrics_token.expose().to_string();
    let r = public
        .client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
