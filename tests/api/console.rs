//! The operator console's server side: the page and its files with their strict headers (and
//! off with `admin.console = false`), and the two admin routes it added: `GET /admin/audit` on
//! SQLite and PostgreSQL (newest first, filters, paging, bearer and rate limit) and
//! `GET /admin/overview` (readiness, keys, the last minutes of minting and refusals).

use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};

fn bearer(t: &TestApp) -> String {
    format!("Bearer {}", t.app.secrets.admin_token.expose())
}

async fn get(t: &TestApp, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut rb = t.client.get(t.url(path));
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    rb.send().await.unwrap()
}

async fn admin_json(t: &TestApp, method: &str, path: &str) -> (u16, Value) {
    let r = t
        .client
        .request(method.parse().unwrap(), t.url(path))
        .header("Authorization", bearer(t))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assert_strict(r: &reqwest::Response) {
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_public_static_and_strict() {
    let t = TestApp::spawn().await;
    let r = get(&t, "/admin/", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_strict(&r);
    let html = r.text().await.unwrap();
    // Nothing inline: one module script, one stylesheet and the icon, all from this origin.
    assert!(html.contains(r#"<script type="module" src="/admin/console/console.js"></script>"#));
    assert!(html.contains(r#"<link rel="icon" href="/admin/console/icon.svg""#));
    assert!(!html.contains("style="), "inline style attribute");
    assert!(!html.contains("<style"), "inline stylesheet");
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("http://") && !html.contains("https://"));

    for (file, ty) in [
        ("console.css", "text/css; charset=utf-8"),
        ("console.js", "text/javascript; charset=utf-8"),
        ("segments.js", "text/javascript; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let r = get(&t, &format!("/admin/console/{file}"), None).await;
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(r.headers()["content-type"], ty, "{file}");
        assert_strict(&r);
        let body = r.text().await.unwrap();
        assert!(!body.is_empty());
        if file.ends_with(".js") {
            assert!(
                !body.contains("innerHTML"),
                "data is written with textContent"
            );
            assert!(!body.contains("eval("));
        }
    }
    let r = get(&t, "/admin/console/secrets.txt", None).await;
    assert_eq!(r.status(), 404);
    assert_strict(&r);
    let r = get(&t, "/admin/console/..%2Fadmin-token.key", None).await;
    assert_eq!(r.status(), 404);
    // The data routes are not public, and carry the same headers, refusals included.
    let r = get(&t, "/admin/overview", None).await;
    assert_eq!(r.status(), 401);
    assert_strict(&r);
    let r = get(&t, "/admin/users", Some(&bearer(&t))).await;
    assert_eq!(r.status(), 200);
    assert_strict(&r);
    // Elsewhere, nothing changes.
    let r = get(&t, "/healthz", None).await;
    assert!(r.headers().get("content-security-policy").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_can_be_turned_off_and_follows_the_admin_listener() {
    let t = TestApp::spawn_with(|c| c.admin.console = false).await;
    for path in ["/admin/", "/admin/console/console.js"] {
        let r = get(&t, path, None).await;
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "not_found");
    }
    // The admin API itself stays.
    assert_eq!(admin_json(&t, "GET", "/admin/overview").await.0, 200);

    // With `admin.listen`, the console is there and not on the main listener.
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.admin.listen = "127.0.0.1:0".into();
    let config = raw.validate().unwrap();
    assert!(config.admin.console, "on by default");
    use chatsdk_auth::router::{route, Listener, Route};
    let get = http::Method::GET;
    let main = Listener::Main {
        serves_metrics: true,
        serves_admin: false,
    };
    assert_eq!(
        route(&get, "/admin/", main).unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        route(&get, "/admin/", Listener::Admin).ok(),
        Some(Route::ConsolePage)
    );
    assert_eq!(
        route(&get, "/admin/console/console.js", Listener::Admin).ok(),
        Some(Route::ConsoleAsset)
    );
}

async fn audit_pages_newest_first_filtered_and_paged(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    for user in ["carol", "dave"] {
        let (s, _) = t.tokens(json!({"userId": user})).await;
        assert_eq!(s, 200);
    }
    for path in [
        "/admin/users/carol/disable",
        "/admin/users/dave/disable",
        "/admin/users/carol/enable",
        "/admin/users/carol/revoke-tokens",
    ] {
        assert_eq!(admin_json(&t, "POST", path).await.0, 200, "{path}");
    }

    // Everything, newest first; ids decrease.
    let (s, all) = admin_json(&t, "GET", "/admin/audit").await;
    assert_eq!(s, 200, "{all}");
    let events = all["events"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[..4],
        [
            "user.tokens_revoked",
            "user.enabled",
            "user.disabled",
            "user.disabled"
        ]
    );
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(events[0]["actor"], "admin");
    assert_eq!(events[0]["target_kind"], "user");
    assert_eq!(events[0]["target"], "carol");
    assert_eq!(all["next_before"], Value::Null);

    // The same rows `chatsdk-auth audit --json` prints, plus the id.
    let cli = t
        .app
        .store
        .list_audit(&chatsdk_auth::store::AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(cli.len(), events.len());
    let newest = serde_json::to_value(cli.last().unwrap()).unwrap();
    for (k, v) in newest.as_object().unwrap() {
        assert_eq!(&events[0][k], v, "{k}");
    }

    // Filters are exact and combine.
    let (_, f) = admin_json(&t, "GET", "/admin/audit?action=user.disabled").await;
    let targets: Vec<&str> = f["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["dave", "carol"]);
    let (_, f) = admin_json(&t, "GET", "/admin/audit?subject=carol&actor=admin").await;
    assert_eq!(f["events"].as_array().unwrap().len(), 3);
    let (_, f) = admin_json(&t, "GET", "/admin/audit?subject=carol&actor=cli").await;
    assert_eq!(f["events"], json!([]));
    let (_, f) = admin_json(&t, "GET", "/admin/audit?action=&subject=dave").await;
    assert_eq!(f["events"].as_array().unwrap().len(), 1);

    // Paging by id: two pages of two cover the four user events, in order, no overlap.
    let (_, p1) = admin_json(&t, "GET", "/admin/audit?limit=2&subject=").await;
    let cursor = p1["next_before"].as_i64().unwrap();
    assert_eq!(cursor, ids[1]);
    let (_, p2) = admin_json(&t, "GET", &format!("/admin/audit?limit=2&before={cursor}")).await;
    let page_ids: Vec<i64> = p1["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["events"].as_array().unwrap())
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page_ids, ids[..4]);

    for (q, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=5000", "invalid_limit"),
        ("before=x", "invalid_before"),
    ] {
        let (s, v) = admin_json(&t, "GET", &format!("/admin/audit?{q}")).await;
        assert_eq!((s, v["code"].as_str().unwrap()), (400, code), "{q}");
    }
    let r = get(&t, "/admin/audit", Some("Bearer wrong")).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_route_on_sqlite() {
    audit_pages_newest_first_filtered_and_paged(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_route_on_postgres() {
    crate::need::need!(Postgres);
    audit_pages_newest_first_filtered_and_paged(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_are_rate_limited_like_every_admin_route() {
    let t = TestApp::spawn_with(|c| c.limits.admin_per_ip_per_minute = 2).await;
    for _ in 0..2 {
        assert_eq!(
            get(&t, "/admin/audit", Some("Bearer wrong")).await.status(),
            401
        );
    }
    let r = get(&t, "/admin/overview", Some("Bearer wrong")).await;
    assert_eq!(r.status(), 429);
    // Only failures are limited: the right token still reads both.
    assert_eq!(admin_json(&t, "GET", "/admin/audit").await.0, 200);
    assert_eq!(admin_json(&t, "GET", "/admin/overview").await.0, 200);
    // The static page is not an admin call: it still loads.
    assert_eq!(get(&t, "/admin/", None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_reports_readiness_keys_and_the_last_minutes() {
    let t = TestApp::spawn().await;
    for user in ["u1", "u2", "u3"] {
        assert_eq!(t.tokens(json!({"userId": user})).await.0, 200);
    }
    let (s, _) = t
        .tokens_with_key("chatsdk_wrong", json!({"userId": "x"}))
        .await;
    assert_eq!(s, 401);
    let (s, o) = admin_json(&t, "GET", "/admin/overview").await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["status"], "ready");
    assert_eq!(o["store_backend"], "sqlite");
    assert_eq!(o["revocation_active"], false);
    assert_eq!(o["kicks_pending"], 0);
    let kinds: Vec<&str> = o["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"rest") && kinds.contains(&"ws"),
        "{kinds:?}"
    );
    let r = &o["recent"];
    assert_eq!(r["minted_rest"], 3);
    assert_eq!(r["minted_ws"], 3);
    assert_eq!(r["minted_subscription"], 0);
    let per_minute: u64 = r["minted_per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(per_minute, 6);
    assert_eq!(
        r["rejected"],
        json!([{"reason": "invalid_api_key", "count": 1}])
    );
    assert!(r["seconds"].as_i64().unwrap() <= 300);
}

/// The strict headers are on every answer under `/admin/`, the unrouted ones too: an unknown
/// path (404), a method the route does not take (405), a missing console file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_admin_answers_are_strict_too() {
    let t = TestApp::spawn().await;
    for (method, path, status) in [
        ("GET", "/admin/nothing-here", 404),
        ("GET", "/admin/console/missing.css", 404),
        ("GET", "/admin", 404),
        ("DELETE", "/admin/overview", 405),
        ("POST", "/admin/", 405),
    ] {
        let r = t
            .client
            .request(method.parse().unwrap(), t.url(path))
            .header("Authorization", bearer(&t))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        assert_strict(&r);
    }
    // Outside /admin/ the console's policy is not applied.
    let r = get(&t, "/administrator", None).await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("content-security-policy").is_none());
}
