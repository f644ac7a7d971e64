//! [`StoreError`], why a storage operation failed, [`Conflict`], the uniqueness rules a
//! caller can act on, and [`LostUpdate`], the rows written only over the version read.

use crate::error_chain::Cause;

/// Why a storage operation failed; the driver's error stays reachable through `source()`
/// (for the log), never in `Display` (which callers may show).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is locked beyond the busy timeout.
    #[error("store unavailable")]
    Unavailable(#[source] Cause),
    /// A uniqueness rule the caller can act on; `Display` is the fixed sentence of `kind`.
    #[error("{kind}")]
    Conflict {
        kind: Conflict,
        #[source]
        cause: Cause,
    },
    /// The row changed between this operation's read and its write (a writer that did not take
    /// its lock: a restore, a manual `UPDATE`), so nothing was written; reading again and
    /// redoing the change is safe.
    #[error("{0}")]
    LostUpdate(LostUpdate),
    /// A row whose columns do not have the types this version reads (a schema changed outside
    /// chatsdk-auth, or written by another version).
    #[error("a stored row does not have the types this version of chatsdk-auth reads")]
    BadRow(#[source] Cause),
    /// Anything else (corruption, a bug): not the caller's fault.
    #[error("store error")]
    Internal(#[source] Cause),
}

/// Which uniqueness rule a write broke, each with a fixed sentence (never the driver's text,
/// which can carry the conflicting values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// An API key has this name (names stay taken after revocation).
    #[error("an API key named \"{0}\" already exists (names stay taken after revocation); choose another name")]
    ApiKeyName(String),
    /// This very key is already installed under another name.
    #[error("this API key is already installed under another name; a key can be installed once (revoke it there, or use a new key)")]
    ApiKeyInUse,
}

/// Which row a [`StoreError::LostUpdate`] would have overwritten, each with a fixed sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LostUpdate {
    /// `chatsdk_auth_signing_keys`: the key ring (PostgreSQL).
    #[error("the key ring in PostgreSQL changed while it was being changed (a write that did not take the ring's lock); nothing was written")]
    KeyRing,
}

impl StoreError {
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// True when another write of the row came between this operation's read and its write.
    pub fn is_lost_update(&self) -> bool {
        matches!(self, StoreError::LostUpdate(_))
    }
}
