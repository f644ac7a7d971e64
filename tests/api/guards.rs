//! The guards the route table declares, enforced the same on every route of a kind: the
//! failed-auth limit on every API-key route (`/tokens`, `/tokens/subscription`, `/introspect`)
//! and for every kind of key failure, and `Allow` derived from the table.

use serde_json::{json, Value};

use crate::helpers::TestApp;

/// One request with `key` as `X-API-Key` (twice when `twice`): status and `code`.
async fn keyed(t: &TestApp, path: &str, key: &str, twice: bool) -> (u16, String) {
    let mut req = t.client.post(t.url(path)).header("X-API-Key", key);
    if twice {
        req = req.header("X-API-Key", key);
    }
    req = match path {
        "/introspect" => req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("token=abc"),
        "/tokens/subscription" => req.json(&json!({"userId": "u", "channel": "room:a"})),
        _ => req.json(&json!({"userId": "u"})),
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn an_address_blocked_on_tokens_is_blocked_on_introspect() {
    let t = TestApp::spawn_with(|c| c.limits.failed_auth_per_ip_per_minute = 5).await;
    for _ in 0..5 {
        assert_eq!(keyed(&t, "/tokens", "chatsdk_wrong", false).await.0, 401);
    }
    for _ in 0..3 {
        assert_eq!(
            keyed(&t, "/introspect", "chatsdk_wrong", false).await,
            (429, "rate_limited".to_string())
        );
    }
    // Refused before the lookup: even the right key waits.
    assert_eq!(keyed(&t, "/introspect", &t.key, false).await.0, 429);
}

#[tokio::test]
async fn wrong_keys_on_introspect_use_up_the_same_budget() {
    let t = TestApp::spawn_with(|c| c.limits.failed_auth_per_ip_per_minute = 5).await;
    // A right key never counts.
    assert_eq!(keyed(&t, "/introspect", &t.key, false).await.0, 200);
    for _ in 0..5 {
        assert_eq!(
            keyed(&t, "/introspect", "chatsdk_wrong", false).await,
            (401, "invalid_api_key".to_string())
        );
    }
    assert_eq!(
        keyed(&t, "/introspect", "chatsdk_wrong", false).await.0,
        429
    );
    // The failures counted for the address, on every API-key route.
    assert_eq!(keyed(&t, "/tokens", &t.key, false).await.0, 429);
    assert_eq!(
        keyed(&t, "/tokens/subscription", &t.key, false).await.0,
        429
    );
}

#[tokio::test]
async fn every_kind_of_key_failure_counts() {
    let t = TestApp::spawn_with(|c| c.limits.failed_auth_per_ip_per_minute = 5).await;
    // Two X-API-Key headers are a failed key check too (400), so they cannot be used to guess
    // keys without limit.
    for _ in 0..5 {
        assert_eq!(
            keyed(&t, "/tokens", "chatsdk_wrong", true).await,
            (400, "duplicate_api_key".to_string())
        );
    }
    assert_eq!(keyed(&t, "/tokens", "chatsdk_wrong", true).await.0, 429);
    assert_eq!(keyed(&t, "/introspect", &t.key, false).await.0, 429);
}

#[tokio::test]
async fn allow_lists_every_method_of_the_path() {
    let t = TestApp::spawn().await;
    let token = t.app.secrets.admin_token.expose().to_string();
    for (method, path, allow) in [
        (
            reqwest::Method::TRACE,
            "/verify",
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        ),
        (reqwest::Method::POST, "/healthz", "GET, HEAD"),
        (reqwest::Method::GET, "/tokens", "POST"),
        (reqwest::Method::PUT, "/admin/api-keys", "GET, HEAD, POST"),
        (reqwest::Method::POST, "/admin/users/u", "GET, HEAD, DELETE"),
    ] {
        let r = t
            .client
            .request(method.clone(), t.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["code"], "method_not_allowed");
    }
}
