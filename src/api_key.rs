//! Everything an API key is: its format, generation, hashing, the part that may be shown, and
//! the rules for the names operators give keys; and the application slug (`app.id`) that new
//! keys carry in their visible prefix (and tokens in a claim).
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

/// Characters of [`random_token`]: 32 bytes, base64url without padding.
pub const RANDOM_CHARS: usize = 43;
/// The longest `app.id`.
pub const MAX_APP_ID_BYTES: usize = 32;
/// `app.id` when the config sets none: the application of every install from before `app.id`.
pub const DEFAULT_APP_ID: &str = "default";

/// True when `id` is a valid `app.id`: 1 to 32 lowercase ASCII letters, digits or `-`,
/// starting with a letter and not ending with `-` (it appears in keys, tokens and messages).
pub fn valid_app_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_APP_ID_BYTES
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new random API key of application `app_id`: `chatsdk_<app_id>_` + 43 base64url
/// characters.
pub fn generate(app_id: &str) -> String {
    format!("{PREFIX}{app_id}_{}", random_token())
}

/// The application a key names, when it has the shape [`generate`] gives keys:
/// `chatsdk_`, a valid `app.id`, `_`, then exactly 43 base64url characters. Keys from before
/// `app.id` (`chatsdk_` + 43 characters) and keys an operator installed in another shape name
/// none.
pub fn application(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let split = rest.len().checked_sub(RANDOM_CHARS + 1)?;
    let (app, body) = (rest.get(..split)?, rest.get(split..)?);
    let body = body.strip_prefix('_')?;
    let base64url = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    (valid_app_id(app) && body.bytes().all(base64url)).then_some(app)
}

/// SHA-256 of an API key. Keys carry 256 bits of entropy, so a fast hash is the right one:
/// a slow password hash would protect nothing more and cost every request.
pub fn hash(key: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The part of a key that `api-key list` may show: the prefix, the application it names (if
/// any) and 4 characters.
pub fn display_prefix(key: &str) -> String {
    let named = application(key).map_or(0, |a| a.len() + 1);
    key.chars().take(PREFIX.len() + named + 4).collect()
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
        let k = generate("production");
        assert!(k.starts_with("chatsdk_production_"));
        assert_eq!(k.len(), PREFIX.len() + "production_".len() + 43);
        assert!(is_well_formed(&k));
        assert_ne!(k, generate("production"));
        assert_eq!(application(&k), Some("production"));
        assert_eq!(
            display_prefix(&k).len(),
            PREFIX.len() + "production_".len() + 4
        );
    }

    #[test]
    fn keys_from_before_app_id_name_no_application() {
        // The old shape: `chatsdk_` + 43 base64url characters, `_` among them.
        let old = format!("{PREFIX}ab_cd{}", "x".repeat(38));
        assert_eq!(old.len(), PREFIX.len() + RANDOM_CHARS);
        assert_eq!(application(&old), None);
        assert_eq!(display_prefix(&old), format!("{PREFIX}ab_c"));
        // Installed keys of other shapes: hex, an invalid slug, a body of another length.
        assert_eq!(application(&format!("{PREFIX}{}", "0a".repeat(32))), None);
        assert_eq!(
            application(&format!("{PREFIX}Prod_{}", "x".repeat(43))),
            None
        );
        assert_eq!(
            application(&format!("{PREFIX}prod_{}", "x".repeat(42))),
            None
        );
        assert_eq!(
            application(&format!("{PREFIX}prod_{}", "x".repeat(44))),
            None
        );
        assert_eq!(
            application(&format!("{PREFIX}prod_{}.", "x".repeat(42))),
            None
        );
        assert_eq!(application(&format!("{PREFIX}é_{}", "x".repeat(43))), None);
        assert_eq!(
            application(&format!("{PREFIX}st-2_{}", "-".repeat(43))),
            Some("st-2")
        );
    }

    #[test]
    fn app_ids_are_short_slugs() {
        for ok in [
            "default",
            "production",
            "staging-eu",
            "a",
            "a1",
            &"a".repeat(32),
        ] {
            assert!(valid_app_id(ok), "{ok}");
        }
        for bad in [
            "",
            "Prod",
            "1prod",
            "-prod",
            "prod-",
            "pro_d",
            "pro d",
            &"a".repeat(33),
        ] {
            assert!(!valid_app_id(bad), "{bad}");
        }
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
        assert!(is_plausible(generate("a").as_bytes()));
        assert!(!is_plausible(format!(" {}", generate("a")).as_bytes()));
        assert!(!is_plausible(format!("{}\t", generate("a")).as_bytes()));
        assert!(!is_plausible(b""));
        assert!(!is_plausible("x".repeat(MAX_KEY_BYTES + 1).as_bytes()));
    }
}
