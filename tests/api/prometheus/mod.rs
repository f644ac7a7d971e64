//! Observability proven against a real Prometheus.
//!
//! One shared fixture ([`fixture`]) starts the built binary and a real Prometheus (the Debian
//! package; `bash tests/run.sh` installs it) that scrapes the sidecar every second and loads
//! `dashboards/alerts.yml`, and drives traffic that produces every outcome the service counts
//! ([`traffic`]). Then, each its own test:
//! - [`counters`]: `promtool check metrics` is clean on the exposition, and every counter moved
//!   by exactly what the traffic produced, in the scraped text and in Prometheus;
//! - [`dashboard`]: every panel query of `dashboards/chatsdk-auth.json` is valid PromQL and
//!   returns data;
//! - [`alerts`]: every alerting rule of `alerts.yml` is loaded, healthy and evaluates.
//!
//! Traffic runs in two identical waves with a scrape in between. Several series (the HTTP
//! latency histogram per route, store operations, per-key counters) only exist once something
//! happened, so a single wave would give `rate()` one sample per series and the latency panels
//! nothing but NaN. With two waves, the second one is an increase inside the rate window for
//! every series, and every counter ends at exactly twice the per-wave amount.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every alerting rule of alerts.yml: loaded, healthy, and its expression evaluates.
mod alerts;
/// Exact counters in the scraped text and in Prometheus; promtool on the exposition.
mod counters;
/// Every dashboard query: valid, non-empty, finite, complete; the $job/$instance variables.
mod dashboard;
/// The sidecar and Prometheus shared by the tests above, and the instant they query at.
mod fixture;
/// Prometheus as a child process, its HTTP API, the text exposition parser.
mod prom;
/// The waves of traffic and the exact counters they must produce.
mod traffic;

const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
/// The scrape job name: the one `alerts.yml` matches on and the dashboard's `$job` lists.
const JOB: &str = "chatsdk-auth";
const WAVES: u32 = 2;

type Labels = BTreeMap<String, String>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
