//! `POST /tokens` refusals, run on SQLite and on PostgreSQL alike: invalid requests, API keys
//! (bad, several, revoked), media type and size, disabled and revoked users; a refused request
//! writes nothing.

use serde_json::{json, Value};

use crate::helpers::{keys, now, on_both_backends, verify_hs256, Backend, TestApp};

on_both_backends!(
    invalid_requests_are_400_naming_the_field_and_write_nothing,
    a_valid_update_after_a_rejected_one_keeps_the_old_profile,
    bad_api_keys_are_401_with_the_seed_wording,
    several_keys_rotate_and_a_revoked_key_stops_working_at_once,
    wrong_content_type_is_415_and_large_bodies_are_413,
    disabled_users_get_403_and_nothing_changes,
    tokens_minted_after_a_revocation_are_not_revoked,
    a_rejected_request_does_not_even_record_key_use,
);

async fn invalid_requests_are_400_naming_the_field_and_write_nothing(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let long = "x".repeat(256);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "invalid_user_id"),
        (json!({"name": "Alice"}), "invalid_user_id"),
        (json!({"userId": ""}), "invalid_user_id"),
        (json!({"userId": "   "}), "invalid_user_id"),
        (json!({"userId": 12.5}), "invalid_user_id"),
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
    let second = t
        .app
        .store
        .create_api_key(
            "second",
            &t.app.config.app.id,
            now(),
            &crate::helpers::test_event("api_key.created", "second"),
        )
        .await
        .unwrap();
    assert!(second.starts_with("chatsdk_") && second.len() > 40);
    assert!(
        t.app
            .store
            .create_api_key(
                "second",
                &t.app.config.app.id,
                now(),
                &crate::helpers::test_event("api_key.created", "second")
            )
            .await
            .is_err(),
        "names are unique"
    );
    assert_eq!(
        t.tokens_with_key(&second, json!({"userId": "u"})).await.0,
        200
    );
    assert_eq!(t.tokens(json!({"userId": "u"})).await.0, 200);
    assert!(t
        .app
        .store
        .revoke_api_key(
            "test",
            now(),
            &crate::helpers::test_event("api_key.revoked", "test")
        )
        .await
        .unwrap());
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

async fn a_rejected_request_does_not_even_record_key_use(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let key = t
        .app
        .store
        .create_api_key(
            "quiet",
            &t.app.config.app.id,
            now(),
            &crate::helpers::test_event("api_key.created", "quiet"),
        )
        .await
        .unwrap();
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
