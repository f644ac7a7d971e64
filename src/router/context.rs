//! What each route family's handler is given: the slice of the services its routes need, the
//! facts of the request it reads, and for an API-key route the [`Caller`] the guard checked
//! (not an `Option`). The router builds one per request from the [`App`], which no handler can
//! reach: the types say what a handler may touch, as the route table says who may call it.
//!
//! | family | context | services |
//! |---|---|---|
//! | `POST /tokens`, `POST /tokens/subscription` | [`Minting`] | signer, store, limits, channel rules, token counters |
//! | `/centrifugo/*` | [`Proxy`] | verifier, store, Centrifugo settings (channel rules, intervals) |
//! | `/verify`, `/introspect`, JWKS | [`Verification`] | verifier, store, key ring, verification counters |
//! | `/admin/...` | [`Admin`] | actions, audit reader, key ring, status |
//! | `/healthz`, `/readyz`, `/metrics` | [`Ops`] | readiness, metrics registry |
//!
//! Building one is a few borrowed words on the stack: nothing allocates. Capabilities that need
//! more of the app than a handler may see (noting a rate-limit trip, rotating a signing key,
//! waking the kick loop) are methods over private fields.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Uri};

use super::table::{self, Route};
use crate::actions::{ActionError, Actions, Bulk, BulkOutcome, Changed};
use crate::app::{App, TripLog};
use crate::channels::ChannelRules;
use crate::config::{CentrifugoConfig, StoreConfig};
use crate::error_chain::Chain;
use crate::http::auth::Caller;
use crate::http::ApiError;
use crate::jwt::{Signer, Verifier};
use crate::keys::{KeyError, Kind, LiveKeys, Rotation};
use crate::limits::{Limited, Limits};
use crate::metrics::{Hot, Metrics, ProxySeries, SegmentSeries};
use crate::store::{AuditPage, AuditQuery, SegmentCounts, Store, StoreError};

/// The request facts the router read once: its head, the client's address (the trusted proxy
/// header's last entry for the routes whose guard limits by address, else the TCP peer) and
/// the clock reading (Unix seconds).
pub(super) struct Facts<'a> {
    pub headers: &'a HeaderMap,
    pub uri: &'a Uri,
    pub client: IpAddr,
    pub now: i64,
}

/// `POST /tokens` and `POST /tokens/subscription`.
pub struct Minting<'a> {
    pub signer: &'a Signer,
    pub store: &'a Store,
    pub limits: &'a Limits,
    pub channel_rules: &'a ChannelRules,
    pub counters: &'a Hot,
    /// `segments.info_fields`: the `custom` keys the wsToken's `info` carries.
    pub info_fields: &'a [String],
    /// `segments.metrics_label`'s series, when set.
    pub segment_series: Option<&'a SegmentSeries>,
    /// The API key the guard checked.
    pub caller: &'a Caller,
    pub now: i64,
    client: IpAddr,
    trips: &'a TripLog,
}

impl<'a> Minting<'a> {
    pub(super) fn new(app: &'a App, f: &Facts<'_>, caller: &'a Caller) -> Minting<'a> {
        Minting {
            signer: &app.signer,
            store: &app.store,
            limits: &app.limits,
            channel_rules: &app.config.centrifugo.channel_rules,
            counters: &app.metrics.hot,
            info_fields: &app.config.segments.info_fields,
            segment_series: app.metrics.segment.as_deref(),
            caller,
            now: f.now,
            client: f.client,
            trips: &app.trips,
        }
    }

    /// Counts the refusal `e` of a `POST /tokens` request whose `custom` is `custom` in the
    /// `segment`-labelled series (when `segments.metrics_label` is set); the route's own
    /// refusal counter is the router's.
    pub fn count_refusal_by_segment(&self, e: &ApiError, custom: Option<&str>) {
        if let Some(s) = self.segment_series {
            s.rejected(super::rejections::mint_reason(e), s.index(custom));
        }
    }

    /// A 429 for `l`, noted (sampled: at most one a minute per limit) for the audit trail
    /// with the caller's key name.
    pub fn rate_limited(&self, l: Limited) -> ApiError {
        self.trips
            .note(l, self.client, Some(self.caller.key_name.as_str()));
        ApiError::RateLimited(l)
    }
}

/// Centrifugo's proxy callbacks.
pub struct Proxy<'a> {
    pub verifier: &'a Verifier,
    pub store: &'a Store,
    /// Channel rules, refresh intervals.
    pub centrifugo: &'a CentrifugoConfig,
    /// `segments.info_fields`: the `custom` keys the connection `info` carries.
    pub info_fields: &'a [String],
    /// `app.id`: the application connections must belong to.
    pub app_id: &'a str,
    /// The callback's own decision counters.
    pub series: &'a ProxySeries,
    pub headers: &'a HeaderMap,
    pub now: i64,
}

impl<'a> Proxy<'a> {
    pub(super) fn new(app: &'a App, f: &Facts<'a>, series: &'a ProxySeries) -> Proxy<'a> {
        Proxy {
            verifier: &app.verifier,
            store: &app.store,
            centrifugo: &app.config.centrifugo,
            info_fields: &app.config.segments.info_fields,
            app_id: &app.config.app.id,
            series,
            headers: f.headers,
            now: f.now,
        }
    }
}

/// `/verify`, `/introspect` and `/.well-known/jwks.json`.
pub struct Verification<'a> {
    pub verifier: &'a Verifier,
    pub store: &'a Store,
    pub keys: &'a LiveKeys,
    pub metrics: &'a Metrics,
    /// `tokens.jwks_publish_delay_seconds`.
    pub jwks_publish_delay: i64,
    pub headers: &'a HeaderMap,
    pub now: i64,
}

impl<'a> Verification<'a> {
    pub(super) fn new(app: &'a App, f: &Facts<'a>) -> Verification<'a> {
        Verification {
            verifier: &app.verifier,
            store: &app.store,
            keys: &app.keys,
            metrics: &app.metrics,
            jwks_publish_delay: app.config.tokens.jwks_publish_delay_seconds,
            headers: f.headers,
            now: f.now,
        }
    }
}

/// The admin API.
pub struct Admin<'a> {
    /// The operator actions, recorded with actor `admin` and the client's address.
    pub actions: Actions<'a>,
    pub audit: AuditReader<'a>,
    /// The declared segment fields' users per value, for the overview.
    pub segments: SegmentReader<'a>,
    pub keys: &'a LiveKeys,
    /// What `GET /readyz` would say, and the rest of the overview's status.
    pub status: Status<'a>,
    pub now: i64,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// `app.id`: the application new API keys belong to.
    pub app_id: &'a str,
    route: Route,
    path: &'a str,
    kick_wake: &'a tokio::sync::Notify,
    client: IpAddr,
    /// Only for [`Admin::bulk`] and [`Admin::rotate`], whose tasks outlive the request.
    shared: &'a Arc<App>,
}

impl<'a> Admin<'a> {
    pub(super) fn new(app: &'a Arc<App>, f: &Facts<'a>, route: Route) -> Admin<'a> {
        let actions = app.actions().from_source(f.client.to_string());
        Admin {
            actions,
            audit: AuditReader { store: &app.store },
            segments: SegmentReader { store: &app.store },
            keys: &app.keys,
            status: Status::new(app),
            now: f.now,
            query: f.uri.query(),
            app_id: &app.config.app.id,
            route,
            path: f.uri.path(),
            kick_wake: &app.kick_wake,
            client: f.client,
            shared: app,
        }
    }

    /// Starts the bulk action `b` (recorded as this request's) in a task of its own, which
    /// wakes the kick delivery loop after each batch that queued kicks. Neither the request's
    /// timeout nor a client gone away stops it half-way: it runs to its end and writes its
    /// audit event; the handler awaits its outcome.
    pub fn bulk(&self, b: Bulk) -> tokio::task::JoinHandle<Result<BulkOutcome, ActionError>> {
        let app = Arc::clone(self.shared);
        let (source, now) = (self.client.to_string(), self.now);
        tokio::spawn(async move {
            let actions = app.actions().from_source(source);
            actions.bulk(&b, now, &|| app.kick_wake.notify_one()).await
        })
    }

    /// The raw (still percent-encoded) path segment the route table names `{name}`; empty
    /// when the route has none of that name.
    pub fn param(&self, name: &str) -> &'a str {
        table::param(self.route, self.path, name).unwrap_or_default()
    }

    /// Wakes the kick delivery loop when `changed` queued a kick.
    pub fn wake(&self, changed: Changed) {
        if changed.kick_queued {
            self.kick_wake.notify_one();
        }
    }

    /// Rotates the signing key of `kind` (recorded in the audit trail); this server follows
    /// at once, the others within a second (they watch the ring). The rotation runs in a task
    /// of its own, as [`Admin::bulk`] does: the ring file is written under its own lock, apart
    /// from the audit trail, so neither the request's timeout nor a client gone away may stop
    /// it between the file's write and its audit event (in PostgreSQL they are one
    /// transaction).
    pub async fn rotate(&self, kind: Kind) -> Result<Rotation, KeyError> {
        let app = Arc::clone(self.shared);
        let (source, now) = (self.client.to_string(), self.now);
        tokio::spawn(async move {
            let actions = app.actions().from_source(source);
            let r = actions
                .rotate_signing_key(&app.config, &app.secrets, kind, now)
                .await?;
            app.keys.refresh(&app.store).await;
            Ok(r)
        })
        .await
        .map_err(KeyError::Aborted)?
    }
}

/// Reads the audit trail, one page at a time (`GET /admin/audit`).
pub struct AuditReader<'a> {
    store: &'a Store,
}

impl AuditReader<'_> {
    pub async fn page(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.store.audit_page(q).await
    }
}

/// Reads the segment counts (`GET /admin/overview`).
pub struct SegmentReader<'a> {
    store: &'a Store,
}

impl SegmentReader<'_> {
    /// Every declared field's `k` most common values with their users, and the rest.
    pub async fn counts(&self, k: usize) -> Result<SegmentCounts, StoreError> {
        self.store.segment_counts(k).await
    }
}

/// Whether this replica should receive traffic: the one readiness decision `GET /readyz` and
/// the admin overview both report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Shutting down: load balancers should send traffic elsewhere.
    Draining,
    /// The store reads but refuses writes (disk full, read-only or locked).
    ReadOnly,
    /// The store does not answer.
    Unavailable,
}

impl Readiness {
    /// `ready`, `draining`, `read_only` or `unavailable`.
    pub fn label(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
            Readiness::ReadOnly => "read_only",
            Readiness::Unavailable => "unavailable",
        }
    }
}

/// The service's state as an operator sees it.
pub struct Status<'a> {
    /// False once shutdown started.
    serving: bool,
    store: &'a Store,
    /// `sqlite` or `postgres`.
    pub store_backend: &'static str,
    /// Active revocation (`centrifugo.api_url` set).
    pub revocation_active: bool,
    pub metrics: &'a Metrics,
    pub recent: &'a crate::metrics::recent::Recent,
}

impl<'a> Status<'a> {
    fn new(app: &'a App) -> Status<'a> {
        Status {
            serving: app.is_ready(),
            store: &app.store,
            store_backend: match app.config.store {
                StoreConfig::Sqlite { .. } => "sqlite",
                StoreConfig::Postgres { .. } => "postgres",
            },
            revocation_active: app.centrifugo_api.is_some(),
            metrics: &app.metrics,
            recent: &app.recent,
        }
    }

    /// Readiness: not draining, the store answers a read, and its writes work
    /// ([`Store::writes_work`]: the last write's outcome, and after a failure a probe write
    /// that changes nothing). A store that does not answer is logged here.
    pub async fn readiness(&self) -> Readiness {
        if !self.serving {
            return Readiness::Draining;
        }
        match self.store.ping().await {
            Ok(()) if self.store.writes_work().await => Readiness::Ready,
            Ok(()) => Readiness::ReadOnly,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "readiness check failed");
                Readiness::Unavailable
            }
        }
    }
}

/// `/healthz`, `/readyz`, `/metrics`.
pub struct Ops<'a> {
    pub status: Status<'a>,
}

impl<'a> Ops<'a> {
    pub(super) fn new(app: &'a App) -> Ops<'a> {
        Ops {
            status: Status::new(app),
        }
    }
}
