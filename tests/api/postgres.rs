//! The PostgreSQL backend against a real PostgreSQL server: the token contract, replicas
//! sharing one store, and an outage answered with 503 everywhere, then recovery.

use serde_json::{json, Value};

use crate::helpers::{
    assert_session_matches_user, connect_body, now, session_body, verify_hs256, TestApp,
};
use crate::pg::PgServer;

fn on_postgres(url: String) -> impl FnOnce(&mut chatsdk_auth::config::RawConfig) {
    move |c| {
        c.storage.backend = "postgres".into();
        c.storage.postgres_url = url;
        c.storage.postgres_timeout_ms = 500;
        // Replicas share their signing keys and proxy secret.
        c.secrets.rest_key = "r".repeat(40);
        c.secrets.centrifugo_key = "w".repeat(40);
        c.secrets.proxy_secret = "p".repeat(40);
    }
}

fn connect_with(token: &str) -> String {
    connect_body(json!({"data": {"token": token}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_keeps_the_token_contract() {
    let pg = PgServer::start().await;
    let t = TestApp::spawn_with(on_postgres(pg.url())).await;
    // Upsert: keep omitted fields, clear nulls, store custom byte for byte.
    let r = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", &t.key)
        .header("Content-Type", "application/json")
        .body(r#"{"userId":"u","name":"A","image":"https://x.example/a.png","custom":{"z": 1, "a":[1,2]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, b) = t.tokens(json!({"userId": "u", "name": "B"})).await;
    assert_eq!(
        b["user"],
        json!({"id": "u", "name": "B", "image": "https://x.example/a.png"})
    );
    let u = t.app.store.get_user("u").await.unwrap().unwrap();
    assert_eq!(u.custom.as_deref(), Some(r#"{"z": 1, "a":[1,2]}"#));
    assert_session_matches_user(&t, "u").await;
    assert_session_matches_user(&t, "nobody").await;
    let (_, b) = t.tokens(json!({"userId": "u", "image": null})).await;
    assert_eq!(b["user"]["image"], Value::Null);
    verify_hs256(b["wsToken"].as_str().unwrap(), &"w".repeat(40));

    // Concurrent upserts of one user: one row.
    t.concurrent_upserts("same", 32).await;
    let (db, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM chatsdk_auth_users WHERE id = 'same'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(
        t.metric(r#"chatsdk_auth_users_upserted_total{result="created"}"#)
            .await,
        2.0
    );

    // Disabled users: 403 and nothing written; keys: revocation is immediate.
    assert!(t
        .app
        .store
        .set_user_disabled("u", true, now())
        .await
        .unwrap());
    let (s, b) = t.tokens(json!({"userId": "u", "name": "C"})).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("user_disabled")));
    assert_eq!(
        t.app
            .store
            .get_user("u")
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("B")
    );
    let second = t.app.store.create_api_key("second", now()).await.unwrap();
    assert!(
        t.app.store.create_api_key("second", now()).await.is_err(),
        "names are unique"
    );
    assert_eq!(
        t.tokens_with_key(&second, json!({"userId": "k"})).await.0,
        200
    );
    assert!(t.app.store.revoke_api_key("second", now()).await.unwrap());
    assert_eq!(
        t.tokens_with_key(&second, json!({"userId": "k"})).await.0,
        401
    );
    assert_eq!(t.app.store.list_api_keys().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_postgres_see_each_others_changes_at_once() {
    let pg = PgServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let a = TestApp::start_in(&dir, on_postgres(pg.url())).await;
    let b = TestApp::start_in(&dir, on_postgres(pg.url())).await;
    assert_eq!(a.key, b.key);
    // A token minted by replica A is accepted by replica B's connect proxy.
    let ws = a.mint("shared").await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, r) = b
        .proxy("/centrifugo/connect", &connect_with(&ws), &[])
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["result"]["user"], "shared");
    assert_eq!(r["result"]["info"]["name"], "Ada");
    // Disabled through A: B refuses at once, in every callback.
    assert!(a
        .app
        .store
        .set_user_disabled("shared", true, now())
        .await
        .unwrap());
    assert_eq!(
        b.proxy("/centrifugo/connect", &connect_with(&ws), &[])
            .await
            .1["disconnect"]["code"],
        4503
    );
    assert_eq!(
        b.proxy(
            "/centrifugo/refresh",
            &session_body("shared", None, None),
            &[]
        )
        .await
        .1,
        json!({"result": {"expired": true}})
    );
    assert_eq!(b.tokens(json!({"userId": "shared"})).await.0, 403);
    // A key revoked through B stops working on A.
    let k = b.app.store.create_api_key("rotating", now()).await.unwrap();
    assert_eq!(a.tokens_with_key(&k, json!({"userId": "x"})).await.0, 200);
    assert!(b.app.store.revoke_api_key("rotating", now()).await.unwrap());
    assert_eq!(a.tokens_with_key(&k, json!({"userId": "x"})).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_503_everywhere_then_recovers() {
    let mut pg = PgServer::start().await;
    let t = TestApp::spawn_with(on_postgres(pg.url())).await;
    let ws = t.mint("o").await["wsToken"].as_str().unwrap().to_string();
    pg.stop();
    let (s, b) = t.tokens(json!({"userId": "o"})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (503, Some("store_unavailable")),
        "{b}"
    );
    for (path, body) in [
        ("/centrifugo/connect", connect_with(&ws)),
        ("/centrifugo/refresh", session_body("o", None, None)),
        (
            "/centrifugo/subscribe",
            session_body("o", Some("chat:x"), None),
        ),
        (
            "/centrifugo/sub_refresh",
            session_body("o", Some("chat:x"), None),
        ),
    ] {
        let (s, b) = t.proxy(path, &body, &[]).await;
        assert_eq!(
            s, 503,
            "{path}: Centrifugo retries (connect: error 100; refresh: +60 s) -> {b}"
        );
        assert_eq!(b["code"], "store_unavailable");
    }
    assert_eq!(
        t.client
            .get(t.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    for cb in ["connect", "refresh", "subscribe", "sub_refresh"] {
        let series = format!(
            r#"chatsdk_auth_proxy_decisions_total{{callback="{cb}",outcome="error",reason="store_unavailable"}}"#
        );
        assert_eq!(t.metric(&series).await, 1.0, "{cb}");
    }
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="store_unavailable"}"#)
            .await,
        1.0
    );

    pg.run().await;
    // The pool reconnects by itself; poll (bounded) until the first request succeeds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if t.tokens(json!({"userId": "o"})).await.0 == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not recover after PostgreSQL came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, r) = t
        .proxy("/centrifugo/connect", &connect_with(&ws), &[])
        .await;
    assert_eq!((s, r["result"]["user"].as_str()), (200, Some("o")));
    assert_eq!(
        t.client
            .get(t.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_unreachable_postgres_stops_startup_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    on_postgres(format!("postgres://chatsdk@127.0.0.1:{port}/postgres"))(&mut raw);
    raw.storage.data_dir = tmp.path().join("d").to_string_lossy().into_owned();
    let err = match chatsdk_auth::App::start(
        raw.validate().unwrap(),
        chatsdk_auth::telemetry::AccessLog::disabled(),
    )
    .await
    {
        Ok(_) => panic!("startup must fail without PostgreSQL"),
        Err(e) => chatsdk_auth::error_chain::Chain(&e).to_string(),
    };
    assert!(err.contains("store unavailable"), "{err}");
}
