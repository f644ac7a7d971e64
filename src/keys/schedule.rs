//! When a key signs, stops signing and stops verifying ([`Schedule`]): a value of every key,
//! read by [`super::set::KeySet`] to choose the key that signs now and the keys that verify.

use serde::{Deserialize, Serialize};

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
