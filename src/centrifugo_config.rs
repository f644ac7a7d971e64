//! Generates a Centrifugo config (v6 nested or v5 flat) from the sidecar's live settings, so
//! the HMAC key, audience/issuer, proxy endpoints, shared header and namespaces cannot drift.
//!
//! Durations are always strings (`"1s"`): Centrifugo v6 reads a bare number as nanoseconds.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::config::Config;

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

/// The secret values that go into the generated config (placeholders for the shipped files).
pub struct SecretValues<'a> {
    pub hmac_key: &'a str,
    pub proxy_secret: &'a str,
}

/// The placeholders of the shipped `centrifugo/*.json` files.
pub const PLACEHOLDERS: SecretValues<'static> = SecretValues {
    hmac_key: "REPLACE_WITH_data/centrifugo-hmac.key",
    proxy_secret: "REPLACE_WITH_data/proxy-secret.key",
};

/// Namespaces the sidecar's channels need: those of the user-channel templates (server-side
/// only) and those of the subscribe patterns (subscribe proxy on).
fn namespaces(config: &Config) -> (BTreeSet<String>, BTreeSet<String>) {
    let ns = |ch: &str| ch.split_once(':').map(|(n, _)| n.to_string());
    let personal: BTreeSet<String> = config
        .centrifugo
        .user_channels
        .iter()
        .filter_map(|t| ns(t))
        .collect();
    let proxied: BTreeSet<String> = config
        .centrifugo
        .subscribe_patterns
        .iter()
        .filter_map(|p| ns(p))
        .filter(|n| !personal.contains(n))
        .collect();
    (personal, proxied)
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
    token.insert("hmac_secret_key".into(), json!(s.hmac_key));
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
                "endpoint": format!("{base}/centrifugo/connect"),
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
            "endpoint": format!("{base}/centrifugo/refresh"),
            "timeout": "1s",
            "include_connection_meta": true,
            "http": static_headers,
        }),
    );

    let (personal, proxied) = namespaces(config);
    let mut ns: Vec<Value> = personal.iter().map(|n| json!({ "name": n })).collect();
    ns.extend(proxied.iter().map(|n| {
        json!({
            "name": n,
            "presence": true,
            "join_leave": true,
            "subscribe_proxy_enabled": true,
            "sub_refresh_proxy_enabled": sub_refresh_on,
        })
    }));

    json!({
        "http_server": { "port": 8000 },
        "log": { "level": "info" },
        "client": {
            "allowed_origins": [],
            "token": token,
            "proxy": proxy,
        },
        "channel": {
            "proxy": {
                "subscribe": {
                    "endpoint": format!("{base}/centrifugo/subscribe"),
                    "timeout": "1s",
                    "include_connection_meta": true,
                    "http": static_headers,
                },
                "sub_refresh": {
                    "endpoint": format!("{base}/centrifugo/sub_refresh"),
                    "timeout": "1s",
                    "include_connection_meta": true,
                    "http": static_headers,
                },
            },
            "namespaces": ns,
        },
        "prometheus": { "enabled": true },
        "health": { "enabled": true },
    })
}

fn v5(config: &Config, s: &SecretValues<'_>, mode: Mode) -> Value {
    let c = &config.centrifugo;
    let base = &c.sidecar_url;
    let mut m = Map::new();
    m.insert("port".into(), json!(8000));
    m.insert("log_level".into(), json!("info"));
    m.insert("allowed_origins".into(), json!([]));
    m.insert("token_hmac_secret_key".into(), json!(s.hmac_key));
    if let Some(a) = &config.tokens.ws_audience {
        m.insert("token_audience".into(), json!(a));
    }
    if let Some(i) = &config.tokens.ws_issuer {
        m.insert("token_issuer".into(), json!(i));
    }
    if mode == Mode::Proxy {
        m.insert(
            "proxy_connect_endpoint".into(),
            json!(format!("{base}/centrifugo/connect")),
        );
        m.insert("proxy_connect_timeout".into(), json!("1s"));
        // v5 forwards both real and emulated headers through this one list.
        m.insert("proxy_http_headers".into(), json!(["Authorization"]));
    }
    for (key, path) in [
        ("refresh", "refresh"),
        ("subscribe", "subscribe"),
        ("sub_refresh", "sub_refresh"),
    ] {
        m.insert(
            format!("proxy_{key}_endpoint"),
            json!(format!("{base}/centrifugo/{path}")),
        );
        m.insert(format!("proxy_{key}_timeout"), json!("1s"));
    }
    m.insert(
        "proxy_static_http_headers".into(),
        json!({ c.proxy_secret_header.as_str(): s.proxy_secret }),
    );
    m.insert("proxy_include_connection_meta".into(), json!(true));
    let (personal, proxied) = namespaces(config);
    let mut ns: Vec<Value> = personal.iter().map(|n| json!({ "name": n })).collect();
    ns.extend(proxied.iter().map(|n| {
        json!({
            "name": n,
            "presence": true,
            "join_leave": true,
            "proxy_subscribe": true,
            "proxy_sub_refresh": c.subscription_refresh_interval_seconds > 0,
        })
    }));
    m.insert("namespaces".into(), json!(ns));
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
        hmac_key: "K",
        proxy_secret: "P",
    };

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
    fn proxy_mode_forwards_authorization_and_v5_is_flat() {
        let v = generate(&cfg(), &S, Mode::Proxy, Version::V6);
        assert_eq!(
            v["client"]["proxy"]["connect"]["emulated_headers"][0],
            "Authorization"
        );
        let v5 = generate(&cfg(), &S, Mode::Proxy, Version::V5);
        assert_eq!(v5["token_hmac_secret_key"], "K");
        assert_eq!(v5["proxy_connect_timeout"], "1s");
        assert_eq!(
            v5["proxy_static_http_headers"]["x-chatsdk-proxy-secret"],
            "P"
        );
    }
}
