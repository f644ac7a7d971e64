//! Everything an API key is: its format, generation, hashing, the part that may be shown, and
//! the rules for the names operators give keys.
//!
//! A leaf: the store, the config validation, the `X-API-Key` check and the CLI all use these
//! rules and none of them restates one.

use base64::Engine;
use rand::RngCore;

/// Every API key starts with this, so leaked keys are easy to recognise and scan for.
pub const PREFIX: &str = "chatsdk_";
/// The fewest characters after [`PREFIX`] an installed key may have.
pub const MIN_BODY_CHARS: usize = 32;
/// The longest key `X-API-Key` is compared against.
pub const MAX_KEY_BYTES: usize = 256;
/// The longest key name (names are metric labels).
pub const MAX_NAME_BYTES: usize = 64;

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new random API key (`chatsdk_` + 43 base64url characters).
pub fn generate() -> String {
    format!("{PREFIX}{}", random_token())
}

/// SHA-256 of an API key. Keys carry 256 bits of entropy, so a fast hash is the right one:
/// a slow password hash would protect nothing more and cost every request.
pub fn hash(key: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The part of a key that `api-key list` may show.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(PREFIX.len() + 4).collect()
}

/// True when `key` has the shape of a key an operator may install: the prefix, then at least
/// [`MIN_BODY_CHARS`] printable characters.
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(PREFIX)
        .is_some_and(|b| b.len() >= MIN_BODY_CHARS && b.bytes().all(|c| c.is_ascii_graphic()))
}

/// Checks a key name: 1 to 64 letters, digits, `-`, `_` or `.` (it becomes a metric label).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NameError)
    }
}

/// A key name outside the allowed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an API key name must be 1 to 64 characters of letters, digits, '-', '_' or '.' (it becomes a metric label)")]
pub struct NameError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_plain_sha256() {
        // FIPS 180-2 test vector: keys hashed by earlier builds (sha2 crate) still match.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = hash("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let k = generate();
        assert!(k.starts_with(PREFIX));
        assert_eq!(k.len(), PREFIX.len() + 43);
        assert!(is_well_formed(&k));
        assert_ne!(k, generate());
        assert_eq!(display_prefix(&k).len(), PREFIX.len() + 4);
    }

    #[test]
    fn shapes_and_names() {
        assert!(!is_well_formed("chatsdk_short"));
        assert!(!is_well_formed(&format!("other_{}", "a".repeat(40))));
        assert!(!is_well_formed(&format!("{PREFIX}{} x", "a".repeat(40))));
        assert!(check_name("ci-deploy.v2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }
}
