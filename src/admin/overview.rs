//! `GET /admin/overview`: what the console's first screen shows, in one JSON object: store and
//! readiness, active revocation and kicks pending, the signing-key schedule, and the last five
//! minutes of tokens minted and refusals by reason from this process's own counters
//! ([`crate::metrics::recent`]), never by parsing `/metrics` text; and the users per value of
//! each declared segment field (its [`TOP_VALUES`] most common values and the rest), read from
//! the store's kept counts ([`crate::store::SegmentCounts`]), never counted over the users.

use serde::Serialize;

use crate::error_chain::Chain;
use crate::keys::KeyInfo;
use crate::metrics::recent::Window;
use crate::router::context::Admin;
use crate::store::SegmentCounts;

/// How many values of each segment field the overview names; the others are summed.
pub const TOP_VALUES: usize = 10;

#[derive(Serialize)]
pub struct Overview {
    /// The server's version.
    pub version: &'static str,
    /// `app.id`: the application this deployment is (the console's header shows it).
    pub app_id: String,
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
    /// Users per value of each declared segment field; `null` when the store did not answer.
    pub segments: Option<SegmentCounts>,
}

pub async fn build(ctx: &Admin<'_>) -> Overview {
    let (now, s) = (ctx.now, &ctx.status);
    Overview {
        version: env!("CARGO_PKG_VERSION"),
        app_id: ctx.app_id.to_string(),
        now,
        store_backend: s.store_backend,
        status: s.readiness().await.label(),
        revocation_active: s.revocation_active,
        kicks_pending: s.metrics.kicks_pending.get(),
        keys: ctx.keys.current().list(now),
        recent: s.recent.window(s.metrics, now),
        segments: match ctx.segments.counts(TOP_VALUES).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "cannot read the segment counts");
                None
            }
        },
    }
}
