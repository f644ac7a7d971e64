//! Unit tests of the generated Centrifugo config.
use super::*;

fn cfg() -> Config {
    let mut raw = crate::config::RawConfig::default();
    raw.centrifugo.user_channels = vec!["personal:#{userId}".into()];
    raw.tokens.ws_audience = "centrifugo".into();
    raw.validate().unwrap()
}

const S: SecretValues<'static> = SecretValues {
    ws_key: WsKey::Hmac {
        current: "K",
        previous: None,
    },
    proxy_secret: "P",
    subscription_key: "SK",
    api_key: "A",
};

#[test]
fn server_api_key_and_unidirectional_codes_are_emitted() {
    for mode in [Mode::Jwt, Mode::Proxy] {
        let v = generate(&cfg(), &S, mode, Version::V6);
        assert_eq!(v["http_api"]["key"], "A");
        let t = &v["client"]["connect_code_to_unidirectional_disconnect"];
        assert_eq!(t["enabled"], true);
        let pairs: Vec<(u64, u64, &str)> = t["transforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["code"].as_u64().unwrap(),
                    x["to"]["code"].as_u64().unwrap(),
                    x["to"]["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                (1109, 4109, "token expired"),
                (4501, 4501, "invalid token"),
                (4504, 4504, "token revoked"),
                (4502, 4502, "unknown user"),
                (4503, 4503, "user disabled"),
                (4505, 4505, "no credentials"),
                (4506, 4506, "wrong application"),
            ]
        );
    }
    let v5 = generate(&cfg(), &S, Mode::Jwt, Version::V5);
    assert_eq!(v5["api_key"], "A");
}

#[test]
fn proxy_endpoints_default_to_the_listen_address() {
    let mut raw = crate::config::RawConfig::default();
    raw.server.listen = "0.0.0.0:9090".into();
    let v = generate(&raw.validate().unwrap(), &S, Mode::Proxy, Version::V6);
    assert_eq!(
        v["client"]["proxy"]["connect"]["endpoint"],
        "http://127.0.0.1:9090/centrifugo/connect"
    );
    raw.server.listen = "10.0.0.5:8088".into();
    let v = generate(&raw.validate().unwrap(), &S, Mode::Jwt, Version::V6);
    assert_eq!(
        v["client"]["proxy"]["refresh"]["endpoint"],
        "http://10.0.0.5:8088/centrifugo/refresh"
    );
    raw.server.listen = "[::]:8081".into();
    raw.centrifugo.sidecar_url = "http://auth.internal:8081/".into();
    let v = generate(&raw.validate().unwrap(), &S, Mode::Jwt, Version::V6);
    assert_eq!(
        v["channel"]["proxy"]["subscribe"]["endpoint"],
        "http://auth.internal:8081/centrifugo/subscribe"
    );
}

#[test]
fn v6_jwt_mode_wires_refresh_and_keys() {
    let v = generate(&cfg(), &S, Mode::Jwt, Version::V6);
    assert_eq!(v["client"]["token"]["hmac_secret_key"], "K");
    assert_eq!(v["client"]["token"]["audience"], "centrifugo");
    assert!(v["client"]["token"].get("issuer").is_none());
    assert_eq!(v["client"]["proxy"]["refresh"]["enabled"], true);
    assert_eq!(v["client"]["proxy"]["refresh"]["timeout"], "1s");
    assert_eq!(
        v["client"]["proxy"]["refresh"]["http"]["static_headers"]["x-chatsdk-proxy-secret"],
        "P"
    );
    assert!(v["client"]["proxy"].get("connect").is_none());
    let names: Vec<&str> = v["channel"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["personal", "chat"]);
}

#[test]
fn patterns_without_namespace_or_shared_with_user_channels_reach_the_proxy() {
    let mut raw = crate::config::RawConfig::default();
    raw.centrifugo.user_channels = vec!["room:#{userId}".into()];
    raw.centrifugo.subscribe_patterns = vec!["lobby".into(), "room:*".into()];
    let v = generate(&raw.validate().unwrap(), &S, Mode::Jwt, Version::V6);
    assert_eq!(
        v["channel"]["without_namespace"]["subscribe_proxy_enabled"],
        true
    );
    let ns = v["channel"]["namespaces"].as_array().unwrap();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0]["name"], "room");
    assert_eq!(ns[0]["subscribe_proxy_enabled"], true);
    let v5 = generate(&raw.validate().unwrap(), &S, Mode::Jwt, Version::V5);
    assert_eq!(v5["proxy_subscribe"], true);
}

#[test]
fn proxy_mode_forwards_authorization_and_v5_is_flat() {
    let v = generate(&cfg(), &S, Mode::Proxy, Version::V6);
    assert_eq!(
        v["client"]["proxy"]["connect"]["emulated_headers"][0],
        "Authorization"
    );
    // No token key in proxy mode: a client sending `token` must not bypass the proxy.
    assert!(v["client"].get("token").is_none());
    let v5 = generate(&cfg(), &S, Mode::Proxy, Version::V5);
    assert!(v5.get("token_hmac_secret_key").is_none());
    let jwt5 = generate(&cfg(), &S, Mode::Jwt, Version::V5);
    assert_eq!(jwt5["token_hmac_secret_key"], "K");
    assert_eq!(v5["proxy_connect_timeout"], "1s");
    assert_eq!(
        v5["proxy_static_http_headers"]["x-chatsdk-proxy-secret"],
        "P"
    );
}

#[test]
fn every_rule_namespace_is_declared_and_private_ones_skip_the_proxy() {
    let mut raw = crate::config::RawConfig::default();
    raw.centrifugo.user_channels = vec!["personal:#{userId}".into(), "feed:#{userId}".into()];
    raw.centrifugo.channel_rules = vec![
        "personal:#{userId}".into(),
        "org:#{custom.organizationId}:*".into(),
        "room:#{custom.rooms}".into(),
        "$vault:#{custom.rooms}".into(),
    ];
    raw.centrifugo.subscription_refresh_interval_seconds = 600;
    let config = raw.validate().unwrap();
    let v = generate(&config, &S, Mode::Jwt, Version::V6);
    let ns: Vec<(&str, &Value)> = v["channel"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n))
        .collect();
    let names: Vec<&str> = ns.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["feed", "chat", "org", "personal", "room", "vault"]);
    assert_eq!(ns[0].1, &json!({"name": "feed"}), "server-side only");
    for (name, n) in &ns[1..] {
        let proxied = *name != "vault";
        assert_eq!(n["subscribe_proxy_enabled"], proxied, "{name}");
        assert_eq!(n["sub_refresh_proxy_enabled"], true, "{name}");
        assert_eq!(n["presence"], true, "{name}");
    }
    assert!(v["channel"].get("without_namespace").is_none());
    let v5 = generate(&config, &S, Mode::Jwt, Version::V5);
    let vault = v5["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "vault")
        .unwrap();
    assert_eq!(vault["proxy_subscribe"], false);
    assert_eq!(vault["proxy_sub_refresh"], true);
}

#[test]
fn subscription_tokens_have_their_own_key_in_both_modes() {
    for mode in [Mode::Jwt, Mode::Proxy] {
        let v = generate(&cfg(), &S, mode, Version::V6);
        assert_eq!(
            v["client"]["subscription_token"],
            json!({"enabled": true, "hmac_secret_key": "SK", "audience": "centrifugo"}),
            "{mode:?}"
        );
        let v5 = generate(&cfg(), &S, mode, Version::V5);
        assert_eq!(v5["separate_subscription_token_config"], true);
        assert_eq!(v5["subscription_token_hmac_secret_key"], "SK");
        assert_eq!(v5["subscription_token_audience"], "centrifugo");
    }
}

/// Centrifugo's key options (https://centrifugal.dev/docs/server/authentication and
/// https://centrifugal.dev/docs/server/configuration): exactly one verification source per
/// token config, the previous HMAC key with its expiry in Unix seconds, and the
/// JWKS URL pointing at this sidecar.
#[test]
fn ws_key_variants_write_exactly_their_centrifugo_fields() {
    let c = cfg();
    let token = |ws_key, version| {
        let s = SecretValues {
            ws_key,
            proxy_secret: "P",
            subscription_key: "SK",
            api_key: "A",
        };
        generate(&c, &s, Mode::Jwt, version)
    };
    let v = token(
        WsKey::Hmac {
            current: "NEW",
            previous: Some(("OLD", 1_800_000_000)),
        },
        Version::V6,
    );
    let t = v["client"]["token"].as_object().unwrap();
    let mut keys: Vec<&str> = t.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "audience",
            "hmac_previous_secret_key",
            "hmac_previous_secret_key_valid_until",
            "hmac_secret_key"
        ]
    );
    assert_eq!(t["hmac_secret_key"], "NEW");
    assert_eq!(t["hmac_previous_secret_key"], "OLD");
    assert!(t["hmac_previous_secret_key_valid_until"].is_i64());
    assert_eq!(t["hmac_previous_secret_key_valid_until"], 1_800_000_000);
    let v5 = token(
        WsKey::Hmac {
            current: "NEW",
            previous: Some(("OLD", 1)),
        },
        Version::V5,
    );
    assert_eq!(v5["token_hmac_secret_key"], "NEW");
    assert!(v5.get("token_hmac_previous_secret_key").is_none());

    let v = token(WsKey::Jwks, Version::V6);
    let t = v["client"]["token"].as_object().unwrap();
    assert_eq!(
        t["jwks_public_endpoint"],
        "http://127.0.0.1:8081/.well-known/jwks.json"
    );
    // With a JWKS endpoint Centrifugo ignores static keys: none are written.
    for k in ["hmac_secret_key", "rsa_public_key", "ecdsa_public_key"] {
        assert!(t.get(k).is_none(), "{k}");
    }
    assert_eq!(
        token(WsKey::Jwks, Version::V5)["token_jwks_public_endpoint"],
        "http://127.0.0.1:8081/.well-known/jwks.json"
    );
    let v = token(WsKey::RsaPublic("-----BEGIN PUBLIC KEY-----"), Version::V6);
    assert_eq!(
        v["client"]["token"]["rsa_public_key"],
        "-----BEGIN PUBLIC KEY-----"
    );
    assert!(v["client"]["token"].get("jwks_public_endpoint").is_none());
    let v = token(WsKey::EcdsaPublic("EC"), Version::V6);
    assert_eq!(v["client"]["token"]["ecdsa_public_key"], "EC");
    assert_eq!(
        token(WsKey::EcdsaPublic("EC"), Version::V5)["token_ecdsa_public_key"],
        "EC"
    );
}
