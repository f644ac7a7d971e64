//! The fixture the Prometheus tests share: the built binary scraped every second by a real
//! Prometheus, two waves of traffic, and the instant (a scrape after the last wave) every query
//! is evaluated at, so each test reads deterministic results.
//!
//! It is built by the first test that asks and shared with every test running at the same time;
//! when the last of them finishes, both processes are killed and the directory removed. A test
//! that starts later builds a fresh one: slower, never wrong.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::sync::Mutex;

use super::prom::{secs, start_prometheus, Prom};
use super::traffic::{Expected, Sidecar};
use super::{now_ms, WAVES};
use crate::process::{tool, KillOnDrop, Server};

/// A running sidecar and Prometheus after the traffic, with what the traffic produced.
pub(super) struct Fixture {
    /// The sidecar's `host:port`, the scrape target (and so the `instance` label).
    pub(super) addr: String,
    /// Prometheus' base URL.
    pub(super) prom_base: String,
    /// Every counter series the traffic must have produced, with its value.
    pub(super) expected: Expected,
    /// The instant every query is evaluated at: the second scrape after the last wave.
    pub(super) at: String,
    /// `$__rate_interval` for the dashboard: exactly the last wave (see [`Fixture::start`]).
    pub(super) rate_interval: String,
    // Dropped in this order: Prometheus, the sidecar, then their directory.
    _prometheus: KillOnDrop,
    _sidecar: Server,
    _tmp: TempDir,
}

/// The fixture the running tests share, built by the first of them.
pub(super) async fn shared() -> Arc<Fixture> {
    static SHARED: Mutex<Weak<Fixture>> = Mutex::const_new(Weak::new());
    let mut slot = SHARED.lock().await;
    if let Some(f) = slot.upgrade() {
        return f;
    }
    let f = Arc::new(Fixture::start().await);
    *slot = Arc::downgrade(&f);
    f
}

/// An HTTP client for one test (each test has its own runtime, so none is shared). No connection
/// reuse: the sidecar answers some refusals (401, 413, 415) without reading the body and then
/// closes the connection, which a pooled client could race with.
pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Starts `chatsdk-auth serve` in `dir` with JSON logs at the default level, a 50 ms busy
/// timeout (so a held write lock answers 503 quickly) and the `custom` field `tenant` as the
/// metrics label, taking `acme` (every other value is `other`).
fn start_sidecar(dir: &Path) -> Server {
    Server::start(
        dir,
        &[
            ("CHATSDK_AUTH_LOG__LEVEL", "info"),
            ("CHATSDK_AUTH_STORAGE__BUSY_TIMEOUT_MS", "50"),
            ("CHATSDK_AUTH_SEGMENTS__FIELDS", "[\"tenant\"]"),
            ("CHATSDK_AUTH_SEGMENTS__METRICS_LABEL", "tenant"),
            ("CHATSDK_AUTH_SEGMENTS__METRICS_LABEL_VALUES", "[\"acme\"]"),
        ],
    )
}

impl Fixture {
    /// Prometheus' API through `http`.
    pub(super) fn prom(&self, http: &reqwest::Client) -> Prom {
        Prom {
            base: self.prom_base.clone(),
            http: http.clone(),
        }
    }

    /// A URL on the sidecar.
    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn start() -> Fixture {
        let started = Instant::now();
        tool("prometheus");
        let tmp = tempfile::tempdir().unwrap();
        let (side_dir, prom_dir) = (tmp.path().join("sidecar"), tmp.path().join("prometheus"));
        std::fs::create_dir_all(&side_dir).unwrap();
        std::fs::create_dir_all(&prom_dir).unwrap();
        let http = client();

        let sidecar = start_sidecar(&side_dir);
        let addr = sidecar.addr.clone();
        let (prometheus, prom) = start_prometheus(&prom_dir, &addr, &http).await;
        let read = |f: &str| {
            std::fs::read_to_string(side_dir.join("data").join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        let s = Sidecar {
            base: format!("http://{addr}"),
            http: http.clone(),
            dir: side_dir.clone(),
            proxy_secret: read("proxy-secret.key"),
            ws_key: read("centrifugo-hmac.key"),
        };

        // A baseline scrape of the untouched service, then the waves, each followed by scrapes
        // that started after its last response.
        prom.wait_scrapes_after(0, 1).await;
        let mut e = Expected::initial();
        let mut after_wave = Vec::new();
        for w in 1..=WAVES {
            s.wave(w, &mut e).await;
            let end = now_ms();
            let n = if w == WAVES { 2 } else { 1 };
            after_wave.push((end, prom.wait_scrapes_after(end, n).await));
        }
        let (_, last_scrapes) = after_wave.last().unwrap();
        // Every query is evaluated at the second post-traffic scrape: deterministic results.
        let at_ms = last_scrapes[1];
        let at = secs(at_ms);
        // $__rate_interval: from the first scrape after the previous wave to `at` (plus 1 ms, so
        // that scrape is inside the window however the range bound is read). Every rate then
        // measures exactly the last wave, with the same extrapolation for every series, so the
        // ratio panels have exact values. It spans at least two scrapes, as rate() needs.
        let before_last_wave = after_wave[after_wave.len() - 2].1[0];
        let rate_interval = format!("{}ms", at_ms - before_last_wave + 1);
        eprintln!(
            "prometheus fixture: {WAVES} waves scraped; queries at t={at} with \
             $__rate_interval={rate_interval}; built in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Fixture {
            addr,
            prom_base: prom.base,
            expected: e,
            at,
            rate_interval,
            _prometheus: prometheus,
            _sidecar: sidecar,
            _tmp: tmp,
        }
    }
}
