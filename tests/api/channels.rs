//! Channel rules end to end: `POST /tokens/subscription` (every answer and every refusal), the
//! rules deciding the subscribe and sub_refresh proxies as a user's `custom` changes, and
//! subscription tokens checked against the generated Centrifugo config field by field
//! (the subscription JWT of https://centrifugal.dev/docs/server/channel_token_auth, the
//! `client.subscription_token` section and the channel proxies of
//! https://centrifugal.dev/docs/server/proxy).
//! Every token is verified with the HMAC in helpers.rs, not with the signer's library.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{now, session_body, try_verify_hs256, verify_hs256, TestApp};

/// The issue's example rules, plus a private room per `custom.rooms` entry.
fn rules() -> Vec<String> {
    [
        "personal:#{userId}",
        "org:#{custom.organizationId}:*",
        "room:#{custom.rooms}",
        "$room:#{custom.rooms}",
    ]
    .map(String::from)
    .to_vec()
}

/// The seed's own `custom` example, with rooms.
fn seed_custom() -> Value {
    json!({"organizationId": "org-456", "role": "admin", "tenantId": "tenant-789", "rooms": ["general", "random"]})
}

async fn app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.centrifugo.channel_rules = rules();
        c.tokens.ws_audience = "centrifugo".into();
        c.tokens.ws_issuer = "chatsdk-auth".into();
        c.tokens.subscription_expire_at_seconds = 600;
        c.centrifugo.subscription_refresh_interval_seconds = 300;
        // Listening on port 0; the generated config names the sidecar's public address.
        c.centrifugo.sidecar_url = "http://127.0.0.1:8081".into();
    })
    .await
}

async fn create_user(t: &TestApp, id: &str, custom: Value) {
    let (s, b) = t
        .tokens(json!({"userId": id, "name": "Ada", "image": "https://cdn.example/ada.png", "custom": custom}))
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn allowed_channels_get_one_subscription_token_each_signed_with_the_subscription_key() {
    let t = app().await;
    create_user(&t, "user-123", seed_custom()).await;
    let channels = [
        "personal:user-123",
        "org:org-456:general",
        "room:general",
        "$room:random",
    ];
    let before = now();
    let (s, b) = t
        .subscription_tokens(json!({"userId": "user-123", "channels": channels}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b.as_object().unwrap().len(), 2, "tokens and expiresIn: {b}");
    assert_eq!(b["expiresIn"], 3600);
    let tokens = b["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), channels.len());
    let mut jtis = BTreeSet::new();
    for (entry, channel) in tokens.iter().zip(channels) {
        assert_eq!(
            entry["channel"], channel,
            "answers keep the request's order"
        );
        let token = entry["token"].as_str().unwrap();
        let (header, c) = verify_hs256(token, &t.sub_key());
        assert_eq!(header["alg"], "HS256");
        let keys: BTreeSet<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "sub",
                "channel",
                "iat",
                "exp",
                "jti",
                "info",
                "expire_at",
                "aud",
                "iss"
            ]),
            "subscription JWT claims only (never nbf, client or override): {c}"
        );
        assert_eq!(c["sub"], "user-123", "sub is the connection's user");
        assert_eq!(c["channel"], channel);
        let iat = c["iat"].as_i64().unwrap();
        assert!(iat >= before && iat <= now());
        assert_eq!(c["exp"].as_i64().unwrap(), iat + 3600);
        assert_eq!(c["expire_at"].as_i64().unwrap(), iat + 600);
        assert_eq!(
            c["info"],
            json!({"name": "Ada", "image": "https://cdn.example/ada.png"})
        );
        assert_eq!(
            (c["aud"].as_str(), c["iss"].as_str()),
            (Some("centrifugo"), Some("chatsdk-auth"))
        );
        let jti = c["jti"].as_str().unwrap();
        assert!(jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(jtis.insert(jti.to_string()), "jti is unique");
        // Neither of the other keys verifies it: a subscription token is nothing else.
        assert!(try_verify_hs256(token, &t.ws_key()).is_none());
        assert!(try_verify_hs256(token, &t.rest_key()).is_none());
    }
    // The single-channel form.
    let (s, b) = t
        .subscription_tokens(json!({"userId": "user-123", "channel": "room:general"}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(b["tokens"][0]["channel"], "room:general");
    assert_eq!(
        t.metric(r#"chatsdk_auth_tokens_issued_total{kind="subscription"}"#)
            .await,
        5.0
    );
}

#[tokio::test]
async fn without_expire_at_configured_the_claim_is_absent() {
    let t = TestApp::spawn().await;
    create_user(&t, "u", json!({})).await;
    let (s, b) = t
        .subscription_tokens(json!({"userId": "u", "channel": "chat:lobby"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, c) = verify_hs256(b["tokens"][0]["token"].as_str().unwrap(), &t.sub_key());
    assert!(c.get("expire_at").is_none() && c.get("aud").is_none() && c.get("nbf").is_none());
    assert!(c["exp"].as_i64().unwrap() > now());
}

#[tokio::test]
async fn every_refusal_has_its_status_and_code_and_writes_nothing() {
    let t = app().await;
    create_user(&t, "user-123", seed_custom()).await;
    create_user(&t, "off", seed_custom()).await;
    t.app.actions().disable("off", now()).await.unwrap();
    // A second key, never used successfully, so its last_used_at shows any write.
    let key = t
        .app
        .store
        .create_api_key(
            "refusals",
            &t.app.config.app.id,
            now(),
            &crate::helpers::test_event("api_key.created", "refusals"),
        )
        .await
        .unwrap();
    let before_user = t.app.store.get_user("user-123").await.unwrap();
    let long = format!("room:{}", "x".repeat(251));
    let many: Vec<String> = (0..101).map(|i| format!("room:{i}")).collect();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "unknown user",
            json!({"userId": "ghost", "channel": "personal:ghost"}),
            404,
            "user_unknown",
        ),
        (
            "disabled user",
            json!({"userId": "off", "channel": "room:general"}),
            403,
            "user_disabled",
        ),
        (
            "another user's channel",
            json!({"userId": "user-123", "channel": "personal:user-9"}),
            403,
            "channel_forbidden",
        ),
        (
            "other org",
            json!({"userId": "user-123", "channel": "org:org-999:general"}),
            403,
            "channel_forbidden",
        ),
        (
            "a room not in custom",
            json!({"userId": "user-123", "channels": ["room:general", "room:secret", "room:vip"]}),
            403,
            "channel_forbidden",
        ),
        (
            "public rule, private channel",
            json!({"userId": "user-123", "channel": "$personal:user-123"}),
            403,
            "channel_forbidden",
        ),
        (
            "over 255 bytes",
            json!({"userId": "user-123", "channel": long}),
            400,
            "invalid_channel",
        ),
        (
            "control character",
            json!({"userId": "user-123", "channel": "room:gen\u{1}eral"}),
            400,
            "invalid_channel",
        ),
        (
            "impossible namespace",
            json!({"userId": "user-123", "channel": "r m:general"}),
            400,
            "invalid_channel",
        ),
        (
            "empty channel",
            json!({"userId": "user-123", "channel": ""}),
            400,
            "invalid_channel",
        ),
        (
            "not a string",
            json!({"userId": "user-123", "channels": ["room:general", 7]}),
            400,
            "invalid_channel",
        ),
        (
            "empty list",
            json!({"userId": "user-123", "channels": []}),
            400,
            "invalid_channels",
        ),
        (
            "101 channels",
            json!({"userId": "user-123", "channels": many}),
            400,
            "invalid_channels",
        ),
        (
            "no channel",
            json!({"userId": "user-123"}),
            400,
            "invalid_channels",
        ),
        (
            "both forms",
            json!({"userId": "user-123", "channel": "room:general", "channels": ["room:random"]}),
            400,
            "invalid_channels",
        ),
        // The body is judged before the store: a bad channel for an unknown user is a 400.
        (
            "bad channel, unknown user",
            json!({"userId": "ghost", "channel": ""}),
            400,
            "invalid_channel",
        ),
        (
            "no user id",
            json!({"channel": "room:general"}),
            400,
            "invalid_user_id",
        ),
    ];
    for (label, body, status, code) in &cases {
        let (s, b) = t.subscription_tokens_with_key(&key, body.clone()).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (*status, Some(*code)),
            "{label}: {b}"
        );
        assert!(
            b["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{label}: {b}"
        );
        assert_eq!(
            b.as_object().unwrap().len(),
            2,
            "{label}: the error envelope only"
        );
    }
    // The refusal names the first refused channel, in the request's order.
    let (_, b) = t
        .subscription_tokens_with_key(
            &key,
            json!({"userId": "user-123", "channels": ["room:general", "room:secret", "room:vip"]}),
        )
        .await;
    let msg = b["error"].as_str().unwrap();
    assert!(
        msg.contains("\"room:secret\"") && !msg.contains("room:vip"),
        "{msg}"
    );
    let (s, b) = t
        .subscription_tokens_with_key(
            "chatsdk_wrong",
            json!({"userId": "user-123", "channel": "room:general"}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (401, Some("invalid_api_key")));

    // Nothing was written: the user is untouched, the key never marked used, nothing minted.
    assert_eq!(t.app.store.get_user("user-123").await.unwrap(), before_user);
    let used = |keys: Vec<chatsdk_auth::store::ApiKeyInfo>| {
        keys.into_iter()
            .find(|k| k.name == "refusals")
            .unwrap()
            .last_used_at
    };
    assert_eq!(used(t.app.store.list_api_keys().await.unwrap()), None);
    assert_eq!(
        t.metric(r#"chatsdk_auth_tokens_issued_total{kind="subscription"}"#)
            .await,
        0.0
    );
    let rejected = |reason: &str| {
        format!(r#"chatsdk_auth_subscription_token_requests_rejected_total{{reason="{reason}"}}"#)
    };
    for (reason, n) in [
        ("user_unknown", 1.0),
        ("user_disabled", 1.0),
        ("channel_forbidden", 5.0),
        ("invalid_request", 11.0),
        ("invalid_api_key", 1.0),
    ] {
        assert_eq!(t.metric(&rejected(reason)).await, n, "{reason}");
    }
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="invalid_request"}"#)
            .await,
        0.0,
        "POST /tokens refusals are counted apart"
    );
    // Success then records the key's use.
    let (s, _) = t
        .subscription_tokens_with_key(
            &key,
            json!({"userId": "user-123", "channel": "room:general"}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(used(t.app.store.list_api_keys().await.unwrap()).is_some());
}

#[tokio::test]
async fn the_proxies_follow_the_rules_and_a_changed_custom_loses_the_channel_at_sub_refresh() {
    let t = app().await;
    create_user(&t, "user-123", seed_custom()).await;
    let meta = json!({"iat": now()});
    let body = |ch: &str| session_body("user-123", Some(ch), Some(meta.clone()));
    let denied = json!({"error": {"code": 403, "message": "permission denied"}});
    let expired = json!({"result": {"expired": true}});

    for ch in [
        "personal:user-123",
        "org:org-456:general",
        "room:general",
        "chat:lobby",
    ] {
        let (s, r) = t.proxy("/centrifugo/subscribe", &body(ch), &[]).await;
        assert_eq!(s, 200, "{ch}");
        let at = r["result"]["expire_at"].as_i64().unwrap_or(0);
        assert!(at > now() + 290 && at <= now() + 300, "{ch}: {r}");
        let (_, r) = t.proxy("/centrifugo/sub_refresh", &body(ch), &[]).await;
        assert!(
            r["result"]["expire_at"].as_i64().unwrap() > now() + 290,
            "{ch}: {r}"
        );
    }
    for ch in [
        "personal:user-9",
        "org:org-999:general",
        "org:org-456:",
        "room:secret",
        "room:org-456",
    ] {
        assert_eq!(
            t.proxy("/centrifugo/subscribe", &body(ch), &[]).await.1,
            denied,
            "{ch}"
        );
        assert_eq!(
            t.proxy("/centrifugo/sub_refresh", &body(ch), &[]).await.1,
            expired,
            "{ch}"
        );
    }

    // The backend moves the user to another organisation and out of "general".
    let (s, _) = t
        .tokens(json!({"userId": "user-123", "custom": {"organizationId": "org-999", "rooms": ["random"]}}))
        .await;
    assert_eq!(s, 200);
    for ch in ["org:org-456:general", "room:general"] {
        assert_eq!(
            t.proxy("/centrifugo/sub_refresh", &body(ch), &[]).await.1,
            expired,
            "{ch} is lost at the next sub_refresh"
        );
        assert_eq!(
            t.proxy("/centrifugo/subscribe", &body(ch), &[]).await.1,
            denied,
            "{ch}"
        );
    }
    for ch in ["org:org-999:general", "room:random", "personal:user-123"] {
        let (_, r) = t.proxy("/centrifugo/sub_refresh", &body(ch), &[]).await;
        assert!(r["result"]["expire_at"].is_i64(), "{ch}: {r}");
    }
    let (s, b) = t
        .subscription_tokens(json!({"userId": "user-123", "channel": "$room:general"}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("channel_forbidden")),
        "the endpoint agrees"
    );

    // Clearing custom leaves only the rules that do not read it.
    t.tokens(json!({"userId": "user-123", "custom": null}))
        .await;
    assert_eq!(
        t.proxy("/centrifugo/sub_refresh", &body("room:random"), &[])
            .await
            .1,
        expired
    );
    let (_, r) = t
        .proxy("/centrifugo/sub_refresh", &body("personal:user-123"), &[])
        .await;
    assert!(r["result"]["expire_at"].is_i64(), "{r}");

    assert_eq!(t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="subscribe",outcome="rejected",reason="channel_forbidden"}"#).await, 7.0);
    assert_eq!(t.metric(r#"chatsdk_auth_proxy_decisions_total{callback="sub_refresh",outcome="rejected",reason="channel_forbidden"}"#).await, 8.0);
}

/// What Centrifugo checks of a subscription token
/// (https://centrifugal.dev/docs/server/channel_token_auth):
/// signature with `client.subscription_token.hmac_secret_key` (no other key once `enabled`),
/// exact `aud`/`iss` when configured, `sub` equal to the connection's user, a non-empty
/// `channel` equal to the subscribed one whose namespace is declared, `exp` in the future with
/// no leeway, and no `nbf` in the future.
fn centrifugo_accepts(cfg: &Value, token: &str, user: &str, channel: &str) -> Result<(), String> {
    let st = &cfg["client"]["subscription_token"];
    if st["enabled"] != true {
        return Err("client.subscription_token is not enabled".into());
    }
    let key = st["hmac_secret_key"]
        .as_str()
        .ok_or("no subscription key")?;
    let (_, c) = try_verify_hs256(token, key).ok_or("bad signature (103)")?;
    for claim in ["audience", "issuer"] {
        if let Some(want) = st.get(claim) {
            let name = if claim == "audience" { "aud" } else { "iss" };
            if &c[name] != want {
                return Err(format!("{name} mismatch (103)"));
            }
        }
    }
    if c["sub"] != user {
        return Err("sub is not the connection's user (3500)".into());
    }
    if c["channel"].as_str().unwrap_or("").is_empty() {
        return Err("no channel claim (103)".into());
    }
    if c["channel"] != channel {
        return Err("channel mismatch (3500)".into());
    }
    if c["exp"].as_i64().is_none_or(|e| e <= now()) {
        return Err("expired (109)".into());
    }
    if c.get("nbf")
        .is_some_and(|n| n.as_i64().is_none_or(|n| n >= now()))
    {
        return Err("nbf (109)".into());
    }
    let trimmed = channel.strip_prefix('$').unwrap_or(channel);
    if let Some((ns, _)) = trimmed.split_once(':') {
        let declared = cfg["channel"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == ns);
        if !declared {
            return Err(format!("namespace {ns} unknown (102)"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_generated_config_accepts_subscription_tokens_with_zero_hand_edits() {
    use chatsdk_auth::centrifugo::config::{generate, Mode, SecretValues, Version, WsKey};
    let t = app().await;
    create_user(&t, "user-123", seed_custom()).await;
    let (hmac, proxy_secret, sub_key) = (t.ws_key(), t.proxy_secret(), t.sub_key());
    let values = SecretValues {
        ws_key: WsKey::Hmac {
            current: &hmac,
            previous: None,
        },
        proxy_secret: &proxy_secret,
        subscription_key: &sub_key,
        api_key: "unused-here",
    };
    let channels = [
        "org:org-456:general",
        "personal:user-123",
        "room:general",
        "$room:random",
    ];
    let (_, b) = t
        .subscription_tokens(json!({"userId": "user-123", "channels": channels}))
        .await;
    for mode in [Mode::Jwt, Mode::Proxy] {
        let cfg = generate(&t.app.config, &values, mode, Version::V6);
        // The separate section, its own key, the same aud/iss as the tokens.
        let st = &cfg["client"]["subscription_token"];
        assert_eq!(st["enabled"], true, "{mode:?}");
        assert_eq!(st["hmac_secret_key"], sub_key.as_str());
        assert_eq!(st["audience"], "centrifugo");
        assert_eq!(st["issuer"], "chatsdk-auth");
        if mode == Mode::Jwt {
            assert_ne!(
                cfg["client"]["token"]["hmac_secret_key"], st["hmac_secret_key"],
                "connection and subscription keys differ"
            );
        }
        for (entry, channel) in b["tokens"].as_array().unwrap().iter().zip(channels) {
            let token = entry["token"].as_str().unwrap();
            assert_eq!(
                centrifugo_accepts(&cfg, token, "user-123", channel),
                Ok(()),
                "{channel}"
            );
            assert!(centrifugo_accepts(&cfg, token, "user-9", channel).is_err());
            assert!(centrifugo_accepts(&cfg, token, "user-123", "room:other").is_err());
        }
        // A namespace per rule prefix; the proxy decides where a public rule lives.
        let ns = cfg["channel"]["namespaces"].as_array().unwrap();
        for name in ["chat", "org", "personal", "room"] {
            let n = ns
                .iter()
                .find(|n| n["name"] == name)
                .unwrap_or_else(|| panic!("{name}"));
            assert_eq!(n["subscribe_proxy_enabled"], true, "{name}");
            assert_eq!(n["sub_refresh_proxy_enabled"], true, "{name}");
        }
        let sub = &cfg["channel"]["proxy"]["subscribe"];
        assert_eq!(
            sub["endpoint"],
            "http://127.0.0.1:8081/centrifugo/subscribe"
        );
        assert_eq!(sub["include_connection_meta"], true);
        assert_eq!(sub["timeout"], "1s");
        assert_eq!(
            sub["http"]["static_headers"]["x-chatsdk-proxy-secret"],
            proxy_secret.as_str()
        );
        let sr = &cfg["channel"]["proxy"]["sub_refresh"];
        assert_eq!(
            sr["endpoint"],
            "http://127.0.0.1:8081/centrifugo/sub_refresh"
        );
        assert_eq!(sr["include_connection_meta"], true);
        // The default private prefix `$` is left to Centrifugo.
        assert!(cfg["channel"].get("private_prefix").is_none());
    }
    // A wsToken is no subscription token: the subscription key does not verify it.
    let ws = t.mint("user-123").await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    let cfg = generate(&t.app.config, &values, Mode::Jwt, Version::V6);
    assert!(centrifugo_accepts(&cfg, &ws, "user-123", "room:general").is_err());
    // v5 flat keys carry the same.
    let v5 = generate(&t.app.config, &values, Mode::Jwt, Version::V5);
    assert_eq!(v5["separate_subscription_token_config"], true);
    assert_eq!(v5["subscription_token_hmac_secret_key"], sub_key.as_str());
    assert_eq!(v5["subscription_token_audience"], "centrifugo");
    assert_eq!(v5["subscription_token_issuer"], "chatsdk-auth");
}
