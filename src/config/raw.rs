//! The raw configuration as figment extracts it: plain strings and numbers, each field
//! documented with its default and environment variable, and the defaults themselves (the
//! lowest layer).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::catalogue::{SecretId, SECRETS};

/// Everything that can be configured, as read (before validation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub app: RawApp,
    pub server: RawServer,
    pub storage: RawStorage,
    pub tokens: RawTokens,
    pub centrifugo: RawCentrifugo,
    pub admin: RawAdmin,
    pub metrics: RawMetrics,
    pub log: RawLog,
    pub secrets: RawSecrets,
    pub limits: RawLimits,
    pub audit: RawAudit,
    pub segments: RawSegments,
}

/// `[app]`: which application this deployment is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApp {
    /// The application's short slug (1 to 32 of `a-z`, `0-9`, `-`, starting with a letter),
    /// e.g. `production` or `staging`: new API keys carry it in their prefix and tokens in a
    /// claim, so one application's key or token is refused by another's service with an error
    /// naming both. Default `default` (every install from before `app.id`); env
    /// `CHATSDK_AUTH_APP__ID`.
    pub id: String,
}

impl Default for RawApp {
    fn default() -> Self {
        Self {
            id: crate::api_key::DEFAULT_APP_ID.into(),
        }
    }
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
    /// Open client connections at most on the main listener; one more is accepted and closed
    /// at once. 0 (the default) derives it from the open-file limit, leaving headroom for the
    /// database, the other listeners' budgets and logs (see
    /// `config::validate::derived_max_connections`).
    pub max_connections: usize,
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
            max_connections: 0,
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
    /// Gather concurrent profile and API-key lookups into one statement each
    /// (src/store/postgres_batch.rs). Default true.
    pub postgres_coalesce: bool,
    /// Distinct ids (or keys) one gathered statement reads at most. Default 64.
    pub postgres_batch_max: usize,
    /// Microseconds a lookup waits for others to join it, only while another statement of its
    /// kind is already in flight (never when the replica is idle). Default 0.
    pub postgres_batch_window_us: u64,
    /// Pool connections kept for the coalesced lookups, several statements in flight on each
    /// (pipelined), at most `postgres_pool_size - 1`; 0 lets each statement take a pooled
    /// connection of its own. Default 1.
    pub postgres_lookup_connections: usize,
    /// Gives up authenticating the PostgreSQL server: lets `sslmode` `disable`, `prefer` or
    /// `require` start to a host that is not a loopback address or a Unix socket. Default false;
    /// logged as a warning at every start.
    pub postgres_accept_unauthenticated_server: bool,
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
            postgres_coalesce: true,
            postgres_batch_max: 64,
            postgres_batch_window_us: 0,
            postgres_lookup_connections: 1,
            postgres_accept_unauthenticated_server: false,
        }
    }
}

/// `[tokens]`: what `POST /tokens` mints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    /// Lifetime of both tokens in seconds (`expiresIn`). Default 86400.
    pub ttl_seconds: u64,
    /// Algorithm of both tokens unless `rest_algorithm`/`ws_algorithm` say otherwise: HS256,
    /// HS384, HS512, RS256, ES256 or EdDSA. Default HS256.
    pub algorithm: String,
    /// Algorithm of the REST token; empty means `algorithm`.
    pub rest_algorithm: String,
    /// Algorithm of the wsToken; empty means `algorithm`. EdDSA works with Centrifugo only
    /// through its JWKS endpoint.
    pub ws_algorithm: String,
    /// Seconds a new asymmetric key is published in the JWKS (as "next") before it signs, so
    /// every verifier's cached key set has it. Default 3900 (Centrifugo caches keys for an hour).
    pub jwks_publish_delay_seconds: u64,
    /// `iss` of the REST token. Default `chatsdk-auth`.
    pub rest_issuer: String,
    /// `aud` of the REST token. Default `chatsdk-api`.
    pub rest_audience: String,
    /// `aud` of the wsToken; empty omits it (must equal Centrifugo's `client.token.audience`).
    pub ws_audience: String,
    /// `iss` of the wsToken; empty omits it (must equal Centrifugo's `client.token.issuer`).
    /// Subscription tokens carry the same `aud`/`iss`.
    pub ws_issuer: String,
    /// Lifetime of subscription tokens in seconds (`exp`, `expiresIn` of
    /// `POST /tokens/subscription`). Default 3600.
    pub subscription_ttl_seconds: u64,
    /// Seconds after issue at which a subscription made with the token ends (the `expire_at`
    /// claim); 0 (the default) omits the claim, so the subscription ends with the token's `exp`.
    pub subscription_expire_at_seconds: u64,
    /// Lifetime of the wsToken in seconds (`wsExpiresIn`). It bounds how long a stolen or
    /// revoked wsToken can open a *new* JWT-mode connection. Default 3600; env
    /// `CHATSDK_AUTH_TOKENS__WS_TTL_SECONDS`.
    pub ws_ttl_seconds: u64,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            ttl_seconds: 86_400,
            algorithm: "HS256".into(),
            rest_algorithm: String::new(),
            ws_algorithm: String::new(),
            jwks_publish_delay_seconds: 3900,
            rest_issuer: "chatsdk-auth".into(),
            rest_audience: "chatsdk-api".into(),
            ws_audience: String::new(),
            ws_issuer: String::new(),
            subscription_ttl_seconds: 3600,
            subscription_expire_at_seconds: 0,
            ws_ttl_seconds: 3600,
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
    /// Base URL Centrifugo uses to reach this sidecar (in generated configs); empty (the
    /// default) means `http://` + `server.listen` (a wildcard address becomes loopback).
    pub sidecar_url: String,
    /// Centrifugo's server API base, e.g. `http://127.0.0.1:8000/api`; empty (the default)
    /// disables active revocation. Env `CHATSDK_AUTH_CENTRIFUGO__API_URL`.
    pub api_url: String,
    /// A PEM file of the CAs an `https://` `api_url`'s certificate must chain to; empty (the
    /// default) trusts the system's CAs.
    pub api_ca_file: String,
    /// Milliseconds one server-API attempt may take (connect and answer). Default 1000.
    pub api_timeout_ms: u64,
    /// Milliseconds between two looks at the kick outbox when nothing woke the delivery loop
    /// (a kick queued by the CLI or another replica). Default 500.
    pub kick_poll_interval_ms: u64,
    /// Channels any active user may subscribe to through the subscribe proxy; a trailing `*`
    /// matches any suffix. Default `["chat:*"]`. Each is a channel rule like those of
    /// `channel_rules` (kept for existing configurations).
    pub subscribe_patterns: Vec<String>,
    /// Channel templates a user may subscribe to (subscribe proxy, sub_refresh proxy and
    /// `POST /tokens/subscription`), with `#{userId}`, `#{custom.<path>}` and a trailing `*`
    /// (see [`crate::channels`]). Default empty.
    pub channel_rules: Vec<String>,
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
            sidecar_url: String::new(),
            api_url: String::new(),
            api_ca_file: String::new(),
            api_timeout_ms: 1000,
            kick_poll_interval_ms: 500,
            subscribe_patterns: vec!["chat:*".into()],
            channel_rules: Vec::new(),
            subscription_refresh_interval_seconds: 0,
        }
    }
}

/// `[admin]`: the admin HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Separate listen address for `/admin/...`; empty serves it on the main listener. Env
    /// `CHATSDK_AUTH_ADMIN__LISTEN`.
    pub listen: String,
    /// Serve the operator console (`GET /admin/`) beside the admin API. Env
    /// `CHATSDK_AUTH_ADMIN__CONSOLE`.
    pub console: bool,
    /// Open connections at most on `admin.listen`, its own budget (the main listener's
    /// connections never take it). Default 64; unused without `admin.listen`.
    pub max_connections: usize,
}

/// `admin.max_connections` when unset.
pub const DEFAULT_ADMIN_CONNECTIONS: usize = 64;
/// `metrics.max_connections` when unset.
pub const DEFAULT_METRICS_CONNECTIONS: usize = 16;

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: String::new(),
            console: true,
            max_connections: DEFAULT_ADMIN_CONNECTIONS,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Separate listen address for `/metrics`; empty serves it on the main listener.
    pub listen: String,
    /// Require `Authorization: Bearer <secrets.metrics_token>` on `/metrics`. Unset (the
    /// default): required unless the listener serving `/metrics` is bound to a loopback address.
    pub require_token: Option<bool>,
    /// Open connections at most on `metrics.listen`, its own budget. Default 16; unused
    /// without `metrics.listen`.
    pub max_connections: usize,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: String::new(),
            require_token: None,
            max_connections: DEFAULT_METRICS_CONNECTIONS,
        }
    }
}

/// `[limits]`: rate limits, per process (see `limits.rs`). 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// `POST /tokens` per `userId` per minute (a burst of this many, then one every
    /// 60/n seconds). Default 60.
    pub mint_per_user_per_minute: u32,
    /// `POST /tokens` per API key per second. Default 0 (off).
    pub mint_per_api_key_per_second: u32,
    /// Failed API-key checks per client address per minute; past it the address gets 429
    /// until the limit refills. Default 60.
    pub failed_auth_per_ip_per_minute: u32,
    /// Admin API calls per client address per minute. Default 60.
    pub admin_per_ip_per_minute: u32,
    /// Keys (users, addresses, API keys) each limiter tracks at most. Default 100000.
    pub max_tracked_keys: usize,
    /// A header set by a trusted reverse proxy that carries the client address (such as
    /// `X-Forwarded-For`; its last entry is used). Empty (the default): the peer address.
    pub trusted_proxy_header: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            mint_per_user_per_minute: 60,
            mint_per_api_key_per_second: 0,
            failed_auth_per_ip_per_minute: 60,
            admin_per_ip_per_minute: 60,
            max_tracked_keys: 100_000,
            trusted_proxy_header: String::new(),
        }
    }
}

/// `[audit]`: the security-event trail in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// Days an audit event is kept, 1 to 36500; 0 keeps events forever. Default 365.
    pub retention_days: u64,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            retention_days: 365,
        }
    }
}

/// `[segments]`: the `custom` fields operators segment users by, and those copied into the
/// connection `info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSegments {
    /// The `custom` keys users can be queried and bulk-changed by (each is indexed in the
    /// store), e.g. `["organizationId", "tenantId", "plan"]`. Default none.
    pub fields: Vec<String>,
    /// The `custom` keys copied into Centrifugo's connection `info` (wsToken, connect and
    /// refresh proxy answers), which every subscriber of the user's channels sees in presence
    /// and publications. Default none: nothing of `custom` is exposed.
    pub info_fields: Vec<String>,
    /// A declared field whose value labels the issuance and refusal metrics of `POST /tokens`
    /// (`segment`). Default none: no such series.
    pub metrics_label: String,
    /// The values `metrics_label` takes (string values of the field); every other value, and a
    /// user without the field, is `other`. Required with `metrics_label`.
    pub metrics_label_values: Vec<String>,
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
    /// REST signing key value (env `CHATSDK_AUTH_SECRETS__REST_KEY`): an HMAC secret, or a
    /// PKCS#8 PEM private key for an asymmetric `tokens.rest_algorithm`.
    pub rest_key: String,
    /// REST signing key file; empty means `<data_dir>/rest-signing.key` (HMAC) or
    /// `<data_dir>/rest-signing-<alg>.pem`, generated if missing.
    pub rest_key_file: String,
    /// wsToken signing key value (env `CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY`): the Centrifugo
    /// HMAC key, or a PKCS#8 PEM private key for an asymmetric `tokens.ws_algorithm`.
    pub centrifugo_key: String,
    /// wsToken signing key file; empty means `<data_dir>/centrifugo-hmac.key` (HMAC) or
    /// `<data_dir>/ws-signing-<alg>.pem`.
    pub centrifugo_key_file: String,
    /// Shared proxy secret value (env `CHATSDK_AUTH_SECRETS__PROXY_SECRET`).
    pub proxy_secret: String,
    /// Shared proxy secret file; empty means `<data_dir>/proxy-secret.key`.
    pub proxy_secret_file: String,
    /// Bearer token for `/metrics` (env `CHATSDK_AUTH_SECRETS__METRICS_TOKEN`).
    pub metrics_token: String,
    /// Bearer token file for `/metrics`; empty means `<data_dir>/metrics-token.key`.
    pub metrics_token_file: String,
    /// Centrifugo server-API key value (env `CHATSDK_AUTH_SECRETS__CENTRIFUGO_API_KEY`).
    pub centrifugo_api_key: String,
    /// Centrifugo server-API key file; empty means `<data_dir>/centrifugo-api.key`.
    pub centrifugo_api_key_file: String,
    /// Admin API bearer token value (env `CHATSDK_AUTH_SECRETS__ADMIN_TOKEN`).
    pub admin_token: String,
    /// Admin API bearer token file; empty means `<data_dir>/admin-token.key`.
    pub admin_token_file: String,
    /// An API key to install at startup (env `CHATSDK_AUTH_SECRETS__INITIAL_API_KEY`), for
    /// automated deployments; stored hashed under the name `initial`.
    pub initial_api_key: String,
    /// Subscription-token HMAC key value (env `CHATSDK_AUTH_SECRETS__SUBSCRIPTION_KEY`).
    pub subscription_key: String,
    /// Subscription-token HMAC key file; empty means `<data_dir>/subscription-hmac.key`.
    pub subscription_key_file: String,
    /// Key-encryption secret value (env `CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY`): encrypts
    /// the signing keys stored in PostgreSQL; read only with `storage.backend = "postgres"`.
    pub key_encryption_key: String,
    /// Key-encryption secret file; empty means `<data_dir>/key-encryption.key`.
    pub key_encryption_key_file: String,
}

impl RawSecrets {
    /// The value of secret `id` as read (empty when unset).
    pub fn value(&self, id: SecretId) -> &str {
        match id {
            SecretId::RestKey => &self.rest_key,
            SecretId::CentrifugoKey => &self.centrifugo_key,
            SecretId::ProxySecret => &self.proxy_secret,
            SecretId::MetricsToken => &self.metrics_token,
            SecretId::SubscriptionKey => &self.subscription_key,
            SecretId::CentrifugoApiKey => &self.centrifugo_api_key,
            SecretId::AdminToken => &self.admin_token,
            SecretId::KeyEncryptionKey => &self.key_encryption_key,
        }
    }

    /// The file key of secret `id` as read (empty when unset).
    pub fn file(&self, id: SecretId) -> &str {
        match id {
            SecretId::RestKey => &self.rest_key_file,
            SecretId::CentrifugoKey => &self.centrifugo_key_file,
            SecretId::ProxySecret => &self.proxy_secret_file,
            SecretId::MetricsToken => &self.metrics_token_file,
            SecretId::SubscriptionKey => &self.subscription_key_file,
            SecretId::CentrifugoApiKey => &self.centrifugo_api_key_file,
            SecretId::AdminToken => &self.admin_token_file,
            SecretId::KeyEncryptionKey => &self.key_encryption_key_file,
        }
    }
}

/// Shows the file keys only, never a value.
impl fmt::Debug for RawSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RawSecrets");
        for s in &SECRETS {
            let name = format!("{}_file", s.field());
            d.field(&name, &self.file(s.id));
        }
        d.finish_non_exhaustive()
    }
}
