//! Contract tests built field by field from Centrifugo's proxy and authentication docs
//! (https://centrifugal.dev/docs/server/proxy, https://centrifugal.dev/docs/server/authentication):
//! the exact bodies Centrifugo sends, and the exact decisions it expects back.

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{connect_body, now, session_body, sign_hs256, verify_hs256, TestApp};

async fn connect(t: &TestApp, extra: Value) -> Value {
    let (s, b) = t
        .proxy("/centrifugo/connect", &connect_body(extra), &[])
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

fn disconnect(code: u64, reason: &str) -> Value {
    json!({"disconnect": {"code": code, "reason": reason}})
}

#[tokio::test]
async fn connect_with_data_token_answers_result_with_fresh_user_info() {
    let t = TestApp::spawn_with(|c| c.centrifugo.user_channels = vec!["personal:#{userId}".into()])
        .await;
    let b = t.mint("user-42").await;
    let ws = b["wsToken"].as_str().unwrap();
    let (_, claims) = verify_hs256(ws, &t.ws_key());
    // The profile changes after the token was minted: connect must answer from the store.
    t.tokens(json!({"userId": "user-42", "name": "Ada L."}))
        .await;
    let r = connect(&t, json!({"name": "js", "data": {"token": ws}})).await;
    let res = &r["result"];
    assert_eq!(
        r.as_object().unwrap().len(),
        1,
        "exactly one of result/error/disconnect"
    );
    assert_eq!(res["user"], "user-42");
    let exp_at = res["expire_at"].as_i64().unwrap();
    assert!(exp_at > now() && exp_at <= claims["exp"].as_i64().unwrap());
    assert!(exp_at <= now() + 3600, "bounded by the refresh interval");
    assert_eq!(
        res["info"],
        json!({"name": "Ada L.", "image": "https://cdn.example/ada.png"})
    );
    assert_eq!(
        res["meta"],
        json!({"iat": claims["iat"], "app": "default", "custom": {"tenant": "acme"}})
    );
    assert_eq!(res["channels"], json!(["personal:user-42"]));
    assert_eq!(t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="connect",outcome="accepted",reason="none"}"#).await, 1.0);
}

#[tokio::test]
async fn connect_reads_b64data_bearer_header_and_ignores_optional_fields() {
    let t = TestApp::spawn().await;
    let ws = t.mint("u").await["wsToken"].as_str().unwrap().to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(json!({"token": ws}).to_string());
    let r = connect(&t, json!({"encoding": "binary", "b64data": b64})).await;
    assert_eq!(r["result"]["user"], "u");
    // Forwarded Authorization header (http_headers / emulated_headers), no data at all.
    let bearer = format!("Bearer {ws}");
    let (s, r) = t
        .proxy(
            "/centrifugo/connect",
            &connect_body(json!({"name": "js", "version": "5.8.0", "channels": ["chat:a"]})),
            &[("Authorization", &bearer)],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["result"]["user"], "u");
    assert!(
        r["result"].get("channels").is_none(),
        "client-requested channels are not granted"
    );
    // The header wins over data carrying another token.
    let r = t
        .proxy(
            "/centrifugo/connect",
            &connect_body(json!({"data": {"token": "garbage"}})),
            &[("Authorization", &bearer)],
        )
        .await
        .1;
    assert_eq!(r["result"]["user"], "u");
    // Data that is not an object with a token: no credentials.
    let r = connect(&t, json!({"data": {"locale": "en"}})).await;
    assert_eq!(r, disconnect(4505, "no credentials"));
    let r = connect(&t, json!({})).await;
    assert_eq!(r, disconnect(4505, "no credentials"));
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_ask_the_client_to_fetch_a_new_one() {
    let t = TestApp::spawn().await;
    t.mint("u").await;
    let key = t.ws_key();
    let expired = sign_hs256(
        &json!({"sub": "u", "iat": now() - 7200, "exp": now() - 1}),
        &key,
    );
    let expected = json!({"error": {"code": 1109, "message": "token expired", "temporary": true}});
    assert_eq!(
        connect(&t, json!({"data": {"token": expired}})).await,
        expected
    );
    let exp_now = sign_hs256(&json!({"sub": "u", "iat": now() - 10, "exp": now()}), &key);
    assert_eq!(
        connect(&t, json!({"data": {"token": exp_now}})).await,
        expected,
        "no leeway: exp must be > now"
    );
    let nbf = sign_hs256(
        &json!({"sub": "u", "iat": now(), "exp": now() + 600, "nbf": now() + 60}),
        &key,
    );
    assert_eq!(
        connect(&t, json!({"data": {"token": nbf}})).await,
        expected,
        "future nbf counts as expired (§1.3)"
    );
    assert_eq!(t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="connect",outcome="rejected",reason="token_expired"}"#).await, 3.0);
}

#[tokio::test]
async fn invalid_tokens_are_terminal_disconnects() {
    let t = TestApp::spawn_with(|c| c.tokens.ws_audience = "centrifugo".into()).await;
    let b = t.mint("u").await;
    let ws = b["wsToken"].as_str().unwrap();
    let rest = b["token"].as_str().unwrap();
    let key = t.ws_key();
    let (h, p, s) = {
        let mut it = ws.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let tampered = format!(
        "{h}.{p}.{}{}",
        &s[..s.len() - 4],
        if s.ends_with("AAAA") { "BBBB" } else { "AAAA" }
    );
    let cases = [
        ("REST token (other key)", rest.to_string()),
        ("tampered signature", tampered),
        ("not a JWT", "not-a-jwt".to_string()),
        (
            "wrong audience",
            sign_hs256(
                &json!({"sub": "u", "iat": now(), "exp": now() + 600, "aud": "other"}),
                &key,
            ),
        ),
        (
            "missing audience",
            sign_hs256(&json!({"sub": "u", "iat": now(), "exp": now() + 600}), &key),
        ),
        (
            "subscription token (channel claim)",
            sign_hs256(
                &json!({"sub": "u", "iat": now(), "exp": now() + 600, "aud": "centrifugo", "channel": "chat:x"}),
                &key,
            ),
        ),
        (
            "numeric sub",
            sign_hs256(
                &json!({"sub": 5, "iat": now(), "exp": now() + 600, "aud": "centrifugo"}),
                &key,
            ),
        ),
        (
            "expired and wrong key: invalid wins",
            sign_hs256(
                &json!({"sub": "u", "iat": now() - 99, "exp": now() - 9, "aud": "centrifugo"}),
                "x".repeat(40).as_str(),
            ),
        ),
    ];
    for (label, token) in cases {
        let r = connect(&t, json!({"data": {"token": token}})).await;
        assert_eq!(r, disconnect(4501, "invalid token"), "{label}");
    }
    // The freshly minted token itself is fine.
    assert_eq!(
        connect(&t, json!({"data": {"token": ws}})).await["result"]["user"],
        "u"
    );
}

#[tokio::test]
async fn user_state_decides_connect_unknown_disabled_revoked() {
    let t = TestApp::spawn().await;
    let key = t.ws_key();
    let ghost = sign_hs256(
        &json!({"sub": "ghost", "iat": now(), "exp": now() + 600}),
        &key,
    );
    assert_eq!(
        connect(&t, json!({"data": {"token": ghost}})).await,
        disconnect(4502, "unknown user")
    );

    let ws = t.mint("d").await["wsToken"].as_str().unwrap().to_string();
    t.app.actions().disable("d", now()).await.unwrap();
    assert_eq!(
        connect(&t, json!({"data": {"token": &ws}})).await,
        disconnect(4503, "user disabled")
    );
    t.app.actions().enable("d", now()).await.unwrap();
    assert!(connect(&t, json!({"data": {"token": &ws}}))
        .await
        .get("result")
        .is_some());

    let (_, c) = verify_hs256(&ws, &key);
    t.app
        .actions()
        .revoke_user_tokens("d", c["iat"].as_i64(), now())
        .await
        .unwrap();
    assert_eq!(
        connect(&t, json!({"data": {"token": &ws}})).await,
        disconnect(4504, "token revoked")
    );
    // A token minted after the revocation connects.
    let fresh = t.mint("d").await["wsToken"].as_str().unwrap().to_string();
    assert!(connect(&t, json!({"data": {"token": fresh}}))
        .await
        .get("result")
        .is_some());
}

#[tokio::test]
async fn proxy_calls_without_the_shared_secret_are_401_and_counted() {
    let t = TestApp::spawn().await;
    for path in [
        "/centrifugo/connect",
        "/centrifugo/refresh",
        "/centrifugo/subscribe",
        "/centrifugo/sub_refresh",
    ] {
        let r = t
            .client
            .post(t.url(path))
            .header("Content-Type", "application/json")
            .body(connect_body(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["code"], "invalid_proxy_secret");
        let r = t
            .client
            .post(t.url(path))
            .header("X-Chatsdk-Proxy-Secret", "wrong")
            .body(connect_body(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    assert_eq!(
        t.metric(r#"chatsdk_auth_proxy_unauthenticated_total{callback="connect"}"#)
            .await,
        2.0
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_proxy_unauthenticated_total{callback="sub_refresh"}"#)
            .await,
        2.0
    );
}

#[tokio::test]
async fn malformed_proxy_requests_are_400() {
    let t = TestApp::spawn().await;
    for (path, body) in [
        ("/centrifugo/connect", "{"),
        ("/centrifugo/connect", r#"{"transport":"websocket"}"#),
        ("/centrifugo/connect", r#"{"client":5}"#),
        ("/centrifugo/refresh", r#"{"client":"c"}"#),
        ("/centrifugo/subscribe", r#"{"client":"c","user":"u"}"#),
        ("/centrifugo/sub_refresh", "[]"),
    ] {
        let (s, b) = t.proxy(path, body, &[]).await;
        assert_eq!(s, 400, "{path} {body} -> {b}");
        assert_eq!(b["code"], "invalid_json");
    }
    assert_eq!(t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="connect",outcome="error",reason="bad_request"}"#).await, 3.0);
}

#[tokio::test]
async fn refresh_extends_active_users_and_expires_everyone_else() {
    let t = TestApp::spawn().await;
    let ws = t.mint("r").await["wsToken"].as_str().unwrap().to_string();
    let (_, c) = verify_hs256(&ws, &t.ws_key());
    let meta = json!({"iat": c["iat"]});
    let (s, r) = t
        .proxy(
            "/centrifugo/refresh",
            &session_body("r", None, Some(meta.clone())),
            &[],
        )
        .await;
    assert_eq!(s, 200);
    let at = r["result"]["expire_at"].as_i64().unwrap();
    assert!(at >= now() + 3590 && at <= now() + 3600, "{r}");
    assert_eq!(
        r["result"]["info"],
        json!({"name": "Ada", "image": "https://cdn.example/ada.png"})
    );
    assert!(r["result"].get("expired").is_none());
    // Without meta (include_connection_meta off) an active user is still extended.
    let (_, r) = t
        .proxy("/centrifugo/refresh", &session_body("r", None, None), &[])
        .await;
    assert!(r["result"]["expire_at"].as_i64().unwrap() > now());

    let expired = json!({"result": {"expired": true}});
    for user in ["", "nobody"] {
        assert_eq!(
            t.proxy("/centrifugo/refresh", &session_body(user, None, None), &[])
                .await
                .1,
            expired
        );
    }
    t.app
        .actions()
        .revoke_user_tokens("r", c["iat"].as_i64(), now())
        .await
        .unwrap();
    assert_eq!(
        t.proxy(
            "/centrifugo/refresh",
            &session_body("r", None, Some(meta.clone())),
            &[]
        )
        .await
        .1,
        expired
    );
    t.app.actions().disable("r", now()).await.unwrap();
    assert_eq!(
        t.proxy("/centrifugo/refresh", &session_body("r", None, None), &[])
            .await
            .1,
        expired
    );
    assert_eq!(t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="refresh",outcome="rejected",reason="user_disabled"}"#).await, 1.0);
    assert_eq!(t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="refresh",outcome="rejected",reason="token_revoked"}"#).await, 1.0);
}

#[tokio::test]
async fn subscribe_allows_own_and_pattern_channels_and_denies_explicitly() {
    let t = TestApp::spawn_with(|c| c.centrifugo.user_channels = vec!["personal:#{userId}".into()])
        .await;
    t.mint("s").await;
    let sub = |ch: &str| session_body("s", Some(ch), Some(json!({"iat": now()})));
    for ch in ["chat:room-7", "personal:s"] {
        let (s, r) = t.proxy("/centrifugo/subscribe", &sub(ch), &[]).await;
        assert_eq!(s, 200);
        assert_eq!(r, json!({"result": {}}), "{ch}");
    }
    let denied = json!({"error": {"code": 403, "message": "permission denied"}});
    for ch in ["personal:other", "chat:", "admin:x", "personal:s2"] {
        assert_eq!(
            t.proxy("/centrifugo/subscribe", &sub(ch), &[]).await.1,
            denied,
            "{ch}"
        );
    }
    let anon = session_body("", Some("chat:room-7"), None);
    assert_eq!(
        t.proxy("/centrifugo/subscribe", &anon, &[]).await.1,
        denied,
        "anonymous users are denied"
    );
    t.app.actions().disable("s", now()).await.unwrap();
    assert_eq!(
        t.proxy("/centrifugo/subscribe", &sub("chat:room-7"), &[])
            .await
            .1,
        disconnect(4503, "user disabled")
    );
}

#[tokio::test]
async fn sub_refresh_extends_or_expires_and_subscribe_sets_expiry_when_configured() {
    let t = TestApp::spawn_with(|c| c.centrifugo.subscription_refresh_interval_seconds = 600).await;
    t.mint("s").await;
    let body = session_body("s", Some("chat:room"), None);
    let (_, r) = t.proxy("/centrifugo/subscribe", &body, &[]).await;
    let at = r["result"]["expire_at"].as_i64().unwrap();
    assert!(at > now() + 590 && at <= now() + 600);
    let (s, r) = t.proxy("/centrifugo/sub_refresh", &body, &[]).await;
    assert_eq!(s, 200);
    assert!(r["result"]["expire_at"].as_i64().unwrap() > now() + 590);
    t.app.actions().disable("s", now()).await.unwrap();
    assert_eq!(
        t.proxy("/centrifugo/sub_refresh", &body, &[]).await.1,
        json!({"result": {"expired": true}})
    );
}

#[tokio::test]
async fn a_locked_store_is_503_and_writes_nothing() {
    let t = TestApp::spawn_with(|c| c.storage.busy_timeout_ms = 50).await;
    t.mint("u").await;
    // Another process holding the write lock past the busy timeout: the real failure a
    // long CLI transaction or a stuck writer produces (SQLITE_BUSY).
    let lock = rusqlite::Connection::open(t.dir.join("chatsdk-auth.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let (s, b) = t
        .tokens(json!({"userId": "u", "name": "During lock"}))
        .await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(
        b,
        json!({"error": "The token store is unavailable; retry shortly", "code": "store_unavailable"})
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="store_unavailable"}"#)
            .await,
        1.0
    );
    // WAL readers are not blocked by a writer: proxies keep answering from the store.
    let (s, _) = t
        .proxy("/centrifugo/refresh", &session_body("u", None, None), &[])
        .await;
    assert_eq!(s, 200);
    lock.execute_batch("COMMIT;").unwrap();
    drop(lock);
    assert_eq!(
        t.app
            .store
            .get_user("u")
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Ada")
    );
    assert_eq!(
        t.tokens(json!({"userId": "u"})).await.0,
        200,
        "recovers once the lock is gone"
    );
}

#[tokio::test]
async fn subscribe_and_sub_refresh_judge_revocation_and_channels() {
    let t = TestApp::spawn().await;
    let ws = t.mint("v").await["wsToken"].as_str().unwrap().to_string();
    let (_, c) = verify_hs256(&ws, &t.ws_key());
    let meta = json!({"iat": c["iat"]});
    let body = |ch: &str| session_body("v", Some(ch), Some(meta.clone()));
    assert_eq!(
        t.proxy("/centrifugo/sub_refresh", &body("admin:x"), &[])
            .await
            .1,
        json!({"result": {"expired": true}})
    );
    assert_eq!(
        t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="sub_refresh",outcome="rejected",reason="channel_forbidden"}"#).await,
        1.0
    );
    t.app
        .actions()
        .revoke_user_tokens("v", c["iat"].as_i64(), now())
        .await
        .unwrap();
    assert_eq!(
        t.proxy("/centrifugo/subscribe", &body("chat:room"), &[])
            .await
            .1,
        disconnect(4504, "token revoked")
    );
    assert_eq!(
        t.proxy("/centrifugo/sub_refresh", &body("chat:room"), &[])
            .await
            .1,
        json!({"result": {"expired": true}})
    );
    let unknown = session_body("nobody", Some("chat:room"), None);
    assert_eq!(
        t.proxy("/centrifugo/subscribe", &unknown, &[]).await.1,
        disconnect(4502, "unknown user")
    );
}

#[tokio::test]
async fn connect_expire_at_never_outlives_the_token_and_proxy_bodies_are_limited() {
    let t = TestApp::spawn_with(|c| c.tokens.ws_ttl_seconds = 120).await;
    let ws = t.mint("short").await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, c) = verify_hs256(&ws, &t.ws_key());
    let r = connect(&t, json!({"data": {"token": ws}})).await;
    assert_eq!(
        r["result"]["expire_at"], c["exp"],
        "ttl 120 s < refresh interval: the token's exp wins"
    );
    let big = connect_body(json!({"data": {"pad": "x".repeat(70 * 1024)}}));
    let (s, b) = t.proxy("/centrifugo/connect", &big, &[]).await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["code"], "payload_too_large");
}
