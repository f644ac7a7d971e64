//! The PostgreSQL backend against a real PostgreSQL server, beyond the token contract that
//! tests/api/tokens.rs runs on both backends: replicas sharing one store, and an outage
//! answered with 503 everywhere, then recovery.

use serde_json::json;

use crate::helpers::{
    connect_with, now, session_body, start_app, until, use_postgres, verify_hs256, TestApp,
};
use crate::pg::{self, PgServer};

fn on_postgres(url: String) -> impl FnOnce(&mut chatsdk_auth::config::RawConfig) {
    move |c| {
        use_postgres(c, url);
        // Replicas share their signing keys and proxy secret.
        c.secrets.rest_key = "r".repeat(40);
        c.secrets.centrifugo_key = "w".repeat(40);
        c.secrets.proxy_secret = "p".repeat(40);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_postgres_see_each_others_changes_at_once() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let a = TestApp::start_in(&dir, on_postgres(url.clone())).await;
    let b = TestApp::start_in(&dir, on_postgres(url)).await;
    assert_eq!(a.key, b.key);
    // A token minted by replica A is accepted by replica B's connect proxy.
    let ws = a.mint("shared").await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    // Signed with the configured key, which both replicas hold.
    verify_hs256(&ws, &"w".repeat(40));
    let (s, r) = b
        .proxy("/centrifugo/connect", &connect_with(&ws), &[])
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["result"]["user"], "shared");
    assert_eq!(r["result"]["info"]["name"], "Ada");
    // Disabled through A: B refuses at once, in every callback.
    a.app.actions().disable("shared", now()).await.unwrap();
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
    let k = b
        .app
        .store
        .create_api_key(
            "rotating",
            &b.app.config.app.id,
            now(),
            &crate::helpers::test_event("api_key.created", "rotating"),
        )
        .await
        .unwrap();
    assert_eq!(a.tokens_with_key(&k, json!({"userId": "x"})).await.0, 200);
    assert!(b
        .app
        .store
        .revoke_api_key(
            "rotating",
            now(),
            &crate::helpers::test_event("api_key.revoked", "rotating")
        )
        .await
        .unwrap());
    assert_eq!(a.tokens_with_key(&k, json!({"userId": "x"})).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_503_everywhere_then_recovers() {
    crate::need::need!(Postgres);
    // A cluster of its own: this test stops it.
    let mut pg = PgServer::start().await;
    let t = TestApp::spawn_with(on_postgres(pg.url())).await;
    let minted = t.mint("o").await;
    let ws = minted["wsToken"].as_str().unwrap().to_string();
    let rest = minted["token"].as_str().unwrap().to_string();
    pg.stop();
    // /verify cannot ask the store: 503, so a gateway fails closed. The JWKS is in memory.
    let (s, _, b) = crate::verify::verify(&t, Some(&format!("Bearer {rest}")), &[]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (503, Some("store_unavailable")),
        "{b}"
    );
    let jwks = t
        .client
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
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
    // The pool reconnects by itself.
    until("recovery after PostgreSQL came back", || async {
        match t.tokens(json!({"userId": "o"})).await {
            (200, _) => Ok(()),
            (s, b) => Err(format!("{s} {b}")),
        }
    })
    .await;
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
    crate::need::need!(Postgres);
    // A port nothing listens on (free a moment ago): connections are refused.
    let port = crate::process::free_port();
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    on_postgres(format!("postgres://chatsdk@127.0.0.1:{port}/postgres"))(&mut raw);
    raw.storage.data_dir = tmp.path().join("d").to_string_lossy().into_owned();
    let err = match start_app(raw.validate().unwrap()).await {
        Ok(_) => panic!("startup must fail without PostgreSQL"),
        Err(e) => chatsdk_auth::error_chain::Chain(&e).to_string(),
    };
    assert!(err.contains("store unavailable"), "{err}");
}

/// Replicas starting together on an empty database: each round, four start at once; every one
/// starts, and exactly one creates the first API key (its file in its own data directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_make_one_first_key() {
    crate::need::need!(Postgres);
    const REPLICAS: usize = 4;
    for round in 0..3 {
        let url = pg::database().await;
        let dirs: Vec<_> = (0..REPLICAS)
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        let mut starts = tokio::task::JoinSet::new();
        for dir in &dirs {
            let mut raw = chatsdk_auth::config::RawConfig::default();
            raw.storage.data_dir = dir.path().join("data").to_string_lossy().into_owned();
            on_postgres(url.clone())(&mut raw);
            let config = raw.validate().unwrap();
            starts.spawn(start_app(config));
        }
        let mut apps = Vec::new();
        while let Some(started) = starts.join_next().await {
            let app = started
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: a replica did not start: {e}"));
            apps.push(app);
        }
        let files = dirs
            .iter()
            .filter(|d| d.path().join("data/api-key.txt").exists())
            .count();
        assert_eq!(files, 1, "round {round}: first-key files");
        let keys = apps[0].store.list_api_keys().await.unwrap();
        assert_eq!(keys.len(), 1, "round {round}: {keys:?}");
    }
}
