//! chatsdk-auth: the token sidecar that turns chat identities into ChatSDK and Centrifugo tokens.
//!
//! # Layout
//! - [`config`]: figment layering (defaults < `config/chatsdk-auth.toml` < `CHATSDK_AUTH_*` env)
//!   into a validated [`Config`]; every problem is reported by key before anything starts.
//! - [`secrets`]: signing keys, the proxy secret and the initial API key: read from env or files,
//!   generated (mode 0600) on first start.
//! - [`app`]: [`App`], the only shared state (config, signer, verifier, store, metrics).
//! - [`server`]: the accept loop over an already-bound listener, with graceful drain.
//! - [`router`]: the single route table; per-request timing, access log and metrics.
//! - [`access_log`]: the per-request log line, formatted without `tracing`'s generic machinery.
//! - [`http`]: request body reading, the JSON error envelope, API-key authentication.
//! - [`tokens`]: `POST /tokens`: request validation, user upsert, minting of both tokens.
//! - [`proxy`]: Centrifugo's HTTP proxy callbacks (connect, refresh, subscribe, sub_refresh).
//! - [`jwt`]: claims, [`jwt::Signer`] and [`jwt::Verifier`].
//! - [`store`]: persistence behind one type ([`store::Store`]); SQLite today.
//! - [`metrics`]: the owned Prometheus registry and every metric the service exports.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`cli`]: the operator subcommands (`api-key`, `user`, `check-config`, `centrifugo-config`).
//!
//! # Architecture invariants
//! - Only `http/`, `router` and `ops` know HTTP status codes; only `proxy/` knows Centrifugo codes.
//! - `jwt` and `store` know nothing about HTTP.
//! - Nothing reads environment variables or configuration files after [`Config::load`] and
//!   [`secrets::Secrets::load`] return.
//! - There are no global statics, metrics included: everything hangs off [`App`].
//! - No API key, secret or full token is ever logged, returned in an error or used as a label.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod access_log;
pub mod app;
pub mod centrifugo_config;
pub mod cli;
pub mod config;
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod ops;
pub mod proxy;
pub mod router;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tokens;

pub use app::App;
pub use config::Config;
pub use server::serve;

/// Seconds since the Unix epoch, the unit of every timestamp the service stores or signs.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
