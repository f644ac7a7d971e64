//! `POST /tokens`: the contract (shape, claims, upsert, validation, keys, persistence), run on
//! SQLite and on PostgreSQL alike, then what is SQLite's own: schema migrations.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{
    assert_session_matches_user, now, start_app, try_verify_hs256, verify_hs256, Backend, TestApp,
    TestDb,
};

/// Runs each named contract test once per backend, as `tokens::sqlite::<name>` and
/// `tokens::postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Postgres).await;
                }
            )+
        }
    };
}

on_both_backends!(
    seed_request_returns_the_documented_shape,
    rest_token_claims_and_key,
    ws_token_is_a_centrifugo_connection_token,
    ws_info_carries_only_the_fields_the_user_has,
    configured_audience_issuer_ttl_and_channels_are_applied,
    upsert_updates_keeps_and_clears_fields_without_duplicating,
    concurrent_upserts_of_one_user_leave_one_row,
    invalid_requests_are_400_naming_the_field_and_write_nothing,
    a_valid_update_after_a_rejected_one_keeps_the_old_profile,
    bad_api_keys_are_401_with_the_seed_wording,
    several_keys_rotate_and_a_revoked_key_stops_working_at_once,
    wrong_content_type_is_415_and_large_bodies_are_413,
    disabled_users_get_403_and_nothing_changes,
    tokens_minted_after_a_revocation_are_not_revoked,
    restart_keeps_users_keys_and_secrets,
    a_rejected_request_does_not_even_record_key_use,
    the_proxies_view_of_a_disabled_and_revoked_user_matches_the_record,
    an_unchanged_profile_is_answered_without_a_write,
);

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

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
    assert_eq!(c["aud"], "chatsdk-api");
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
    assert_eq!(c["meta"], json!({"iat": c["iat"]}));
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
    assert_eq!(r["aud"], "my-api");
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

async fn invalid_requests_are_400_naming_the_field_and_write_nothing(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let long = "x".repeat(256);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "invalid_user_id"),
        (json!({"name": "Alice"}), "invalid_user_id"),
        (json!({"userId": ""}), "invalid_user_id"),
        (json!({"userId": "   "}), "invalid_user_id"),
        (json!({"userId": 123}), "invalid_user_id"),
        (json!({"userId": null}), "invalid_user_id"),
        (json!({"userId": long}), "invalid_user_id"),
        (json!({"userId": "a\nb"}), "invalid_user_id"),
        (json!({"userId": "new-1", "name": 5}), "invalid_name"),
        (
            json!({"userId": "new-1", "name": "n".repeat(256)}),
            "invalid_name",
        ),
        (
            json!({"userId": "new-1", "image": "javascript:alert(1)"}),
            "invalid_image",
        ),
        (
            json!({"userId": "new-1", "image": "/relative.png"}),
            "invalid_image",
        ),
        (
            json!({"userId": "new-1", "image": format!("https://x.example/{}", "a".repeat(2048))}),
            "invalid_image",
        ),
        (
            json!({"userId": "new-1", "image": "\u{0000} https://x.example/a\n.png\t"}),
            "invalid_image",
        ),
        (
            json!({"userId": "new-1", "image": " https://x.example/a.png"}),
            "invalid_image",
        ),
        (
            json!({"userId": "new-1", "custom": "str"}),
            "invalid_custom",
        ),
        (json!({"userId": "new-1", "custom": [1]}), "invalid_custom"),
        (
            json!({"userId": "new-1", "custom": {"k": "v".repeat(16 * 1024)}}),
            "invalid_custom",
        ),
        (json!([{"userId": "new-1"}]), "invalid_json"),
        (json!("new-1"), "invalid_json"),
    ];
    for (body, code) in cases {
        let (s, b) = t.tokens(body.clone()).await;
        assert_eq!(s, 400, "{body} -> {b}");
        assert_eq!(b["code"], code, "{body} -> {b}");
        assert!(b["error"].as_str().unwrap().len() > 10, "{b}");
        assert_eq!(keys(&b), ["code", "error"].map(String::from).into());
    }
    assert!(
        t.app.store.get_user("new-1").await.unwrap().is_none(),
        "a rejected request writes nothing"
    );
    // Malformed JSON.
    let r = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", &t.key)
        .header("Content-Type", "application/json")
        .body(r#"{"userId": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], "invalid_json");
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="invalid_request"}"#)
            .await,
        21.0
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_tokens_issued_total{kind="rest"}"#)
            .await,
        0.0
    );
}

async fn a_valid_update_after_a_rejected_one_keeps_the_old_profile(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    t.tokens(json!({"userId": "keep", "name": "Old"})).await;
    let (s, _) = t
        .tokens(json!({"userId": "keep", "name": "New", "image": "ftp://nope"}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        t.app
            .store
            .get_user("keep")
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Old")
    );
}

async fn bad_api_keys_are_401_with_the_seed_wording(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let body = json!({"userId": "u"});
    for key in [
        "",
        "not-a-key",
        "chatsdk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (s, b) = t.tokens_with_key(key, body.clone()).await;
        assert_eq!(s, 401);
        assert_eq!(
            b,
            json!({"error": "Invalid API key", "code": "invalid_api_key"})
        );
    }
    let r = t
        .client
        .post(t.url("/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="invalid_api_key"}"#)
            .await,
        4.0
    );
    assert!(t.app.store.get_user("u").await.unwrap().is_none());
}

async fn several_keys_rotate_and_a_revoked_key_stops_working_at_once(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let second = t.app.store.create_api_key("second", now()).await.unwrap();
    assert!(second.starts_with("chatsdk_") && second.len() > 40);
    assert!(
        t.app.store.create_api_key("second", now()).await.is_err(),
        "names are unique"
    );
    assert_eq!(
        t.tokens_with_key(&second, json!({"userId": "u"})).await.0,
        200
    );
    assert_eq!(t.tokens(json!({"userId": "u"})).await.0, 200);
    assert!(t.app.store.revoke_api_key("test", now()).await.unwrap());
    assert_eq!(t.tokens(json!({"userId": "u"})).await.0, 401);
    assert_eq!(
        t.tokens_with_key(&second, json!({"userId": "u"})).await.0,
        200
    );
    let list = t.app.store.list_api_keys().await.unwrap();
    assert_eq!(list.len(), 3, "the first start's key, test and second");
    let test = list.iter().find(|k| k.name == "test").unwrap();
    assert!(test.revoked_at.is_some() && test.last_used_at.is_some());
    assert!(
        !serde_json::to_string(&list).unwrap().contains(&second),
        "list never shows keys"
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_api_key_requests_total{key_name="second"}"#)
            .await,
        2.0
    );
}

async fn wrong_content_type_is_415_and_large_bodies_are_413(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut rb = t
            .client
            .post(t.url("/tokens"))
            .header("X-API-Key", &t.key)
            .body(r#"{"userId":"u"}"#);
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 415, "{ct:?}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["code"], "unsupported_media_type");
    }
    let ok = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", &t.key)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(r#"{"userId":"u"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let big = format!(r#"{{"userId":"big","name":"{}"}}"#, "x".repeat(70 * 1024));
    let r = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", &t.key)
        .header("Content-Type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.headers()["connection"],
        "close",
        "unread body: the socket is not reused"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "payload_too_large"
    );
    // Chunked, without Content-Length: the limit still holds.
    let stream = futures_stream(big.into_bytes());
    let r = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", &t.key)
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(t.app.store.get_user("big").await.unwrap().is_none());
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="payload_too_large"}"#)
            .await,
        2.0
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="unsupported_media_type"}"#)
            .await,
        3.0
    );
}

fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(chunks)
}

async fn disabled_users_get_403_and_nothing_changes(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    t.tokens(json!({"userId": "d", "name": "Before"})).await;
    t.app.actions().disable("d", now()).await.unwrap();
    let (s, b) = t.tokens(json!({"userId": "d", "name": "After"})).await;
    assert_eq!(s, 403);
    assert_eq!(b["code"], "user_disabled");
    assert_eq!(
        t.app
            .store
            .get_user("d")
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Before")
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="user_disabled"}"#)
            .await,
        1.0
    );
    t.app.actions().enable("d", now()).await.unwrap();
    assert_eq!(
        t.tokens(json!({"userId": "d", "name": "After"})).await.0,
        200
    );
}

async fn tokens_minted_after_a_revocation_are_not_revoked(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    t.mint("r").await;
    let valid_after = now() + 1;
    t.app
        .actions()
        .revoke_user_tokens("r", Some(valid_after - 1), now())
        .await
        .unwrap();
    let b = t.mint("r").await;
    let (_, c) = verify_hs256(b["wsToken"].as_str().unwrap(), &t.ws_key());
    assert!(c["iat"].as_i64().unwrap() >= valid_after);
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

async fn a_rejected_request_does_not_even_record_key_use(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let key = t.app.store.create_api_key("quiet", now()).await.unwrap();
    assert_eq!(t.tokens_with_key(&key, json!({"userId": ""})).await.0, 400);
    let listed = t.app.store.list_api_keys().await.unwrap();
    let quiet = listed.iter().find(|k| k.name == "quiet").unwrap();
    assert_eq!(
        quiet.last_used_at, None,
        "a rejected request writes nothing"
    );
    assert_eq!(
        t.tokens_with_key(&key, json!({"userId": "ok"})).await.0,
        200
    );
    let listed = t.app.store.list_api_keys().await.unwrap();
    assert!(listed
        .iter()
        .find(|k| k.name == "quiet")
        .unwrap()
        .last_used_at
        .is_some());
}

#[tokio::test]
async fn a_database_from_schema_1_is_migrated_in_place_and_keeps_every_row() {
    // Schema 1 as the first release created it: users on a rowid table with a text key.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(schema_1_db(
        &dir,
        "INSERT INTO users VALUES ('old-1', 'Ada', NULL, '{\"team\":\"a\"}', 0, 17, 3, 100, 200);
         INSERT INTO users VALUES ('old-2', NULL, 'https://i/b.png', NULL, 1, 0, 1, 101, 101);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
           INSERT INTO users (id, name, image, custom, created_at, updated_at)
           SELECT 'bulk-' || i, 'Bulk', 'https://example.com/a/' || i || '.png', '{\"t\":1}', 1, 1 FROM n;",
    ));
    let t = TestApp::start_in(&dir, |_| {}).await;
    let a = t.app.store.get_user("old-1").await.unwrap().unwrap();
    assert_eq!(
        (a.name.as_deref(), a.image.as_deref(), a.custom.as_deref()),
        (Some("Ada"), None, Some(r#"{"team":"a"}"#))
    );
    assert_eq!(
        (a.disabled, a.tokens_valid_after, a.created_at, a.updated_at),
        (false, 17, 100, 200)
    );
    let b = t.app.store.get_user("old-2").await.unwrap().unwrap();
    assert!(b.disabled, "a disabled user stays disabled");
    assert_eq!(b.image.as_deref(), Some("https://i/b.png"));
    // The migrated table serves upserts: an update, and a new user.
    let (s, body) = t
        .tokens(json!({"userId": "old-1", "image": "https://i/a.png"}))
        .await;
    assert_eq!((s, body["user"]["name"].clone()), (200, json!("Ada")));
    assert_eq!(t.tokens(json!({"userId": "new-1"})).await.0, 200);
    assert_eq!(t.tokens(json!({"userId": "old-2"})).await.0, 403);

    let c = rusqlite::Connection::open(dir.join("chatsdk-auth.db")).unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, 5,
        "every schema step applied, the audit table included"
    );
    let sql: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'users'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    let n: i64 = c
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5004, "5,000 bulk, old-1, old-2, kept");
    // The rebuild's copy does not stay behind in the WAL file.
    let wal = std::fs::metadata(dir.join("chatsdk-auth.db-wal")).map_or(0, |m| m.len());
    assert!(wal < 64 * 1024, "WAL after migration: {wal} bytes");
}

/// Starts the service's setup on `dir` and returns its error message.
async fn prepare_error(dir: &std::path::Path) -> String {
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.storage.data_dir = dir.to_string_lossy().into_owned();
    match start_app(raw.validate().unwrap()).await {
        Ok(_) => panic!("setup succeeded on {}", dir.display()),
        Err(e) => chatsdk_auth::error_chain::Chain(&e).to_string(),
    }
}

/// A schema-1 database file in `dir`, plus `extra` SQL.
fn schema_1_db(dir: &std::path::Path, extra: &str) -> rusqlite::Connection {
    std::fs::create_dir_all(dir).unwrap();
    let c = rusqlite::Connection::open(dir.join("chatsdk-auth.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE users (id TEXT PRIMARY KEY NOT NULL, name TEXT, image TEXT, custom TEXT,
           disabled INTEGER NOT NULL DEFAULT 0, tokens_valid_after INTEGER NOT NULL DEFAULT 0,
           revision INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
         CREATE TABLE api_keys (name TEXT PRIMARY KEY NOT NULL, prefix TEXT NOT NULL,
           hash BLOB NOT NULL UNIQUE, created_at INTEGER NOT NULL, last_used_at INTEGER, revoked_at INTEGER);
         INSERT INTO users (id, name, created_at, updated_at) VALUES ('kept', 'Ada', 1, 1);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    c.execute_batch(extra).unwrap();
    c
}

#[tokio::test]
async fn the_users_rebuild_refuses_a_database_with_objects_it_did_not_create() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = schema_1_db(
        &dir,
        "CREATE INDEX users_by_name ON users(name); CREATE VIEW named AS SELECT id FROM users;",
    );
    let msg = prepare_error(&dir).await;
    assert!(
        msg.contains("cannot upgrade the SQLite schema to version 2"),
        "{msg}"
    );
    assert!(
        msg.contains("index users_by_name") && msg.contains("view named"),
        "{msg}"
    );
    // Nothing changed: still schema 1, the operator's objects and the row intact.
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let n: i64 = c
        .query_row("SELECT count(*) FROM named WHERE id = 'kept'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = schema_1_db(&dir, "PRAGMA user_version = 99;");
    let msg = prepare_error(&dir).await;
    assert!(
        msg.contains("schema version 99 is newer than this binary"),
        "{msg}"
    );
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99, "left as it was");
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
