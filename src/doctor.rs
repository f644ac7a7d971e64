//! `chatsdk-auth doctor`: checks that revocation is enforced end to end and says what weakens
//! it. It calls Centrifugo's `info` (version, and whether the API key is accepted), looks at the
//! kick outbox, and, given Centrifugo's own config file, checks the settings enforcement
//! depends on: the refresh proxy, `include_connection_meta`, the shared proxy secret, the HMAC
//! key and `http_api.key`. Every finding is one line; any problem makes the exit status 1.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::centrifugo::api::{CentrifugoApi, CentrifugoApiError};
use crate::config::Config;
use crate::error_chain::Chain;
use crate::secrets::Secrets;
use crate::store::Store;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warning,
    Problem,
}

/// The findings, in the order they were made.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<(Level, String)>,
}

impl Report {
    fn add(&mut self, level: Level, message: impl Into<String>) {
        self.findings.push((level, message.into()));
    }

    /// True when nothing is a problem (warnings allowed).
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|(l, _)| *l != Level::Problem)
    }

    /// One line per finding.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (level, m) in &self.findings {
            let tag = match level {
                Level::Ok => "ok",
                Level::Warning => "warning",
                Level::Problem => "problem",
            };
            let _ = writeln!(out, "{tag:<8} {m}");
        }
        out
    }
}

/// Runs every check. `centrifugo_config` is Centrifugo's config file (v6 JSON), when given.
pub async fn run(
    config: &Config,
    secrets: &Secrets,
    store: &Store,
    centrifugo_config: Option<&Path>,
) -> Report {
    let mut r = Report::default();
    sidecar_settings(config, &mut r);
    outbox(store, &mut r).await;
    server_api(config, secrets, &mut r).await;
    match centrifugo_config {
        Some(path) => centrifugo_file(config, secrets, path, &mut r),
        None => r.add(
            Level::Warning,
            "Centrifugo's own settings were not checked: pass --centrifugo-config <its config.json> to check the refresh proxy, include_connection_meta and the shared secrets",
        ),
    }
    r
}

fn sidecar_settings(config: &Config, r: &mut Report) {
    let ws = config.tokens.ws_ttl_seconds;
    if ws > 3600 {
        r.add(
            Level::Warning,
            format!("tokens.ws_ttl_seconds = {ws}: in JWT mode a revoked or stolen wsToken can open new connections for up to {ws} s (3600 or less recommended; with the refresh proxy on, a short wsToken costs active clients nothing)"),
        );
    } else {
        r.add(Level::Ok, format!("tokens.ws_ttl_seconds = {ws}"));
    }
}

async fn outbox(store: &Store, r: &mut Report) {
    match store.count_kicks(crate::now_unix_ms()).await {
        Ok((0, _)) => r.add(Level::Ok, "no kick is waiting in the outbox"),
        Ok((n, _)) => r.add(
            Level::Warning,
            format!("{n} kick(s) wait in the outbox: Centrifugo has not confirmed them yet (a running `chatsdk-auth serve` retries)"),
        ),
        Err(e) => r.add(Level::Problem, format!("cannot read the store: {}", Chain(&e))),
    }
}

async fn server_api(config: &Config, secrets: &Secrets, r: &mut Report) {
    let Some(url) = &config.centrifugo.api_url else {
        r.add(
            Level::Problem,
            "centrifugo.api_url is not set: disable, revoke-tokens and delete do not disconnect live connections (set it to Centrifugo's server API, e.g. http://127.0.0.1:8000/api)",
        );
        return;
    };
    let api = match CentrifugoApi::from_config(config, &secrets.centrifugo_api_key, None) {
        Ok(Some(api)) => api,
        Ok(None) => return,
        Err(e) => {
            r.add(
                Level::Problem,
                format!("cannot build the server-API client: {}", Chain(&e)),
            );
            return;
        }
    };
    match api.info().await {
        Ok(nodes) => {
            let versions: Vec<String> = nodes
                .iter()
                .map(|n| format!("{} {} ({} clients)", n.name, n.version, n.num_clients))
                .collect();
            r.add(
                Level::Ok,
                format!(
                    "Centrifugo's server API at {url} answers and accepts the API key: {} node(s): {}",
                    nodes.len(),
                    versions.join(", ")
                ),
            );
        }
        Err(CentrifugoApiError::Unauthorized) => r.add(
            Level::Problem,
            format!("Centrifugo at {url} refuses the API key (401): its http_api.key must equal the sidecar's centrifugo-api.key; kicks cannot be delivered"),
        ),
        Err(e) => r.add(
            Level::Problem,
            format!("Centrifugo's server API at {url} fails: {}; kicks cannot be delivered", Chain(&e)),
        ),
    }
}

/// Checks Centrifugo's config file (v6 nested keys).
fn centrifugo_file(config: &Config, secrets: &Secrets, path: &Path, r: &mut Report) {
    let doc: Value = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            r.add(
                Level::Problem,
                format!("cannot read {}: {e}", path.display()),
            );
            return;
        }
    };
    let header = config.centrifugo.proxy_secret_header.as_str();
    let secret_of = |proxy: &Value| -> Option<String> {
        proxy["http"]["static_headers"]
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(header))
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    };
    let refresh = &doc["client"]["proxy"]["refresh"];
    if refresh["enabled"] != Value::Bool(true) {
        r.add(Level::Warning, "client.proxy.refresh is not enabled: nothing re-checks a live connection, so a user whose kick is lost, or everyone after `revoke-tokens --all`, stays connected until the token expires");
    } else if refresh["include_connection_meta"] != Value::Bool(true) {
        r.add(Level::Warning, "client.proxy.refresh.include_connection_meta is off: the refresh proxy cannot see which token authenticated a connection, so revoked tokens are not cut at refresh (only disabled users)");
    } else {
        r.add(
            Level::Ok,
            "the refresh proxy is on with include_connection_meta",
        );
    }
    let mut proxies = vec![("client.proxy.refresh", refresh)];
    if doc["client"]["proxy"]["connect"]["enabled"] == Value::Bool(true) {
        proxies.push(("client.proxy.connect", &doc["client"]["proxy"]["connect"]));
    }
    for (name, p) in [
        (
            "channel.proxy.subscribe",
            &doc["channel"]["proxy"]["subscribe"],
        ),
        (
            "channel.proxy.sub_refresh",
            &doc["channel"]["proxy"]["sub_refresh"],
        ),
    ] {
        if p.is_object() {
            proxies.push((name, p));
        }
    }
    for (name, p) in proxies {
        match secret_of(p) {
            Some(s) if s == secrets.proxy_secret.expose() => {}
            Some(_) => r.add(Level::Problem, format!("{name}: the {header} static header differs from the sidecar's proxy secret: every call is refused (401)")),
            None => r.add(Level::Problem, format!("{name}: no {header} static header: every call is refused (401)")),
        }
        if let Some(ep) = p["endpoint"].as_str() {
            if !ep.starts_with(&config.centrifugo.sidecar_url) {
                r.add(
                    Level::Warning,
                    format!(
                        "{name}.endpoint {ep} is not under centrifugo.sidecar_url {}",
                        config.centrifugo.sidecar_url
                    ),
                );
            }
        }
    }
    match doc["http_api"]["key"].as_str() {
        Some(k) if k == secrets.centrifugo_api_key.expose() => r.add(
            Level::Ok,
            "http_api.key is the sidecar's centrifugo-api.key",
        ),
        _ => r.add(
            Level::Problem,
            "http_api.key differs from the sidecar's centrifugo-api.key: kicks are refused (401)",
        ),
    }
    if let Some(k) = doc["client"]["token"]["hmac_secret_key"].as_str() {
        if k != secrets.centrifugo_key.expose() {
            r.add(Level::Problem, "client.token.hmac_secret_key differs from the sidecar's centrifugo-hmac.key: every wsToken is refused (3500)");
        }
    }
    if doc["client"]["connect_code_to_unidirectional_disconnect"]["enabled"] != Value::Bool(true) {
        r.add(Level::Warning, "client.connect_code_to_unidirectional_disconnect is off: SSE and HTTP-streaming clients see 3004 instead of the sidecar's codes");
    }
}
