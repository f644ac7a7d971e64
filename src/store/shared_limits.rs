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
//! the shared bucket is only asked when an event must be counted, never on a success path of
//! `POST /tokens`. SQLite serves one instance: nothing to share, no statement.

use std::time::Duration;

use super::postgres::{map_err, PgStore};
use super::{Backend, Store, StoreError};

/// What the shared bucket said about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedVerdict {
    /// Within the budget (or nothing is shared: SQLite).
    Allowed,
    /// Over it: the next event conforms after this long.
    Limited(Duration),
}

/// One event: the bucket's new arrival time when it conformed, else the stored one.
const COUNT: &str = "WITH cur AS (SELECT tat_ms FROM chatsdk_auth_limits WHERE key = $1::text),
up AS (
    INSERT INTO chatsdk_auth_limits AS l (key, tat_ms) VALUES ($1::text, $2::bigint + $3::bigint)
    ON CONFLICT (key) DO UPDATE SET tat_ms = GREATEST(l.tat_ms, $2::bigint) + $3::bigint
    WHERE GREATEST(l.tat_ms, $2::bigint) + $3::bigint - $2::bigint <= $4::bigint
    RETURNING tat_ms
)
SELECT (SELECT tat_ms FROM up), (SELECT tat_ms FROM cur)";

impl Store {
    /// True when limits are shared with other replicas (the PostgreSQL backend).
    pub(crate) fn shares_limits(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Counts one event of the shared bucket `key` (budget `per_minute`, 1 or more) at
    /// `now_ms`; one statement on PostgreSQL, none on SQLite.
    pub(crate) async fn count_shared(
        &self,
        key: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<SharedVerdict, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(SharedVerdict::Allowed),
            Backend::Postgres(s) => Box::pin(s.count_shared(key, per_minute, now_ms)).await,
        }
    }

    /// Deletes the buckets that are full again (nothing to remember); returns how many.
    pub(crate) async fn prune_shared_limits(&self, now_ms: i64) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(0),
            Backend::Postgres(s) => Box::pin(s.prune_shared_limits(now_ms)).await,
        }
    }
}

impl PgStore {
    async fn count_shared(
        &self,
        key: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<SharedVerdict, StoreError> {
        let n = i64::from(per_minute.max(1));
        // The emission interval, and the burst: `n` events at once from a full bucket.
        let interval = 60_000 / n;
        let burst = interval * n;
        let c = self.client().await?;
        let st = c.prepare_cached(COUNT).await.map_err(map_err)?;
        let row = c
            .query_one(&st, &[&key, &now_ms, &interval, &burst])
            .await
            .map_err(map_err)?;
        let updated: Option<i64> = row.try_get(0).map_err(|e| StoreError::BadRow(e.into()))?;
        let stored: Option<i64> = row.try_get(1).map_err(|e| StoreError::BadRow(e.into()))?;
        Ok(match (updated, stored) {
            (Some(_), _) => SharedVerdict::Allowed,
            // Refused: the next event conforms once `stored + interval - t <= burst`.
            (None, stored) => {
                let at = stored.unwrap_or(now_ms) + interval - burst;
                SharedVerdict::Limited(Duration::from_millis(
                    u64::try_from(at - now_ms).unwrap_or(0).max(1),
                ))
            }
        })
    }

    async fn prune_shared_limits(&self, now_ms: i64) -> Result<u64, StoreError> {
        let c = self.client().await?;
        c.execute(
            "DELETE FROM chatsdk_auth_limits WHERE tat_ms < $1",
            &[&now_ms],
        )
        .await
        .map_err(map_err)
    }
}
