//! Coalesced PostgreSQL lookups: concurrent reads of one kind (a user's profile, an API key by
//! its hash) gathered into one prepared statement `... WHERE key = ANY($1)`, each waiting
//! request handed its own answer.
//!
//! - **No wait when idle.** A lookup that finds a free slot (fewer than `slots` statements of
//!   its kind running) starts a statement at once, alone. Only while every slot is busy do
//!   lookups queue; a slot whose statement is answered takes the queue (up to `max` distinct
//!   keys) as its next statement, so the batch grows with the load, as a group commit does.
//!   `window` (default 0) lets a lookup that starts a slot while another statement of its
//!   kind is in flight wait that long for others; never when nothing else is running.
//! - **Fresh.** A lookup only joins a statement that has not been sent yet: every answer is
//!   read after its request arrived. Identical keys in one statement are read once (single
//!   flight: one backend's key, thousands of requests), and nothing is kept once answered.
//! - **Outage.** A statement that fails answers each of its waiters with that error (503 for
//!   an unreachable server), never a decision. Each statement (pool wait and query) is bounded
//!   by `storage.postgres_timeout_ms`, so a slot never hangs; the request deadline bounds each
//!   waiter; PostgreSQL's `statement_timeout` applies to the one statement.
//! - Statements run on tasks of their own: a waiter abandoned at its deadline cancels nobody
//!   else's read, and a statement whose waiters have all gone is not sent.
//! - **Pipelined.** The statements of both kinds run on `storage.postgres_lookup_connections`
//!   connections kept from the pool ([`Conns`]), several in flight on each; a kept connection
//!   that closed is replaced from the pool by the next statement.

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use prometheus::Histogram;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::postgres_rows::{col, map_err, map_pool_err};
use super::{ApiKeyRecord, SessionUser, StoreError};

/// One kind of lookup: its statement and how one of its rows answers a key.
pub(super) trait Lookup: Send + Sync + 'static {
    type Key: ToSql + Sync + Send + Eq + Hash + Clone + 'static;
    type Value: Clone + Send + 'static;
    /// Selects the key, then the value's columns, `WHERE key = ANY((SELECT $1::T[])::T[])`.
    ///
    /// The keys reach the condition through a sub-select (an init plan), so the planner sees
    /// no array length in a custom plan either: both plans cost the same, and PostgreSQL
    /// switches each connection's prepared statement to its generic plan after five
    /// executions (`plan_cache_mode = auto`), where `= ANY($1)` with a short array stays
    /// cheaper to replan than its generic plan (estimated for ten keys) and is planned again
    /// at every execution, which cost PostgreSQL more than the read itself.
    const SQL: &'static str;
    fn row(r: &Row) -> Result<(Self::Key, Self::Value), StoreError>;
}

/// A user's profile and state by id: [`super::postgres::PgStore::get_session`]'s read.
pub(super) struct Profiles;

impl Lookup for Profiles {
    type Key = String;
    type Value = SessionUser;
    const SQL: &'static str = "SELECT id, name, image, custom, disabled,
    GREATEST(tokens_valid_after, COALESCE((SELECT value FROM chatsdk_auth_settings WHERE key = 'tokens_valid_after'), 0))
    FROM chatsdk_auth_users WHERE id = ANY((SELECT $1::TEXT[])::TEXT[])";
    fn row(r: &Row) -> Result<(String, SessionUser), StoreError> {
        Ok((
            col(r, 0)?,
            SessionUser {
                name: col(r, 1)?,
                image: col(r, 2)?,
                custom: col(r, 3)?,
                disabled: col(r, 4)?,
                tokens_valid_after: col(r, 5)?,
            },
        ))
    }
}

/// An API key by its SHA-256 hash: [`super::postgres::PgStore::find_api_key`]'s read.
pub(super) struct ApiKeys;

impl Lookup for ApiKeys {
    type Key = Vec<u8>;
    type Value = ApiKeyRecord;
    const SQL: &'static str = "SELECT hash, name, revoked_at FROM chatsdk_auth_api_keys
    WHERE hash = ANY((SELECT $1::BYTEA[])::BYTEA[])";
    fn row(r: &Row) -> Result<(Vec<u8>, ApiKeyRecord), StoreError> {
        let stored: Vec<u8> = col(r, 0)?;
        let mut hash = [0u8; 32];
        if stored.len() == 32 {
            hash.copy_from_slice(&stored);
        }
        Ok((
            stored,
            ApiKeyRecord {
                name: col(r, 1)?,
                hash,
                revoked_at: col(r, 2)?,
            },
        ))
    }
}

/// The coalesced lookups of one [`super::postgres::PgStore`].
pub(super) struct Lookups {
    pub profiles: Batcher<Profiles>,
    pub api_keys: Batcher<ApiKeys>,
}

impl Lookups {
    /// Each kind has a quarter of the pool's size in statements in flight at most (at least
    /// one), on the kept connections or, with none kept, each on a pooled connection of its own:
    /// reads, however many, always leave connections to the writes.
    pub(super) fn new(
        pool: &Pool,
        pool_size: usize,
        batch: &crate::config::PgBatch,
        timeout: Duration,
    ) -> Lookups {
        let slots = (pool_size / 4).max(1);
        // Kept connections always leave one to the writes (none kept with a pool of one).
        let kept = batch.connections.min(pool_size.saturating_sub(1));
        let conns = Arc::new(Conns::new(pool.clone(), kept));
        Lookups {
            profiles: Batcher::new(Arc::clone(&conns), slots, batch.max, batch.window, timeout),
            api_keys: Batcher::new(conns, slots, batch.max, batch.window, timeout),
        }
    }
}

impl Lookups {
    /// Observes each statement's count of distinct keys into `store_batch_size`.
    pub(super) fn observe_sizes(&self, t: &crate::metrics::StoreTimings) {
        let _ = self.profiles.shared.sizes.set(t.profile_batch.clone());
        let _ = self.api_keys.shared.sizes.set(t.api_key_batch.clone());
    }
}

type Answer<V> = Result<Option<V>, StoreError>;
type Waiter<L> = oneshot::Sender<Answer<<L as Lookup>::Value>>;

/// The lookups of one kind waiting for a statement, and how many statements are running.
struct Queue<L: Lookup> {
    waiting: VecDeque<(L::Key, Waiter<L>)>,
    running: usize,
}

/// Where the statements run: each on a connection taken from the pool for it
/// (`storage.postgres_lookup_connections = 0`), or on a few connections kept for the lookups of
/// both kinds, several statements in flight on each (tokio-postgres pipelines the queries of
/// one client: sent one after another, answered in order).
pub(super) struct Conns {
    pool: Pool,
    kept: Vec<Mutex<Option<Arc<Object>>>>,
    next: AtomicUsize,
}

/// A connection one statement runs on: its own, or one it shares.
enum Conn {
    Own(Box<Object>),
    Shared(Arc<Object>),
}

impl std::ops::Deref for Conn {
    type Target = Object;
    fn deref(&self) -> &Object {
        match self {
            Conn::Own(c) => c,
            Conn::Shared(c) => c,
        }
    }
}

impl Conns {
    pub(super) fn new(pool: Pool, kept: usize) -> Conns {
        Conns {
            pool,
            kept: (0..kept).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next kept connection in turn, (re)connected from the pool when it is missing or
    /// closed; a connection that failed is left to its last statement, then to the pool,
    /// which discards a closed one.
    async fn get(&self) -> Result<Conn, StoreError> {
        if self.kept.is_empty() {
            return self
                .pool
                .get()
                .await
                .map(|c| Conn::Own(Box::new(c)))
                .map_err(map_pool_err);
        }
        let slot = &self.kept[self.next.fetch_add(1, Ordering::Relaxed) % self.kept.len()];
        let open = |s: &Mutex<Option<Arc<Object>>>| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.as_ref().filter(|c| !c.is_closed()).cloned()
        };
        if let Some(c) = open(slot) {
            return Ok(Conn::Shared(c));
        }
        let fresh = Arc::new(self.pool.get().await.map_err(map_pool_err)?);
        let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
        // Another statement may have reconnected this slot meanwhile: one connection per slot.
        match s.as_ref().filter(|c| !c.is_closed()) {
            Some(c) => Ok(Conn::Shared(Arc::clone(c))),
            None => {
                *s = Some(Arc::clone(&fresh));
                Ok(Conn::Shared(fresh))
            }
        }
    }
}

struct Shared<L: Lookup> {
    conns: Arc<Conns>,
    queue: Mutex<Queue<L>>,
    /// Statements of this kind in flight at most (each holds one pooled connection).
    slots: usize,
    max: usize,
    window: Duration,
    timeout: Duration,
    sizes: OnceLock<Histogram>,
}

/// Gathers the concurrent lookups of one kind into shared statements.
pub(super) struct Batcher<L: Lookup> {
    shared: Arc<Shared<L>>,
}

impl<L: Lookup> Batcher<L> {
    pub(super) fn new(
        conns: Arc<Conns>,
        slots: usize,
        max: usize,
        window: Duration,
        timeout: Duration,
    ) -> Batcher<L> {
        Batcher {
            shared: Arc::new(Shared {
                conns,
                queue: Mutex::new(Queue {
                    waiting: VecDeque::new(),
                    running: 0,
                }),
                slots: slots.max(1),
                max: max.max(1),
                window,
                timeout,
                sizes: OnceLock::new(),
            }),
        }
    }

    /// The row for `key`, read by a statement sent after this call began.
    pub(super) async fn get(&self, key: L::Key) -> Answer<L::Value> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.shared.lock();
            q.waiting.push_back((key, tx));
            let start = q.running < self.shared.slots;
            if start {
                q.running += 1;
            }
            start
        };
        if start {
            tokio::spawn(Arc::clone(&self.shared).drive());
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the statement of a coalesced lookup was abandoned".into(),
            ))
        })
    }
}

impl<L: Lookup> Shared<L> {
    fn lock(&self) -> MutexGuard<'_, Queue<L>> {
        // Nothing panics while holding it; a poisoned queue is still a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One slot: statements until the queue is empty.
    async fn drive(self: Arc<Self>) {
        let others = self.lock().running > 1;
        if others && !self.window.is_zero() {
            gather(self.window).await;
        }
        loop {
            let batch = {
                let mut q = self.lock();
                let batch = take(&mut q.waiting, self.max);
                if batch.is_empty() {
                    q.running -= 1;
                    return;
                }
                batch
            };
            self.answer(batch).await;
        }
    }

    /// Reads the batch's keys in one statement and answers each waiter.
    async fn answer(&self, batch: HashMap<L::Key, Vec<Waiter<L>>>) {
        let keys: Vec<L::Key> = batch.keys().cloned().collect();
        if let Some(h) = self.sizes.get() {
            h.observe(keys.len() as f64);
        }
        let read = match tokio::time::timeout(self.timeout, self.read(&keys)).await {
            Ok(read) => read,
            Err(_) => Err(StoreError::Unavailable(
                format!(
                    "PostgreSQL did not answer within storage.postgres_timeout_ms ({} ms)",
                    self.timeout.as_millis()
                )
                .into(),
            )),
        };
        match read {
            Ok(mut found) => {
                for (key, waiters) in batch {
                    let value = found.remove(&key);
                    for tx in waiters {
                        let _ = tx.send(Ok(value.clone()));
                    }
                }
            }
            Err(e) => {
                let e = SharedError::of(e);
                for tx in batch.into_values().flatten() {
                    let _ = tx.send(Err(e.each()));
                }
            }
        }
    }

    async fn read(&self, keys: &[L::Key]) -> Result<HashMap<L::Key, L::Value>, StoreError> {
        let c = self.conns.get().await?;
        let st = c.prepare_cached(L::SQL).await.map_err(map_err)?;
        let rows = c.query(&st, &[&keys]).await.map_err(map_err)?;
        rows.iter().map(L::row).collect()
    }
}

/// Lets the lookups that are ready to run on this worker join before the statement is sent,
/// for at most `window` (a yield loop: tokio's timer cannot sleep microseconds).
async fn gather(window: Duration) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

/// The front of the queue, at most `max` distinct keys, each with all its waiters; waiters
/// already gone (their request's deadline passed) are dropped, not read for.
fn take<K: Eq + Hash, W: IsClosed>(
    waiting: &mut VecDeque<(K, W)>,
    max: usize,
) -> HashMap<K, Vec<W>> {
    let mut batch: HashMap<K, Vec<W>> = HashMap::new();
    while let Some((key, _)) = waiting.front() {
        if batch.len() >= max && !batch.contains_key(key) {
            break;
        }
        let Some((key, tx)) = waiting.pop_front() else {
            break;
        };
        if !tx.closed() {
            batch.entry(key).or_default().push(tx);
        }
    }
    batch
}

/// Whether a waiter has gone (a oneshot sender whose receiver was dropped).
trait IsClosed {
    fn closed(&self) -> bool;
}

impl<T> IsClosed for oneshot::Sender<T> {
    fn closed(&self) -> bool {
        self.is_closed()
    }
}

/// One statement's failure, handed to each of its waiters as a [`StoreError`] of the same kind
/// whose cause chain is the original's.
struct SharedError {
    kind: fn(crate::error_chain::Cause) -> StoreError,
    cause: Arc<dyn Error + Send + Sync>,
}

impl SharedError {
    fn of(e: StoreError) -> SharedError {
        let (kind, cause): (fn(_) -> StoreError, _) = match e {
            StoreError::Unavailable(c) => (StoreError::Unavailable, c),
            StoreError::BadRow(c) => (StoreError::BadRow, c),
            StoreError::Internal(c) => (StoreError::Internal, c),
            // A read conflicts with nothing; if one ever did, it is not the caller's to act on.
            StoreError::Conflict { cause, .. } => (StoreError::Internal, cause),
            // Nor is a read ever a lost update.
            StoreError::LostUpdate(l) => (StoreError::Internal, Box::new(l)),
        };
        SharedError {
            kind,
            cause: Arc::from(cause),
        }
    }

    fn each(&self) -> StoreError {
        (self.kind)(Box::new(SharedCause(Arc::clone(&self.cause))))
    }
}

/// A cause several errors share: displays as it and continues its `source()` chain.
#[derive(Debug)]
struct SharedCause(Arc<dyn Error + Send + Sync>);

impl fmt::Display for SharedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for SharedCause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct W(bool);
    impl IsClosed for W {
        fn closed(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn a_batch_takes_at_most_max_distinct_keys_with_all_their_waiters_in_order() {
        let mut q: VecDeque<(&str, W)> = ["a", "b", "a", "c", "b", "d"]
            .into_iter()
            .map(|k| (k, W(false)))
            .collect();
        let batch = take(&mut q, 2);
        // a, b, a: then c would be a third key; c, b, d stay queued for the next statement.
        assert_eq!(batch.len(), 2);
        assert_eq!(batch["a"].len(), 2);
        assert_eq!(batch["b"].len(), 1);
        let rest: Vec<&str> = q.iter().map(|(k, _)| *k).collect();
        assert_eq!(rest, ["c", "b", "d"]);
    }

    #[test]
    fn waiters_already_gone_are_not_read_for() {
        let mut q: VecDeque<(&str, W)> = [("a", W(true)), ("b", W(false)), ("a", W(true))]
            .into_iter()
            .collect();
        let batch = take(&mut q, 10);
        assert_eq!(batch.keys().copied().collect::<Vec<_>>(), ["b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn every_waiter_of_a_failed_statement_gets_the_same_kind_and_cause() {
        let e = SharedError::of(StoreError::Unavailable(
            crate::error_chain::Context::new("PostgreSQL pool", std::io::Error::other("refused"))
                .into(),
        ));
        for _ in 0..3 {
            let each = e.each();
            assert!(each.is_unavailable());
            assert_eq!(
                crate::error_chain::Chain(&each).to_string(),
                "store unavailable: PostgreSQL pool: refused"
            );
        }
    }
}
