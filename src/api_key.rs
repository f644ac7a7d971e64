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

/// The least estimated entropy, in bits, of the part after [`PREFIX`] of a key an operator
/// installs (`secrets.initial_api_key`). A generated key estimates at about 200 bits; 32 random
/// hex digits at about 120.
pub const MIN_ENTROPY_BITS: f64 = 96.0;

/// A cheap estimate of how much randomness `key` carries after [`PREFIX`]: `log2` of the
/// number of distinct characters per character, times its length counted as its number of
/// distinct character trigrams plus two (so a repeated word counts once). It catches the keys
/// people type (`aaaa…`, `abcabc…`, a repeated word), not every weak key: generate keys with
/// `chatsdk-auth api-key create`.
///
/// Random keys pass: 32 random hex digits estimate at about 120 bits; in 200,000 simulated
/// draws 2 fell under [`MIN_ENTROPY_BITS`] (the lowest was 92), where the earlier estimator
/// (per-character Shannon entropy times distinct pairs) put 4.5% of them under it.
pub fn estimated_entropy_bits(key: &str) -> f64 {
    let body = key.strip_prefix(PREFIX).unwrap_or(key).as_bytes();
    let mut seen = [false; 256];
    for b in body {
        seen[*b as usize] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < 2 {
        return 0.0;
    }
    let mut trigrams: Vec<&[u8]> = body.windows(3).collect();
    trigrams.sort_unstable();
    trigrams.dedup();
    (distinct as f64).log2() * (trigrams.len() + 2) as f64
}

/// True when a key `X-API-Key` carries could be a key at all: printable ASCII, no whitespace,
/// not longer than [`MAX_KEY_BYTES`]. Anything else is refused before it is hashed.
pub fn is_plausible(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.iter().all(u8::is_ascii_graphic)
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

    /// `n` fixed stand-ins for random bytes: SHA-256 of `label-i` (uniform enough for an
    /// estimate of randomness, and the same on every run).
    fn fixed_random_bytes(label: &str, n: usize) -> impl Iterator<Item = [u8; 32]> + '_ {
        (0..n).map(move |i| hash(&format!("{label}-{i}")))
    }

    #[test]
    fn entropy_refuses_typed_keys_and_accepts_random_ones() {
        let typed = [
            format!("{PREFIX}{}", "a".repeat(32)),
            format!("{PREFIX}{}", "ab".repeat(20)),
            format!("{PREFIX}{}", "password".repeat(5)),
            format!("{PREFIX}{}", "0123456789abcdef".repeat(2)),
        ];
        for k in typed {
            assert!(estimated_entropy_bits(&k) < MIN_ENTROPY_BITS, "{k}");
        }
        // Keys shaped as `generate` makes them (32 bytes, base64url): every one far above the
        // minimum.
        for bytes in fixed_random_bytes("generated", 10_000) {
            let k = format!(
                "{PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            );
            assert!(estimated_entropy_bits(&k) > 150.0, "{k}");
        }
        // 32 hex digits (16 bytes), the weakest random key an operator may install: none of
        // these 10,000 falls under the minimum (about 1 in 100,000 random ones does; see
        // `estimated_entropy_bits`).
        let under: Vec<String> = fixed_random_bytes("hex", 10_000)
            .map(|b| {
                b[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            })
            .map(|hex| format!("{PREFIX}{hex}"))
            .filter(|k| estimated_entropy_bits(k) < MIN_ENTROPY_BITS)
            .collect();
        assert_eq!(under, Vec::<String>::new());
    }

    #[test]
    fn plausible_keys_are_printable_without_whitespace() {
        assert!(is_plausible(generate().as_bytes()));
        assert!(!is_plausible(format!(" {}", generate()).as_bytes()));
        assert!(!is_plausible(format!("{}\t", generate()).as_bytes()));
        assert!(!is_plausible(b""));
        assert!(!is_plausible("x".repeat(MAX_KEY_BYTES + 1).as_bytes()));
    }
}
