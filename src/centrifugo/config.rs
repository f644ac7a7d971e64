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
mod tests;
