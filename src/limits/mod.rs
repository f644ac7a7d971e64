//! Rate limits (`[limits]`): keyed GCRA limiters from the `governor` crate, with bounded memory.
//!
//! Four limits, each off when its rate is 0:
//! - `mint_per_user_per_minute`: `POST /tokens` per `userId`;
//! - `mint_per_api_key_per_second`: `POST /tokens` per API key;
//! - `failed_auth_per_ip_per_minute`: *failed* API-key checks per client address; once it is
//!   exhausted, the address is refused (429) before its key is even looked up, until the limit
//!   refills ([`Mark::Blocked`]). Successful requests never count;
//! - `admin_per_ip_per_minute`: failed admin-token checks per client address.
//!
//! The Centrifugo proxies are never limited: Centrifugo is the caller, and a reconnect storm
//! after a Centrifugo restart must pass. Limits are per process: with several replicas, each
//! allows the full rate (the failed-credential limits are also shared through PostgreSQL, by
//! the router).
//!
//! Memory is bounded (`limits/store.rs`). `governor` runs the algorithm (GCRA); the state lives
//! in a [`BoundedStore`] of 16 mutex-guarded shards of `u64 -> Nanos`. A key is stored as a
//! 64-bit keyed hash (SipHash with a per-process random key), never the user id or address
//! itself, so an entry is the same 16 bytes (plus the table's overhead) whatever the id's
//! length. Each limiter holds at most `limits.max_tracked_keys` entries: when it reaches that,
//! the entries indistinguishable from a fresh key (their bucket has refilled) are dropped
//! (`retain_recent`, at most once a second). While it is still full, a key it does not track
//! is never admitted blindly where a failure is counted: the failed-credential limits charge it
//! to its shard's one shared bucket (so a spray of addresses past the table is limited as one
//! address per shard), while the mint limits let it pass (refusing legitimate users because
//! others are many would be worse). Keys already tracked stay limited. Every check past a full
//! table is counted (`chatsdk_auth_rate_limit_untracked_total{limit}`). Client addresses are
//! keyed by their /64 for IPv6 (one host usually owns a whole /64).

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use prometheus::IntCounter;

use crate::config::LimitsConfig;

mod store;
pub use store::{BoundedStore, Marks, WhenFull, SHARDS};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MintPerUser,
    MintPerApiKey,
    FailedAuthPerIp,
    AdminPerIp,
}

impl Limit {
    /// Every limit, in a fixed order.
    pub const ALL: [Limit; 4] = [
        Limit::MintPerUser,
        Limit::MintPerApiKey,
        Limit::FailedAuthPerIp,
        Limit::AdminPerIp,
    ];

    /// The name used in logs, the audit trail and the `limit` label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::MintPerUser => "mint_per_user",
            Limit::MintPerApiKey => "mint_per_api_key",
            Limit::FailedAuthPerIp => "failed_auth_per_ip",
            Limit::AdminPerIp => "admin_per_ip",
        }
    }
}

/// A refusal: which limit, and how long until the next request would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: Limit,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let s = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        s.max(1)
    }
}

/// The handle the limiter owns; [`Keyed`] keeps another to read the counts.
pub struct Shared(Arc<BoundedStore>);

impl StateStore for Shared {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for Shared {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below)
    }
    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit()
    }
    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }
    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

type Limiter = RateLimiter<u64, Shared, DefaultClock, NoOpMiddleware>;

/// One keyed limiter with a bounded number of tracked keys.
pub struct Keyed {
    limit: Limit,
    limiter: Limiter,
    store: Arc<BoundedStore>,
    clock: DefaultClock,
    hasher: RandomState,
    /// Milliseconds since `epoch` of the last `retain_recent` pass.
    last_sweep_ms: AtomicU64,
    epoch: Instant,
    /// Set while the store is full (checked once a second at most, by the sweep).
    full: AtomicBool,
}

impl Keyed {
    fn new(limit: Limit, quota: Quota, store: BoundedStore) -> Keyed {
        let clock = DefaultClock::default();
        let store = Arc::new(store);
        Keyed {
            limit,
            limiter: RateLimiter::new(quota, Shared(store.clone()), clock.clone()),
            store,
            clock,
            hasher: RandomState::new(),
            last_sweep_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            full: AtomicBool::new(false),
        }
    }

    /// Counts one event for `k`; `Err` when `k` is over its limit.
    pub fn check(&self, k: impl Hash) -> Result<(), Limited> {
        let key = self.hasher.hash_one(k);
        let out = self.limiter.check_key(&key).map_err(|not_until| Limited {
            limit: self.limit,
            retry_after: not_until.wait_time_from(self.clock.now()),
        });
        self.sweep_if_due();
        out
    }

    /// Once a second at most, and only when the store was full at the last look: drops the
    /// entries that carry no information (bucket refilled).
    fn sweep_if_due(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if self.full.load(Ordering::Relaxed) {
            self.limiter.retain_recent();
        }
        self.full.store(
            self.limiter.len() >= self.store.capacity(),
            Ordering::Relaxed,
        );
    }

    fn store(&self) -> &BoundedStore {
        &self.store
    }

    /// Keys tracked right now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// Checks of a key the limiter could not track because it was full.
    pub fn untracked_count(&self) -> u64 {
        self.store().untracked()
    }
}

/// A mark on a client address, kept (bounded) until it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Its failed-auth budget is used up, here or in the bucket the replicas share: API-key
    /// checks from it are refused before the lookup until then.
    Blocked,
    /// An API-key check from it failed lately: with limits shared through PostgreSQL, its
    /// next checks first read the shared bucket (`router/guard.rs`).
    Watched,
}

/// Every limit of the service.
pub struct Limits {
    pub mint_per_user: Option<Keyed>,
    pub mint_per_api_key: Option<Keyed>,
    pub failed_auth_per_ip: Option<Keyed>,
    pub admin_per_ip: Option<Keyed>,
    /// [`Mark::Blocked`] and [`Mark::Watched`], in that order.
    marks: [Marks; 2],
    marks_hasher: RandomState,
}

impl Limits {
    /// The limits of `c`, none exported (tests, the CLI).
    pub fn new(c: &LimitsConfig) -> Limits {
        Limits::exported(c, |_| None)
    }

    /// The limits of `c`; `untracked` gives each limit's counter of checks past a full table.
    pub fn exported(c: &LimitsConfig, untracked: impl Fn(Limit) -> Option<IntCounter>) -> Limits {
        let keyed = |limit, per: fn(NonZeroU32) -> Quota, n: u32, when_full| {
            NonZeroU32::new(n).map(|n| {
                let store = BoundedStore::new(c.max_tracked_keys, when_full, untracked(limit));
                Keyed::new(limit, per(n), store)
            })
        };
        Limits {
            mint_per_user: keyed(
                Limit::MintPerUser,
                Quota::per_minute,
                c.mint_per_user_per_minute,
                WhenFull::Admit,
            ),
            mint_per_api_key: keyed(
                Limit::MintPerApiKey,
                Quota::per_second,
                c.mint_per_api_key_per_second,
                WhenFull::Admit,
            ),
            failed_auth_per_ip: keyed(
                Limit::FailedAuthPerIp,
                Quota::per_minute,
                c.failed_auth_per_ip_per_minute,
                WhenFull::Share,
            ),
            admin_per_ip: keyed(
                Limit::AdminPerIp,
                Quota::per_minute,
                c.admin_per_ip_per_minute,
                WhenFull::Share,
            ),
            marks: [
                Marks::new(c.max_tracked_keys),
                Marks::new(c.max_tracked_keys),
            ],
            marks_hasher: RandomState::new(),
        }
    }

    /// `POST /tokens` for `user_id`.
    pub fn mint_for_user(&self, user_id: &str) -> Result<(), Limited> {
        self.mint_per_user
            .as_ref()
            .map_or(Ok(()), |l| l.check(user_id))
    }

    /// `POST /tokens` with the API key named `key_name`.
    pub fn mint_with_key(&self, key_name: &str) -> Result<(), Limited> {
        self.mint_per_api_key
            .as_ref()
            .map_or(Ok(()), |l| l.check(key_name))
    }

    /// A failed admin-token check from `ip`: counts it; `Err` when that used up the limit.
    pub fn admin_failed(&self, ip: IpAddr) -> Result<(), Limited> {
        self.admin_per_ip
            .as_ref()
            .map_or(Ok(()), |l| l.check(client_key(ip)))
    }

    /// After an API-key check failed for `ip`: counts it; `Err` when that used up the limit
    /// (the address is then [`Mark::Blocked`] until the limit refills).
    pub fn auth_failed(&self, ip: IpAddr) -> Result<(), Limited> {
        let Some(l) = &self.failed_auth_per_ip else {
            return Ok(());
        };
        let Err(limited) = l.check(client_key(ip)) else {
            return Ok(());
        };
        self.mark(Mark::Blocked, ip, limited.retry_after);
        Err(limited)
    }

    /// Marks `ip` with `mark` for `for_how_long` (never shortening a longer mark).
    pub fn mark(&self, mark: Mark, ip: IpAddr, for_how_long: Duration) {
        if self.failed_auth_per_ip.is_none() {
            return;
        }
        let key = self.marks_hasher.hash_one(client_key(ip));
        self.marks[mark as usize].mark(key, Instant::now() + for_how_long);
    }

    /// Whether `ip` carries `mark`: how long it still does, as the failed-auth limit's refusal.
    pub fn marked(&self, mark: Mark, ip: IpAddr) -> Option<Limited> {
        self.failed_auth_per_ip.as_ref()?;
        let marks = &self.marks[mark as usize];
        if marks.none_held() {
            return None;
        }
        let key = self.marks_hasher.hash_one(client_key(ip));
        marks.remaining(key).map(|retry_after| Limited {
            limit: Limit::FailedAuthPerIp,
            retry_after,
        })
    }
}

/// What a client address is limited as: the address for IPv4, its /64 for IPv6 (an IPv4-mapped
/// IPv6 address counts as the IPv4 address).
pub fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

#[cfg(test)]
mod tests;
