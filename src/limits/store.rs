//! The bounded, sharded state behind the limiters: [`BoundedStore`] (the `governor` state store
//! of each keyed limiter) and [`Marks`] (addresses marked until an instant: blocked, watched).
//!
//! Both are 16 mutex-guarded shards picked by the key's low bits (the keys are already keyed
//! hashes), each holding at most its share of `limits.max_tracked_keys`, and both prune at most
//! once a second, never on every insert. Neither admits silently when full: a key a full
//! [`BoundedStore`] cannot track either passes unlimited (the mint limits, [`WhenFull::Admit`])
//! or shares its shard's one bucket with every other untracked key ([`WhenFull::Share`], the
//! limits on failed credentials); a mark a full shard cannot store marks the shard's untracked
//! keys together. Every check past a full table is counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use prometheus::IntCounter;

/// Shards of a table: enough that two workers rarely meet on one lock.
pub const SHARDS: usize = 16;

/// What a full [`BoundedStore`] does with a key it does not track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Passes unlimited, unstored (a limit on cost: refusing legitimate users would be worse).
    Admit,
    /// Is limited by its shard's shared bucket (a limit on failures: never fail open).
    Share,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shard_of(key: u64) -> usize {
    (key as usize) % SHARDS
}

/// One shard of a [`BoundedStore`].
#[derive(Default)]
struct Shard {
    tracked: HashMap<u64, Nanos>,
    /// The bucket the keys this shard cannot track share ([`WhenFull::Share`]).
    shared: Option<Nanos>,
}

/// A `governor` state store holding at most `max` keys (see the module documentation).
pub struct BoundedStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    when_full: WhenFull,
    /// Checks of a key the store could not track.
    untracked: AtomicU64,
    /// The same, exported (`chatsdk_auth_rate_limit_untracked_total{limit}`).
    exported: Option<IntCounter>,
}

impl BoundedStore {
    pub fn new(max: usize, when_full: WhenFull, exported: Option<IntCounter>) -> BoundedStore {
        BoundedStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
            when_full,
            untracked: AtomicU64::new(0),
            exported,
        }
    }

    /// Keys it holds at most.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Checks of a key it could not track.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Bytes the tables hold (capacity times entry size plus hashbrown's control byte).
    pub fn table_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, Nanos)>() + 1;
        self.shards
            .iter()
            .map(|s| lock(s).tracked.capacity() * entry)
            .sum()
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = lock(&self.shards[shard_of(*key)]);
        if let Some(state) = shard.tracked.get_mut(key) {
            let (out, next) = f(Some(*state))?;
            *state = next;
            return Ok(out);
        }
        if shard.tracked.len() < self.per_shard {
            let (out, next) = f(None)?;
            shard.tracked.insert(*key, next);
            return Ok(out);
        }
        self.untracked.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.exported {
            c.inc();
        }
        match self.when_full {
            WhenFull::Admit => f(None).map(|(out, _)| out),
            WhenFull::Share => {
                let (out, next) = f(shard.shared)?;
                shard.shared = Some(next);
                Ok(out)
            }
        }
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        for s in &self.shards {
            let mut s = lock(s);
            s.tracked.retain(|_, tat| *tat > drop_below);
            if s.shared.is_some_and(|tat| tat <= drop_below) {
                s.shared = None;
            }
        }
    }

    fn shrink_to_fit(&self) {
        for s in &self.shards {
            lock(s).tracked.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tracked.len()).sum()
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::len(self) == 0
    }
}

/// One shard of [`Marks`].
#[derive(Default)]
struct MarkShard {
    until: HashMap<u64, Instant>,
    /// Marks this shard had no room for: every key it does not hold is marked until then.
    overflow: Option<Instant>,
}

/// Keys marked until an instant, bounded (see the module documentation).
pub struct Marks {
    shards: Vec<Mutex<MarkShard>>,
    per_shard: usize,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last prune.
    last_prune_ms: AtomicU64,
    /// Keys held plus overflows set, over every shard (changed under the shard's lock): while
    /// it is 0, a look-up answers "not marked" without hashing the key or taking a lock.
    held: AtomicUsize,
}

impl Marks {
    pub fn new(max: usize) -> Marks {
        Marks {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
            epoch: Instant::now(),
            last_prune_ms: AtomicU64::new(0),
            held: AtomicUsize::new(0),
        }
    }

    /// Marks `key` until `until` (a later mark extends it, an earlier one never shortens it).
    pub fn mark(&self, key: u64, until: Instant) {
        let now = Instant::now();
        self.prune_if_due(now);
        let mut shard = lock(&self.shards[shard_of(key)]);
        if let Some(u) = shard.until.get_mut(&key) {
            *u = (*u).max(until);
        } else if shard.until.len() < self.per_shard {
            shard.until.insert(key, until);
            self.held.fetch_add(1, Ordering::Release);
        } else {
            if shard.overflow.is_none() {
                self.held.fetch_add(1, Ordering::Release);
            }
            shard.overflow = Some(shard.overflow.map_or(until, |o| o.max(until)));
        }
    }

    /// True when nothing is marked: no key held and no overflow, in any shard.
    pub fn none_held(&self) -> bool {
        self.held.load(Ordering::Acquire) == 0
    }

    /// How long `key` stays marked; `None` when it is not.
    pub fn remaining(&self, key: u64) -> Option<Duration> {
        let shard = lock(&self.shards[shard_of(key)]);
        if shard.until.is_empty() && shard.overflow.is_none() {
            return None;
        }
        let until = shard.until.get(&key).copied().or(shard.overflow)?;
        until.checked_duration_since(Instant::now())
    }

    /// At most once a second: forgets the marks that have passed.
    pub(super) fn prune_if_due(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if ms.saturating_sub(last) < 1000
            || self
                .last_prune_ms
                .compare_exchange(last, ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for s in &self.shards {
            let mut s = lock(s);
            let before = s.until.len();
            s.until.retain(|_, u| *u > now);
            let mut gone = before - s.until.len();
            if s.overflow.is_some_and(|o| o <= now) {
                s.overflow = None;
                gone += 1;
            }
            self.held.fetch_sub(gone, Ordering::Release);
        }
    }

    /// Keys held (not counting a shard's overflow).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).until.len()).sum()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
