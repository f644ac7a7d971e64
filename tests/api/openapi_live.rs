//! The running server against the committed OpenAPI document: every request an operation
//! refuses (and bodies that stall past the request timeout) answers a status and code the
//! document lists for that operation.

use chatsdk_auth::router::ENDPOINTS;
use http::Method;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::openapi_doc::{assert_documented, doc};
use crate::ops::stalled_body;

/// One request: method, path, headers, body.
type Probe<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, String);

/// Requests each operation refuses, sent to the running server (and bodies that stall past the
/// request timeout): the status and code it answers are documented for that operation.
#[tokio::test]
async fn live_rejections_are_documented() {
    let t = TestApp::spawn_with(|c| {
        c.metrics.require_token = Some(true);
        c.server.request_timeout_seconds = 1;
    })
    .await;
    let doc = doc();
    let too_big = "x".repeat(t.app.config.server.max_body_bytes + 1);
    let secret = t.proxy_secret();
    let admin = t.app.secrets.admin_token.expose().to_string();
    let mut probes: Vec<Probe> = vec![
        ("POST", "/tokens", vec![], "{}".into()),
        (
            "POST",
            "/tokens",
            vec![("x-api-key", t.key.clone())],
            "{}".into(),
        ),
        (
            "POST",
            "/tokens",
            vec![
                ("x-api-key", t.key.clone()),
                ("content-type", "application/json".into()),
            ],
            too_big.clone(),
        ),
        (
            "POST",
            "/tokens",
            vec![
                ("x-api-key", t.key.clone()),
                ("content-type", "application/json".into()),
            ],
            "[".into(),
        ),
        ("GET", "/metrics", vec![], String::new()),
        ("GET", "/verify", vec![], String::new()),
        (
            "GET",
            "/verify",
            vec![("authorization", "Bearer not.a.token".into())],
            String::new(),
        ),
        ("POST", "/introspect", vec![], "token=x".into()),
        (
            "POST",
            "/introspect",
            vec![("x-api-key", t.key.clone())],
            "token=x".into(),
        ),
        (
            "POST",
            "/introspect",
            vec![
                ("x-api-key", t.key.clone()),
                ("content-type", "application/x-www-form-urlencoded".into()),
            ],
            too_big.clone(),
        ),
    ];
    // POST /tokens/subscription: no key, no JSON, too big, malformed, and each refusal of a
    // well-formed body.
    let key = ("x-api-key", t.key.clone());
    let json_type = ("content-type", "application/json".to_string());
    probes.push(("POST", "/tokens/subscription", vec![], "{}".into()));
    probes.push((
        "POST",
        "/tokens/subscription",
        vec![key.clone()],
        "{}".into(),
    ));
    for body in [
        too_big.clone(),
        "[".into(),
        r#"{"userId":"u","channels":[]}"#.into(),
        r#"{"userId":"u","channel":"x y:z"}"#.into(),
        r#"{"userId":"nobody","channel":"chat:a"}"#.into(),
        r#"{"userId":"known","channel":"admin:a"}"#.into(),
        r#"{"userId":"off","channel":"chat:a"}"#.into(),
    ] {
        probes.push((
            "POST",
            "/tokens/subscription",
            vec![key.clone(), json_type.clone()],
            body,
        ));
    }
    for user in ["known", "off"] {
        assert_eq!(t.tokens(serde_json::json!({"userId": user})).await.0, 200);
    }
    t.app
        .actions()
        .disable("off", chatsdk_auth::now_unix())
        .await
        .unwrap();
    for e in ENDPOINTS
        .iter()
        .filter(|e| e.path.starts_with("/centrifugo/"))
    {
        probes.push(("POST", e.path, vec![], "{}".into()));
        let with_secret = vec![("x-chatsdk-proxy-secret", secret.clone())];
        probes.push(("POST", e.path, with_secret.clone(), "[]".into()));
        probes.push(("POST", e.path, with_secret, too_big.clone()));
    }
    // The admin API: no token, bad bodies and parameters, unknown users and keys, conflicts.
    let bearer = format!("Bearer {admin}");
    t.mint("known").await;
    let admin_probes: Vec<(&str, &str, &str, &str)> = vec![
        ("GET", "/admin/users/{id}", "/admin/users/known", ""),
        ("GET", "/admin/users/{id}", "/admin/users/nobody", ""),
        ("GET", "/admin/users/{id}", "/admin/users/%zz", ""),
        ("DELETE", "/admin/users/{id}", "/admin/users/nobody", ""),
        ("GET", "/admin/users", "/admin/users?limit=0", ""),
        (
            "POST",
            "/admin/users/{id}/disable",
            "/admin/users/nobody/disable",
            "",
        ),
        (
            "POST",
            "/admin/users/{id}/disable",
            "/admin/users/known/disable",
            "[]",
        ),
        (
            "POST",
            "/admin/users/{id}/enable",
            "/admin/users/known/enable",
            r#"{"x":1}"#,
        ),
        (
            "POST",
            "/admin/users/{id}/revoke-tokens",
            "/admin/users/known/revoke-tokens",
            r#"{"before":"x"}"#,
        ),
        (
            "POST",
            "/admin/revoke-tokens",
            "/admin/revoke-tokens",
            r#"{"before":99999999999}"#,
        ),
        (
            "POST",
            "/admin/api-keys",
            "/admin/api-keys",
            r#"{"name":"test"}"#,
        ),
        (
            "POST",
            "/admin/api-keys",
            "/admin/api-keys",
            r#"{"name":"no spaces"}"#,
        ),
        (
            "DELETE",
            "/admin/api-keys/{name}",
            "/admin/api-keys/never",
            "",
        ),
    ];
    for (method, documented, path, body) in admin_probes {
        for auth in [None, Some(bearer.as_str())] {
            let mut req = t
                .client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), t.url(path))
                .header("content-type", "application/json")
                .body(body.to_string());
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            if status < 400 {
                continue;
            }
            let code = v["code"].as_str().unwrap_or_else(|| panic!("{v}"));
            assert_documented(&doc, method, documented, status, code);
        }
    }
    let r = t
        .client
        .post(t.url("/admin/users/known/disable"))
        .header("authorization", &bearer)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_documented(
        &doc,
        "POST",
        "/admin/users/{id}/disable",
        415,
        v["code"].as_str().unwrap(),
    );

    for (method, path, headers, body) in probes {
        let mut req = t
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), t.url(path))
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        let code = v["code"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(status >= 400, "{method} {path}: {status}");
        assert_documented(&doc, method, path, status, code);
    }
    // A body that stops half way: every route that reads one answers 408 at the deadline.
    for e in ENDPOINTS.iter().filter(|e| e.method == "POST") {
        let auth = if e.path.starts_with("/tokens") || e.path == "/introspect" {
            format!("x-api-key: {}", t.key)
        } else if e.path.starts_with("/admin/") {
            format!("authorization: Bearer {admin}")
        } else {
            format!("x-chatsdk-proxy-secret: {secret}")
        };
        let path = e.path.replace("{id}", "someone");
        let text = stalled_body(&t, &path, &auth).await;
        let status: u16 = text[9..12].parse().unwrap();
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_documented(&doc, "POST", e.path, status, body["code"].as_str().unwrap());
    }
}
