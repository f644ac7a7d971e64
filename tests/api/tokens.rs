//! `POST /tokens`: the contract (shape, claims, upsert, persistence), run on SQLite and on
//! PostgreSQL alike. Refusals are in tokens_refusals.rs, SQLite's migrations in migrations.rs.

use serde_json::json;

use crate::helpers::{
    assert_session_matches_user, keys, now, on_both_backends, try_verify_hs256, verify_hs256,
    Backend, TestApp, TestDb,
};

on_both_backends!(
    seed_request_returns_the_documented_shape,
    rest_token_claims_and_key,
    ws_token_is_a_centrifugo_connection_token,
    ws_info_carries_only_the_fields_the_user_has,
    configured_audience_issuer_ttl_and_channels_are_applied,
    upsert_updates_keeps_and_clears_fields_without_duplicating,
    concurrent_upserts_of_one_user_leave_one_row,
    restart_keeps_users_keys_and_secrets,
    the_proxies_view_of_a_disabled_and_revoked_user_matches_the_record,
    an_unchanged_profile_is_answered_without_a_write,
);

async fn seed_request_returns_the_documented_shape(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let (s, b) = t
        .tokens(json!({
            "userId": "user-123", "name": "Alice Johnson", "image": "https://cdn.example/a.png",
            "custom": {"department": "Engineering", "role": "Senior Developer"}
        }))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        keys(&b),
        ["expiresIn", "token", "user", "wsExpiresIn", "wsToken"]
            .map(String::from)
            .into()
    );
    assert_eq!(b["expiresIn"], 86400);
    assert_eq!(b["wsExpiresIn"], 3600, "tokens.ws_ttl_seconds");
    assert_eq!(
        b["user"],
        json!({"id": "user-123", "name": "Alice Johnson", "image": "https://cdn.example/a.png"})
    );
    assert!(b["token"].as_str().unwrap().starts_with("eyJ"));
    assert!(b["wsToken"].as_str().unwrap().starts_with("eyJ"));
}

async fn rest_token_claims_and_key(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let before = now();
    let b = t.mint("user-1").await;
    let token = b["token"].as_str().unwrap();
    let (h, c) = verify_hs256(token, &t.rest_key());
    assert_eq!(h["alg"], "HS256");
    assert_eq!(
        keys(&c),
        ["aud", "exp", "iat", "iss", "jti", "sub"]
            .map(String::from)
            .into()
    );
    assert_eq!(c["iss"], "chatsdk-auth");
    assert_eq!(c["sub"], "user-1");
    // The API's audience, and the application (`app.id`) the token belongs to.
    assert_eq!(c["aud"], json!(["chatsdk-api", "app:default"]));
    let iat = c["iat"].as_i64().unwrap();
    assert!(iat >= before && iat <= now());
    assert_eq!(c["exp"].as_i64().unwrap(), iat + 86400);
    let jti = c["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 32);
    // A REST token must never validate with the Centrifugo key.
    assert!(try_verify_hs256(token, &t.ws_key()).is_none());
}

async fn ws_token_is_a_centrifugo_connection_token(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let b = t.mint("user-1").await;
    let ws = b["wsToken"].as_str().unwrap();
    let (h, c) = verify_hs256(ws, &t.ws_key());
    assert_eq!(h["alg"], "HS256");
    assert!(
        try_verify_hs256(ws, &t.rest_key()).is_none(),
        "wsToken must not validate as REST"
    );
    // https://centrifugal.dev/docs/server/authentication: string sub, numeric iat/exp, no nbf,
    // no channel, no exp 0.
    assert!(c["sub"].is_string());
    assert_eq!(c["sub"], "user-1");
    assert!(c["iat"].is_i64() && c["exp"].is_i64());
    assert!(c["exp"].as_i64().unwrap() > now());
    assert!(c.get("nbf").is_none());
    assert!(c.get("channel").is_none());
    assert!(
        c.get("aud").is_none() && c.get("iss").is_none(),
        "aud/iss only when configured"
    );
    assert!(c.get("channels").is_none());
    assert_eq!(
        c["info"],
        json!({"name": "Ada", "image": "https://cdn.example/ada.png"})
    );
    assert_eq!(c["meta"], json!({"iat": c["iat"], "app": "default"}));
    // Both tokens are issued at the same instant, with different jti; the wsToken lives
    // tokens.ws_ttl_seconds, the REST token tokens.ttl_seconds.
    let (_, rest) = verify_hs256(b["token"].as_str().unwrap(), &t.rest_key());
    assert_eq!(rest["iat"], c["iat"]);
    assert_eq!(
        rest["exp"].as_i64().unwrap(),
        c["iat"].as_i64().unwrap() + 86_400
    );
    assert_eq!(
        c["exp"].as_i64().unwrap(),
        c["iat"].as_i64().unwrap() + 3_600
    );
    assert_ne!(rest["jti"], c["jti"]);
    assert!(c["jti"].as_str().unwrap().len() >= 16);
}

async fn ws_info_carries_only_the_fields_the_user_has(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let (_, b) = t.tokens(json!({"userId": "only-name", "name": "Bo"})).await;
    let (_, c) = verify_hs256(b["wsToken"].as_str().unwrap(), &t.ws_key());
    assert_eq!(c["info"], json!({"name": "Bo"}));
    assert_eq!(
        b["user"],
        json!({"id": "only-name", "name": "Bo", "image": null})
    );
    let (_, b) = t.tokens(json!({"userId": "bare"})).await;
    let (_, c) = verify_hs256(b["wsToken"].as_str().unwrap(), &t.ws_key());
    assert!(
        c.get("info").is_none(),
        "no info claim for a user without name and image"
    );
}

async fn configured_audience_issuer_ttl_and_channels_are_applied(backend: Backend) {
    let t = TestApp::spawn_on_with(backend, |c| {
        c.tokens.ws_audience = "centrifugo".into();
        c.tokens.ws_issuer = "chatsdk-auth".into();
        c.tokens.rest_audience = "my-api".into();
        c.tokens.ttl_seconds = 3600;
        c.tokens.ws_ttl_seconds = 600;
        c.centrifugo.user_channels = vec!["personal:#{userId}".into()];
    })
    .await;
    let b = t.mint("u-7").await;
    assert_eq!(b["expiresIn"], 3600);
    assert_eq!(b["wsExpiresIn"], 600);
    let (_, c) = verify_hs256(b["wsToken"].as_str().unwrap(), &t.ws_key());
    assert_eq!(c["aud"], "centrifugo");
    assert_eq!(c["iss"], "chatsdk-auth");
    assert_eq!(c["channels"], json!(["personal:u-7"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    let (_, r) = verify_hs256(b["token"].as_str().unwrap(), &t.rest_key());
    assert_eq!(r["aud"], json!(["my-api", "app:default"]));
    assert_eq!(
        r["exp"].as_i64().unwrap() - r["iat"].as_i64().unwrap(),
        3600
    );
}

async fn upsert_updates_keeps_and_clears_fields_without_duplicating(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // Sent as raw text: key order and spacing must survive exactly.
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
    // Omitted fields keep their value.
    let (s, b) = t.tokens(json!({"userId": "u", "name": "B"})).await;
    assert_eq!(s, 200);
    assert_eq!(
        b["user"],
        json!({"id": "u", "name": "B", "image": "https://x.example/a.png"})
    );
    let u = t.app.store.get_user("u").await.unwrap().unwrap();
    assert_eq!(
        u.custom.as_deref(),
        Some(r#"{"z": 1, "a":[1,2]}"#),
        "custom is stored as given"
    );
    assert_session_matches_user(&t, "u").await;
    assert_session_matches_user(&t, "nobody").await;
    // Explicit null clears.
    let (_, b) = t
        .tokens(json!({"userId": "u", "image": null, "custom": null}))
        .await;
    assert_eq!(b["user"], json!({"id": "u", "name": "B", "image": null}));
    let u = t.app.store.get_user("u").await.unwrap().unwrap();
    assert_eq!(u.custom, None);
    assert_eq!(t.user_rows("u").await, 1);
}

/// Both backends read first and write only for a new user or a changed profile: repeating a
/// profile leaves the row (and `updated_at`) as it was, and still answers as an existing user.
async fn an_unchanged_profile_is_answered_without_a_write(backend: Backend) {
    use chatsdk_auth::store::{Field, Upserted, UserPatch};
    let t = TestApp::spawn_on(backend).await;
    let store = &t.app.store;
    let patch = |name| UserPatch {
        id: "same",
        name: Field::Set(name),
        image: Field::Keep,
        custom: Field::Set(r#"{"a": 1}"#),
    };
    let first = store.upsert_user(&patch("Ada"), 1_000).await.unwrap();
    assert!(matches!(first, Upserted::Active { created: true, .. }));
    let again = store.upsert_user(&patch("Ada"), 2_000).await.unwrap();
    assert_eq!(
        again,
        Upserted::Active {
            id: "same".into(),
            name: Some("Ada".into()),
            image: None,
            tokens_valid_after: 1_000,
            created: false,
        }
    );
    assert_eq!(
        store.get_user("same").await.unwrap().unwrap().updated_at,
        1_000
    );
    let changed = store.upsert_user(&patch("Bea"), 3_000).await.unwrap();
    assert!(matches!(changed, Upserted::Active { created: false, .. }));
    let u = store.get_user("same").await.unwrap().unwrap();
    assert_eq!((u.name.as_deref(), u.updated_at), (Some("Bea"), 3_000));
    assert_eq!(t.user_rows("same").await, 1);
}

async fn concurrent_upserts_of_one_user_leave_one_row(backend: Backend) {
    // More than the default 60 a minute for one user: the limit is not what this tests.
    let t = TestApp::spawn_on_with(backend, |c| c.limits.mint_per_user_per_minute = 0).await;
    t.concurrent_upserts("same", 64).await;
    assert_eq!(t.user_rows("same").await, 1);
    assert_eq!(
        t.metric(r#"chatsdk_auth_users_upserted_total{result="created"}"#)
            .await,
        1.0
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_users_upserted_total{result="updated"}"#)
            .await,
        63.0
    );
}

async fn restart_keeps_users_keys_and_secrets(backend: Backend) {
    let db = TestDb::start(backend).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut first = TestApp::start_in(&dir, |c| db.configure(c)).await;
    first.mint("persist").await;
    let ws_key = first.ws_key();
    assert!(first.stop().await);
    drop(first);
    let second = TestApp::start_in(&dir, |c| db.configure(c)).await;
    assert_eq!(
        second.ws_key(),
        ws_key,
        "secrets are read back, not regenerated"
    );
    let u = second.app.store.get_user("persist").await.unwrap().unwrap();
    assert_eq!(u.name.as_deref(), Some("Ada"));
    let (s, b) = second.tokens(json!({"userId": "persist"})).await;
    assert_eq!(s, 200, "the key from the first run still works");
    assert_eq!(b["user"]["name"], "Ada");
    verify_hs256(b["wsToken"].as_str().unwrap(), &ws_key);
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let t = TestApp::spawn().await;
    let r = t
        .client
        .get(t.url("/healthz"))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = t.client.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 16);
}

async fn the_proxies_view_of_a_disabled_and_revoked_user_matches_the_record(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    assert_eq!(t.tokens(json!({"userId": "dr", "name": "D"})).await.0, 200);
    // A new row already refuses tokens older than itself: revoke beyond that.
    let valid_after = now() + 100;
    // Through the operators' action, at a clock `valid_after` seconds from now.
    t.app
        .actions()
        .revoke_user_tokens("dr", Some(valid_after - 1), valid_after)
        .await
        .unwrap();
    t.app.actions().disable("dr", now()).await.unwrap();
    let s = t.app.store.get_session("dr").await.unwrap().unwrap();
    assert!(s.disabled);
    assert_eq!(s.tokens_valid_after, valid_after);
    assert_session_matches_user(&t, "dr").await;
}
