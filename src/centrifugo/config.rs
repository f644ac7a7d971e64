//! Generates a Centrifugo config (v6 nested or v5 flat) from the sidecar's live settings, so
//! the HMAC keys, audience/issuer, proxy endpoints, shared header and namespaces cannot drift.
//!
//! Subscription tokens get their own key (`client.subscription_token`, enabled in both modes),
//! so connection and subscription keys differ. Every namespace of a channel rule is declared:
//! with the subscribe proxy on when a rule there can be decided by it (private `$` channels never
//! reach the proxy: Centrifugo admits them only with a subscription token), and sub_refresh on
//! when `centrifugo.subscription_refresh_interval_seconds` is set. A subscription token is
//! accepted in any declared namespace (https://centrifugal.dev/docs/server/channel_token_auth).
//!
//! Durations are always strings (`"1s"`): Centrifugo v6 reads a bare number as nanoseconds.
//! The proxy endpoints use `centrifugo.sidecar_url`, which defaults to `server.listen`. The
//! server-API key (`http_api.key`) is the sidecar's `centrifugo-api.key`, used to kick
//! revoked users. `client.connect_code_to_unidirectional_disconnect` maps the connect proxy's
//! codes (1109 and 45xx, from `centrifugo/protocol.rs`) so unidirectional clients (SSE, HTTP streaming)
//! see them instead of 3004
//! (https://centrifugal.dev/docs/server/proxy#unidirectional-transports-and-connect-proxy).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use strum::IntoEnumIterator;

use crate::centrifugo::protocol::{Callback, Reason, Rejection};
use crate::channels::RuleKind;
use crate::config::Config;
use crate::router::Route;

/// Connection authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Centrifugo verifies the wsToken itself; the sidecar answers refresh (and subscribe).
    Jwt,
    /// The client connects without a token; the connect proxy verifies it on every connect.
    Proxy,
}

/// Centrifugo major version to target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V5,
    V6,
}

/// How Centrifugo verifies wsTokens (`client.token`,
/// https://centrifugal.dev/docs/server/authentication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKey<'a> {
    /// The shared HMAC key, and during a rotation the previous one with the Unix second its
    /// last token expires (`hmac_previous_secret_key`, Centrifugo >= 6.6.1; v5 has no such key).
    Hmac {
        current: &'a str,
        previous: Option<(&'a str, i64)>,
    },
    /// Public keys fetched from the sidecar's `/.well-known/jwks.json` (needs `kid` and
    /// `use: sig`; the only way for EdDSA; rotation-friendly).
    Jwks,
    /// One static RSA public key (PEM, SPKI), `--no-jwks` with RS256.
    RsaPublic(&'a str),
    /// One static ECDSA public key (PEM, SPKI), `--no-jwks` with ES256.
    EcdsaPublic(&'a str),
}

/// The key and secret values that go into the generated config (placeholders for the shipped
/// files).
pub struct SecretValues<'a> {
    pub ws_key: WsKey<'a>,
    pub proxy_secret: &'a str,
    pub subscription_key: &'a str,
    /// Centrifugo's `http_api.key`: the key the sidecar calls the server API with.
    pub api_key: &'a str,
}

/// The placeholders of the shipped `centrifugo/*.json` files.
pub const PLACEHOLDERS: SecretValues<'static> = SecretValues {
    ws_key: WsKey::Hmac {
        current: "REPLACE_WITH_data/centrifugo-hmac.key",
        previous: None,
    },
    proxy_secret: "REPLACE_WITH_data/proxy-secret.key",
    subscription_key: "REPLACE_WITH_data/subscription-hmac.key",
    api_key: "REPLACE_WITH_data/centrifugo-api.key",
};

/// The code a unidirectional client gets for "token expired, fetch a fresh one and reconnect"
/// (connect error 1109): in the application's reconnect range (4000-4499), since such a client
/// has no connect error to read.
const UNI_TOKEN_EXPIRED: u32 = 4109;

/// `connect_code_to_unidirectional_disconnect.transforms`: every connect-proxy answer's code
/// with the disconnect a unidirectional client sees for it.
fn uni_transforms() -> Vec<Value> {
    Reason::iter()
        .filter(|r| *r != Reason::ChannelForbidden)
        .map(|r| match r.reply() {
            Rejection::Error(e) => json!({
                "code": e.code,
                "to": { "code": UNI_TOKEN_EXPIRED, "reason": e.message },
            }),
            Rejection::Disconnect(d) => json!({
                "code": d.code,
                "to": { "code": d.code, "reason": d.reason },
            }),
        })
        .collect()
}

/// The sidecar's JWKS URL, as Centrifugo reaches it.
pub fn jwks_url(config: &Config) -> String {
    format!("{}{}", config.centrifugo.sidecar_url, Route::Jwks.path())
}

/// The URL of a proxy callback at `base`, its path from the route table.
fn proxy_url(base: &str, cb: Callback) -> String {
    format!("{base}{}", Route::Proxy(cb).path())
}

/// The channel namespaces the sidecar's channels need.
struct Namespaces {
    /// Namespaces of `user_channels` only: server-side subscriptions, no client permissions.
    server_side: BTreeSet<String>,
    /// Namespaces of subscribe rules (a namespace that also has `user_channels` lands here),
    /// each with whether the subscribe proxy decides there (a non-private rule).
    decided: BTreeMap<String, bool>,
    /// Subscribe rules without a namespace: `Some(proxy)` declares `channel.without_namespace`.
    without_namespace: Option<bool>,
}

impl Namespaces {
    /// The `namespaces` array; `flags` names the subscribe and sub_refresh switches (v6 and v5
    /// spell them differently).
    fn list(&self, flags: (&str, &str), sub_refresh_on: bool) -> Vec<Value> {
        let mut ns: Vec<Value> = self
            .server_side
            .iter()
            .map(|n| json!({ "name": n }))
            .collect();
        ns.extend(self.decided.iter().map(|(n, proxy)| {
            json!({
                "name": n,
                "presence": true,
                "join_leave": true,
                flags.0: *proxy,
                flags.1: sub_refresh_on,
            })
        }));
        ns
    }
}

fn namespaces(config: &Config) -> Namespaces {
    let rules = &config.centrifugo.channel_rules;
    let mut decided = BTreeMap::new();
    let mut without_namespace = None;
    for r in rules.iter().filter(|r| r.kind() == RuleKind::Subscribe) {
        let proxy = !r.is_private();
        let slot = match r.namespace() {
            Some(ns) => decided.entry(ns.to_string()).or_insert(false),
            None => without_namespace.get_or_insert(false),
        };
        *slot |= proxy;
    }
    let server_side = rules
        .iter()
        .filter(|r| r.kind() == RuleKind::ServerSide)
        .filter_map(|r| r.namespace())
        .filter(|ns| !decided.contains_key(*ns))
        .map(str::to_string)
        .collect();
    Namespaces {
        server_side,
        decided,
        without_namespace,
    }
}

/// Builds the config document.
pub fn generate(
    config: &Config,
    secrets: &SecretValues<'_>,
    mode: Mode,
    version: Version,
) -> Value {
    match version {
        Version::V6 => v6(config, secrets, mode),
        Version::V5 => v5(config, secrets, mode),
    }
}

fn v6(config: &Config, s: &SecretValues<'_>, mode: Mode) -> Value {
    let c = &config.centrifugo;
    let base = &c.sidecar_url;
    let header = c.proxy_secret_header.as_str();
    let static_headers = json!({ "static_headers": { header: s.proxy_secret } });
    let sub_refresh_on = c.subscription_refresh_interval_seconds > 0;

    let mut token = Map::new();
    match s.ws_key {
        WsKey::Hmac { current, previous } => {
            token.insert("hmac_secret_key".into(), json!(current));
            if let Some((key, until)) = previous {
                token.insert("hmac_previous_secret_key".into(), json!(key));
                token.insert("hmac_previous_secret_key_valid_until".into(), json!(until));
            }
        }
        WsKey::Jwks => {
            token.insert("jwks_public_endpoint".into(), json!(jwks_url(config)));
        }
        WsKey::RsaPublic(pem) => {
            token.insert("rsa_public_key".into(), json!(pem));
        }
        WsKey::EcdsaPublic(pem) => {
            token.insert("ecdsa_public_key".into(), json!(pem));
        }
    }
    if let Some(a) = &config.tokens.ws_audience {
        token.insert("audience".into(), json!(a));
    }
    if let Some(i) = &config.tokens.ws_issuer {
        token.insert("issuer".into(), json!(i));
    }

    let mut proxy = Map::new();
    if mode == Mode::Proxy {
        proxy.insert(
            "connect".into(),
            json!({
                "enabled": true,
                "endpoint": proxy_url(base, Callback::Connect),
                "timeout": "1s",
                "http_headers": ["Authorization"],
                "emulated_headers": ["Authorization"],
                "http": static_headers,
            }),
        );
    }
    proxy.insert(
        "refresh".into(),
        json!({
            "enabled": true,
            "endpoint": proxy_url(base, Callback::Refresh),
            "timeout": "1s",
            "include_connection_meta": true,
            "http": static_headers,
        }),
    );

    let plan = namespaces(config);
    let ns = plan.list(
        ("subscribe_proxy_enabled", "sub_refresh_proxy_enabled"),
        sub_refresh_on,
    );

    // Subscription tokens have their own key in both modes; aud/iss as for wsTokens.
    let mut sub_token = Map::new();
    sub_token.insert("enabled".into(), json!(true));
    sub_token.insert("hmac_secret_key".into(), json!(s.subscription_key));
    if let Some(a) = &config.tokens.ws_audience {
        sub_token.insert("audience".into(), json!(a));
    }
    if let Some(i) = &config.tokens.ws_issuer {
        sub_token.insert("issuer".into(), json!(i));
    }

    let mut client = Map::new();
    client.insert("allowed_origins".into(), json!([]));
    // Proxy mode carries no token key: a client that sends `token` would otherwise skip the
    // connect proxy (and with it disable and revocation) and be verified by Centrifugo alone.
    if mode == Mode::Jwt {
        client.insert("token".into(), Value::Object(token));
    }
    client.insert("subscription_token".into(), Value::Object(sub_token));
    client.insert("proxy".into(), Value::Object(proxy));
    client.insert(
        "connect_code_to_unidirectional_disconnect".into(),
        json!({ "enabled": true, "transforms": uni_transforms() }),
    );

    let mut doc = json!({
        "http_server": { "port": 8000 },
        "log": { "level": "info" },
        "client": client,
        "channel": {
            "proxy": {
                "subscribe": {
                    "endpoint": proxy_url(base, Callback::Subscribe),
                    "timeout": "1s",
                    "include_connection_meta": true,
                    "http": static_headers,
                },
                "sub_refresh": {
                    "endpoint": proxy_url(base, Callback::SubRefresh),
                    "timeout": "1s",
                    "include_connection_meta": true,
                    "http": static_headers,
                },
            },
            "namespaces": ns,
        },
        "http_api": { "key": s.api_key },
        "prometheus": { "enabled": true },
        "health": { "enabled": true },
    });
    if let Some(proxy) = plan.without_namespace {
        doc["channel"]["without_namespace"] = json!({
            "subscribe_proxy_enabled": proxy,
            "sub_refresh_proxy_enabled": sub_refresh_on,
        });
    }
    doc
}

fn v5(config: &Config, s: &SecretValues<'_>, mode: Mode) -> Value {
    let c = &config.centrifugo;
    let base = &c.sidecar_url;
    let mut m = Map::new();
    m.insert("port".into(), json!(8000));
    m.insert("log_level".into(), json!("info"));
    m.insert("allowed_origins".into(), json!([]));
    if mode == Mode::Jwt {
        // v5 has no previous HMAC key: during a rotation only the current one is written.
        let (key, value) = match s.ws_key {
            WsKey::Hmac { current, .. } => ("token_hmac_secret_key", json!(current)),
            WsKey::Jwks => ("token_jwks_public_endpoint", json!(jwks_url(config))),
            WsKey::RsaPublic(pem) => ("token_rsa_public_key", json!(pem)),
            WsKey::EcdsaPublic(pem) => ("token_ecdsa_public_key", json!(pem)),
        };
        m.insert(key.into(), value);
        if let Some(a) = &config.tokens.ws_audience {
            m.insert("token_audience".into(), json!(a));
        }
        if let Some(i) = &config.tokens.ws_issuer {
            m.insert("token_issuer".into(), json!(i));
        }
    }
    m.insert("separate_subscription_token_config".into(), json!(true));
    m.insert(
        "subscription_token_hmac_secret_key".into(),
        json!(s.subscription_key),
    );
    if let Some(a) = &config.tokens.ws_audience {
        m.insert("subscription_token_audience".into(), json!(a));
    }
    if let Some(i) = &config.tokens.ws_issuer {
        m.insert("subscription_token_issuer".into(), json!(i));
    }
    if mode == Mode::Proxy {
        m.insert(
            "proxy_connect_endpoint".into(),
            json!(proxy_url(base, Callback::Connect)),
        );
        m.insert("proxy_connect_timeout".into(), json!("1s"));
        // v5 forwards both real and emulated headers through this one list.
        m.insert("proxy_http_headers".into(), json!(["Authorization"]));
    }
    for (key, cb) in [
        ("refresh", Callback::Refresh),
        ("subscribe", Callback::Subscribe),
        ("sub_refresh", Callback::SubRefresh),
    ] {
        m.insert(format!("proxy_{key}_endpoint"), json!(proxy_url(base, cb)));
        m.insert(format!("proxy_{key}_timeout"), json!("1s"));
    }
    m.insert(
        "proxy_static_http_headers".into(),
        json!({ c.proxy_secret_header.as_str(): s.proxy_secret }),
    );
    m.insert("proxy_include_connection_meta".into(), json!(true));
    let plan = namespaces(config);
    let sub_refresh_on = c.subscription_refresh_interval_seconds > 0;
    let ns = plan.list(("proxy_subscribe", "proxy_sub_refresh"), sub_refresh_on);
    if let Some(proxy) = plan.without_namespace {
        // v5: the top-level flags apply to channels without a namespace.
        m.insert("proxy_subscribe".into(), json!(proxy));
        m.insert("proxy_sub_refresh".into(), json!(sub_refresh_on));
    }
    m.insert("namespaces".into(), json!(ns));
    m.insert("api_key".into(), json!(s.api_key));
    m.insert(
        "client_connect_code_to_unidirectional_disconnect".into(),
        json!({ "enabled": true, "transforms": uni_transforms() }),
    );
    m.insert("prometheus".into(), json!(true));
    m.insert("health".into(), json!(true));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
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
}
