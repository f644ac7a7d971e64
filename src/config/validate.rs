//! Turns a [`RawConfig`] into a [`Config`]: each section validated by its own function, every
//! problem collected with its key (and never a secret value) before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::algorithm::{is_asymmetric, parse_algorithm};
use super::catalogue::{Secret, INITIAL_API_KEY, SECRETS};
use super::raw::{
    RawAdmin, RawApp, RawAudit, RawConfig, RawLimits, RawLog, RawMetrics, RawSecrets, RawServer,
    RawTokens,
};
use super::{
    AdminConfig, AppConfig, AuditConfig, Config, ConfigError, LimitsConfig, LogConfig, LogFormat,
    MetricsConfig, SecretSource, SecretSources, ServerConfig, TokenConfig,
};
use crate::api_key;

mod centrifugo;
mod segments;
mod storage;
use centrifugo::centrifugo;
use segments::segments;
use storage::storage;

impl RawConfig {
    /// Turns raw values into a [`Config`], listing every problem by key.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut p = Vec::new();
        let app = app(&self.app, &mut p);
        let mut server = server(&self.server, &mut p);
        let (data_dir, store) = storage(&self.storage, &mut p);
        let tokens = tokens(&self.tokens, &app, &mut p);
        let centrifugo = centrifugo(&self.centrifugo, server.listen, &mut p);
        let admin = admin(&self.admin, &mut p);
        let metrics = metrics(&self.metrics, server.listen, &mut p);
        let log = log(&self.log, &mut p);
        let secrets = secrets(&self.secrets, &data_dir, &tokens, &mut p);
        let limits = limits(&self.limits, &mut p);
        let audit = audit(&self.audit, &mut p);
        budgets(&self.server, &mut server, &admin, &metrics, &mut p);
        let segments = segments(&self.segments, &mut p);
        if !p.is_empty() {
            return Err(ConfigError { problems: p });
        }
        Ok(Config {
            app,
            server,
            data_dir,
            store,
            tokens,
            centrifugo,
            admin,
            metrics,
            log,
            secrets,
            limits,
            audit,
            segments,
        })
    }
}

/// The longest `audit.retention_days`: a hundred years.
pub const MAX_RETENTION_DAYS: u64 = 36_500;

/// `[audit]`: 0 keeps events forever, else 1 to [`MAX_RETENTION_DAYS`] days.
fn audit(a: &RawAudit, p: &mut Vec<String>) -> AuditConfig {
    let days = a.retention_days;
    if days > MAX_RETENTION_DAYS {
        p.push(format!(
            "audit.retention_days: {days} is out of range; set 1 to {MAX_RETENTION_DAYS} days, or 0 to keep audit events forever"
        ));
    }
    AuditConfig {
        retention: (1..=MAX_RETENTION_DAYS)
            .contains(&days)
            .then(|| Duration::from_secs(days * 86_400)),
    }
}

/// `[limits]`.
fn limits(l: &RawLimits, p: &mut Vec<String>) -> LimitsConfig {
    if l.max_tracked_keys < 100 || l.max_tracked_keys > 10_000_000 {
        p.push(format!(
            "limits.max_tracked_keys: {} is out of range; set a value from 100 to 10000000",
            l.max_tracked_keys
        ));
    }
    let header = l.trusted_proxy_header.trim();
    let trusted_proxy_header = if header.is_empty() {
        None
    } else {
        match http::HeaderName::from_bytes(header.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                p.push(format!(
                    "limits.trusted_proxy_header: \"{header}\" is not a valid HTTP header name; set the header your reverse proxy writes the client address to, such as X-Forwarded-For, or leave it empty to use the TCP peer"
                ));
                None
            }
        }
    };
    LimitsConfig {
        mint_per_user_per_minute: l.mint_per_user_per_minute,
        mint_per_api_key_per_second: l.mint_per_api_key_per_second,
        failed_auth_per_ip_per_minute: l.failed_auth_per_ip_per_minute,
        admin_per_ip_per_minute: l.admin_per_ip_per_minute,
        max_tracked_keys: l.max_tracked_keys,
        trusted_proxy_header,
    }
}

/// `[server]`.
fn server(s: &RawServer, p: &mut Vec<String>) -> ServerConfig {
    let listen = parse_addr("server.listen", &s.listen, p);
    if s.max_body_bytes < 1024 || s.max_body_bytes > 16 * 1024 * 1024 {
        p.push(format!(
            "server.max_body_bytes: {} is out of range; set a value from 1024 to 16777216",
            s.max_body_bytes
        ));
    }
    for (key, v) in [
        ("server.drain_timeout_seconds", s.drain_timeout_seconds),
        (
            "server.header_read_timeout_seconds",
            s.header_read_timeout_seconds,
        ),
        ("server.request_timeout_seconds", s.request_timeout_seconds),
    ] {
        if v == 0 || v > 3600 {
            p.push(format!(
                "{key}: {v} is out of range; set a value from 1 to 3600"
            ));
        }
    }

    let fd_limit = open_file_limit();
    let max_connections = match s.max_connections {
        0 => derived_max_connections(fd_limit),
        n => {
            if fd_limit.is_some_and(|l| n as u64 >= l) {
                p.push(format!(
                    "server.max_connections: {n} is not below the open-file limit ({}); raise the limit (ulimit -n, LimitNOFILE=) or leave it 0 to derive it",
                    fd_limit.unwrap_or_default()
                ));
            }
            n
        }
    };

    ServerConfig {
        listen,
        max_body_bytes: s.max_body_bytes as usize,
        drain_timeout: Duration::from_secs(s.drain_timeout_seconds),
        header_read_timeout: Duration::from_secs(s.header_read_timeout_seconds),
        request_timeout: Duration::from_secs(s.request_timeout_seconds),
        worker_threads: (s.worker_threads > 0).then_some(s.worker_threads),
        max_connections,
    }
}

/// The soft open-file limit (`RLIMIT_NOFILE`), when it can be read and is finite.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// `server.max_connections = 0`: the open-file limit less a tenth and 64 more, kept for the
/// database and its WAL, the listeners, the PostgreSQL pool, logs and the metrics scrape, so
/// that accepting never runs out of descriptors (1,024 gives 858). At least 16; 10,000 when the
/// limit cannot be read.
pub fn derived_max_connections(fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(l) => l.saturating_sub(l / 10 + 64).max(16) as usize,
        None => 10_000,
    }
}

/// `[tokens]`.
/// `[app]`: `id` must be a slug, since keys, tokens and error messages carry it.
fn app(a: &RawApp, p: &mut Vec<String>) -> AppConfig {
    if !api_key::valid_app_id(&a.id) {
        p.push(format!(
            "app.id: {:?} is not a valid application id; use 1 to {} lowercase letters, digits or '-', starting with a letter and not ending with '-' (e.g. \"production\" or \"staging\"), or remove it to keep \"{}\"",
            a.id,
            api_key::MAX_APP_ID_BYTES,
            api_key::DEFAULT_APP_ID
        ));
    }
    AppConfig { id: a.id.clone() }
}

fn tokens(t: &RawTokens, app: &AppConfig, p: &mut Vec<String>) -> TokenConfig {
    if t.ttl_seconds < 60 || t.ttl_seconds > 365 * 86_400 {
        p.push(format!(
            "tokens.ttl_seconds: {} is out of range; set a value from 60 to 31536000",
            t.ttl_seconds
        ));
    }
    let mut alg = |key: &str, name: &str, fallback: Algorithm| match parse_algorithm(name) {
        Some(a) => a,
        None => {
            p.push(format!(
                "{key}: \"{name}\" is not supported; set HS256, HS384, HS512, RS256, ES256 or EdDSA"
            ));
            fallback
        }
    };
    let algorithm = alg("tokens.algorithm", &t.algorithm, Algorithm::HS256);
    let rest_algorithm = if t.rest_algorithm.is_empty() {
        algorithm
    } else {
        alg("tokens.rest_algorithm", &t.rest_algorithm, algorithm)
    };
    let ws_algorithm = if t.ws_algorithm.is_empty() {
        algorithm
    } else {
        alg("tokens.ws_algorithm", &t.ws_algorithm, algorithm)
    };
    if t.jwks_publish_delay_seconds > 7 * 86_400 {
        p.push(format!(
            "tokens.jwks_publish_delay_seconds: {} is out of range; set a value from 0 to 604800",
            t.jwks_publish_delay_seconds
        ));
    }
    // The JWKS publishes the keys of both kinds: when both are asymmetric, only the audience
    // keeps Centrifugo (which reads keys from it) from accepting a REST token.
    if is_asymmetric(rest_algorithm) && is_asymmetric(ws_algorithm) {
        let ws_aud = t.ws_audience.trim();
        if ws_aud.is_empty() || ws_aud == t.rest_audience {
            p.push("tokens.ws_audience: must be set, and differ from tokens.rest_audience, when both token kinds use asymmetric keys (the JWKS publishes both, and Centrifugo's client.token.audience is what then refuses a REST token on the WebSocket); set it to the audience Centrifugo checks, e.g. \"centrifugo\"".into());
        }
    }
    for (key, v) in [
        ("tokens.rest_issuer", &t.rest_issuer),
        ("tokens.rest_audience", &t.rest_audience),
    ] {
        if v.trim().is_empty() {
            p.push(format!(
                "{key}: must not be empty; set a value or remove the key to use its default"
            ));
        }
    }
    if t.subscription_ttl_seconds < 60 || t.subscription_ttl_seconds > 365 * 86_400 {
        p.push(format!(
            "tokens.subscription_ttl_seconds: {} is out of range; set a value from 60 to 31536000",
            t.subscription_ttl_seconds
        ));
    }
    let sub_exp = t.subscription_expire_at_seconds;
    if sub_exp != 0 && !(60..=365 * 86_400).contains(&sub_exp) {
        p.push(format!(
            "tokens.subscription_expire_at_seconds: {sub_exp} is out of range; set 0 (off) or a value from 60 to 31536000"
        ));
    }
    if t.ws_ttl_seconds < 60 || t.ws_ttl_seconds > 365 * 86_400 {
        p.push(format!(
            "tokens.ws_ttl_seconds: {} is out of range; set a value from 60 to 31536000",
            t.ws_ttl_seconds
        ));
    }
    let opt = |s: &String| (!s.trim().is_empty()).then(|| s.clone());
    TokenConfig {
        ws_ttl_seconds: t.ws_ttl_seconds as i64,
        ttl_seconds: t.ttl_seconds as i64,
        rest_algorithm,
        ws_algorithm,
        jwks_publish_delay_seconds: t.jwks_publish_delay_seconds as i64,
        subscription_algorithm: if is_asymmetric(ws_algorithm) {
            Algorithm::HS256
        } else {
            ws_algorithm
        },
        rest_issuer: t.rest_issuer.clone(),
        rest_audience: t.rest_audience.clone(),
        ws_audience: opt(&t.ws_audience),
        ws_issuer: opt(&t.ws_issuer),
        app_id: app.id.clone(),
        subscription_ttl_seconds: t.subscription_ttl_seconds as i64,
        subscription_expire_at_seconds: (sub_exp > 0).then_some(sub_exp as i64),
    }
}

/// Where a process on the same host (or in the same pod) reaches a listener bound to
/// `listen`: a wildcard address becomes the loopback of its family.
pub fn local_address_of(listen: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `[admin]`.
fn admin(a: &RawAdmin, p: &mut Vec<String>) -> AdminConfig {
    AdminConfig {
        listen: (!a.listen.trim().is_empty()).then(|| parse_addr("admin.listen", &a.listen, p)),
        console: a.console,
        max_connections: listener_budget("admin.max_connections", a.max_connections, p),
    }
}

/// The most connections `admin.max_connections` or `metrics.max_connections` may allow.
pub const MAX_LISTENER_BUDGET: usize = 10_000;

fn listener_budget(key: &str, n: usize, p: &mut Vec<String>) -> usize {
    if n == 0 || n > MAX_LISTENER_BUDGET {
        p.push(format!(
            "{key}: {n} is out of range; set a value from 1 to {MAX_LISTENER_BUDGET}"
        ));
    }
    n
}

/// Each listener has a budget of its own; together they stay below the open-file limit. A
/// derived main budget (`server.max_connections = 0`) leaves room for the other listeners'.
fn budgets(
    raw: &RawServer,
    server: &mut ServerConfig,
    admin: &AdminConfig,
    metrics: &MetricsConfig,
    p: &mut Vec<String>,
) {
    let others = admin
        .listen
        .map_or(0, |_| admin.max_connections)
        .saturating_add(metrics.listen.map_or(0, |_| metrics.max_connections));
    if others == 0 {
        return;
    }
    let fd_limit = open_file_limit();
    if raw.max_connections == 0 {
        server.max_connections = server.max_connections.saturating_sub(others).max(16);
    } else if let Some(l) = fd_limit {
        let n = server.max_connections;
        if n.saturating_add(others) as u64 >= l {
            p.push(format!(
                "server.max_connections: {n} plus the budgets of admin.listen and metrics.listen ({others}) is not below the open-file limit ({l}); raise the limit (ulimit -n, LimitNOFILE=) or lower a budget"
            ));
        }
    }
}

/// `[metrics]`.
fn metrics(m: &RawMetrics, main_listen: SocketAddr, p: &mut Vec<String>) -> MetricsConfig {
    let metrics_listen = if m.listen.trim().is_empty() {
        None
    } else {
        Some(parse_addr("metrics.listen", &m.listen, p))
    };
    // `/metrics` names API keys and the build: open only where nobody else can connect.
    let served_on = metrics_listen.unwrap_or(main_listen);
    MetricsConfig {
        listen: metrics_listen,
        require_token: m.require_token.unwrap_or(!served_on.ip().is_loopback()),
        max_connections: listener_budget("metrics.max_connections", m.max_connections, p),
    }
}

/// `[log]`.
fn log(l: &RawLog, p: &mut Vec<String>) -> LogConfig {
    let format = match l.format.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            p.push(format!(
                "log.format: \"{other}\" is not supported; set \"pretty\" or \"json\""
            ));
            LogFormat::Pretty
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
        p.push(format!(
            "log.level: \"{}\" is not a valid filter; set a level such as \"info\" or a directive such as \"chatsdk_auth=debug\"",
            l.level
        ));
    }
    LogConfig {
        format,
        level: l.level.clone(),
    }
}

/// `[secrets]`: where each secret of the [catalogue](super::catalogue) comes from; values only
/// ever from the environment, each at least its minimum length, signing keys distinct.
fn secrets(
    sec: &RawSecrets,
    data_dir: &Path,
    tokens: &TokenConfig,
    p: &mut Vec<String>,
) -> SecretSources {
    let initial_api_key = (!sec.initial_api_key.is_empty()).then(|| {
        if !api_key::is_well_formed(&sec.initial_api_key) {
            p.push(format!(
                "{INITIAL_API_KEY}: must be \"{}\" followed by at least 32 printable characters; use a key from `chatsdk-auth api-key create` (the value is not shown)",
                api_key::PREFIX
            ));
        } else if api_key::estimated_entropy_bits(&sec.initial_api_key) < api_key::MIN_ENTROPY_BITS {
            p.push(format!("{INITIAL_API_KEY}: looks typed rather than random (too few distinct characters for its length); use a key from `chatsdk-auth api-key create` (the value is not shown)"));
        } else if let Some(other) = api_key::application(&sec.initial_api_key)
            .filter(|a| *a != tokens.app_id)
        {
            p.push(format!(
                "{INITIAL_API_KEY}: the key belongs to application \"{other}\" but app.id is \"{}\", so every request with it would be refused; install a key created for this application (`chatsdk-auth api-key create` with this config), or set app.id if this deployment is \"{other}\" (the value is not shown)",
                tokens.app_id
            ));
        }
        SecretSource::Env(Secret::new(sec.initial_api_key.clone()))
    });
    for s in &SECRETS {
        let v = sec.value(s.id);
        if !v.is_empty() && v.len() < s.min_len {
            p.push(format!(
                "{}: the value from {} is shorter than {} bytes (the value is not shown); set a random one such as `openssl rand -base64 32` prints, or unset it to have {} generated",
                s.key,
                s.env_name(),
                s.min_len,
                data_dir.join(s.default_file_for(tokens)).display(),
            ));
        }
    }
    // Secrets of different holders, and signing keys, must differ: the catalogue's one rule.
    if let Some((a, b)) = super::catalogue::equal_pair(|id| Some(sec.value(id))) {
        p.push(format!(
            "{}: must differ from {} ({}); set another value in {} (the value is not shown)",
            b.key,
            a.key,
            super::catalogue::why_differ(a, b),
            b.env_name()
        ));
    }
    let sources = SECRETS.map(|s| {
        let (value, file) = (sec.value(s.id), sec.file(s.id));
        if !value.is_empty() {
            SecretSource::Env(Secret::new(value.to_string()))
        } else if !file.is_empty() {
            SecretSource::File(PathBuf::from(file))
        } else {
            SecretSource::File(data_dir.join(s.default_file_for(tokens)))
        }
    });
    SecretSources {
        sources,
        initial_api_key,
    }
}

fn parse_addr(key: &str, value: &str, problems: &mut Vec<String>) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        problems.push(format!(
            "{key}: \"{value}\" is not an address; set an IP address and port such as 127.0.0.1:8081"
        ));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}
