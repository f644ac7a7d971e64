//! Who is calling: `X-API-Key` (hash, look up, compare in constant time, note last use), and
//! the one bearer-token parser and the one constant-time comparison of a shared secret (the
//! admin token, the metrics token, the proxy secret).
//!
//! Keys are stored only as SHA-256 hashes. The lookup is by hash (an attacker cannot steer
//! which hash their guess produces), and the stored hash is then compared with `subtle` in
//! constant time. A revoked key is refused as `api_key_revoked` with its revocation date (its
//! holder had the key, so learns nothing it could not see before). `last_used_at` is written
//! at most once a minute per key, so authentication stays a read on the hot path.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{header, HeaderMap};
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

/// How strictly [`bearer`] reads `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A token to verify (`/verify`, the connect proxy's forwarded header): the scheme `Bearer`
    /// in any case (RFC 7235 section 2.1), spaces around the token allowed, no whitespace in it.
    AnyCase,
    /// A shared secret (the admin and metrics tokens): exactly `Bearer <secret>`, as the
    /// contract documents; anything else is refused.
    Exact,
}

/// The bearer token of `Authorization`, when there is exactly one well-formed one: the one
/// parser of bearer tokens.
pub fn bearer(headers: &HeaderMap, scheme: Scheme) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?;
    match scheme {
        Scheme::Exact => v.as_bytes().strip_prefix(b"Bearer "),
        Scheme::AnyCase => {
            let (name, token) = v.to_str().ok()?.trim().split_once(' ')?;
            let token = token.trim();
            (name.eq_ignore_ascii_case("bearer")
                && !token.is_empty()
                && !token.contains(char::is_whitespace))
            .then_some(token.as_bytes())
        }
    }
}

/// True when `given` is the shared secret `expected`, compared in constant time (`subtle`; the
/// length is not secret). A missing value never matches.
pub fn secret_matches(given: Option<&[u8]>, expected: &[u8]) -> bool {
    given.is_some_and(|g| bool::from(g.ct_eq(expected)))
}

/// Checks the `X-API-Key` header against the store, for the application `app_id`
/// (`app.id`): a key whose prefix names another application is refused before the lookup
/// ([`ApiError::ApiKeyWrongApplication`], naming both applications, never the key). Keys that
/// name no application (from before `app.id`, or installed in another shape) are looked up as
/// always.
pub async fn authenticate(
    store: &Store,
    app_id: &str,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
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
    if let Some(other) = api_key::application(key).filter(|a| *a != app_id) {
        // Both are valid slugs (`application` checks the key's), so safe to show.
        return Err(ApiError::ApiKeyWrongApplication {
            key_app: other.to_string(),
            app: app_id.to_string(),
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_takes_one_well_formed_token() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        let any = |v: &str| bearer(&h(v), Scheme::AnyCase).map(<[u8]>::to_vec);
        assert_eq!(any("Bearer abc.def.ghi"), Some(b"abc.def.ghi".to_vec()));
        assert_eq!(any("bearer   abc "), Some(b"abc".to_vec()));
        assert_eq!(any("Basic abc"), None);
        assert_eq!(any("Bearer"), None);
        assert_eq!(any("Bearer a b"), None);
        assert_eq!(bearer(&HeaderMap::new(), Scheme::AnyCase), None);
        let exact = |v: &str| bearer(&h(v), Scheme::Exact).map(<[u8]>::to_vec);
        assert_eq!(exact("Bearer s3cret"), Some(b"s3cret".to_vec()));
        assert_eq!(exact("bearer s3cret"), None);
        assert_eq!(exact("Bearer  s3cret"), Some(b" s3cret".to_vec()));
        assert_eq!(bearer(&HeaderMap::new(), Scheme::Exact), None);
    }

    #[test]
    fn a_secret_matches_only_itself() {
        assert!(secret_matches(Some(b"s3cret"), b"s3cret"));
        assert!(!secret_matches(Some(b"s3cre"), b"s3cret"));
        assert!(!secret_matches(Some(b"s3cret!"), b"s3cret"));
        assert!(!secret_matches(None, b"s3cret"));
    }
}
