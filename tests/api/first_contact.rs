//! First contact with the data real backends send (Rails and Laravel user tables), on SQLite and on
//! PostgreSQL alike: integer user ids, blank fields, PHP's empty `custom`, and a revoked API key
//! that says so. The guide's four backends themselves run in tests/api/stacks.rs.

use serde_json::{json, Value};

use crate::helpers::{now, on_both_backends, verify_hs256, Backend, TestApp};

on_both_backends!(
    an_integer_user_id_is_the_user_of_its_decimal_text,
    integers_keep_every_digit,
    bad_user_ids_are_refused_and_write_nothing,
    blank_name_and_image_clear_the_stored_values,
    an_empty_custom_array_is_stored_as_an_empty_object,
    a_revoked_api_key_says_so_with_its_date,
);

/// POST /tokens with a raw body (so a number is sent exactly as written).
async fn post_raw(t: &TestApp, path: &str, key: &str, body: &str) -> (u16, Value) {
    let r = t
        .client
        .post(t.url(path))
        .header("X-API-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn an_integer_user_id_is_the_user_of_its_decimal_text(backend: Backend) {
    let t = TestApp::spawn_on_with(backend, |c| {
        c.centrifugo.channel_rules = vec!["personal:#{userId}".into()];
    })
    .await;
    let (s, b) = post_raw(&t, "/tokens", &t.key, r#"{"userId":7,"name":"Ada"}"#).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"]["id"], "7", "the id answers as a string");
    let ws = verify_hs256(b["wsToken"].as_str().unwrap(), &t.ws_key()).1;
    assert_eq!(ws["sub"], "7");
    let rest = verify_hs256(b["token"].as_str().unwrap(), &t.rest_key()).1;
    assert_eq!(rest["sub"], "7");

    // The string "7" is the same user: updated, not created again.
    let (s, b) = post_raw(&t, "/tokens", &t.key, r#"{"userId":"7","name":"Ada L."}"#).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["user"],
        json!({"id": "7", "name": "Ada L.", "image": null})
    );
    assert_eq!(t.user_rows("7").await, 1);
    let created = r#"chatsdk_auth_users_upserted_total{result="created"}"#;
    assert_eq!(t.metric(created).await, 1.0);

    // Negative integers are their text with the sign, another user.
    let (s, b) = post_raw(&t, "/tokens", &t.key, r#"{"userId":-7}"#).await;
    assert_eq!((s, &b["user"]["id"]), (200, &json!("-7")), "{b}");

    // POST /tokens/subscription reads userId by the same rule.
    let body = r#"{"userId":7,"channel":"personal:7"}"#;
    let (s, b) = post_raw(&t, "/tokens/subscription", &t.key, body).await;
    assert_eq!(s, 200, "{b}");
    let sub = verify_hs256(b["tokens"][0]["token"].as_str().unwrap(), &t.sub_key()).1;
    assert_eq!(
        (&sub["sub"], &sub["channel"]),
        (&json!("7"), &json!("personal:7"))
    );
}

async fn integers_keep_every_digit(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // 2^53 + 1 is where a float would round to 2^53; this one is far beyond.
    let big = "123456789012345678901234567890";
    let (s, b) = post_raw(&t, "/tokens", &t.key, &format!(r#"{{"userId":{big}}}"#)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"]["id"], big);
    assert_eq!(
        verify_hs256(b["wsToken"].as_str().unwrap(), &t.ws_key()).1["sub"],
        big
    );
    let (s, b) = post_raw(&t, "/tokens", &t.key, r#"{"userId":9007199254740993}"#).await;
    assert_eq!((s, &b["user"]["id"]), (200, &json!("9007199254740993")));
    assert_eq!(t.user_rows("9007199254740992").await, 0);
}

async fn bad_user_ids_are_refused_and_write_nothing(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let long = "9".repeat(300);
    for bad in ["1.5", "1e3", "-0", "true", "7.0", long.as_str()] {
        let (s, b) = post_raw(&t, "/tokens", &t.key, &format!(r#"{{"userId":{bad}}}"#)).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_user_id")),
            "{bad}"
        );
        let message = b["error"].as_str().unwrap();
        assert!(
            message.contains("string") && message.contains("integer"),
            "{bad}: the sentence says what is accepted: {message}"
        );
    }
    // `+7` is not JSON at all.
    let (s, b) = post_raw(&t, "/tokens", &t.key, r#"{"userId":+7}"#).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_json")));
    for id in ["1.5", "1", "1000", "-0", "0", "true", "7", "+7", &long] {
        assert_eq!(t.user_rows(id).await, 0, "{id}");
    }
    assert_eq!(
        t.metric(r#"chatsdk_auth_users_upserted_total{result="created"}"#)
            .await,
        0.0
    );
}

async fn blank_name_and_image_clear_the_stored_values(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let (s, _) = t
        .tokens(json!({"userId": "u1", "name": "Ada", "image": "https://cdn.example/a.png"}))
        .await;
    assert_eq!(s, 200);
    let (s, b) = t
        .tokens(json!({"userId": "u1", "name": "", "image": ""}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"], json!({"id": "u1", "name": null, "image": null}));
    let ws = verify_hs256(b["wsToken"].as_str().unwrap(), &t.ws_key()).1;
    assert!(ws.get("info").is_none_or(|i| i == &json!({})), "{ws}");
    let stored = t.app.store.get_user("u1").await.unwrap().unwrap();
    assert_eq!((stored.name, stored.image), (None, None));
    // A blank avatar on first contact: a user without an image.
    let (s, b) = t.tokens(json!({"userId": 8, "image": ""})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"]["image"], Value::Null);
}

async fn an_empty_custom_array_is_stored_as_an_empty_object(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    // What PHP's json_encode makes of `'custom' => []`.
    let (s, b) = post_raw(&t, "/tokens", &t.key, r#"{"userId":7,"custom":[]}"#).await;
    assert_eq!(s, 200, "{b}");
    let stored = t.app.store.get_user("7").await.unwrap().unwrap();
    assert_eq!(stored.custom.as_deref(), Some("{}"));
    // Any other array is still refused, and changes nothing.
    let (s, b) = post_raw(&t, "/tokens", &t.key, r#"{"userId":7,"custom":["a"]}"#).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_custom")));
    let stored = t.app.store.get_user("7").await.unwrap().unwrap();
    assert_eq!(stored.custom.as_deref(), Some("{}"));
}

async fn a_revoked_api_key_says_so_with_its_date(backend: Backend) {
    let t = TestApp::spawn_on_with(backend, |c| {
        c.limits.failed_auth_per_ip_per_minute = 4;
    })
    .await;
    let key = t
        .app
        .store
        .create_api_key(
            "old",
            &t.app.config.app.id,
            now(),
            &crate::helpers::test_event("api_key.created", "old"),
        )
        .await
        .unwrap();
    let (s, _) = t.tokens_with_key(&key, json!({"userId": "u"})).await;
    assert_eq!(s, 200);
    // 2026-12-06T15:00:00Z, shown as an HTTP date.
    assert!(t
        .app
        .store
        .revoke_api_key(
            "old",
            1_796_569_200,
            &crate::helpers::test_event("api_key.revoked", "old")
        )
        .await
        .unwrap());

    let (s, b) = t.tokens_with_key(&key, json!({"userId": "u"})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (401, Some("api_key_revoked")),
        "{b}"
    );
    let message = b["error"].as_str().unwrap();
    assert!(
        message.contains("revoked on Sun, 06 Dec 2026 15:00:00 GMT"),
        "{message}"
    );
    assert!(!message.contains(&key[8..]), "the key is never echoed");
    let (s, b) = t
        .subscription_tokens_with_key(&key, json!({"userId": "u", "channel": "chat:a"}))
        .await;
    assert_eq!((s, b["code"].as_str()), (401, Some("api_key_revoked")));
    let r = t
        .client
        .post(t.url("/introspect"))
        .header("X-API-Key", &key)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "api_key_revoked");

    // An unknown key is still only "invalid"; and the failed-auth limit (4 a minute) counted
    // the three revoked attempts above (on every route that takes a key) with this one.
    let (s, b) = t
        .tokens_with_key(
            "chatsdk_unknownunknownunknownunknownunknown",
            json!({"userId": "u"}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (401, Some("invalid_api_key")));
    let (s, b) = t.tokens_with_key(&key, json!({"userId": "u"})).await;
    assert_eq!((s, b["code"].as_str()), (429, Some("rate_limited")), "{b}");
    // The dashboard's reason for both is invalid_api_key.
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="invalid_api_key"}"#)
            .await,
        2.0
    );
}
