//! The hot path: signing and verifying with an HMAC key prepared once
//! ([`crate::keys::PreparedHmac`]), byte for byte and decision for decision what `jsonwebtoken`
//! does (`prepared_tests.rs` compares them), without its per-call key setup and double parsing.
//! Asymmetric keys go through `jsonwebtoken` itself.

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use super::SignError;
use crate::keys::Key;

/// Signs `claims` with `key`: `jsonwebtoken::encode` for asymmetric keys; for an HMAC key, the
/// same bytes `jsonwebtoken::encode` produces (base64url, no padding, of the header JSON, of
/// the claims JSON, and of the HMAC over both; a test compares them byte for byte), from the
/// header serialised once and aws-lc-rs's HMAC with the key prepared once.
pub(super) fn encode<T: Serialize>(key: &Key, claims: &T) -> Result<String, SignError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let Some(hmac) = &key.hmac else {
        return jsonwebtoken::encode(&key.header, claims, &key.encoding).map_err(SignError);
    };
    // Room for the claims of a typical token (serde_json::to_vec starts at 128 bytes and grows
    // once or twice for every token).
    let mut json = Vec::with_capacity(512);
    serde_json::to_writer(&mut json, claims).map_err(|e| SignError(e.into()))?;
    let mut token = String::with_capacity(hmac.header_b64.len() + json.len() * 4 / 3 + 90);
    token.push_str(&hmac.header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(json, &mut token);
    let tag = aws_lc_rs::hmac::sign(&hmac.key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
    Ok(token)
}

/// A token cut where `jsonwebtoken` cuts it: `signature` after the last `.`, `message` (the
/// signing input) before it, and `message` cut again at its last `.` into `head` (the header
/// `jsonwebtoken::decode_header` reads) and `payload` (the claims). Found once per token.
#[derive(Clone, Copy)]
pub(super) struct Parts<'t> {
    pub head: &'t str,
    pub payload: &'t str,
    pub message: &'t str,
    pub signature: &'t str,
}

impl<'t> Parts<'t> {
    /// `None` when `token` has fewer than two `.`.
    pub(super) fn of(token: &'t str) -> Option<Parts<'t>> {
        let (message, signature) = token.rsplit_once('.')?;
        let (head, payload) = message.rsplit_once('.')?;
        Some(Parts {
            head,
            payload,
            message,
            signature,
        })
    }
}

/// What `jsonwebtoken::decode` does for an HMAC key, with the key prepared once: the header's
/// `alg` must be the key's, the signature (base64url, no padding, as jsonwebtoken reads it) is
/// checked by aws-lc-rs's constant-time `hmac::verify`, and only then are the claims decoded,
/// once. `header` is the token's own header, already decoded by `jsonwebtoken::decode_header`
/// or, when `parts.head` is the one a key signs with, that key's (either proves the token has
/// exactly three parts), and `parts` the token's [`Parts`]. The `aud`/`iss` checks are the
/// caller's. `jsonwebtoken::decode` builds the HMAC key, parses the header twice and the claims
/// twice on every call: a quarter of a connect's instructions (92,500 -> 69,300, callgrind).
pub(super) fn decode_hmac<T: serde::de::DeserializeOwned>(
    parts: Option<Parts<'_>>,
    header: &Header,
    alg: Algorithm,
    key: &aws_lc_rs::hmac::Key,
) -> Option<T> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    if header.alg != alg {
        return None;
    }
    let parts = parts?;
    let tag = URL_SAFE_NO_PAD.decode(parts.signature).ok()?;
    aws_lc_rs::hmac::verify(key, parts.message.as_bytes(), &tag).ok()?;
    let claims = URL_SAFE_NO_PAD.decode(parts.payload).ok()?;
    serde_json::from_slice(&claims).ok()
}
