use serde_json::{json, Value};

use crate::helpers::{eventually, metric_value, start_app, TestApp};

#[tokio::test]
async fn health_and_readiness_are_json() {
    let t = TestApp::spawn().await;
    let r = t.client.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = t.client.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready"}));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let t = TestApp::spawn().await;
    let r = t.client.get(t.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_found");
    for (method, path, allow) in [
        (reqwest::Method::GET, "/tokens", "POST"),
        (reqwest::Method::PUT, "/tokens", "POST"),
        (reqwest::Method::DELETE, "/centrifugo/connect", "POST"),
        (reqwest::Method::POST, "/healthz", "GET, HEAD"),
        (reqwest::Method::POST, "/metrics", "GET, HEAD"),
    ] {
        let r = t
            .client
            .request(method.clone(), t.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["code"], "method_not_allowed");
    }
}

#[tokio::test]
async fn metrics_count_issuance_and_never_carry_user_ids_or_keys() {
    let t = TestApp::spawn().await;
    t.mint("secret-user-id-42").await;
    let r = t.client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert_eq!(
        metric_value(&text, r#"chatsdk_auth_tokens_issued_total{kind="rest"}"#),
        1.0
    );
    assert_eq!(
        metric_value(&text, r#"chatsdk_auth_tokens_issued_total{kind="ws"}"#),
        1.0
    );
    assert!(metric_value(&text, "process_resident_memory_bytes") > 0.0);
    assert!(text.contains("chatsdk_auth_build_info{"));
    assert!(!text.contains("secret-user-id-42"));
    assert!(!text.contains(&t.key));
    assert!(!text.contains(&t.ws_key()));
}

#[tokio::test]
async fn metrics_can_require_a_bearer_token_and_move_to_their_own_listener() {
    let t = TestApp::spawn_with(|c| c.metrics.require_token = Some(true)).await;
    let r = t.client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "invalid_metrics_token"
    );
    let token = t.app.secrets.metrics_token.expose().to_string();
    let r = t
        .client
        .get(t.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A separate listener: /metrics there, 404 on the main one. Which listeners serve_on() is
    // handed decides it; both are bound here on port 0.
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.storage.data_dir = tmp.path().join("d").to_string_lossy().into_owned();
    let app = start_app(raw.validate().unwrap()).await.unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr_main = main.local_addr().unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = metrics.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listeners = chatsdk_auth::Listeners {
        main,
        metrics: Some(metrics),
        admin: None,
    };
    let task = tokio::spawn(chatsdk_auth::serve_on(listeners, app, async {
        let _ = rx.await;
    }));
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("http://{maddr_main}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(format!("http://{maddr}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.post(format!("http://{maddr}/tokens"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let _ = tx.send(());
    assert!(task.await.unwrap());
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_refuses_connections() {
    let mut t = TestApp::spawn().await;
    // A request whose body arrives slowly is in flight when the stop comes.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let req = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", &t.key)
        .header("Content-Type", "application/json")
        .body(body)
        .send();
    let pending = tokio::spawn(req);
    tx.send(Ok(br#"{"userId":"#.to_vec())).await.unwrap();
    eventually("the request counted in flight", || async {
        t.app.metrics.http_in_flight.get() >= 1
    })
    .await;
    let addr = t.addr;
    let server = t.begin_stop();
    // New connections are refused while draining.
    eventually("the listener closed after shutdown began", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !server.is_finished(),
        "drain must wait for the in-flight request"
    );
    assert!(!t.app.is_ready(), "readiness is off while draining");
    tx.send(Ok(br#""late"}"#.to_vec())).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "the in-flight request completes");
    assert!(server.await.unwrap(), "drained within the deadline");
}

/// Sends headers and half of a 40-byte body, then waits for the whole answer (the server
/// closes the connection after it).
pub(crate) async fn stalled_body(t: &TestApp, path: &str, extra_header: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\n{extra_header}\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{{\"userId\":\"slow-1\","
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(crate::helpers::GIVE_UP, s.read_to_end(&mut buf))
        .await
        .expect("the server answers at the request timeout, not never")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn a_request_whose_body_stalls_is_cut_off_at_the_request_timeout() {
    let t = TestApp::spawn_with(|c| c.server.request_timeout_seconds = 1).await;
    // Headers and half of the declared body, then nothing: the handler has to wait for the
    // rest, which is the case the (lazily armed) request timer exists for. The client is the
    // one holding the request up: 408, counted as its own reason, not as a store outage.
    // That the timer fires at the deadline and not before is router::tests' (paused time);
    // here, that the answer is the request timeout's.
    let text = stalled_body(&t, "/tokens", &format!("x-api-key: {}", t.key)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "request_timeout");
    let reason = |r: &str| format!("chatsdk_auth_token_requests_rejected_total{{reason=\"{r}\"}}");
    assert_eq!(t.metric(&reason("request_timeout")).await, 1.0);
    assert_eq!(t.metric(&reason("store_unavailable")).await, 0.0);
    assert_eq!(t.metric(&reason("timeout")).await, 0.0);
    // Nothing was written for the half-sent request.
    assert!(t.app.store.get_user("slow-1").await.unwrap().is_none());
    // A request that does not wait is not affected.
    let (status, _) = t.tokens(json!({"userId": "fast-1"})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_proxy_call_abandoned_at_the_deadline_is_counted_as_a_timeout() {
    let t = TestApp::spawn_with(|c| c.server.request_timeout_seconds = 1).await;
    let secret = format!(
        "x-chatsdk-proxy-secret: {}",
        t.app.secrets.proxy_secret.expose()
    );
    let text = stalled_body(&t, "/centrifugo/connect", &secret).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let series = r#"chatsdk_auth_proxy_decisions_total{callback="connect",outcome="error",reason="timeout"}"#;
    assert_eq!(t.metric(series).await, 1.0);
}
