//! `GET /admin/overview`: what the console's first screen shows, in one JSON object: store and
//! readiness, active revocation and kicks pending, the signing-key schedule, and the last five
//! minutes of tokens minted and refusals by reason from this process's own counters
//! ([`crate::metrics::recent`]), never by parsing `/metrics` text.

use serde::Serialize;

use crate::app::App;
use crate::config::StoreConfig;
use crate::keys::KeyInfo;
use crate::metrics::recent::Window;

#[derive(Serialize)]
pub struct Overview {
    /// The server's version.
    pub version: &'static str,
    /// Unix seconds on the server.
    pub now: i64,
    /// `sqlite` or `postgres`.
    pub store_backend: &'static str,
    /// What `GET /readyz` would say: `ready`, `draining`, `read_only` or `unavailable`.
    pub status: &'static str,
    /// Active revocation (`centrifugo.api_url` set): changes queue kicks.
    pub revocation_active: bool,
    /// Kicks waiting for Centrifugo, as this replica's delivery loop last counted them.
    pub kicks_pending: i64,
    /// Every signing key, as `GET /admin/keys` lists them.
    pub keys: Vec<KeyInfo>,
    /// This process's last five minutes.
    pub recent: Window,
}

pub async fn build(app: &App) -> Overview {
    let now = crate::now_unix();
    let status = if !app.is_ready() {
        "draining"
    } else {
        match app.store.ping().await {
            Ok(()) if app.store.writes_work().await => "ready",
            Ok(()) => "read_only",
            Err(_) => "unavailable",
        }
    };
    Overview {
        version: env!("CARGO_PKG_VERSION"),
        now,
        store_backend: match app.config.store {
            StoreConfig::Sqlite { .. } => "sqlite",
            StoreConfig::Postgres { .. } => "postgres",
        },
        status,
        revocation_active: app.centrifugo_api.is_some(),
        kicks_pending: app.metrics.kicks_pending.get(),
        keys: app.keys.current().list(now),
        recent: app.recent.window(&app.metrics, now),
    }
}
