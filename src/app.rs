//! [`App`]: application-wide state, built once at startup and shared by every request.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::http::auth::TouchThrottle;
use crate::jwt::{Signer, Verifier};
use crate::metrics::Metrics;
use crate::secrets::Secrets;
use crate::store::Store;

pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Mints REST tokens and wsTokens (keys built once).
    pub signer: Signer,
    /// Verifies wsTokens for the proxy callbacks, with Centrifugo's rules.
    pub verifier: Verifier,
    /// Users and API keys.
    pub store: Store,
    /// The owned Prometheus registry and every metric.
    pub metrics: Metrics,
    /// Limits `last_used_at` writes to one a minute per API key.
    pub touch_throttle: TouchThrottle,
    /// Shared secrets compared on proxy and metrics calls.
    pub secrets: Secrets,
    /// One line per request (disabled unless `serve` wires it to the log output).
    pub access_log: AccessLog,
    /// False once shutdown starts, so `/readyz` sends load balancers elsewhere while draining.
    ready: AtomicBool,
}

impl App {
    /// Builds the application from parts that have already been loaded and checked.
    pub fn build(
        config: Config,
        secrets: Secrets,
        store: Store,
        metrics: Metrics,
        access_log: AccessLog,
    ) -> App {
        let signer = Signer::new(&config.tokens, &secrets, &config.centrifugo.user_channels);
        let verifier = Verifier::new(&config.tokens, &secrets);
        let store = store.with_timings(metrics.store_timings());
        App {
            config,
            signer,
            verifier,
            store,
            metrics,
            touch_throttle: TouchThrottle::default(),
            secrets,
            access_log,
            ready: AtomicBool::new(true),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks the service as draining.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}
