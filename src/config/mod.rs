//! The configuration: defaults < TOML file < `CHATSDK_AUTH_*` env, validated once at startup.
//!
//! Split by job: [`raw`] holds what figment extracts (every field documented with its default
//! and env name) and the defaults; [`load`] layers the sources; [`validate`] turns each section
//! into the validated types below, collecting *every* problem with its key before failing;
//! [`redact`] prints the effective configuration for `check-config` with secrets hidden;
//! [`catalogue`] is the one table of secrets the others (and [`crate::secrets`]) walk.
//! Secret values are accepted only from the environment or from files (see
//! [`crate::secrets`]), never from a config file.

pub mod algorithm;
pub mod catalogue;
pub mod load;
pub mod raw;
pub mod redact;
pub mod validate;

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error.
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::channels::ChannelRules;

pub use catalogue::{Secret, SecretId, SecretSpec, SECRETS};
pub use load::{figment, DEFAULT_CONFIG_PATH};
pub use raw::{
    RawAdmin, RawApp, RawAudit, RawCentrifugo, RawConfig, RawLimits, RawLog, RawMetrics,
    RawSecrets, RawSegments, RawServer, RawStorage, RawTokens,
};
pub use redact::redacted_toml;

/// Prefix of every environment variable; `__` separates nested keys.
pub const ENV_PREFIX: &str = "CHATSDK_AUTH_";

/// The environment variable that sets `key` (`server.listen` -> `CHATSDK_AUTH_SERVER__LISTEN`).
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// The validated configuration: every field is ready to use.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[app]`: which application this deployment is.
    pub app: AppConfig,
    /// `[server]`: the listener and its limits.
    pub server: ServerConfig,
    /// `storage.data_dir`: the database (SQLite) and every generated secret live here.
    pub data_dir: PathBuf,
    /// `[storage]`: which backend, with its settings.
    pub store: StoreConfig,
    /// `[tokens]`: what `POST /tokens` mints.
    pub tokens: TokenConfig,
    /// `[centrifugo]`: the proxy callbacks and the generated Centrifugo config.
    pub centrifugo: CentrifugoConfig,
    /// `[admin]`: where the admin API is served.
    pub admin: AdminConfig,
    /// `[metrics]`: where `/metrics` is served and whether it needs a token.
    pub metrics: MetricsConfig,
    /// `[log]`: tracing output.
    pub log: LogConfig,
    /// `[secrets]`: where each secret comes from (values are read by [`crate::secrets`]).
    pub secrets: SecretSources,
    /// `[limits]`: rate limits.
    pub limits: LimitsConfig,
    /// `[audit]`: the audit trail's retention.
    pub audit: AuditConfig,
    /// `[segments]`: the declared segment fields and connection-info fields.
    pub segments: SegmentsConfig,
}

/// `[app]`, validated.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `app.id`: a valid slug ([`crate::api_key::valid_app_id`]).
    pub id: String,
}

/// `[limits]`, validated; a rate of 0 is off.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `limits.mint_per_user_per_minute`.
    pub mint_per_user_per_minute: u32,
    /// `limits.mint_per_api_key_per_second`.
    pub mint_per_api_key_per_second: u32,
    /// `limits.failed_auth_per_ip_per_minute`.
    pub failed_auth_per_ip_per_minute: u32,
    /// `limits.admin_per_ip_per_minute`.
    pub admin_per_ip_per_minute: u32,
    /// `limits.max_tracked_keys`: entries each limiter holds at most.
    pub max_tracked_keys: usize,
    /// `limits.trusted_proxy_header`: where the client address comes from, when set.
    pub trusted_proxy_header: Option<http::HeaderName>,
}

/// `[segments]`, validated: distinct names, each valid ([`crate::segments::valid_field_name`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentsConfig {
    /// `segments.fields`: the `custom` keys users are queried by, in the order declared.
    pub fields: Vec<String>,
    /// `segments.info_fields`: the `custom` keys copied into the connection `info`.
    pub info_fields: Vec<String>,
    /// `segments.metrics_label` with its values, when set.
    pub metrics_label: Option<MetricsLabel>,
}

/// `segments.metrics_label`: the declared field whose value labels the `POST /tokens` metrics,
/// and the only values the label takes besides `other` (so its series are bounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsLabel {
    pub field: String,
    /// `segments.metrics_label_values`, distinct, in the order listed.
    pub values: Vec<String>,
}

/// `[audit]`, validated.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// How long events are kept; `None` keeps them forever (`audit.retention_days = 0`).
    pub retention: Option<Duration>,
}

impl AuditConfig {
    /// The Unix time before which events are pruned at `now`; `None` when nothing is to be
    /// pruned (events are kept forever, or the retention reaches before the epoch). Never
    /// wraps: a retention too long for `i64` seconds prunes nothing rather than everything.
    pub fn prune_before(&self, now: i64) -> Option<i64> {
        let keep = i64::try_from(self.retention?.as_secs()).ok()?;
        now.checked_sub(keep).filter(|before| *before > 0)
    }
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address the main listener binds (`server.listen`).
    pub listen: SocketAddr,
    /// Largest accepted request body; 413 beyond (`server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Time in-flight requests get after SIGTERM/SIGINT (`server.drain_timeout_seconds`).
    pub drain_timeout: Duration,
    /// Time a client has to send its request headers (`server.header_read_timeout_seconds`).
    pub header_read_timeout: Duration,
    /// Time a whole request may take: 408 when the body is still arriving, else 503
    /// (`server.request_timeout_seconds`).
    pub request_timeout: Duration,
    /// Tokio worker threads; `None` means one per CPU (`server.worker_threads = 0`).
    pub worker_threads: Option<usize>,
    /// Open client connections at most on the main listener (`server.max_connections`, or
    /// derived from the open-file limit when 0).
    pub max_connections: usize,
}

/// Which storage backend, with its settings.
#[derive(Clone)]
pub enum StoreConfig {
    Sqlite {
        path: PathBuf,
        busy_timeout: Duration,
    },
    Postgres {
        /// May carry a password: never printed (see the `Debug` impl). The TLS parameters
        /// are taken out of it into `tls`; its `sslmode` is what tokio-postgres understands.
        url: String,
        /// libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` from the connection string.
        tls: crate::tls::PgTls,
        pool_size: usize,
        timeout: Duration,
        /// How concurrent lookups are gathered into one statement.
        batch: PgBatch,
    },
}

/// `storage.postgres_coalesce`, `postgres_batch_max`, `postgres_batch_window_us` and
/// `postgres_lookup_connections`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgBatch {
    /// False: every lookup is a statement of its own.
    pub coalesce: bool,
    /// Distinct ids (or keys) in one statement at most.
    pub max: usize,
    /// How long a lookup waits for others while a statement of its kind is in flight.
    pub window: Duration,
    /// Connections of the pool kept for the lookups, statements pipelined on them (at most
    /// the pool's size less one); 0: each statement takes a pooled connection of its own.
    pub connections: usize,
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
                pool_size,
                timeout,
                tls,
                batch,
                ..
            } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("tls", tls)
                .field("pool_size", pool_size)
                .field("timeout", timeout)
                .field("batch", batch)
                .finish(),
        }
    }
}

/// `[tokens]`, validated.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Lifetime of both tokens in seconds, the response's `expiresIn` (`tokens.ttl_seconds`).
    pub ttl_seconds: i64,
    /// The REST token's algorithm (`tokens.rest_algorithm`, else `tokens.algorithm`).
    pub rest_algorithm: Algorithm,
    /// The wsToken's algorithm (`tokens.ws_algorithm`, else `tokens.algorithm`).
    pub ws_algorithm: Algorithm,
    /// Seconds a new asymmetric key is published before it signs
    /// (`tokens.jwks_publish_delay_seconds`).
    pub jwks_publish_delay_seconds: i64,
    /// The subscription tokens' HMAC algorithm: the wsToken's when it is HMAC, else HS256
    /// (their key is always an HMAC secret, `secrets.subscription_key`).
    pub subscription_algorithm: Algorithm,
    /// `iss` of the REST token (`tokens.rest_issuer`).
    pub rest_issuer: String,
    /// `aud` of the REST token (`tokens.rest_audience`).
    pub rest_audience: String,
    /// `aud` of the wsToken, when Centrifugo checks one (`tokens.ws_audience`).
    pub ws_audience: Option<String>,
    /// `iss` of the wsToken, when Centrifugo checks one (`tokens.ws_issuer`); subscription
    /// tokens carry the same `aud`/`iss`.
    pub ws_issuer: Option<String>,
    /// Lifetime of subscription tokens, their `exp` - `iat` (`tokens.subscription_ttl_seconds`).
    pub subscription_ttl_seconds: i64,
    /// `expire_at` = `iat` + this in subscription tokens, when set
    /// (`tokens.subscription_expire_at_seconds`, 0 = unset).
    pub subscription_expire_at_seconds: Option<i64>,
    /// Lifetime of the wsToken in seconds, the response's `wsExpiresIn`
    /// (`tokens.ws_ttl_seconds`).
    pub ws_ttl_seconds: i64,
    /// `app.id`, which every token carries (the REST token in its `aud`, the wsToken in its
    /// `meta`) and verification requires.
    pub app_id: String,
}

/// `[centrifugo]`, validated.
#[derive(Debug, Clone)]
pub struct CentrifugoConfig {
    /// The header Centrifugo sends the shared proxy secret in (`centrifugo.proxy_secret_header`).
    pub proxy_secret_header: http::HeaderName,
    /// Server-side channel templates, each with `#{userId}` (`centrifugo.user_channels`).
    pub user_channels: Vec<String>,
    /// Seconds each refresh-proxy answer extends a connection by
    /// (`centrifugo.refresh_interval_seconds`).
    pub refresh_interval_seconds: i64,
    /// The base URL Centrifugo reaches the sidecar at, without a trailing `/`
    /// (`centrifugo.sidecar_url`, else derived from `server.listen`).
    pub sidecar_url: String,
    /// What a user may subscribe to: `centrifugo.channel_rules`, then
    /// `centrifugo.subscribe_patterns`, then `centrifugo.user_channels`, compiled.
    pub channel_rules: ChannelRules,
    /// Centrifugo's server API base without a trailing `/`; `None` disables active
    /// revocation (`centrifugo.api_url`).
    pub api_url: Option<String>,
    /// The CAs an https `api_url` must chain to (`centrifugo.api_ca_file`); `None` trusts the
    /// system's.
    pub api_ca_file: Option<PathBuf>,
    /// Time one server-API attempt may take (`centrifugo.api_timeout_ms`).
    pub api_timeout: Duration,
    /// Time between two looks at the kick outbox (`centrifugo.kick_poll_interval_ms`).
    pub kick_poll_interval: Duration,
    /// Seconds until a proxied subscription is refreshed; 0 means never
    /// (`centrifugo.subscription_refresh_interval_seconds`).
    pub subscription_refresh_interval_seconds: i64,
}

/// `[admin]`, validated.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// A listener of its own for `/admin/...`; `None` serves it on the main listener
    /// (`admin.listen`).
    pub listen: Option<SocketAddr>,
    /// Serve the operator console (`GET /admin/`) where the admin API is (`admin.console`).
    pub console: bool,
    /// Open connections at most on `admin.listen` (`admin.max_connections`).
    pub max_connections: usize,
}

/// `[metrics]`, validated.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// A listener of its own for `/metrics` and `/healthz`; `None` serves them on the main
    /// listener (`metrics.listen`).
    pub listen: Option<SocketAddr>,
    /// Whether `/metrics` needs `Authorization: Bearer <metrics token>`
    /// (`metrics.require_token`; unset: unless `/metrics` is served on a loopback address).
    pub require_token: bool,
    /// Open connections at most on `metrics.listen` (`metrics.max_connections`).
    pub max_connections: usize,
}

/// The one log format, used by tracing's events and the access log alike (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output shape.
    pub format: LogFormat,
    /// An `EnvFilter` directive, checked to parse (`log.level`).
    pub level: String,
}

/// Where one secret comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// The value itself, taken from the environment.
    Env(Secret),
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

/// Where each secret comes from (`[secrets]`).
#[derive(Debug, Clone)]
pub struct SecretSources {
    /// One source per row of [`SECRETS`], in its order.
    sources: [SecretSource; SECRETS.len()],
    /// An API key installed at startup; only ever from the environment.
    pub initial_api_key: Option<SecretSource>,
}

impl SecretSources {
    /// Where the secret `id` comes from.
    pub fn get(&self, id: SecretId) -> &SecretSource {
        &self.sources[id as usize]
    }

    /// Every secret with where it comes from, in the order of [`SECRETS`].
    pub fn iter(&self) -> impl Iterator<Item = (&'static SecretSpec, &SecretSource)> {
        SECRETS.iter().zip(&self.sources)
    }
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
