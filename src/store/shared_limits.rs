//! The abuse limits replicas share through PostgreSQL (failed API-key checks and admin calls
//! per client address), so N replicas give a client the budget of one.
//!
//! Each limit is a GCRA bucket (the algorithm `governor` runs in each process,
//! <https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm>) whose one number, the
//! theoretical arrival time, lives in a row of `chatsdk_auth_limits`: one statement counts an
//! event and says whether it conformed, atomically (`INSERT ... ON CONFLICT DO UPDATE ...
//! WHERE`, a row lock), whichever replica runs it. A client's budget is `per_minute` events in a
//! burst, refilled at `per_minute` a minute, exactly as the per-process limiter's. The
//! per-process limiters stay in front (`crate::limits`): they answer without a round trip, and
//! the shared bucket is only asked when an event must be counted, or, for an address whose key
//! check failed within the last minute, read before its next check (so N replicas cannot each
//! test a guess once the shared budget is spent). A client that has not failed lately costs
//! no statement. SQLite serves one instance: nothing to share, no statement.
//!
//! The clock is PostgreSQL's: every statement reads `now()` itself, so replicas whose clocks
//! differ still agree on every bucket. A row is keyed by the caller (a keyed hash of the
//! limit and the address under a secret every replica shares, never the address itself).
//! Each statement is timed (`shared_limit_duration_seconds`), each failure counted (`shared_limit_failures_total`) and, while
//! PostgreSQL cannot answer, logged at most once a minute ([`WARN_EVERY`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::postgres::PgStore;
use super::postgres_rows::map_err;
use super::{Backend, Store, StoreError};

/// What the shared bucket said about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedVerdict {
    /// Within the budget (or nothing is shared: SQLite).
    Allowed,
    /// Over it: the next event conforms after this long.
    Limited(Duration),
}

/// PostgreSQL's clock in Unix milliseconds: `now()`, one reading per statement.
macro_rules! now_ms {
    () => {
        "(extract(epoch FROM now()) * 1000)::bigint"
    };
}

/// One event, decided on the locked row (never on a snapshot) at the database's time: the
/// bucket's arrival time after it, whether it conformed (the time moves only when it did),
/// and the time it was decided at.
const COUNT: &str = concat!(
    "INSERT INTO chatsdk_auth_limits AS l (key, tat_ms, conformed)
VALUES ($1::text, ",
    now_ms!(),
    " + $2::bigint, TRUE)
ON CONFLICT (key) DO UPDATE SET
    conformed = GREATEST(l.tat_ms, ",
    now_ms!(),
    ") + $2::bigint - ",
    now_ms!(),
    " <= $3::bigint,
    tat_ms = CASE WHEN GREATEST(l.tat_ms, ",
    now_ms!(),
    ") + $2::bigint - ",
    now_ms!(),
    " <= $3::bigint
        THEN GREATEST(l.tat_ms, ",
    now_ms!(),
    ") + $2::bigint ELSE l.tat_ms END
RETURNING tat_ms, conformed, ",
    now_ms!()
);

/// The bucket's arrival time and the database's time, read without counting anything.
const PEEK: &str = concat!(
    "SELECT tat_ms, ",
    now_ms!(),
    " FROM chatsdk_auth_limits WHERE key = $1::text"
);

/// Forgets the buckets that are full again, at the database's time.
const PRUNE: &str = concat!("DELETE FROM chatsdk_auth_limits WHERE tat_ms < ", now_ms!());

/// While the shared limits cannot be asked, a warning at most this often (in seconds).
pub const WARN_EVERY: i64 = 60;

/// The emission interval and the burst, in milliseconds, of a budget of `per_minute`: `n`
/// events at once from a full bucket, one more every `60000 / n` ms. A budget above 60,000 a
/// minute counts as 60,000 (the interval stays at least a millisecond).
fn shape(per_minute: u32) -> (i64, i64) {
    let n = i64::from(per_minute.clamp(1, 60_000));
    let interval = 60_000 / n;
    (interval, interval * n)
}

/// The verdict on a stored arrival time: the next event conforms once
/// `max(tat, t) + interval - t <= burst`.
fn verdict(tat: i64, now_ms: i64, (interval, burst): (i64, i64)) -> SharedVerdict {
    let next = tat + interval - burst;
    if next <= now_ms {
        SharedVerdict::Allowed
    } else {
        SharedVerdict::Limited(Duration::from_millis(
            u64::try_from(next - now_ms).unwrap_or(1),
        ))
    }
}

impl Store {
    /// True when limits are shared with other replicas (the PostgreSQL backend).
    pub(crate) fn shares_limits(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Counts one event of the shared bucket `key` (budget `per_minute`, 1 or more); one
    /// statement on PostgreSQL, none on SQLite. A failure is timed, counted and logged (at
    /// most once a minute) here.
    pub(crate) async fn count_shared(
        &self,
        key: &str,
        per_minute: u32,
    ) -> Result<SharedVerdict, StoreError> {
        let Backend::Postgres(s) = &self.backend else {
            return Ok(SharedVerdict::Allowed);
        };
        let start = Instant::now();
        let out = Box::pin(s.count_shared(key, per_minute)).await;
        self.shared_answered(start, &out);
        out
    }

    /// Whether one more event of the shared bucket `key` would conform now, counting nothing;
    /// one read on PostgreSQL, none on SQLite. Timed, counted and logged as
    /// [`Store::count_shared`].
    pub(crate) async fn peek_shared(
        &self,
        key: &str,
        per_minute: u32,
    ) -> Result<SharedVerdict, StoreError> {
        let Backend::Postgres(s) = &self.backend else {
            return Ok(SharedVerdict::Allowed);
        };
        let start = Instant::now();
        let out = Box::pin(s.peek_shared(key, per_minute)).await;
        self.shared_answered(start, &out);
        out
    }

    /// Times a shared-limit statement; a failure is counted, and logged unless one was logged
    /// within [`WARN_EVERY`].
    fn shared_answered(&self, start: Instant, out: &Result<SharedVerdict, StoreError>) {
        if let Some(t) = &self.timings {
            t.shared_limit.observe(start.elapsed().as_secs_f64());
        }
        let Err(e) = out else {
            return;
        };
        if let Some(t) = &self.timings {
            t.shared_limit_failures.inc();
        }
        let now = crate::now_unix();
        let last = self.shared_warned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY
            && self
                .shared_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %crate::error_chain::Chain(e), "cannot ask the limits the replicas share; this replica's own limits still apply (further failures within a minute are counted in chatsdk_auth_shared_limit_failures_total, not logged)");
        }
    }

    /// Deletes the buckets that are full again (nothing to remember); returns how many.
    pub(crate) async fn prune_shared_limits(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(0),
            Backend::Postgres(s) => Box::pin(s.prune_shared_limits()).await,
        }
    }
}

impl PgStore {
    async fn count_shared(&self, key: &str, per_minute: u32) -> Result<SharedVerdict, StoreError> {
        let (interval, burst) = shape(per_minute);
        let c = self.client().await?;
        let st = c.prepare_cached(COUNT).await.map_err(map_err)?;
        let row = c
            .query_one(&st, &[&key, &interval, &burst])
            .await
            .map_err(map_err)?;
        let bad = |e: tokio_postgres::Error| StoreError::BadRow(e.into());
        let tat: i64 = row.try_get(0).map_err(bad)?;
        let conformed: bool = row.try_get(1).map_err(bad)?;
        let now_ms: i64 = row.try_get(2).map_err(bad)?;
        Ok(if conformed {
            SharedVerdict::Allowed
        } else {
            verdict(tat, now_ms, (interval, burst))
        })
    }

    async fn peek_shared(&self, key: &str, per_minute: u32) -> Result<SharedVerdict, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached(PEEK).await.map_err(map_err)?;
        let row = c.query_opt(&st, &[&key]).await.map_err(map_err)?;
        let Some(row) = row else {
            return Ok(SharedVerdict::Allowed);
        };
        let bad = |e: tokio_postgres::Error| StoreError::BadRow(e.into());
        let tat: i64 = row.try_get(0).map_err(bad)?;
        let now_ms: i64 = row.try_get(1).map_err(bad)?;
        Ok(verdict(tat, now_ms, shape(per_minute)))
    }

    async fn prune_shared_limits(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        c.execute(PRUNE, &[]).await.map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_one_per_interval() {
        let shape = shape(60);
        assert_eq!(shape, (1000, 60_000));
        // A bucket 60 events ahead is full: the next one conforms one interval later.
        assert_eq!(
            verdict(60_000, 0, shape),
            SharedVerdict::Limited(Duration::from_millis(1000))
        );
        assert_eq!(verdict(60_000, 1000, shape), SharedVerdict::Allowed);
        assert_eq!(verdict(0, 0, shape), SharedVerdict::Allowed);
        // A budget above 60,000 a minute still limits (one a millisecond), never turns off.
        assert_eq!(super::shape(1_000_000), (1, 60_000));
        assert_eq!(super::shape(0), (60_000, 60_000));
    }
}
