//! Delivery of the kick outbox: terminal disconnects queued by [`crate::actions`] in the same
//! transaction as the change that calls for them, sent through Centrifugo's server API
//! (`disconnect`, or `batch` for several), and deleted only once Centrifugo answered success.
//!
//! - The server runs [`run`]: woken at once when an action of this process queued a kick,
//!   otherwise looking every `centrifugo.kick_poll_interval_ms` (kicks queued by the CLI or by
//!   another replica).
//! - The CLI calls [`deliver_due`] right after its change, so a kick happens without a running
//!   server; what it cannot deliver stays for the server.
//! - A claim leases a row (`not_before_ms`) so one process (one replica, on PostgreSQL) sends
//!   it; a failed row is retried with backoff (250 ms doubling to 2 s) for as long as it takes.
//!   A process dying between Centrifugo's answer and the delete makes the row due again after
//!   the lease, and it is sent again: at-least-once delivery of an idempotent effect (the
//!   second disconnect finds no connection of that user left), exactly-once in effect.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::centrifugo::api::{CentrifugoApi, CentrifugoApiError, DisconnectUser};
use crate::error_chain::Chain;
use crate::metrics::Metrics;
use crate::store::{PendingKick, Store, StoreError};

/// Kicks claimed (and sent in one `batch`) at a time.
pub const BATCH: usize = 100;
/// The longest wait before retrying a failed kick.
const MAX_RETRY_MS: i64 = 2_000;
/// How often a delivery that keeps failing is logged again.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What one delivery round did.
#[derive(Debug, Default)]
pub struct Round {
    /// Kicks claimed by this round.
    pub claimed: usize,
    /// Kicks Centrifugo accepted (and that were removed from the outbox).
    pub delivered: usize,
    /// Why the others were not delivered (the first failure), if any.
    pub error: Option<CentrifugoApiError>,
}

/// How long a claim holds a row: longer than one call can take (three attempts, each bounded
/// by the API timeout, and their backoff).
pub fn lease(api_timeout: Duration) -> Duration {
    api_timeout * 4 + Duration::from_secs(1)
}

/// Claims the due kicks (up to [`BATCH`]), sends them, removes the delivered ones and puts the
/// others back with backoff.
pub async fn deliver_due(
    store: &Store,
    api: &CentrifugoApi,
    lease: Duration,
    metrics: Option<&Metrics>,
) -> Result<Round, StoreError> {
    let now = crate::now_unix_ms();
    let kicks = store
        .claim_kicks(now, lease.as_millis() as i64, BATCH)
        .await?;
    let mut round = Round {
        claimed: kicks.len(),
        ..Round::default()
    };
    if kicks.is_empty() {
        return Ok(round);
    }
    let list: Vec<DisconnectUser<'_>> = kicks
        .iter()
        .map(|k| DisconnectUser {
            user: &k.user_id,
            code: k.code,
            reason: &k.reason,
        })
        .collect();
    let results: Vec<Result<(), CentrifugoApiError>> = if let [one] = list.as_slice() {
        vec![api.disconnect(one).await]
    } else {
        match api.disconnect_batch(&list).await {
            Ok(each) => each,
            Err(e) => {
                round.error = Some(e);
                kicks.iter().map(|_| Ok(())).collect()
            }
        }
    };
    let call_failed = round.error.is_some();
    for (kick, result) in kicks.iter().zip(results) {
        match result {
            Ok(()) if !call_failed => {
                round.delivered += 1;
                if let Some(m) = metrics {
                    m.kicks_delivered.inc();
                }
                store.finish_kick(kick.id).await?;
            }
            other => {
                if let Err(e) = other {
                    round.error.get_or_insert(e);
                }
                store
                    .retry_kick(kick.id, crate::now_unix_ms() + backoff(kick))
                    .await?;
            }
        }
    }
    Ok(round)
}

fn backoff(k: &PendingKick) -> i64 {
    let exp = (k.attempts.clamp(1, 8) - 1) as u32;
    (250_i64 << exp).min(MAX_RETRY_MS)
}

/// The server's delivery loop, until `stop` resolves. Does nothing when revocation is off.
pub async fn run(app: Arc<App>, stop: impl Future<Output = ()>) {
    let Some(api) = &app.centrifugo_api else {
        return;
    };
    let c = &app.config.centrifugo;
    let (poll, lease) = (c.kick_poll_interval, lease(c.api_timeout));
    let mut failing_since: Option<Instant> = None;
    let mut last_warn: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        let mut more = false;
        match app.store.count_kicks(crate::now_unix_ms()).await {
            Ok((total, due)) => {
                app.metrics.kicks_pending.set(total as i64);
                if due > 0 {
                    match deliver_due(&app.store, api, lease, Some(&app.metrics)).await {
                        Ok(round) => {
                            more = round.claimed == BATCH;
                            if round.delivered > 0 {
                                tracing::info!(
                                    kicks = round.delivered,
                                    "kicked users through Centrifugo's server API"
                                );
                            }
                            match round.error {
                                Some(e) => {
                                    let since = *failing_since.get_or_insert_with(Instant::now);
                                    if last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                                        last_warn = Some(Instant::now());
                                        tracing::warn!(error = %Chain(&e), failing_for_s = since.elapsed().as_secs(), "cannot deliver kicks; they stay queued and are retried");
                                    }
                                }
                                None if round.delivered > 0 => {
                                    if let Some(since) = failing_since.take() {
                                        tracing::info!(failed_for_s = since.elapsed().as_secs(), "Centrifugo's server API answers again; queued kicks delivered");
                                    }
                                    last_warn = None;
                                }
                                None => {}
                            }
                            if let Ok((total, _)) =
                                app.store.count_kicks(crate::now_unix_ms()).await
                            {
                                app.metrics.kicks_pending.set(total as i64);
                            }
                        }
                        Err(e) => tracing::warn!(error = %Chain(&e), "cannot read the kick outbox"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %Chain(&e), "cannot read the kick outbox"),
        }
        if more {
            continue;
        }
        if let Next::Stop = next_round(stop.as_mut(), &app.kick_wake, poll).await {
            return;
        }
    }
}

/// What ends the wait between two rounds of the delivery loop.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// A change queued a kick (`wake`), or the poll interval passed: look at the outbox.
    Round,
    /// The server stops.
    Stop,
}

/// Waits for the next round: at once when a change queued a kick (this process's, through
/// `wake`), else after `poll` (kicks queued by the CLI or another replica, and retries that
/// came due); `stop` first.
async fn next_round(
    stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    wake: &tokio::sync::Notify,
    poll: std::time::Duration,
) -> Next {
    tokio::select! {
        biased;
        _ = stop => Next::Stop,
        _ = wake.notified() => Next::Round,
        _ = tokio::time::sleep(poll) => Next::Round,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// On paused time: without a wake the next round is one poll interval later, to the
    /// millisecond; a queued kick's wake starts it at once; a stop ends the loop.
    #[tokio::test(start_paused = true)]
    async fn the_next_round_is_at_a_wake_or_after_the_poll_interval() {
        let poll = Duration::from_secs(5);
        let wake = tokio::sync::Notify::new();
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        let start = tokio::time::Instant::now();
        assert_eq!(next_round(never.as_mut(), &wake, poll).await, Next::Round);
        assert_eq!(start.elapsed(), poll);
        let start = tokio::time::Instant::now();
        wake.notify_one();
        assert_eq!(next_round(never.as_mut(), &wake, poll).await, Next::Round);
        assert_eq!(start.elapsed(), Duration::ZERO);
        let stop = std::future::ready(());
        tokio::pin!(stop);
        wake.notify_one();
        assert_eq!(next_round(stop.as_mut(), &wake, poll).await, Next::Stop);
    }

    /// A failed kick waits 250 ms before its second attempt, doubling to 2 s, and never
    /// longer however many attempts failed (or whatever a corrupt count says).
    #[test]
    fn a_failed_kick_waits_250_ms_doubling_to_2_s() {
        let after = |attempts| {
            backoff(&PendingKick {
                id: 1,
                user_id: "u".into(),
                code: 4503,
                reason: "user disabled".into(),
                attempts,
            })
        };
        let waits: Vec<i64> = (1..=7).map(after).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 2000, 2000, 2000]);
        assert_eq!(after(0), 250);
        assert_eq!(after(i64::MAX), 2000);
    }
}
