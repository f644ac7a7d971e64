//! Rate limits (`[limits]`): keyed GCRA limiters from the `governor` crate, with bounded memory.
//!
//! Four limits, each off when its rate is 0:
//! - `mint_per_user_per_minute`: `POST /tokens` per `userId`;
//! - `mint_per_api_key_per_second`: `POST /tokens` per API key;
//! - `failed_auth_per_ip_per_minute`: *failed* API-key checks per client address; once it is
//!   exhausted, the address is refused (429) before its key is even looked up, until the limit
//!   refills. Successful requests never count;
//! - `admin_per_ip_per_minute`: admin API calls per client address.
//!
//! The Centrifugo proxies are never limited: Centrifugo is the caller, and a reconnect storm
//! after a Centrifugo restart must pass. Limits are per process: with several replicas, each
//! allows the full rate.
//!
//! Memory is bounded. `governor` runs the algorithm (GCRA); the state lives in [`BoundedStore`],
//! a state store of this module: 16 mutex-guarded shards of `u64 -> Nanos`. A key is stored as
//! a 64-bit keyed hash (SipHash with a per-process random key), never the user id or address
//! itself, so an entry is the same 16 bytes (plus the table's overhead) whatever the id's
//! length. Each limiter holds at most `limits.max_tracked_keys` entries: when it reaches that,
//! the entries indistinguishable from a fresh key (their bucket has refilled) are dropped
//! (`retain_recent`, at most once a second); while it is still full, a key it does not track
//! passes unlimited and is not stored, rather than refusing legitimate traffic or evicting a key
//! that is being limited right now. Keys already tracked stay limited. Client addresses are
//! keyed by their /64 for IPv6 (one host usually owns a whole /64).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

use crate::config::LimitsConfig;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MintPerUser,
    MintPerApiKey,
    FailedAuthPerIp,
    AdminPerIp,
}

impl Limit {
    /// The name used in logs and the audit trail.
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

/// Shards of a [`BoundedStore`]: enough that two workers rarely meet on one lock.
const SHARDS: usize = 16;

/// A `governor` state store holding at most `max` keys (see the module documentation).
pub struct BoundedStore {
    shards: Vec<Mutex<HashMap<u64, Nanos>>>,
    per_shard: usize,
    /// Checks that passed unlimited, unstored, because their shard was full.
    untracked: AtomicU64,
}

impl BoundedStore {
    fn new(max: usize) -> BoundedStore {
        BoundedStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
            untracked: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Nanos>> {
        // The key is already a keyed hash: its low bits pick the shard.
        self.shards[(key as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl BoundedStore {
    /// Bytes the tables hold (capacity times entry size plus hashbrown's control byte).
    pub fn table_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, Nanos)>() + 1;
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).capacity() * entry)
            .sum()
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

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = self.shard(*key);
        if let Some(state) = shard.get_mut(key) {
            let (out, next) = f(Some(*state))?;
            *state = next;
            return Ok(out);
        }
        let (out, next) = f(None)?;
        if shard.len() < self.per_shard {
            shard.insert(*key, next);
        } else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, tat| *tat > drop_below);
        }
    }

    fn shrink_to_fit(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|e| e.into_inner()).shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::len(self) == 0
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
    full: std::sync::atomic::AtomicBool,
}

impl Keyed {
    fn new(limit: Limit, quota: Quota, max_keys: usize) -> Keyed {
        let clock = DefaultClock::default();
        let store = Arc::new(BoundedStore::new(max_keys));
        Keyed {
            limit,
            limiter: RateLimiter::new(quota, Shared(store.clone()), clock.clone()),
            store,
            clock,
            hasher: RandomState::new(),
            last_sweep_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            full: std::sync::atomic::AtomicBool::new(false),
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
        self.full
            .store(self.limiter_store_full(), Ordering::Relaxed);
    }

    fn limiter_store_full(&self) -> bool {
        self.limiter.len() >= self.max_keys()
    }

    fn max_keys(&self) -> usize {
        self.store().per_shard * SHARDS
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

    /// Checks that passed unlimited, unstored, because the limiter was full.
    pub fn untracked_count(&self) -> u64 {
        self.store().untracked.load(Ordering::Relaxed)
    }
}

/// Every limit of the service.
pub struct Limits {
    pub mint_per_user: Option<Keyed>,
    pub mint_per_api_key: Option<Keyed>,
    pub failed_auth_per_ip: Option<Keyed>,
    pub admin_per_ip: Option<Keyed>,
    /// Addresses whose failed-auth limit is exhausted, with when it refills enough for one more
    /// attempt: read before each API-key check. Bounded like the limiters.
    blocked: Mutex<HashMap<u64, Instant>>,
    blocked_hasher: RandomState,
    /// Addresses whose API-key check failed lately, until when: with limits shared through
    /// PostgreSQL, their next checks first read the shared bucket (`router/guard.rs`).
    watched: Mutex<HashMap<u64, Instant>>,
    max_keys: usize,
}

impl Limits {
    pub fn new(c: &LimitsConfig) -> Limits {
        let keyed = |limit, per: fn(NonZeroU32) -> Quota, n: u32| {
            NonZeroU32::new(n).map(|n| Keyed::new(limit, per(n), c.max_tracked_keys))
        };
        Limits {
            mint_per_user: keyed(
                Limit::MintPerUser,
                Quota::per_minute,
                c.mint_per_user_per_minute,
            ),
            mint_per_api_key: keyed(
                Limit::MintPerApiKey,
                Quota::per_second,
                c.mint_per_api_key_per_second,
            ),
            failed_auth_per_ip: keyed(
                Limit::FailedAuthPerIp,
                Quota::per_minute,
                c.failed_auth_per_ip_per_minute,
            ),
            admin_per_ip: keyed(
                Limit::AdminPerIp,
                Quota::per_minute,
                c.admin_per_ip_per_minute,
            ),
            blocked: Mutex::new(HashMap::new()),
            blocked_hasher: RandomState::new(),
            watched: Mutex::new(HashMap::new()),
            max_keys: c.max_tracked_keys,
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

    /// An admin API call from `ip`.
    pub fn admin_call(&self, ip: IpAddr) -> Result<(), Limited> {
        self.admin_per_ip
            .as_ref()
            .map_or(Ok(()), |l| l.check(client_key(ip)))
    }

    /// Before an API-key check: refused while `ip` has used up its failed attempts.
    pub fn auth_allowed(&self, ip: IpAddr) -> Result<(), Limited> {
        if self.failed_auth_per_ip.is_none() {
            return Ok(());
        }
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        if blocked.is_empty() {
            return Ok(());
        }
        let key = self.blocked_hasher.hash_one(client_key(ip));
        let now = Instant::now();
        match blocked.get(&key) {
            Some(until) if *until > now => Err(Limited {
                limit: Limit::FailedAuthPerIp,
                retry_after: *until - now,
            }),
            Some(_) => {
                blocked.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// After an API-key check failed for `ip`: counts it; `Err` when that used up the limit
    /// (the address is then refused before any check until the limit refills).
    pub fn auth_failed(&self, ip: IpAddr) -> Result<(), Limited> {
        let Some(l) = &self.failed_auth_per_ip else {
            return Ok(());
        };
        let Err(limited) = l.check(client_key(ip)) else {
            return Ok(());
        };
        self.block(ip, limited.retry_after);
        Err(limited)
    }

    /// Notes that an API-key check from `ip` failed: it stays watched for `for_how_long`.
    pub fn watch(&self, ip: IpAddr, for_how_long: Duration) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if watched.len() >= self.max_keys {
            watched.retain(|_, until| *until > now);
        }
        if watched.len() < self.max_keys {
            let key = self.blocked_hasher.hash_one(client_key(ip));
            watched.insert(key, now + for_how_long);
        }
    }

    /// Whether an API-key check from `ip` failed within its watch (see [`Limits::watch`]).
    pub fn watched(&self, ip: IpAddr) -> bool {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if watched.is_empty() {
            return false;
        }
        let key = self.blocked_hasher.hash_one(client_key(ip));
        watched
            .get(&key)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Refuses API-key checks from `ip` for `retry_after`: its failed-auth budget is used up,
    /// here or in the bucket the replicas share.
    pub fn block(&self, ip: IpAddr, retry_after: Duration) {
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if blocked.len() >= self.max_keys {
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < self.max_keys {
            let key = self.blocked_hasher.hash_one(client_key(ip));
            let until = now + retry_after;
            let entry = blocked.entry(key).or_insert(until);
            *entry = (*entry).max(until);
        }
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
mod tests {
    use super::*;

    fn config(per_user: u32, max_keys: usize) -> LimitsConfig {
        LimitsConfig {
            mint_per_user_per_minute: per_user,
            mint_per_api_key_per_second: 0,
            failed_auth_per_ip_per_minute: 3,
            admin_per_ip_per_minute: 0,
            max_tracked_keys: max_keys,
            trusted_proxy_header: None,
        }
    }

    #[test]
    fn a_user_gets_the_burst_then_waits() {
        let l = Limits::new(&config(5, 1000));
        for _ in 0..5 {
            l.mint_for_user("u").unwrap();
        }
        let refused = l.mint_for_user("u").unwrap_err();
        assert_eq!(refused.limit, Limit::MintPerUser);
        // 5 a minute: one more every 12 s.
        assert!(
            (1..=12).contains(&refused.retry_after_secs()),
            "{refused:?}"
        );
        l.mint_for_user("other").unwrap();
        assert!(l.mint_with_key("k").is_ok(), "off when 0");
    }

    #[test]
    fn failed_auth_blocks_the_address_only_after_the_limit() {
        let l = Limits::new(&config(5, 1000));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..3 {
            l.auth_allowed(ip).unwrap();
            l.auth_failed(ip).unwrap();
        }
        assert!(l.auth_failed(ip).is_err());
        assert!(
            l.auth_allowed(ip).is_err(),
            "refused before the key is checked"
        );
        assert!(l.auth_allowed(other).is_ok());
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(v4), client_key(mapped));
    }

    /// A million distinct user ids: the limiter never tracks more than its bound, and the
    /// process grows by a bounded amount (printed; the README quotes it).
    #[test]
    fn a_million_distinct_users_stay_within_the_bound() {
        const MAX: usize = 100_000;
        let l = Limits::new(&config(60, MAX));
        let rss_before = rss_kib();
        let mut id = String::with_capacity(32);
        for i in 0..1_000_000u32 {
            id.clear();
            use std::fmt::Write;
            let _ = write!(id, "user-{i}");
            l.mint_for_user(&id).unwrap();
        }
        let keyed = l.mint_per_user.as_ref().unwrap();
        assert!(keyed.len() <= MAX + SHARDS, "{} keys tracked", keyed.len());
        assert!(keyed.untracked_count() >= 1_000_000 - 2 * MAX as u64);
        let table = keyed.store().table_bytes();
        // The process-wide RSS also counts whatever tests run alongside: informative only.
        let grown = rss_kib().saturating_sub(rss_before);
        eprintln!(
            "1,000,000 distinct user ids: {} tracked, {} passed unlimited while full, table {} KiB, RSS +{grown} KiB",
            keyed.len(),
            keyed.untracked_count(),
            table / 1024
        );
        assert!(table < 4 * 1024 * 1024, "table holds {table} bytes");
    }

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}
