//! Authenticates `X-API-Key`: hash, look up, compare in constant time, and note last use.
//!
//! Keys are stored only as SHA-256 hashes. The lookup is by hash (an attacker cannot steer
//! which hash their guess produces), and the stored hash is then compared with `subtle` in
//! constant time. A revoked key is refused as `api_key_revoked` with its revocation date (its
//! holder had the key, so learns nothing it could not see before). `last_used_at` is written
//! at most once a minute per key, so authentication stays a read on the hot path.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::api_key;
use crate::store::Store;

/// Seconds between two `last_used_at` writes for one key.
const TOUCH_INTERVAL: i64 = 60;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API key's operator-chosen name (safe to log and to use as a metric label).
    pub key_name: String,
}

/// Remembers when each key's `last_used_at` was last written.
#[derive(Default)]
pub struct TouchThrottle {
    last: Mutex<HashMap<String, i64>>,
}

impl TouchThrottle {
    fn due(&self, name: &str, now: i64) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(name) {
            Some(t) if now - t < TOUCH_INTERVAL => false,
            _ => {
                last.insert(name.to_string(), now);
                true
            }
        }
    }
}

/// Checks the `X-API-Key` header against the store.
pub async fn authenticate(store: &Store, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let mut given = headers.get_all("x-api-key").iter();
    let Some(key) = given.next() else {
        return Err(ApiError::InvalidApiKey);
    };
    if given.next().is_some() {
        // Proxies and frameworks disagree on which of two values wins: refuse to guess.
        return Err(ApiError::DuplicateApiKey);
    }
    // Exactly the key: surrounding whitespace or any unprintable byte is not silently trimmed.
    if !api_key::is_plausible(key.as_bytes()) {
        return Err(ApiError::InvalidApiKey);
    }
    let Ok(key) = key.to_str() else {
        return Err(ApiError::InvalidApiKey);
    };
    let hash = api_key::hash(key);
    let record = store
        .find_api_key(&hash)
        .await?
        .ok_or(ApiError::InvalidApiKey)?;
    if !bool::from(record.hash.ct_eq(&hash)) {
        return Err(ApiError::InvalidApiKey);
    }
    // The guide's first troubleshooting step ("ensure the key hasn't been revoked"), answered.
    if let Some(revoked_at) = record.revoked_at {
        return Err(ApiError::ApiKeyRevoked { revoked_at });
    }
    Ok(Caller {
        key_name: record.name,
    })
}

/// Records that `caller`'s key was used, at most once a minute per key. Called only after a
/// request succeeded, so a rejected request writes nothing.
pub async fn record_use(store: &Store, throttle: &TouchThrottle, caller: &Caller, now: i64) {
    if throttle.due(&caller.key_name, now) {
        // Losing a last-used timestamp is not worth failing a request over.
        if let Err(e) = store.touch_api_key(&caller.key_name, now).await {
            tracing::warn!(error = %crate::error_chain::Chain(&e), key_name = %caller.key_name, "could not record API key use");
        }
    }
}
