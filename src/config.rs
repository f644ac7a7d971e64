//! Loads, layers and validates the configuration: defaults < TOML file < `CHATSDK_AUTH_*` env.
//!
//! Figment extracts a [`RawConfig`] (plain strings and numbers, every field documented with its
//! default and env name); [`RawConfig::validate`] turns it into a [`Config`] whose types prove
//! validity, collecting *every* problem with its key before failing. Secret values are accepted
//! only from the environment or from files (see [`crate::secrets`]), never from a config file.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

/// The config file read when `--config` is not given (relative to the working directory).
pub const DEFAULT_CONFIG_PATH: &str = "config/chatsdk-auth.toml";
/// Prefix of every environment variable; `__` separates nested keys.
pub const ENV_PREFIX: &str = "CHATSDK_AUTH_";

/// Keys whose values are secrets: they may come from the environment, never from a config file.
const SECRET_VALUE_KEYS: &[&str] = &[
    "secrets.rest_key",
    "secrets.centrifugo_key",
    "secrets.proxy_secret",
    "secrets.metrics_token",
    "secrets.initial_api_key",
];

/// Everything that can be configured, as read (before validation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub storage: RawStorage,
    pub tokens: RawTokens,
    pub centrifugo: RawCentrifugo,
    pub metrics: RawMetrics,
    pub log: RawLog,
    pub secrets: RawSecrets,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Address to listen on. Default `127.0.0.1:8081`; env `CHATSDK_AUTH_SERVER__LISTEN`.
    pub listen: String,
    /// Largest accepted request body in bytes (413 beyond). Default 65536.
    pub max_body_bytes: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT. Default 10.
    pub drain_timeout_seconds: u64,
    /// Seconds a client has to send request headers before the connection is closed. Default 10.
    pub header_read_timeout_seconds: u64,
    /// Seconds a whole request may take before it is answered 503. Default 10.
    pub request_timeout_seconds: u64,
    /// Tokio worker threads; 0 means one per CPU. Default 0.
    pub worker_threads: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            max_body_bytes: 64 * 1024,
            drain_timeout_seconds: 10,
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 10,
            worker_threads: 0,
        }
    }
}

/// `[storage]`: where users and API keys live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    /// `sqlite` (embedded, the default). Env `CHATSDK_AUTH_STORAGE__BACKEND`.
    pub backend: String,
    /// Directory for the database and generated secrets; relative paths resolve against the
    /// working directory. Default `data`.
    pub data_dir: String,
    /// SQLite file; empty means `<data_dir>/chatsdk-auth.db`.
    pub sqlite_path: String,
    /// Milliseconds a SQLite statement waits for a lock held by another process (the CLI).
    pub busy_timeout_ms: u64,
    /// PostgreSQL connection string (URL or `key=value` form) for `backend = "postgres"`. A
    /// password in it is only accepted from the environment
    /// (`CHATSDK_AUTH_STORAGE__POSTGRES_URL`); in a file, use a URL without one plus `PGPASSFILE`
    /// or peer/cert authentication.
    pub postgres_url: String,
    /// Connections in the PostgreSQL pool. Default 16.
    pub postgres_pool_size: usize,
    /// Milliseconds to wait for a pool connection or a connect before answering 503. Default 1000.
    pub postgres_timeout_ms: u64,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            backend: "sqlite".into(),
            data_dir: "data".into(),
            sqlite_path: String::new(),
            busy_timeout_ms: 5000,
            postgres_url: String::new(),
            postgres_pool_size: 16,
            postgres_timeout_ms: 1000,
        }
    }
}

/// `[tokens]`: what `POST /tokens` mints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    /// Lifetime of both tokens in seconds (`expiresIn`). Default 86400.
    pub ttl_seconds: u64,
    /// HMAC algorithm for both tokens: HS256, HS384 or HS512. Default HS256.
    pub algorithm: String,
    /// `iss` of the REST token. Default `chatsdk-auth`.
    pub rest_issuer: String,
    /// `aud` of the REST token. Default `chatsdk-api`.
    pub rest_audience: String,
    /// `aud` of the wsToken; empty omits it (must equal Centrifugo's `client.token.audience`).
    pub ws_audience: String,
    /// `iss` of the wsToken; empty omits it (must equal Centrifugo's `client.token.issuer`).
    pub ws_issuer: String,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            ttl_seconds: 86_400,
            algorithm: "HS256".into(),
            rest_issuer: "chatsdk-auth".into(),
            rest_audience: "chatsdk-api".into(),
            ws_audience: String::new(),
            ws_issuer: String::new(),
        }
    }
}

/// `[centrifugo]`: the proxy callbacks and generated Centrifugo config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCentrifugo {
    /// Header carrying the shared proxy secret (Centrifugo `http.static_headers`).
    pub proxy_secret_header: String,
    /// Server-side channel templates, `#{userId}` is replaced by the user id.
    pub user_channels: Vec<String>,
    /// Seconds a connection is extended by each refresh-proxy answer (and the longest a
    /// connect-proxy `expire_at` reaches). Default 3600.
    pub refresh_interval_seconds: u64,
    /// Base URL Centrifugo uses to reach this sidecar (in generated configs).
    pub sidecar_url: String,
    /// Channels any active user may subscribe to through the subscribe proxy; a trailing `*`
    /// matches any suffix. Default `["chat:*"]`.
    pub subscribe_patterns: Vec<String>,
    /// Seconds until a proxied subscription must be refreshed through sub_refresh; 0 (the
    /// default) gives subscriptions no expiry of their own (the connection refresh still
    /// enforces disable and revocation).
    pub subscription_refresh_interval_seconds: u64,
}

impl Default for RawCentrifugo {
    fn default() -> Self {
        Self {
            proxy_secret_header: "X-Chatsdk-Proxy-Secret".into(),
            user_channels: Vec::new(),
            refresh_interval_seconds: 3600,
            sidecar_url: "http://127.0.0.1:8081".into(),
            subscribe_patterns: vec!["chat:*".into()],
            subscription_refresh_interval_seconds: 0,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Separate listen address for `/metrics`; empty serves it on the main listener.
    pub listen: String,
    /// Require `Authorization: Bearer <secrets.metrics_token>` on `/metrics`. Default false.
    pub require_token: bool,
}

/// `[log]`: tracing output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `pretty` or `json`. Default `pretty`.
    pub format: String,
    /// An `EnvFilter` directive such as `info` or `chatsdk_auth=debug`. Default `info`.
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

/// `[secrets]`: where secrets come from. Values only via env, files via config.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSecrets {
    /// REST signing key value (env `CHATSDK_AUTH_SECRETS__REST_KEY`).
    pub rest_key: String,
    /// REST signing key file; empty means `<data_dir>/rest-signing.key`, generated if missing.
    pub rest_key_file: String,
    /// Centrifugo HMAC key value (env `CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY`).
    pub centrifugo_key: String,
    /// Centrifugo HMAC key file; empty means `<data_dir>/centrifugo-hmac.key`.
    pub centrifugo_key_file: String,
    /// Shared proxy secret value (env `CHATSDK_AUTH_SECRETS__PROXY_SECRET`).
    pub proxy_secret: String,
    /// Shared proxy secret file; empty means `<data_dir>/proxy-secret.key`.
    pub proxy_secret_file: String,
    /// Bearer token for `/metrics` (env `CHATSDK_AUTH_SECRETS__METRICS_TOKEN`).
    pub metrics_token: String,
    /// Bearer token file for `/metrics`; empty means `<data_dir>/metrics-token.key`.
    pub metrics_token_file: String,
    /// An API key to install at startup (env `CHATSDK_AUTH_SECRETS__INITIAL_API_KEY`), for
    /// automated deployments; stored hashed under the name `initial`.
    pub initial_api_key: String,
}

impl fmt::Debug for RawSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSecrets")
            .field("rest_key_file", &self.rest_key_file)
            .field("centrifugo_key_file", &self.centrifugo_key_file)
            .field("proxy_secret_file", &self.proxy_secret_file)
            .field("metrics_token_file", &self.metrics_token_file)
            .finish_non_exhaustive()
    }
}

/// The validated configuration: every field is ready to use.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub worker_threads: Option<usize>,
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub tokens: TokenConfig,
    pub centrifugo: CentrifugoConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub secrets: SecretSources,
}

/// Which storage backend, with its settings.
#[derive(Clone)]
pub enum StoreConfig {
    Sqlite {
        path: PathBuf,
        busy_timeout: Duration,
    },
    Postgres {
        /// May carry a password: never printed (see the `Debug` impl).
        url: String,
        pool_size: usize,
        timeout: Duration,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Sqlite { path, busy_timeout } => f
                .debug_struct("Sqlite")
                .field("path", path)
                .field("busy_timeout", busy_timeout)
                .finish(),
            StoreConfig::Postgres {
                pool_size, timeout, ..
            } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("pool_size", pool_size)
                .field("timeout", timeout)
                .finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub ttl_seconds: i64,
    pub algorithm: Algorithm,
    pub rest_issuer: String,
    pub rest_audience: String,
    pub ws_audience: Option<String>,
    pub ws_issuer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CentrifugoConfig {
    pub proxy_secret_header: http::HeaderName,
    pub user_channels: Vec<String>,
    pub refresh_interval_seconds: i64,
    pub sidecar_url: String,
    pub subscribe_patterns: Vec<String>,
    pub subscription_refresh_interval_seconds: i64,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
    pub require_token: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// Where one secret comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// The value itself, taken from the environment.
    Env(String),
    /// A file; generated with fresh random bytes when missing (if the secret is generatable).
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(_) => f.write_str("Env(<redacted>)"),
            SecretSource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SecretSources {
    pub rest_key: SecretSource,
    pub centrifugo_key: SecretSource,
    pub proxy_secret: SecretSource,
    pub metrics_token: SecretSource,
    pub initial_api_key: Option<SecretSource>,
}

/// Every problem found in the configuration, each naming its key.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Layers defaults, the config file and the environment, then validates.
    ///
    /// `path` is the file given with `--config`; `None` reads [`DEFAULT_CONFIG_PATH`] if present.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(figment(path)?)
    }

    /// Extracts and validates an already-layered figment (tests use this with `Jail`).
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        for key in SECRET_VALUE_KEYS {
            if let Some(meta) = fig.find_metadata(key) {
                let from_env = meta.name.to_lowercase().contains("environment");
                if !from_env
                    && fig
                        .find_value(key)
                        .is_ok_and(|v| !v.as_str().unwrap_or("").is_empty())
                {
                    problems.push(format!(
                        "{key}: secret values are not accepted from {}; set {} or use {key}_file",
                        meta.name,
                        env_name(key)
                    ));
                }
            }
        }
        // Sections are extracted one by one so that a type error in one section does not hide
        // the problems of the others (figment stops at the first error of an extraction).
        let raw = extract_sections(&fig, &mut problems);
        if let Some(meta) = fig.find_metadata("storage.postgres_url") {
            let has_password = tokio_postgres::Config::from_str(&raw.storage.postgres_url)
                .is_ok_and(|c| c.get_password().is_some());
            if has_password && !meta.name.to_lowercase().contains("environment") {
                problems.push(format!(
                    "storage.postgres_url: a password is not accepted from {}; set {} or use PGPASSFILE (the value is not shown)",
                    meta.name,
                    env_name("storage.postgres_url")
                ));
            }
        }
        match raw.validate() {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(e) => {
                problems.extend(e.problems);
                Err(ConfigError { problems })
            }
        }
    }
}

fn extract_sections(fig: &Figment, problems: &mut Vec<String>) -> RawConfig {
    const SECTIONS: [&str; 7] = [
        "server",
        "storage",
        "tokens",
        "centrifugo",
        "metrics",
        "log",
        "secrets",
    ];
    if let Ok(top) = fig.extract::<std::collections::BTreeMap<String, figment::value::Value>>() {
        for key in top.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            let source = fig
                .find_metadata(key)
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            problems.push(format!(
                "{key}: unknown section{source}; expected one of {}",
                SECTIONS.join(", ")
            ));
        }
    }
    fn section<T: serde::de::DeserializeOwned + Default>(
        fig: &Figment,
        name: &str,
        problems: &mut Vec<String>,
    ) -> T {
        fig.extract_inner::<T>(name).unwrap_or_else(|errors| {
            problems.extend(errors.into_iter().map(|mut e| {
                // extract_inner reports paths relative to the section, in varying order.
                e.path.retain(|p| p != name);
                e.path.insert(0, name.to_string());
                describe_figment_error(e)
            }));
            T::default()
        })
    }
    RawConfig {
        server: section(fig, "server", problems),
        storage: section(fig, "storage", problems),
        tokens: section(fig, "tokens", problems),
        centrifugo: section(fig, "centrifugo", problems),
        metrics: section(fig, "metrics", problems),
        log: section(fig, "log", problems),
        secrets: section(fig, "secrets", problems),
    }
}

/// The layered sources, in priority order (later wins).
pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    match path {
        Some(p) => {
            if !p.is_file() {
                return Err(ConfigError {
                    problems: vec![format!("--config: file {} does not exist", p.display())],
                });
            }
            fig = fig.merge(Toml::file(p));
        }
        None => fig = fig.merge(Toml::file(DEFAULT_CONFIG_PATH)),
    }
    Ok(fig.merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__")))
}

/// The environment variable that sets `key` (`server.listen` -> `CHATSDK_AUTH_SERVER__LISTEN`).
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

fn describe_figment_error(e: figment::Error) -> String {
    let key = if e.path.is_empty() {
        "(top level)".to_string()
    } else {
        e.path.join(".")
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(s) => format!(" (from {} {s})", m.name),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    format!("{key}: {}{source}", e.kind)
}

impl RawConfig {
    /// Turns raw values into a [`Config`], listing every problem by key.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut p = Vec::new();
        let s = &self.server;
        let listen = parse_addr("server.listen", &s.listen, &mut p);
        if s.max_body_bytes < 1024 || s.max_body_bytes > 16 * 1024 * 1024 {
            p.push(format!(
                "server.max_body_bytes: {} is out of range (1024 to 16777216)",
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
                p.push(format!("{key}: {v} is out of range (1 to 3600)"));
            }
        }

        let st = &self.storage;
        if st.data_dir.trim().is_empty() {
            p.push("storage.data_dir: must not be empty".into());
        }
        let data_dir = PathBuf::from(&st.data_dir);
        let store = match st.backend.as_str() {
            "sqlite" => StoreConfig::Sqlite {
                path: if st.sqlite_path.is_empty() {
                    data_dir.join("chatsdk-auth.db")
                } else {
                    PathBuf::from(&st.sqlite_path)
                },
                busy_timeout: Duration::from_millis(st.busy_timeout_ms),
            },
            "postgres" => {
                match tokio_postgres::Config::from_str(&st.postgres_url) {
                    Ok(_) if !st.postgres_url.trim().is_empty() => {}
                    _ => p.push("storage.postgres_url: must be a PostgreSQL connection string such as postgres://chatsdk@127.0.0.1:5432/chatsdk when storage.backend is \"postgres\" (the value is not shown)".into()),
                }
                if st.postgres_pool_size == 0 || st.postgres_pool_size > 1024 {
                    p.push(format!(
                        "storage.postgres_pool_size: {} is out of range (1 to 1024)",
                        st.postgres_pool_size
                    ));
                }
                if st.postgres_timeout_ms < 10 || st.postgres_timeout_ms > 60_000 {
                    p.push(format!(
                        "storage.postgres_timeout_ms: {} is out of range (10 to 60000)",
                        st.postgres_timeout_ms
                    ));
                }
                StoreConfig::Postgres {
                    url: st.postgres_url.clone(),
                    pool_size: st.postgres_pool_size,
                    timeout: Duration::from_millis(st.postgres_timeout_ms),
                }
            }
            other => {
                p.push(format!(
                    "storage.backend: \"{other}\" is not supported (expected \"sqlite\" or \"postgres\")"
                ));
                StoreConfig::Sqlite {
                    path: data_dir.join("chatsdk-auth.db"),
                    busy_timeout: Duration::from_millis(st.busy_timeout_ms),
                }
            }
        };

        let t = &self.tokens;
        if t.ttl_seconds < 60 || t.ttl_seconds > 365 * 86_400 {
            p.push(format!(
                "tokens.ttl_seconds: {} is out of range (60 to 31536000)",
                t.ttl_seconds
            ));
        }
        let algorithm = match t.algorithm.to_ascii_uppercase().as_str() {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            other => {
                p.push(format!(
                    "tokens.algorithm: \"{other}\" is not supported (expected HS256, HS384 or HS512)"
                ));
                Algorithm::HS256
            }
        };
        for (key, v) in [
            ("tokens.rest_issuer", &t.rest_issuer),
            ("tokens.rest_audience", &t.rest_audience),
        ] {
            if v.trim().is_empty() {
                p.push(format!("{key}: must not be empty"));
            }
        }
        let opt = |s: &String| (!s.trim().is_empty()).then(|| s.clone());

        let c = &self.centrifugo;
        let proxy_secret_header =
            match http::HeaderName::from_bytes(c.proxy_secret_header.as_bytes()) {
                Ok(h) => h,
                Err(_) => {
                    p.push(format!(
                        "centrifugo.proxy_secret_header: \"{}\" is not a valid HTTP header name",
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
        for (i, tpl) in c.user_channels.iter().enumerate() {
            if !tpl.contains("#{userId}") {
                p.push(format!(
                    "centrifugo.user_channels[{i}]: \"{tpl}\" must contain #{{userId}}"
                ));
            }
            if tpl.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                p.push(format!(
                    "centrifugo.user_channels[{i}]: \"{tpl}\" must not contain whitespace"
                ));
            }
        }
        if c.refresh_interval_seconds < 10 || c.refresh_interval_seconds > 365 * 86_400 {
            p.push(format!(
                "centrifugo.refresh_interval_seconds: {} is out of range (10 to 31536000)",
                c.refresh_interval_seconds
            ));
        }
        if url::Url::parse(&c.sidecar_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            p.push(format!(
                "centrifugo.sidecar_url: \"{}\" is not an http(s) URL",
                c.sidecar_url
            ));
        }

        for (i, pat) in c.subscribe_patterns.iter().enumerate() {
            let body = pat.strip_suffix('*').unwrap_or(pat);
            if body.is_empty() || body.contains('*') {
                p.push(format!(
                    "centrifugo.subscribe_patterns[{i}]: \"{pat}\" must be a channel or a prefix ending in a single trailing * (a bare * would allow every channel)"
                ));
            }
        }
        let sub = c.subscription_refresh_interval_seconds;
        if sub != 0 && !(10..=365 * 86_400).contains(&sub) {
            p.push(format!(
                "centrifugo.subscription_refresh_interval_seconds: {sub} is out of range (0, or 10 to 31536000)"
            ));
        }

        let m = &self.metrics;
        let metrics_listen = if m.listen.trim().is_empty() {
            None
        } else {
            Some(parse_addr("metrics.listen", &m.listen, &mut p))
        };

        let format = match self.log.format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                p.push(format!(
                    "log.format: \"{other}\" is not supported (expected \"pretty\" or \"json\")"
                ));
                LogFormat::Pretty
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            p.push(format!(
                "log.level: \"{}\" is not a valid filter (try \"info\" or \"chatsdk_auth=debug\")",
                self.log.level
            ));
        }

        let sec = &self.secrets;
        let source = |value: &str, file: &str, default_name: &str| {
            if !value.is_empty() {
                SecretSource::Env(value.to_string())
            } else if !file.is_empty() {
                SecretSource::File(PathBuf::from(file))
            } else {
                SecretSource::File(data_dir.join(default_name))
            }
        };
        let initial_api_key = (!sec.initial_api_key.is_empty()).then(|| {
            let body = sec.initial_api_key.strip_prefix(crate::store::API_KEY_PREFIX);
            if body.is_none_or(|b| b.len() < 32 || !b.bytes().all(|c| c.is_ascii_graphic())) {
                p.push(format!(
                    "secrets.initial_api_key: must be \"{}\" followed by at least 32 printable characters, e.g. from `chatsdk-auth api-key create` (the value is not shown)",
                    crate::store::API_KEY_PREFIX
                ));
            }
            SecretSource::Env(sec.initial_api_key.clone())
        });
        let secrets = SecretSources {
            rest_key: source(&sec.rest_key, &sec.rest_key_file, "rest-signing.key"),
            centrifugo_key: source(
                &sec.centrifugo_key,
                &sec.centrifugo_key_file,
                "centrifugo-hmac.key",
            ),
            proxy_secret: source(
                &sec.proxy_secret,
                &sec.proxy_secret_file,
                "proxy-secret.key",
            ),
            metrics_token: source(
                &sec.metrics_token,
                &sec.metrics_token_file,
                "metrics-token.key",
            ),
            initial_api_key,
        };
        for (key, v) in [
            ("secrets.rest_key", &sec.rest_key),
            ("secrets.centrifugo_key", &sec.centrifugo_key),
            ("secrets.proxy_secret", &sec.proxy_secret),
            ("secrets.metrics_token", &sec.metrics_token),
        ] {
            if !v.is_empty() && v.len() < 32 {
                p.push(format!(
                    "{key}: must be at least 32 bytes (the value is not shown)"
                ));
            }
        }
        if !sec.rest_key.is_empty() && sec.rest_key == sec.centrifugo_key {
            p.push("secrets.centrifugo_key: must differ from secrets.rest_key, or a wsToken would validate as a REST token".into());
        }

        if !p.is_empty() {
            return Err(ConfigError { problems: p });
        }
        Ok(Config {
            listen,
            max_body_bytes: s.max_body_bytes as usize,
            drain_timeout: Duration::from_secs(s.drain_timeout_seconds),
            header_read_timeout: Duration::from_secs(s.header_read_timeout_seconds),
            request_timeout: Duration::from_secs(s.request_timeout_seconds),
            worker_threads: (s.worker_threads > 0).then_some(s.worker_threads),
            data_dir,
            store,
            tokens: TokenConfig {
                ttl_seconds: t.ttl_seconds as i64,
                algorithm,
                rest_issuer: t.rest_issuer.clone(),
                rest_audience: t.rest_audience.clone(),
                ws_audience: opt(&t.ws_audience),
                ws_issuer: opt(&t.ws_issuer),
            },
            centrifugo: CentrifugoConfig {
                proxy_secret_header,
                user_channels: c.user_channels.clone(),
                refresh_interval_seconds: c.refresh_interval_seconds as i64,
                sidecar_url: c.sidecar_url.trim_end_matches('/').to_string(),
                subscribe_patterns: c.subscribe_patterns.clone(),
                subscription_refresh_interval_seconds: c.subscription_refresh_interval_seconds
                    as i64,
            },
            metrics: MetricsConfig {
                listen: metrics_listen,
                require_token: m.require_token,
            },
            log: LogConfig {
                format,
                level: self.log.level.clone(),
            },
            secrets,
        })
    }
}

fn parse_addr(key: &str, value: &str, problems: &mut Vec<String>) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        problems.push(format!(
            "{key}: \"{value}\" is not an address like 127.0.0.1:8081"
        ));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// The effective configuration as TOML with every secret value redacted (`check-config`).
pub fn redacted_toml(fig: &Figment) -> Result<String, ConfigError> {
    let mut raw: RawConfig = fig.extract().map_err(|errors| ConfigError {
        problems: errors.into_iter().map(describe_figment_error).collect(),
    })?;
    for v in [
        &mut raw.secrets.rest_key,
        &mut raw.secrets.centrifugo_key,
        &mut raw.secrets.proxy_secret,
        &mut raw.secrets.metrics_token,
        &mut raw.secrets.initial_api_key,
        &mut raw.storage.postgres_url,
    ] {
        if !v.is_empty() {
            *v = "<redacted>".into();
        }
    }
    toml_string(&raw)
}

fn toml_string(raw: &RawConfig) -> Result<String, ConfigError> {
    // figment re-exports no serializer; serde_json -> a hand-rolled TOML writer would be more
    // code than it is worth, so the effective config is printed as TOML via figment's own value.
    let value = serde_json::to_value(raw).map_err(|e| ConfigError {
        problems: vec![format!("cannot render configuration: {e}")],
    })?;
    let mut out = String::new();
    if let serde_json::Value::Object(sections) = value {
        for (section, body) in sections {
            out.push_str(&format!("[{section}]\n"));
            if let serde_json::Value::Object(fields) = body {
                for (k, v) in fields {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error.
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(c.tokens.ttl_seconds, 86_400);
        assert_eq!(c.tokens.rest_audience, "chatsdk-api");
        assert!(c.tokens.ws_audience.is_none());
    }

    #[test]
    fn every_problem_is_listed_by_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[server]\nlisten = \"nope\"\n[tokens]\nalgorithm = \"RS256\"\nttl_seconds = 1\n[log]\nformat = \"xml\"\n",
            )?;
            let err = Config::load(Some(Path::new("c.toml"))).unwrap_err();
            let text = err.to_string();
            for key in [
                "server.listen",
                "tokens.algorithm",
                "tokens.ttl_seconds",
                "log.format",
            ] {
                assert!(text.contains(key), "{key} missing from {text}");
            }
            Ok(())
        });
    }

    #[test]
    fn a_type_error_does_not_hide_problems_in_other_sections() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[tokens]\nttl_seconds = \"a day\"\n[log]\nformat = \"xml\"\n",
            )?;
            jail.set_env("CHATSDK_AUTH_BOGUS", "1");
            let text = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            for key in ["tokens.ttl_seconds", "log.format", "bogus"] {
                assert!(text.contains(key), "{key} missing from {text}");
            }
            Ok(())
        });
    }

    #[test]
    fn env_overrides_file_and_nests_with_double_underscore() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nlisten = \"127.0.0.1:9000\"\n")?;
            jail.set_env("CHATSDK_AUTH_SERVER__LISTEN", "127.0.0.1:9001");
            jail.set_env("CHATSDK_AUTH_TOKENS__TTL_SECONDS", "3600");
            let c = Config::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(c.listen.port(), 9001);
            assert_eq!(c.tokens.ttl_seconds, 3600);
            Ok(())
        });
    }

    #[test]
    fn secret_values_in_a_file_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[secrets]\nrest_key = \"0123456789abcdef0123456789abcdef-from-file\"\n",
            )?;
            let text = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(text.contains("secrets.rest_key"), "{text}");
            assert!(!text.contains("from-file"), "secret value leaked: {text}");
            Ok(())
        });
    }

    #[test]
    fn weak_initial_keys_and_reserved_proxy_headers_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CHATSDK_AUTH_SECRETS__INITIAL_API_KEY", "chatsdk_short");
            jail.set_env(
                "CHATSDK_AUTH_CENTRIFUGO__PROXY_SECRET_HEADER",
                "Authorization",
            );
            let text = Config::load(None).unwrap_err().to_string();
            assert!(text.contains("secrets.initial_api_key"), "{text}");
            assert!(
                !text.contains("chatsdk_short"),
                "the value is never shown: {text}"
            );
            assert!(text.contains("centrifugo.proxy_secret_header"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nlisten_addr = \"x\"\n")?;
            let text = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(text.contains("listen_addr"), "{text}");
            Ok(())
        });
    }
}
