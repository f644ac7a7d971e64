//! Every Prometheus metric the service exports, in one owned registry (no global statics).
//!
//! Namespace `chatsdk_auth_`. Every label value comes from a closed set chosen in code (or, for
//! `key_name`, from the few names operators give their API keys): never a user id, a raw path,
//! a token or a key. Rule of thumb for a new metric: count outcomes where they are decided
//! (`tokens`, `proxy`), time requests in `router`, time storage in `store`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

const NAMESPACE: &str = "chatsdk_auth";

/// Latency buckets in seconds: sub-millisecond resolution where the service lives, up to
/// Centrifugo's 1 s proxy timeout and a little beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Storage operations are faster still.
const STORE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
    1.0,
];

/// Why `POST /tokens` was refused (label `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    InvalidApiKey,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    UserDisabled,
    StoreUnavailable,
    InternalError,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::InvalidApiKey,
        RejectReason::InvalidRequest,
        RejectReason::PayloadTooLarge,
        RejectReason::UnsupportedMediaType,
        RejectReason::UserDisabled,
        RejectReason::StoreUnavailable,
        RejectReason::InternalError,
    ];
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::InvalidApiKey => "invalid_api_key",
            RejectReason::InvalidRequest => "invalid_request",
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::UserDisabled => "user_disabled",
            RejectReason::StoreUnavailable => "store_unavailable",
            RejectReason::InternalError => "internal_error",
        }
    }
}

/// All metrics, registered in `registry`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Tokens minted, by `kind` (`rest`, `ws`, `subscription`).
    pub tokens_issued: IntCounterVec,
    /// `POST /tokens` refusals, by `reason`.
    pub token_rejections: IntCounterVec,
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
    /// Users written by `POST /tokens`, by `result` (`created`, `updated`).
    pub users_upserted: IntCounterVec,
    /// Authenticated requests, by API key `key_name`.
    pub api_key_requests: IntCounterVec,
    /// Always 1; labels carry the version and commit.
    pub build_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
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

        let m = Metrics {
            registry,
            tokens_issued,
            token_rejections,
            proxy_decisions,
            proxy_unauthenticated,
            proxy_duration,
            http_duration,
            http_in_flight,
            store_duration,
            users_upserted,
            api_key_requests,
            build_info,
        };
        m.initialise_series();
        Ok(m)
    }

    /// Creates the zero-valued series of every closed label set, so that `rate()` and alert
    /// rules see a 0 rather than nothing before the first event.
    fn initialise_series(&self) {
        for kind in ["rest", "ws", "subscription"] {
            self.tokens_issued.with_label_values(&[kind]);
        }
        for r in RejectReason::ALL {
            self.token_rejections.with_label_values(&[r.label()]);
        }
        for cb in ["connect", "refresh", "subscribe", "sub_refresh"] {
            self.proxy_unauthenticated.with_label_values(&[cb]);
            self.proxy_decisions
                .with_label_values(&[cb, "accepted", "none"]);
            for reason in ["bad_request", "store_unavailable", "internal_error"] {
                self.proxy_decisions
                    .with_label_values(&[cb, "error", reason]);
            }
            for reason in crate::proxy::Reason::ALL {
                self.proxy_decisions
                    .with_label_values(&[cb, "rejected", reason.label()]);
            }
        }
        for r in ["created", "updated"] {
            self.users_upserted.with_label_values(&[r]);
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

    /// A timer for one proxy callback.
    pub fn proxy_timer(&self, callback: &str) -> Histogram {
        self.proxy_duration.with_label_values(&[callback])
    }
}
