//! The last five minutes of tokens minted and token requests refused by reason, for the admin
//! overview (`GET /admin/overview`): a small ring of samples of this process's own counters.
//!
//! Off the request path: the housekeeping task calls [`Recent::sample`] every
//! [`SAMPLE_EVERY`]; a request reads the counters once more and subtracts the oldest sample
//! still inside the window. Counters start at zero with the process, so the first sample is
//! zero at start and a younger process reports everything since it started.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::IntCounterVec;
use serde::Serialize;

use super::Metrics;

/// How often the housekeeping task samples the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The window the overview reports, in seconds.
pub const WINDOW_SECONDS: i64 = 300;
/// Minutes in the window, one bucket each.
const MINUTES: usize = (WINDOW_SECONDS / 60) as usize;
/// Samples kept: the window and one more.
const KEEP: usize = (WINDOW_SECONDS as usize) / 10 + 2;
#[derive(Debug, Clone, Default)]
struct Counts {
    /// `rest`, `ws`, `subscription`.
    minted: [u64; 3],
    /// By `reason` label, both minting routes together.
    rejected: BTreeMap<String, u64>,
}

impl Counts {
    fn read(m: &Metrics) -> Counts {
        let mut c = Counts {
            minted: [
                m.hot.tokens_rest.get(),
                m.hot.tokens_ws.get(),
                m.hot.tokens_subscription.get(),
            ],
            rejected: BTreeMap::new(),
        };
        for vec in [&m.token_rejections, &m.subscription_rejections] {
            add_by_reason(vec, &mut c.rejected);
        }
        c
    }

    fn minted_total(&self) -> u64 {
        self.minted.iter().sum()
    }

    fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Adds each `reason` series of `vec` (only those that exist: collecting creates none).
fn add_by_reason(vec: &IntCounterVec, into: &mut BTreeMap<String, u64>) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let reason = metric.get_label().iter().find(|l| l.name() == "reason");
            if let Some(reason) = reason {
                *into.entry(reason.value().to_string()).or_default() +=
                    metric.get_counter().get_value() as u64;
            }
        }
    }
}

/// The counters at one instant (Unix seconds).
#[derive(Debug, Clone)]
struct Sample {
    at: i64,
    counts: Counts,
}

/// The ring of samples.
pub struct Recent {
    samples: Mutex<VecDeque<Sample>>,
}

/// One reason's refusals in the window.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReasonCount {
    pub reason: String,
    pub count: u64,
}

/// What the overview shows of the last five minutes.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Window {
    /// The seconds the figures cover: [`WINDOW_SECONDS`], or less in a younger process.
    pub seconds: i64,
    /// Tokens minted, by kind.
    pub minted_rest: u64,
    pub minted_ws: u64,
    pub minted_subscription: u64,
    /// Tokens minted in each minute of the window, oldest first.
    pub minted_per_minute: [u64; MINUTES],
    /// `POST /tokens` and `POST /tokens/subscription` refusals, by reason (non-zero ones).
    pub rejected: Vec<ReasonCount>,
    /// Refusals in each minute of the window, oldest first.
    pub rejected_per_minute: [u64; MINUTES],
}

impl Recent {
    /// A ring holding the zero sample of a process that started at `now`.
    pub fn new(now: i64) -> Recent {
        let mut samples = VecDeque::with_capacity(KEEP + 1);
        samples.push_back(Sample {
            at: now,
            counts: Counts::default(),
        });
        Recent {
            samples: Mutex::new(samples),
        }
    }

    /// Records the counters as they are at `now`.
    pub fn sample(&self, m: &Metrics, now: i64) {
        let s = Sample {
            at: now,
            counts: Counts::read(m),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back(s);
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }

    /// The window ending at `now`, against the counters as they are now.
    pub fn window(&self, m: &Metrics, now: i64) -> Window {
        let current = Sample {
            at: now,
            counts: Counts::read(m),
        };
        let samples: Vec<Sample> = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let start = now - WINDOW_SECONDS;
        // The oldest sample inside the window (else the newest, if the sampler stalled).
        let base = samples
            .iter()
            .find(|s| s.at >= start)
            .or(samples.last())
            .cloned()
            .unwrap_or_else(|| current.clone());
        // The counters at `t`: the last sample taken at or before it, never before `base`.
        let at = |t: i64| -> &Counts {
            if t >= now {
                return &current.counts;
            }
            samples
                .iter()
                .rev()
                .find(|s| s.at <= t && s.at >= base.at)
                .map_or(&base.counts, |s| &s.counts)
        };
        let mut minted_per_minute = [0; MINUTES];
        let mut rejected_per_minute = [0; MINUTES];
        for i in 0..MINUTES {
            let from = at(start + 60 * i as i64);
            let to = at(start + 60 * (i as i64 + 1));
            minted_per_minute[i] = to.minted_total().saturating_sub(from.minted_total());
            rejected_per_minute[i] = to.rejected_total().saturating_sub(from.rejected_total());
        }
        let d = |k: usize| current.counts.minted[k].saturating_sub(base.counts.minted[k]);
        let rejected = current
            .counts
            .rejected
            .iter()
            .map(|(reason, n)| ReasonCount {
                reason: reason.clone(),
                count: n.saturating_sub(base.counts.rejected.get(reason).copied().unwrap_or(0)),
            })
            .filter(|r| r.count > 0)
            .collect();
        Window {
            seconds: (now - base.at).clamp(0, WINDOW_SECONDS),
            minted_rest: d(0),
            minted_ws: d(1),
            minted_subscription: d(2),
            minted_per_minute,
            rejected,
            rejected_per_minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(&["unmatched"], Default::default()).unwrap()
    }

    #[test]
    fn a_young_process_counts_everything_since_it_started() {
        let m = metrics();
        let r = Recent::new(1_000);
        m.hot.tokens_rest.inc_by(3);
        m.hot.tokens_ws.inc_by(2);
        m.token_rejections
            .with_label_values(&["invalid_api_key"])
            .inc_by(4);
        m.subscription_rejections
            .with_label_values(&["invalid_api_key"])
            .inc();
        let w = r.window(&m, 1_090);
        assert_eq!(w.seconds, 90);
        assert_eq!(
            (w.minted_rest, w.minted_ws, w.minted_subscription),
            (3, 2, 0)
        );
        assert_eq!(
            w.rejected,
            vec![ReasonCount {
                reason: "invalid_api_key".into(),
                count: 5
            }]
        );
        assert_eq!(w.minted_per_minute.iter().sum::<u64>(), 5);
        assert_eq!(w.minted_per_minute[MINUTES - 1], 5);
    }

    #[test]
    fn what_left_the_window_is_not_counted() {
        let m = metrics();
        let r = Recent::new(0);
        m.hot.tokens_rest.inc_by(10);
        let limited = m.token_rejections.with_label_values(&["rate_limited"]);
        limited.inc_by(4);
        for t in (10..=400).step_by(10) {
            r.sample(&m, t);
        }
        limited.inc_by(2);
        // 10 minted before t = 10; nothing since: the last five minutes saw none.
        m.hot.tokens_subscription.inc_by(7);
        r.sample(&m, 410);
        let w = r.window(&m, 420);
        assert_eq!(w.seconds, WINDOW_SECONDS);
        assert_eq!((w.minted_rest, w.minted_subscription), (0, 7));
        assert_eq!(w.minted_per_minute, [0, 0, 0, 0, 7]);
        assert_eq!(
            w.rejected,
            vec![ReasonCount {
                reason: "rate_limited".into(),
                count: 2
            }]
        );
        assert_eq!(w.rejected_per_minute, [0, 0, 0, 0, 2]);
        assert!(r.samples.lock().unwrap().len() <= KEEP);
    }
}
