//! When a key signs, stops signing and stops verifying ([`Schedule`]), and the keys of one kind
//! ([`KeySet`]), never empty, which answer "which key signs now" and "which keys verify now".

use std::sync::Arc;

use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};

use super::{is_asymmetric, Key, Kind};

/// When a key signs, stops signing and stops verifying (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// When the key was created (a "next" key is published from here).
    pub created_at: i64,
    /// The first second the key signs.
    pub signs_from: i64,
    /// The first second the key no longer signs; `None` while it is the current key.
    pub signs_until: Option<i64>,
    /// The first second no token it signed is valid any more: it then neither verifies nor is
    /// published. `None` while it is (or will be) the current key.
    pub expires_at: Option<i64>,
}

impl Schedule {
    /// The schedule of a configured key: signing since forever, until rotated.
    pub const CONFIGURED: Schedule = Schedule {
        created_at: 0,
        signs_from: 0,
        signs_until: None,
        expires_at: None,
    };

    pub(super) fn signs_at(&self, now: i64) -> bool {
        self.signs_from <= now && self.signs_until.is_none_or(|u| now < u)
    }

    pub(super) fn valid_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// Every key of one kind, ordered by `signs_from`; never empty (it is built from one key and
/// any others), so there is always a key that signs.
#[derive(Debug)]
pub struct KeySet {
    pub kind: Kind,
    keys: Vec<Arc<Key>>,
    /// The key that starts signing first: what signs should the schedule leave no key
    /// started at some instant.
    earliest: Arc<Key>,
}

impl KeySet {
    /// The set of `first` and `others`, in any order.
    pub fn new(kind: Kind, first: Arc<Key>, others: Vec<Arc<Key>>) -> KeySet {
        let mut keys = others;
        keys.push(first.clone());
        keys.sort_by_key(|k| (k.schedule.signs_from, k.schedule.created_at));
        let earliest = keys.first().cloned().unwrap_or(first);
        KeySet {
            kind,
            keys,
            earliest,
        }
    }

    /// The key that signs at `now`: the latest that has started and not stopped; should the
    /// schedule leave a gap, the latest started key; before any has started, the earliest.
    pub fn signing(&self, now: i64) -> &Arc<Key> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.schedule.signs_at(now))
            .or_else(|| {
                self.keys
                    .iter()
                    .rev()
                    .find(|k| k.schedule.signs_from <= now)
            })
            .unwrap_or(&self.earliest)
    }

    /// The key `kid` names, while tokens it signed can still be valid.
    pub fn find(&self, kid: &str, now: i64) -> Option<&Arc<Key>> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.schedule.valid_at(now))
    }

    /// Every key that still verifies at `now`, current first.
    pub fn verifying(&self, now: i64) -> impl Iterator<Item = &Arc<Key>> {
        let current = self.signing(now).clone();
        std::iter::once(self.signing(now)).chain(
            self.keys
                .iter()
                .rev()
                .filter(move |k| k.kid != current.kid && k.schedule.valid_at(now)),
        )
    }

    /// All keys (for `keys list`).
    pub fn all(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// The most recent HMAC key that stopped signing but still verifies, with the second it
    /// stops verifying: Centrifugo's `hmac_previous_secret_key(_valid_until)`.
    pub fn previous_hmac(&self, now: i64) -> Option<(&Arc<Key>, i64)> {
        let current = self.signing(now);
        self.keys
            .iter()
            .rev()
            .filter(|k| k.kid != current.kid && !is_asymmetric(k.alg))
            .filter(|k| k.schedule.signs_from <= now && k.schedule.valid_at(now))
            .find_map(|k| k.schedule.expires_at.map(|e| (k, e)))
    }

    /// The public JWKs to publish at `now`: current, next (created, not yet signing) and
    /// previous (stopped signing, tokens still valid).
    pub fn published(&self, now: i64) -> impl Iterator<Item = &Jwk> {
        self.keys
            .iter()
            .filter(move |k| k.schedule.valid_at(now))
            .filter_map(|k| k.jwk.as_ref())
    }
}
