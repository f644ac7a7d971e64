//! The keys of one kind ([`KeySet`]), never empty, which answer "which key signs now" and
//! "which keys verify now" from each key's [`super::Schedule`].

use std::sync::Arc;

use jsonwebtoken::jwk::Jwk;

use super::{is_asymmetric, Key, Kind};

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
