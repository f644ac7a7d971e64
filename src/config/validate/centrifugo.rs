//! `[centrifugo]`, validated: the proxy secret's header, the URLs each way (the sidecar's as
//! Centrifugo reaches it, Centrifugo's server API with its CAs), the intervals and the channel
//! rules compiled into one rule set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::super::raw::RawCentrifugo;
use super::super::CentrifugoConfig;
use super::local_address_of;
use crate::channels::{ChannelRules, Rule, RuleKind};

/// `[centrifugo]`.
pub(super) fn centrifugo(
    c: &RawCentrifugo,
    listen: SocketAddr,
    p: &mut Vec<String>,
) -> CentrifugoConfig {
    let proxy_secret_header = match http::HeaderName::from_bytes(c.proxy_secret_header.as_bytes()) {
        Ok(h) => h,
        Err(_) => {
            p.push(format!(
                "centrifugo.proxy_secret_header: \"{}\" is not a valid HTTP header name; use a name such as X-Chatsdk-Proxy-Secret",
                c.proxy_secret_header
            ));
            http::HeaderName::from_static("x-chatsdk-proxy-secret")
        }
    };
    // Headers a client can make Centrifugo forward, or that HTTP itself sets, cannot carry
    // the shared secret: a forwarded value would overwrite the static one.
    const RESERVED: [&str; 8] = [
        "authorization",
        "cookie",
        "host",
        "content-type",
        "content-length",
        "user-agent",
        "accept-encoding",
        "x-forwarded-for",
    ];
    if RESERVED.contains(&proxy_secret_header.as_str()) {
        p.push(format!(
            "centrifugo.proxy_secret_header: \"{}\" is a header clients or HTTP control; use a dedicated name such as X-Chatsdk-Proxy-Secret",
            c.proxy_secret_header
        ));
    }
    if c.refresh_interval_seconds < 10 || c.refresh_interval_seconds > 365 * 86_400 {
        p.push(format!(
            "centrifugo.refresh_interval_seconds: {} is out of range; set a value from 10 to 31536000",
            c.refresh_interval_seconds
        ));
    }
    let sidecar_url = if c.sidecar_url.trim().is_empty() {
        sidecar_url_of(listen)
    } else {
        if url::Url::parse(&c.sidecar_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            p.push(format!(
                "centrifugo.sidecar_url: \"{}\" is not an http(s) URL; set the base URL Centrifugo reaches this sidecar at, such as http://127.0.0.1:8081, or leave it empty to derive it from server.listen",
                c.sidecar_url
            ));
        }
        c.sidecar_url.trim_end_matches('/').to_string()
    };
    let api_url = (!c.api_url.trim().is_empty()).then(|| {
        let ok = url::Url::parse(&c.api_url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none()
        });
        if !ok {
            p.push(format!(
                "centrifugo.api_url: \"{}\" must be an http:// or https:// URL such as http://127.0.0.1:8000/api (Centrifugo's internal port; no query string), or leave it empty to turn active revocation off",
                c.api_url
            ));
        }
        c.api_url.trim().trim_end_matches('/').to_string()
    });
    let api_ca_file =
        (!c.api_ca_file.trim().is_empty()).then(|| PathBuf::from(c.api_ca_file.trim()));
    match (&api_url, &api_ca_file) {
        (Some(url), ca) if url.starts_with("https://") => {
            // Read the CAs now, so a missing or empty file stops startup with its name.
            if let Err(e) = crate::tls::https_client_config(ca.as_deref()) {
                p.push(format!(
                    "centrifugo.api_ca_file: {}; give a readable PEM file of CA certificates",
                    crate::error_chain::Chain(&e)
                ));
            }
        }
        (_, Some(_)) => p.push(
            "centrifugo.api_ca_file: is set, but centrifugo.api_url is not an https:// URL; set both, or neither".into(),
        ),
        _ => {}
    }
    if !(50..=30_000).contains(&c.api_timeout_ms) {
        p.push(format!(
            "centrifugo.api_timeout_ms: {} is out of range; set a value from 50 to 30000",
            c.api_timeout_ms
        ));
    }
    if !(50..=60_000).contains(&c.kick_poll_interval_ms) {
        p.push(format!(
            "centrifugo.kick_poll_interval_ms: {} is out of range; set a value from 50 to 60000",
            c.kick_poll_interval_ms
        ));
    }

    let channel_rules = channel_rules(c, p);
    let sub = c.subscription_refresh_interval_seconds;
    if sub != 0 && !(10..=365 * 86_400).contains(&sub) {
        p.push(format!(
            "centrifugo.subscription_refresh_interval_seconds: {sub} is out of range; set 0 (off) or a value from 10 to 31536000"
        ));
    }
    CentrifugoConfig {
        proxy_secret_header,
        user_channels: c.user_channels.clone(),
        refresh_interval_seconds: c.refresh_interval_seconds as i64,
        sidecar_url,
        channel_rules,
        api_url,
        api_ca_file,
        api_timeout: Duration::from_millis(c.api_timeout_ms),
        kick_poll_interval: Duration::from_millis(c.kick_poll_interval_ms),
        subscription_refresh_interval_seconds: c.subscription_refresh_interval_seconds as i64,
    }
}

/// `channel_rules`, `subscribe_patterns` and `user_channels`, compiled into one rule set; a
/// template that does not compile is reported with its key and the reason.
fn channel_rules(c: &RawCentrifugo, p: &mut Vec<String>) -> ChannelRules {
    let mut rules = Vec::new();
    let lists = [
        (
            "centrifugo.channel_rules",
            &c.channel_rules,
            RuleKind::Subscribe,
        ),
        (
            "centrifugo.subscribe_patterns",
            &c.subscribe_patterns,
            RuleKind::Subscribe,
        ),
        (
            "centrifugo.user_channels",
            &c.user_channels,
            RuleKind::ServerSide,
        ),
    ];
    for (key, templates, kind) in lists {
        for (i, tpl) in templates.iter().enumerate() {
            match Rule::parse(tpl, kind) {
                Err(e) => p.push(format!(
                    "{key}[{i}]: \"{tpl}\" {e}; fix or remove this entry (see the README's channel rules)"
                )),
                // The wsToken's `channels` fill #{userId} only, and list whole channels.
                Ok(r) if kind == RuleKind::ServerSide && !server_side_template(&r, tpl) => {
                    p.push(format!(
                        "{key}[{i}]: \"{tpl}\" must contain #{{userId}} and no other placeholder or *; write it like \"personal:#{{userId}}\""
                    ))
                }
                Ok(r) => rules.push(r),
            }
        }
    }
    ChannelRules::new(rules)
}

/// True for what a server-side channel template may be: `#{userId}` and no other placeholder,
/// no trailing `*`.
fn server_side_template(r: &Rule, tpl: &str) -> bool {
    r.only_user_id() && !r.is_prefix() && tpl.contains("#{userId}")
}

/// The URL Centrifugo reaches a sidecar listening on `listen` at: a wildcard address is
/// reached through loopback (Centrifugo beside the sidecar, the usual deployment).
fn sidecar_url_of(listen: SocketAddr) -> String {
    format!("http://{}", local_address_of(listen))
}
