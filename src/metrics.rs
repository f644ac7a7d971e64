//! Every Prometheus metric the service exports, in one owned registry (no global statics).
//!
//! Namespace `chatsdk_auth_`. Every label value comes from a closed set chosen in code (or, for
//! `key_name`, from the few names operators give their API keys): never a user id, a raw path,
//! a token or a key. Rule of thumb for a new metric: count outcomes where they are decided
//! (`tokens`, `proxy`), time requests in `router`, time storage in `store`. Each closed label
//! set is one enum (`metrics/labels.rs`, and Centrifugo's in `centrifugo/protocol.rs`); every
//! value of every set is created at startup, so dashboards and alerts see zeros.

pub mod recent;
mod segment;

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use strum::{EnumCount, IntoEnumIterator};

use crate::centrifugo::protocol::{ApiMethod, Callback, Reason};
use crate::telemetry::DroppedCount;

mod labels;

pub use segment::SegmentSeries;

pub use labels::{
    ApiCallOutcome, BatchLookup, DecisionOutcome, IntrospectResult, ProxyFailure, RejectReason,
    StatusClass, StoreOperation, TokenKind, UpsertResult, Verification, VerifyResult, NO_REASON,
};

const NAMESPACE: &str = "chatsdk_auth";

/// Latency buckets in seconds: sub-millisecond resolution where the service lives, up to
/// Centrifugo's 1 s proxy timeout and a little beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Distinct ids (or keys) in one coalesced PostgreSQL statement (`storage.postgres_batch_max`
/// is at most 1000).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
];
/// Storage operations are faster still.
const STORE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
    1.0,
];

/// Server-API latency buckets: Centrifugo answers in milliseconds; the timeout is 1 s.
const API_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The server-API client's series (handed to `centrifugo::api::CentrifugoApi`).
#[derive(Clone)]
pub struct CentrifugoApiMetrics {
    /// Attempts, by `method` and `outcome`.
    pub calls: IntCounterVec,
    /// Attempt time, by `method`.
    pub duration: HistogramVec,
}

/// All metrics, registered in `registry`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Tokens minted, by `kind` (`rest`, `ws`, `subscription`).
    pub tokens_issued: IntCounterVec,
    /// `POST /tokens` refusals, by `reason`.
    pub token_rejections: IntCounterVec,
    /// `POST /tokens/subscription` refusals, by `reason`.
    pub subscription_rejections: IntCounterVec,
    /// Proxy decisions, by `callback`, `outcome` and `reason`.
    pub proxy_decisions: IntCounterVec,
    /// Proxy calls without the shared secret, by `callback`.
    pub proxy_unauthenticated: IntCounterVec,
    /// Proxy handling time, by `callback`.
    pub proxy_duration: HistogramVec,
    /// Request handling time, by `route` and `status_class`.
    pub http_duration: HistogramVec,
    /// Requests being handled right now.
    pub http_in_flight: IntGauge,
    /// Storage operation time, by `operation`.
    pub store_duration: HistogramVec,
    /// Distinct ids (or keys) per coalesced PostgreSQL statement, by `lookup`.
    pub store_batch_size: HistogramVec,
    /// Users written by `POST /tokens`, by `result` (`created`, `updated`).
    pub users_upserted: IntCounterVec,
    /// Authenticated requests, by API key `key_name`.
    pub api_key_requests: IntCounterVec,
    /// `/verify` and `/introspect` answers, by `endpoint` and `result`.
    pub verifications: IntCounterVec,
    /// Always 1; labels carry the version and commit.
    pub build_info: IntGaugeVec,
    /// Centrifugo server-API attempts and their time.
    pub centrifugo_api: CentrifugoApiMetrics,
    /// Kicks waiting in the outbox, as this replica's delivery loop last counted them.
    pub kicks_pending: IntGauge,
    /// Kicks delivered (Centrifugo answered the disconnect), by this replica.
    pub kicks_delivered: IntCounter,
    /// Admin API requests refused for a missing or wrong bearer token.
    pub admin_unauthorized: IntCounter,
    /// `/metrics` scrapes refused for a missing or wrong bearer token.
    pub metrics_unauthorized: IntCounter,
    /// Statements on the limit buckets the replicas share that failed (PostgreSQL).
    pub shared_limit_failures: IntCounter,
    /// Time of one statement on those buckets.
    pub shared_limit_duration: Histogram,
    /// Limit checks of a key its full table could not track, by `limit` (mints: passed
    /// unlimited; failed credentials: charged to a bucket shared by the untracked).
    pub rate_limit_untracked: IntCounterVec,
    /// Client connections open right now.
    pub connections_open: IntGauge,
    /// The connection cap in effect (`server.max_connections`, or derived).
    pub connections_max: IntGauge,
    /// Connections closed at once because `connections_max` were already open.
    pub connections_refused: IntCounter,
    /// `accept()` failures (usually the open-file limit), each followed by a growing pause.
    pub accept_errors: IntCounter,
    /// Key rings found in the store that this replica refused to load (each also logged).
    pub key_ring_loads_refused: IntCounter,
    /// The per-request series, resolved once.
    pub hot: std::sync::Arc<Hot>,
    /// The `segment`-labelled series of `POST /tokens` (`segments.metrics_label`), when set.
    pub segment: Option<std::sync::Arc<SegmentSeries>>,
    /// The `route` label values, indexed as the router numbers its routes.
    route_labels: &'static [&'static str],
}

/// The series of one proxy callback.
pub struct ProxySeries {
    pub duration: Histogram,
    accepted: IntCounter,
    /// By [`Reason`] (`as usize`: declaration order, which is strum's iteration order).
    rejected: Vec<IntCounter>,
    /// By [`ProxyFailure`].
    failed: Vec<IntCounter>,
}

/// What a proxy call decided: accepted, rejected for a Centrifugo [`Reason`], or failed with a
/// [`ProxyFailure`]. The proxy handler returns it, and it is counted once, in its callback's
/// [`ProxySeries`].
#[derive(Debug, Clone, Copy)]
pub enum ProxyOutcome {
    Accepted,
    Rejected(Reason),
    Error(ProxyFailure),
}

impl ProxySeries {
    /// Counts one call's outcome.
    pub fn count(&self, outcome: ProxyOutcome) {
        match outcome {
            ProxyOutcome::Accepted => self.accepted.inc(),
            ProxyOutcome::Rejected(r) => self.rejected(r).inc(),
            ProxyOutcome::Error(f) => self.failed(f).inc(),
        }
    }

    /// `outcome="accepted"`.
    pub fn accepted(&self) -> &IntCounter {
        &self.accepted
    }

    /// `outcome="rejected"` for `reason`.
    pub fn rejected(&self, reason: Reason) -> &IntCounter {
        &self.rejected[reason as usize]
    }

    /// `outcome="error"` for `failure`.
    pub fn failed(&self, failure: ProxyFailure) -> &IntCounter {
        &self.failed[failure as usize]
    }
}

/// Series updated on every request, resolved once.
pub struct Hot {
    pub tokens_rest: IntCounter,
    pub tokens_ws: IntCounter,
    pub tokens_subscription: IntCounter,
    pub users_created: IntCounter,
    pub users_updated: IntCounter,
    /// By [`Callback`].
    proxy: Vec<ProxySeries>,
    /// `token_verifications_total{endpoint="verify"}` by [`VerifyResult`].
    verify: Vec<IntCounter>,
    /// `token_verifications_total{endpoint="introspect"}` by [`IntrospectResult`].
    introspect: Vec<IntCounter>,
    /// `http_request_duration_seconds` by route index and status class, resolved on first
    /// use so that only series that happened appear.
    http: Vec<OnceLock<Histogram>>,
}

/// `store_operation_duration_seconds`, one histogram per operation.
#[derive(Clone)]
pub struct StoreTimings {
    pub ping: Histogram,
    pub upsert_user: Histogram,
    pub get_user: Histogram,
    pub authenticate_api_key: Histogram,
    pub touch_api_key: Histogram,
    /// `shared_limit_duration_seconds`: one statement on the shared limit buckets.
    pub shared_limit: Histogram,
    /// `shared_limit_failures_total`: shared-limit statements that failed.
    pub shared_limit_failures: IntCounter,
    /// `store_batch_size{lookup="profile"}`.
    pub profile_batch: Histogram,
    /// `store_batch_size{lookup="api_key"}`.
    pub api_key_batch: Histogram,
}

impl Metrics {
    /// Registers every metric. `route_labels` is the router's closed set of `route` values
    /// (its own numbering); the registry does not know what the routes are.
    /// `dropped_lines` is the log output's count, which the registry reads at each scrape.
    pub fn new(
        route_labels: &'static [&'static str],
        dropped_lines: DroppedCount,
    ) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help).namespace(NAMESPACE), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram = |name: &str,
                         help: &str,
                         labels: &[&str],
                         buckets: &[f64]|
         -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help)
                    .namespace(NAMESPACE)
                    .buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let tokens_issued = counter(
            "tokens_issued_total",
            "Tokens minted, by kind (rest, ws, subscription).",
            &["kind"],
        )?;
        let token_rejections = counter(
            "token_requests_rejected_total",
            "POST /tokens requests refused, by reason.",
            &["reason"],
        )?;
        let subscription_rejections = counter(
            "subscription_token_requests_rejected_total",
            "POST /tokens/subscription requests refused, by reason.",
            &["reason"],
        )?;
        let verifications = counter(
            "token_verifications_total",
            "GET /verify and POST /introspect answers, by endpoint and result (never a token or a user).",
            &["endpoint", "result"],
        )?;
        let proxy_decisions = counter(
            "proxy_decisions_total",
            "Centrifugo proxy decisions, by callback, outcome (accepted, rejected, error) and reason.",
            &["callback", "outcome", "reason"],
        )?;
        let proxy_unauthenticated = counter(
            "proxy_unauthenticated_total",
            "Centrifugo proxy calls refused because the shared-secret header was missing or wrong.",
            &["callback"],
        )?;
        let proxy_duration = histogram(
            "proxy_duration_seconds",
            "Time to answer a Centrifugo proxy callback (Centrifugo gives up after 1 s).",
            &["callback"],
            LATENCY_BUCKETS,
        )?;
        let http_duration = histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status class.",
            &["route", "status_class"],
            LATENCY_BUCKETS,
        )?;
        let http_in_flight = IntGauge::with_opts(
            Opts::new(
                "http_requests_in_flight",
                "HTTP requests being handled right now.",
            )
            .namespace(NAMESPACE),
        )?;
        registry.register(Box::new(http_in_flight.clone()))?;
        let store_duration = histogram(
            "store_operation_duration_seconds",
            "Time spent in one storage operation, by operation.",
            &["operation"],
            STORE_BUCKETS,
        )?;
        let store_batch_size = histogram(
            "store_batch_size",
            "Distinct ids (or keys) read by one coalesced PostgreSQL statement, by lookup (profile, api_key).",
            &["lookup"],
            BATCH_BUCKETS,
        )?;
        let users_upserted = counter(
            "users_upserted_total",
            "Users written by POST /tokens, by result (created, updated).",
            &["result"],
        )?;
        let api_key_requests = counter(
            "api_key_requests_total",
            "Requests authenticated with an API key, by the key's name (never the key).",
            &["key_name"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; the labels say which build is running.",
            )
            .namespace(NAMESPACE),
            &["version", "git_commit"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("CHATSDK_BUILD_GIT_COMMIT").unwrap_or("unknown"),
            ])
            .set(1);
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(crate::telemetry::DroppedLines::new(
            NAMESPACE,
            dropped_lines,
        )?))?;
        let centrifugo_api = CentrifugoApiMetrics {
            calls: counter(
                "centrifugo_api_calls_total",
                "Centrifugo server-API attempts, by method and outcome (ok, unreachable, timeout, unauthorized, http_error, api_error, bad_response).",
                &["method", "outcome"],
            )?,
            duration: histogram(
                "centrifugo_api_call_duration_seconds",
                "Time one Centrifugo server-API attempt took, by method.",
                &["method"],
                API_BUCKETS,
            )?,
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::with_opts(Opts::new(name, help).namespace(NAMESPACE))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let single = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help).namespace(NAMESPACE))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let kicks_pending = gauge(
            "kicks_pending",
            "Terminal disconnects (kicks) waiting in the outbox for Centrifugo, as last counted by this replica.",
        )?;
        let kicks_delivered = single(
            "kicks_delivered_total",
            "Kicks Centrifugo accepted (disconnect answered), delivered by this replica.",
        )?;
        let admin_unauthorized = single(
            "admin_unauthorized_total",
            "Admin API requests refused for a missing or wrong bearer token.",
        )?;
        let connections_open = gauge(
            "connections_open",
            "Client connections open right now (both listeners).",
        )?;
        let connections_max = gauge(
            "connections_max",
            "The connection cap in effect (server.max_connections, or derived from the open-file limit).",
        )?;
        let connections_refused = single(
            "connections_refused_total",
            "Connections closed at once because server.max_connections were already open.",
        )?;
        let metrics_unauthorized = single(
            "metrics_unauthorized_total",
            "/metrics scrapes refused for a missing or wrong bearer token.",
        )?;
        let shared_limit_failures = single(
            "shared_limit_failures_total",
            "Statements on the limit buckets the replicas share (PostgreSQL) that failed; this replica's own limits applied meanwhile.",
        )?;
        let shared_limit_duration = histogram(
            "shared_limit_duration_seconds",
            "Time of one statement on the limit buckets the replicas share (PostgreSQL): counting a failure, or reading a bucket before an API-key check.",
            &[],
            STORE_BUCKETS,
        )?
        .with_label_values::<&str>(&[]);
        let rate_limit_untracked = counter(
            "rate_limit_untracked_total",
            "Limit checks of a key the limiter's full table could not track (limits.max_tracked_keys): mint limits let it pass, failed-credential limits charge it to a bucket the untracked share.",
            &["limit"],
        )?;
        let accept_errors = single(
            "accept_errors_total",
            "Failed accept() calls (usually the open-file limit); each is followed by a pause that doubles up to 1 s.",
        )?;

        let key_ring_loads_refused = single(
            "key_ring_loads_refused_total",
            "Key rings (the ring file, or the row in PostgreSQL) that this process refused to load (altered, sealed with another secret, unreadable); the keys in effect stayed.",
        )?;

        let proxy = Callback::iter()
            .map(|cb| {
                let decision = |outcome: DecisionOutcome, reason: &str| {
                    proxy_decisions.with_label_values(&[cb.label(), outcome.label(), reason])
                };
                ProxySeries {
                    duration: proxy_duration.with_label_values(&[cb.label()]),
                    accepted: decision(DecisionOutcome::Accepted, NO_REASON),
                    rejected: Reason::iter()
                        .map(|r| decision(DecisionOutcome::Rejected, r.label()))
                        .collect(),
                    failed: ProxyFailure::iter()
                        .map(|f| decision(DecisionOutcome::Error, f.label()))
                        .collect(),
                }
            })
            .collect();
        let verification =
            |v: Verification| verifications.with_label_values(&[v.label(), v.result()]);
        let tokens = |k: TokenKind| tokens_issued.with_label_values(&[k.label()]);
        let users = |r: UpsertResult| users_upserted.with_label_values(&[r.label()]);
        let hot = Hot {
            tokens_rest: tokens(TokenKind::Rest),
            tokens_ws: tokens(TokenKind::Ws),
            tokens_subscription: tokens(TokenKind::Subscription),
            users_created: users(UpsertResult::Created),
            users_updated: users(UpsertResult::Updated),
            proxy,
            verify: VerifyResult::iter()
                .map(|r| verification(Verification::Verify(r)))
                .collect(),
            introspect: IntrospectResult::iter()
                .map(|r| verification(Verification::Introspect(r)))
                .collect(),
            http: (0..route_labels.len() * StatusClass::COUNT)
                .map(|_| OnceLock::new())
                .collect(),
        };
        let m = Metrics {
            hot: std::sync::Arc::new(hot),
            registry,
            tokens_issued,
            token_rejections,
            subscription_rejections,
            proxy_decisions,
            proxy_unauthenticated,
            proxy_duration,
            http_duration,
            http_in_flight,
            store_duration,
            store_batch_size,
            users_upserted,
            api_key_requests,
            verifications,
            build_info,
            centrifugo_api,
            kicks_pending,
            kicks_delivered,
            admin_unauthorized,
            metrics_unauthorized,
            shared_limit_failures,
            shared_limit_duration,
            rate_limit_untracked,
            connections_open,
            connections_max,
            connections_refused,
            accept_errors,
            key_ring_loads_refused,
            segment: None,
            route_labels,
        };
        m.initialise_series();
        Ok(m)
    }

    /// Creates the zero-valued series of every closed label set, so that `rate()` and alert
    /// rules see a 0 rather than nothing before the first event. (The proxy, verification,
    /// token and user series were created with `hot`; the request histograms appear per route
    /// and status class as requests happen.)
    fn initialise_series(&self) {
        for l in crate::limits::Limit::ALL {
            self.rate_limit_untracked.with_label_values(&[l.label()]);
        }
        for kind in TokenKind::iter() {
            self.tokens_issued.with_label_values(&[kind.label()]);
        }
        for r in RejectReason::iter() {
            if !r.subscription_only() {
                self.token_rejections.with_label_values(&[r.label()]);
            }
            self.subscription_rejections.with_label_values(&[r.label()]);
        }
        for cb in Callback::iter() {
            self.proxy_unauthenticated.with_label_values(&[cb.label()]);
        }
        for op in StoreOperation::iter() {
            self.store_duration.with_label_values(&[op.label()]);
        }
        for l in BatchLookup::iter() {
            self.store_batch_size.with_label_values(&[l.label()]);
        }
        for method in ApiMethod::iter() {
            for outcome in ApiCallOutcome::iter() {
                self.centrifugo_api
                    .calls
                    .with_label_values(&[method.label(), outcome.label()]);
            }
            self.centrifugo_api
                .duration
                .with_label_values(&[method.label()]);
        }
    }

    /// Observes one request's handling time. `route` indexes the router's label list.
    pub fn observe_request(&self, route: usize, status: u16, seconds: f64) {
        let class = StatusClass::of(status);
        let (Some(slot), Some(label)) = (
            self.hot
                .http
                .get(route * StatusClass::COUNT + class as usize),
            self.route_labels.get(route),
        ) else {
            return;
        };
        slot.get_or_init(|| {
            self.http_duration
                .with_label_values(&[label, class.label()])
        })
        .observe(seconds);
    }

    /// The storage histograms, one per operation (created at 0).
    pub fn store_timings(&self) -> StoreTimings {
        let h = |op: StoreOperation| self.store_duration.with_label_values(&[op.label()]);
        StoreTimings {
            ping: h(StoreOperation::Ping),
            upsert_user: h(StoreOperation::UpsertUser),
            get_user: h(StoreOperation::GetUser),
            authenticate_api_key: h(StoreOperation::AuthenticateApiKey),
            touch_api_key: h(StoreOperation::TouchApiKey),
            shared_limit: self.shared_limit_duration.clone(),
            shared_limit_failures: self.shared_limit_failures.clone(),
            profile_batch: self
                .store_batch_size
                .with_label_values(&[BatchLookup::Profile.label()]),
            api_key_batch: self
                .store_batch_size
                .with_label_values(&[BatchLookup::ApiKey.label()]),
        }
    }

    /// The text exposition of every registered metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    pub fn reject(&self, reason: RejectReason) {
        self.token_rejections
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// Counts one `/verify` or `/introspect` answer.
    pub fn verification(&self, v: Verification) {
        match v {
            Verification::Verify(r) => self.hot.verify[r as usize].inc(),
            Verification::Introspect(r) => self.hot.introspect[r as usize].inc(),
        }
    }

    pub fn reject_subscription(&self, reason: RejectReason) {
        self.subscription_rejections
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// The series of one proxy callback.
    pub fn proxy(&self, cb: Callback) -> &ProxySeries {
        &self.hot.proxy[cb as usize]
    }
}

#[cfg(test)]
mod tests;
