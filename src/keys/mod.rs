//! Signing keys of both token kinds: parsed material, key ids, public JWKs, the key ring with
//! its rotation schedule, and [`LiveKeys`], which re-reads the ring file when it changes.
//!
//! A key is an HMAC secret (the string is the key, as Centrifugo reads `hmac_secret_key`) or a
//! PKCS#8 PEM private key (RS256, ES256, EdDSA). Parsing is aws-lc-rs's and signing
//! `jsonwebtoken`'s; the JWK thumbprint is RFC 7638 (`jsonwebtoken::jwk::Jwk::thumbprint`).
//! Every key has a `kid`: the thumbprint of its public JWK, or for an HMAC secret a stable id
//! derived from the secret with HMAC-SHA-256 (so the id reveals nothing of the secret).
//!
//! Until the first `chatsdk-auth keys rotate`, each kind has one key: the configured one
//! (`secrets.rest_key*`, `secrets.centrifugo_key*`). A rotation writes the key ring file
//! (`<data_dir>/keyring.json`, mode 0600), which from then on holds every key of that kind with
//! its schedule: when it starts signing, when it stops, and when its last token expires. Which
//! key signs and which keys verify or are published is decided from that schedule and the
//! clock, so nothing has to happen at the moment a rotation takes effect. A running server
//! re-reads the file when its modification time, size or inode changes ([`LiveKeys`]); replicas
//! share it the way they share the key files. With `storage.backend = "postgres"` the ring is
//! instead one encrypted row of the database (`shared`, `sealed`), polled by version. A ring file that cannot be read keeps the keys
//! already loaded (and says so in the log): verification and the JWKS never depend on it.
//!
//! - `material`: one key ([`Key`]) parsed from its secret or PEM, and new key material.
//! - `schedule`: when a key signs and verifies ([`Schedule`]); `set`: the keys of one kind
//!   ([`KeySet`]).
//! - `ring`: both kinds ([`KeyRing`]) and the ring file: read, locked, replaced atomically.
//! - `sealed`: the ring encrypted for PostgreSQL ([`Kek`]: AES-256-GCM, aws-lc-rs).
//! - `shared`: where the ring lives ([`RingStore`]: the file, or one row in PostgreSQL shared by
//!   every replica, seeded by the first one), and [`rewrap`] (a new key-encryption secret).
//! - `rotation`: the one rotation ([`rotate`]), shared by the CLI and the admin API.
//! - `live`: the ring the server runs on, re-read when the file or the row changes ([`LiveKeys`]).
//!
//! Architecture invariant: this module knows nothing about HTTP.

mod live;
mod material;
mod ring;
mod rotation;
mod schedule;
mod sealed;
mod set;
mod shared;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use crate::config::algorithm::{algorithm_name, is_asymmetric, parse_algorithm};
use crate::secrets::SecretsError;

pub use live::LiveKeys;
pub use material::{generate, Key, PreparedHmac};
pub use ring::{ring_path, KeyInfo, KeyRing, RING_FILE};
pub use rotation::{rotate, Rotation};
pub use schedule::Schedule;
pub use sealed::Kek;
pub use set::KeySet;
pub use shared::{load_ring, read_ring, rewrap, Rewrap, RingStore};

/// Which token a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The ChatSDK REST token (`token`).
    Rest,
    /// The Centrifugo connection token (`wsToken`).
    Ws,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Rest => "rest",
            Kind::Ws => "ws",
        }
    }

    /// The config key naming this kind's algorithm.
    pub fn algorithm_key(self) -> &'static str {
        match self {
            Kind::Rest => "tokens.rest_algorithm",
            Kind::Ws => "tokens.ws_algorithm",
        }
    }
}

/// Why a rotation was refused: nothing was changed, and the operator can rotate again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The last rotation's key has not started signing yet (asymmetric keys are published
    /// first).
    #[error("the {} key {kid} is still waiting to sign (from {signs_from}); rotate again after that", .kind.label())]
    Pending {
        kind: Kind,
        kid: String,
        signs_from: i64,
    },
    /// Centrifugo holds one previous HMAC key, and it is still in use.
    #[error("the previous ws key {kid} still verifies until {until}, and Centrifugo accepts a single previous HMAC key (client.token.hmac_previous_secret_key); rotate again after that")]
    PreviousHmac { kid: String, until: i64 },
}

/// Why a key could not be used; each names the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{name}: is not a PEM \"PRIVATE KEY\" (PKCS#8) as {alg} needs; convert a PKCS#1/SEC1 key with `openssl pkcs8 -topk8 -nocrypt`")]
    NotPkcs8 { name: String, alg: &'static str },
    #[error("{name}: holds {found}, which does not fit {alg} (expected {expected})")]
    WrongType {
        name: String,
        alg: &'static str,
        found: &'static str,
        expected: &'static str,
    },
    #[error("{name}: the key cannot be used for {alg}")]
    Unusable {
        name: String,
        alg: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("key ring {}: cannot be read", path.display())]
    RingRead {
        path: PathBuf,
        #[source]
        source: SecretsError,
    },
    #[error("key ring {}: is not a valid key ring", path.display())]
    RingParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("key ring {}: version {version} is not the one this binary writes ({}); upgrade chatsdk-auth", path.display(), ring::RING_VERSION)]
    RingVersion { path: PathBuf, version: u32 },
    #[error("key ring {}: key {kid} of kind {kind} has an id that does not match its material", path.display())]
    RingKid {
        path: PathBuf,
        kid: String,
        kind: &'static str,
    },
    #[error("key ring {}: {kind} key {kid} has unsupported algorithm \"{alg}\"", path.display())]
    RingAlgorithm {
        path: PathBuf,
        kid: String,
        kind: &'static str,
        alg: String,
    },
    #[error("cannot generate a {alg} key")]
    Generate { alg: &'static str },
    #[error("cannot lock the key ring {}", path.display())]
    RingLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the key ring {}", path.display())]
    RingWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The rotation ran on the blocking pool and did not finish (it panicked, or the runtime
    /// is shutting down); the ring file is the old one or the new one, never half of one.
    #[error("the key rotation stopped before it finished")]
    Aborted(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The ring in PostgreSQL does not open with this secret: a replica refuses to start.
    #[error("cannot decrypt the signing keys in PostgreSQL: they were encrypted with the key-encryption secret {stored}, and this process has secrets.key_encryption_key {ours}; it refuses to use them. Give every replica the same secret (CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY or secrets.key_encryption_key_file), or after changing it run `chatsdk-auth keys rewrap --old-key-file <file of the old secret>`")]
    RingDecrypt { stored: String, ours: String },
    /// The ring in PostgreSQL was sealed with this very secret but fails authentication: the
    /// row was altered or corrupted. Another secret would not help.
    #[error("the signing keys in PostgreSQL (row version {version}) fail authentication under the key-encryption secret {kek} that sealed them: the row was altered or corrupted (not sealed with another secret, so changing the secret does not help); restore chatsdk_auth_signing_keys from a backup, or delete the row to have the configured keys seeded again (tokens signed by rotated keys then stop verifying)")]
    RingTampered { kek: String, version: i64 },
    #[error("cannot encrypt the key ring")]
    Seal,
    #[error("the key ring in PostgreSQL cannot be read or written")]
    RingStore(#[from] crate::store::StoreError),
    #[error("secrets.key_encryption_key is not loaded; it is needed with storage.backend = \"postgres\"")]
    NoKeyEncryptionKey,
    #[error("keys rewrap: the key ring is in PostgreSQL only with storage.backend = \"postgres\"; with SQLite it is the file keyring.json, which is not encrypted")]
    RewrapNeedsPostgres,
    #[error("keys rewrap: there is no key ring in PostgreSQL yet (start a server first); nothing to re-encrypt")]
    RewrapNothing,
    #[error("keys rewrap: the key ring is encrypted with the key-encryption secret {stored}, and --old-key-file holds {given}; give the file of the secret that encrypted it")]
    RewrapWrongOld { stored: String, given: String },
}
