//! The admin API's contract, route by route: bearer auth (401 counted), the `{error, code}`
//! envelope, 404 for an unknown user or key, the bodies each action route accepts, and the kick
//! each change sends to Centrifugo (a real HTTP server speaking its server API).

use std::time::Instant;

use serde_json::{json, Value};

use crate::fake_centrifugo::{FakeCentrifugo, Kick};
use crate::helpers::{connect_body, now, urlencode, TestApp};

const KEY: &str = "centrifugo-api-key-for-the-admin-tests-0123";

async fn spawn(f: &FakeCentrifugo) -> TestApp {
    let api = f.api_url();
    TestApp::spawn_with(move |c| {
        c.centrifugo.api_url = api;
        c.secrets.centrifugo_api_key = KEY.into();
    })
    .await
}

fn token(t: &TestApp) -> String {
    t.app.secrets.admin_token.expose().to_string()
}

/// One admin call with the right token; `body` is sent as JSON when given.
async fn admin(t: &TestApp, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    admin_as(t, method, path, body, Some(&format!("Bearer {}", token(t)))).await
}

async fn admin_as(
    t: &TestApp,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> (u16, Value) {
    let mut rb = t.client.request(method.parse().unwrap(), t.url(path));
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn err(code: &str) -> impl Fn(&Value) -> bool + '_ {
    move |b: &Value| b["code"] == code && b["error"].as_str().is_some_and(|e| !e.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_admin_token_and_refusals_are_counted() {
    let f = FakeCentrifugo::start(KEY).await;
    let t = spawn(&f).await;
    t.mint("carol").await;
    let wrong = [
        None,
        Some("Bearer nope".to_string()),
        Some(token(&t)),
        Some(format!("Bearer {}", t.app.secrets.metrics_token.expose())),
        Some(format!("bearer {}", token(&t))),
    ];
    let routes = [
        ("GET", "/admin/users/carol"),
        ("GET", "/admin/users"),
        ("POST", "/admin/users/carol/disable"),
        ("POST", "/admin/users/carol/enable"),
        ("POST", "/admin/users/carol/revoke-tokens"),
        ("DELETE", "/admin/users/carol"),
        ("POST", "/admin/revoke-tokens"),
        ("GET", "/admin/api-keys"),
        ("POST", "/admin/api-keys"),
        ("DELETE", "/admin/api-keys/test"),
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys/rest/rotate"),
    ];
    for (m, p) in routes {
        for auth in &wrong {
            let (s, b) = admin_as(&t, m, p, None, auth.as_deref()).await;
            assert_eq!(s, 401, "{m} {p} with {auth:?}: {b}");
            assert!(err("invalid_admin_token")(&b), "{b}");
        }
    }
    assert_eq!(
        t.metric("chatsdk_auth_admin_unauthorized_total").await,
        (routes.len() * wrong.len()) as f64
    );
    // Nothing changed, nothing was sent.
    assert!(
        !t.app
            .store
            .get_user("carol")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(f.calls().is_empty());
    // Unknown admin paths and wrong methods, with the envelope.
    let (s, b) = admin(&t, "GET", "/admin/nope", None).await;
    assert_eq!((s, err("not_found")(&b)), (404, true), "{b}");
    let r = t
        .client
        .put(t.url("/admin/users/carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, DELETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_routes_show_page_and_change_users_and_kick() {
    let f = FakeCentrifugo::start(KEY).await;
    let t = spawn(&f).await;
    for u in ["u1", "u2", "u3", "u4", "u5", "a/b c"] {
        t.mint(u).await;
    }

    // GET /admin/users/{id}: the JSON of `user show`; the id is one percent-encoded segment.
    let (s, b) = admin(&t, "GET", "/admin/users/a%2Fb%20c", None).await;
    assert_eq!(s, 200, "{b}");
    let stored = t.app.store.get_user("a/b c").await.unwrap().unwrap();
    assert_eq!(b, serde_json::to_value(&stored).unwrap());
    let (s, b) = admin(&t, "GET", "/admin/users/nobody", None).await;
    assert_eq!((s, err("user_unknown")(&b)), (404, true), "{b}");
    let (s, b) = admin(&t, "GET", "/admin/users/%zz", None).await;
    assert_eq!((s, err("invalid_path")(&b)), (400, true), "{b}");

    // GET /admin/users: pages in id order until next_after is null.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/admin/users?limit=2&after={}", urlencode(a)),
            None => "/admin/users?limit=2".into(),
        };
        let (s, b) = admin(&t, "GET", &q, None).await;
        assert_eq!(s, 200, "{b}");
        let page: Vec<String> = b["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= 2);
        seen.extend(page);
        match b["next_after"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["a/b c", "u1", "u2", "u3", "u4", "u5"]);
    for bad in ["limit=0", "limit=1001", "limit=x"] {
        let (s, b) = admin(&t, "GET", &format!("/admin/users?{bad}"), None).await;
        assert_eq!((s, err("invalid_limit")(&b)), (400, true), "{bad}: {b}");
    }

    // Disable (empty body), enable ({}), revoke (a body with before), delete: each a kick.
    let start = Instant::now();
    let (s, b) = admin(&t, "POST", "/admin/users/u1/disable", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["user"]["disabled"].clone(), b["kick_queued"].clone()),
        (json!(true), json!(true))
    );
    let (k, at) = f.wait_kick("u1").await;
    assert_eq!(
        k,
        Kick {
            user: "u1".into(),
            code: 4503,
            reason: "user disabled".into()
        }
    );
    eprintln!("admin disable -> Centrifugo disconnect in {:?}", at - start);
    let (s, b) = admin(&t, "POST", "/admin/users/u1/enable", Some("{}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["user"]["disabled"].clone(), b["kick_queued"].clone()),
        (json!(false), json!(false))
    );
    let (s, b) = admin(
        &t,
        "POST",
        "/admin/users/u2/revoke-tokens",
        Some(&format!(r#"{{"before": {}}}"#, now())),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["user"]["tokens_valid_after"],
        json!(b["revoked_before"].as_i64().unwrap() + 1)
    );
    assert_eq!(f.wait_kick("u2").await.0.code, 4504);
    let (s, _) = admin(&t, "POST", "/admin/users/u3/revoke-tokens", None).await;
    assert_eq!(s, 200);
    assert_eq!(f.wait_kick("u3").await.0.code, 4504);

    // Delete: gone, kicked (4502), its old tokens refused even after the id is used again.
    let old = t.mint("u4").await["wsToken"].as_str().unwrap().to_string();
    let (s, b) = admin(&t, "DELETE", "/admin/users/u4", None).await;
    assert_eq!(
        (s, b),
        (
            200,
            json!({"id": "u4", "deleted": true, "kick_queued": true})
        )
    );
    assert_eq!(
        f.wait_kick("u4").await.0,
        Kick {
            user: "u4".into(),
            code: 4502,
            reason: "unknown user".into()
        }
    );
    assert_eq!(admin(&t, "GET", "/admin/users/u4", None).await.0, 404);
    let connect = connect_body(json!({"data": {"token": old}}));
    assert_eq!(
        t.proxy("/centrifugo/connect", &connect, &[]).await.1["disconnect"]["code"],
        4502
    );
    // The same id again, one second later: a new user that refuses the old token.
    let next_second = now() + 1;
    crate::helpers::eventually("the next second", || async { now() >= next_second }).await;
    t.mint("u4").await;
    assert_eq!(
        t.proxy("/centrifugo/connect", &connect, &[]).await.1["disconnect"]["code"],
        4504
    );

    // Bad input: refused, nothing changed, nothing sent.
    let calls = f.calls().len();
    for (path, body, status, code) in [
        ("/admin/users/nobody/disable", None, 404, "user_unknown"),
        (
            "/admin/users/nobody/revoke-tokens",
            None,
            404,
            "user_unknown",
        ),
        (
            "/admin/users/u5/disable",
            Some(r#"{"x": 1}"#),
            400,
            "invalid_json",
        ),
        ("/admin/users/u5/disable", Some("[]"), 400, "invalid_json"),
        (
            "/admin/users/u5/revoke-tokens",
            Some(r#"{"before": "abc"}"#),
            400,
            "invalid_before",
        ),
        (
            "/admin/users/u5/revoke-tokens",
            Some(r#"{"before": 1.5}"#),
            400,
            "invalid_before",
        ),
        (
            "/admin/users/u5/revoke-tokens",
            Some(&format!(r#"{{"before": {}}}"#, now() + 3600)),
            400,
            "invalid_before",
        ),
        (
            "/admin/revoke-tokens",
            Some(&format!(r#"{{"before": {}}}"#, now() + 3600)),
            400,
            "invalid_before",
        ),
    ] {
        let (s, b) = admin(&t, "POST", path, body).await;
        assert_eq!((s, err(code)(&b)), (status, true), "{path} {body:?}: {b}");
    }
    let (s, b) = admin(&t, "DELETE", "/admin/users/nobody", None).await;
    assert_eq!((s, err("user_unknown")(&b)), (404, true));
    let r = t
        .client
        .post(t.url("/admin/users/u5/disable"))
        .header("Authorization", format!("Bearer {}", token(&t)))
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let u5 = t.app.store.get_user("u5").await.unwrap().unwrap();
    assert!(!u5.disabled);
    assert!(u5.tokens_valid_after <= now());
    assert_eq!(
        f.calls().len(),
        calls,
        "no Centrifugo call for a refused request"
    );

    // App-wide: POST /admin/revoke-tokens.
    let before = now();
    let (s, b) = admin(
        &t,
        "POST",
        "/admin/revoke-tokens",
        Some(&format!(r#"{{"before": {before}}}"#)),
    )
    .await;
    assert_eq!((s, b), (200, json!({"revoked_before": before})));
    assert_eq!(
        // The app-wide instant is in force for every user (u5's own is older).
        t.app
            .store
            .get_session("u5")
            .await
            .unwrap()
            .unwrap()
            .tokens_valid_after,
        before + 1
    );
    let (s, _) = admin(&t, "POST", "/admin/revoke-tokens", None).await;
    assert_eq!(s, 200, "an empty body means now");
}

#[tokio::test]
async fn api_key_routes_create_list_and_revoke() {
    let f = FakeCentrifugo::start(KEY).await;
    let t = spawn(&f).await;
    let (s, b) = admin(
        &t,
        "POST",
        "/admin/api-keys",
        Some(r#"{"name": "backend"}"#),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["name"], "backend");
    let key = b["key"].as_str().unwrap().to_string();
    assert_eq!(t.tokens_with_key(&key, json!({"userId": "k"})).await.0, 200);

    let (s, b) = admin(&t, "GET", "/admin/api-keys", None).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = b["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"backend") && names.contains(&"test"), "{b}");
    assert!(!b.to_string().contains(&key), "the list never shows a key");

    for (body, status, code) in [
        (Some(r#"{"name": "backend"}"#), 409, "api_key_exists"),
        (Some(r#"{"name": "bad name!"}"#), 400, "invalid_name"),
        (Some(r#"{}"#), 400, "invalid_name"),
        (None, 400, "invalid_name"),
        (Some(r#"{"name": "x", "extra": 1}"#), 400, "invalid_name"),
    ] {
        let (s, b) = admin(&t, "POST", "/admin/api-keys", body).await;
        assert_eq!((s, err(code)(&b)), (status, true), "{body:?}: {b}");
    }

    let (s, b) = admin(&t, "DELETE", "/admin/api-keys/backend", None).await;
    assert_eq!((s, b), (200, json!({"name": "backend", "revoked": true})));
    assert_eq!(t.tokens_with_key(&key, json!({"userId": "k"})).await.0, 401);
    let (s, b) = admin(&t, "DELETE", "/admin/api-keys/backend", None).await;
    assert_eq!((s, err("api_key_not_found")(&b)), (404, true), "{b}");
    let (s, b) = admin(&t, "DELETE", "/admin/api-keys/never", None).await;
    assert_eq!((s, err("api_key_not_found")(&b)), (404, true), "{b}");
}

#[tokio::test]
async fn admin_listen_serves_the_admin_api_apart_from_the_main_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.admin.listen = "127.0.0.1:0".into();
    raw.storage.data_dir = tmp.path().display().to_string();
    let config = raw.validate().unwrap();
    assert!(config.admin.listen.is_some());
    let app = chatsdk_auth::App::start(config, chatsdk_auth::telemetry::AccessLog::disabled())
        .await
        .unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let adm = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, adm_addr) = (main.local_addr().unwrap(), adm.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(chatsdk_auth::serve_on(
        chatsdk_auth::Listeners {
            main,
            metrics: None,
            admin: Some(adm),
        },
        app.clone(),
        async {
            let _ = rx.await;
        },
    ));
    let c = reqwest::Client::new();
    let bearer = format!("Bearer {}", app.secrets.admin_token.expose());
    let get = |addr: std::net::SocketAddr, path: &str| {
        c.get(format!("http://{addr}{path}"))
            .header("Authorization", &bearer)
            .send()
    };
    assert_eq!(
        get(adm_addr, "/admin/api-keys").await.unwrap().status(),
        200
    );
    assert_eq!(
        get(main_addr, "/admin/api-keys").await.unwrap().status(),
        404
    );
    assert_eq!(get(adm_addr, "/metrics").await.unwrap().status(), 404);
    assert_eq!(get(adm_addr, "/healthz").await.unwrap().status(), 200);
    // The admin token was generated at first start, owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tmp.path().join("admin-token.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let _ = tx.send(());
    assert!(server.await.unwrap());
}
