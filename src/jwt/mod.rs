//! Claims, the [`Signer`] that mints REST, connection and subscription tokens, and the
//! [`Verifier`] for REST tokens and wsTokens.
//!
//! - `claims`: what each token carries, and what verification reads back.
//! - `signer`: [`Signer`], token ids.
//! - `verifier`: [`Verifier`], the `Validation`s and which keys a header may name.
//! - `prepared`: signing and verifying with an HMAC key prepared once (the hot path), beside
//!   `prepared_tests.rs`, which compares it with `jsonwebtoken` on thousands of tokens.
//!
//! Signing is `jsonwebtoken`'s, and so is verification with asymmetric keys. Verification with
//! an HMAC key uses jsonwebtoken's header decoding and aws-lc-rs's constant-time `hmac::verify`
//! with the key prepared once (`prepared.rs`), deciding exactly as `jsonwebtoken::decode`
//! does (a test compares the two on thousands of tokens); no hand-written crypto. Keys and
//! headers come from the live key ring ([`crate::keys`]), `Validation`s are built once at
//! startup with the algorithm pinned to the key the `kid` names (so an HMAC header on an RSA or
//! EC key, `alg: none` or an unknown `kid` never verifies). The wsToken verifier applies
//! Centrifugo's rules,
//! not `jsonwebtoken`'s defaults, in Centrifugo's order
//! (https://centrifugal.dev/docs/server/authentication):
//! signature, then `aud`/`iss` (exact, required only when configured), then the `channel`
//! claim (a subscription token is never a connection token), then the application (`app.id`,
//! in the wsToken's `meta` and the REST token's `aud`), and only then expiry: `exp`
//! strictly in the future and `nbf` strictly in the past, with no leeway. So a token that is
//! both expired and wrongly addressed is *invalid*, as Centrifugo reports it.
//!
//! Architecture invariant: this module knows nothing about HTTP or Centrifugo reply codes.

mod claims;
mod prepared;
#[cfg(test)]
mod prepared_tests;
mod signer;
#[cfg(test)]
mod tests;
mod verifier;

pub use claims::{Audience, Info, VerifiedRest, VerifiedWs, APP_AUDIENCE_PREFIX};
pub use signer::{Minted, Signer};
pub use verifier::Verifier;

/// Why a wsToken was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `exp` has passed or `nbf` is in the future: the client should fetch a fresh token.
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong key or algorithm, wrong audience/issuer, malformed claims.
    #[error("token invalid")]
    Invalid,
    /// Correctly signed and addressed, but minted for another application (`meta.app`), or
    /// for none while `app.id` is not the default.
    #[error("token of another application")]
    WrongApplication,
}

/// `jsonwebtoken` refused to sign (a key that does not fit the algorithm); kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign token")]
pub struct SignError(#[source] jsonwebtoken::errors::Error);

/// Why a REST token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RestTokenError {
    /// `exp` has passed (or `nbf` is in the future).
    #[error("token expired")]
    Expired,
    /// Malformed, badly signed, unknown key, wrong algorithm, issuer or audience.
    #[error("token invalid")]
    Invalid,
    /// A correctly signed wsToken: the caller sent `wsToken` where `token` belongs.
    #[error("wsToken used as a REST token")]
    WrongTokenType,
    /// Correctly signed and addressed, but its `aud` names another application, or none while
    /// `app.id` is not the default.
    #[error("token of another application")]
    WrongApplication,
}
