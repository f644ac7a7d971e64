//! The key ring sealed for PostgreSQL: its JSON (what `keyring.json` holds) encrypted as a
//! whole with AES-256-GCM (aws-lc-rs's `aead`, a random 96-bit nonce per write) under a key
//! derived from the key-encryption secret (`secrets.key_encryption_key`) with HKDF-SHA-256.
//! The associated data binds the ciphertext to its table row, the ring format, the row's
//! version and the secret's id, so a ciphertext moved to another version or row does not open.
//! The secret's id ([`Kek::id`]) is 8 bytes (16 hex digits) derived from the secret with
//! HKDF-SHA-256 (RustCrypto's `hkdf`, salt [`ID_SALT`], info [`ID_INFO`]), so `keys rewrap`,
//! the logs and the errors can say which secret sealed the ring without showing it, and the id
//! stored beside the ciphertext is no hash of the secret that a table of hashes could answer.
//! Rows sealed before (named by the first 16 hex digits of the secret's plain SHA-256) still
//! open; every write names the derived id, and a replica that loads such a row at start seals
//! it again under the derived id.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM};
use aws_lc_rs::{digest, hkdf};
use zeroize::Zeroizing;

use super::ring::{RingFile, RING_VERSION};
use super::KeyError;
use crate::secrets::Secret;
use crate::store::SealedRing;

/// How errors and logs name the ring in PostgreSQL (the row this file seals and opens).
pub(super) const PG_RING: &str = "chatsdk_auth_signing_keys (PostgreSQL)";

/// The salt and the info of the id's HKDF (fixed: the id must be the same on every replica).
pub const ID_SALT: &[u8] = b"chatsdk-auth key-encryption secret id";
pub const ID_INFO: &[u8] = b"kek-id v1";

/// The key-encryption key, derived from the key-encryption secret.
pub struct Kek {
    key: RandomizedNonceKey,
    id: String,
    /// The id rows sealed before the derived one were named by (a plain SHA-256 prefix): only
    /// compared with a stored row, never written or logged.
    legacy_id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Kek {
    pub fn new(secret: &Secret) -> Result<Kek, KeyError> {
        let bytes = secret.expose().as_bytes();
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"chatsdk-auth key ring")
            .extract(bytes)
            .expand(&[b"aes-256-gcm"], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut key[..]))
            .map_err(|_| KeyError::Seal)?;
        let key = RandomizedNonceKey::new(&AES_256_GCM, &key[..]).map_err(|_| KeyError::Seal)?;
        let mut id = [0u8; 8];
        ::hkdf::Hkdf::<sha2::Sha256>::new(Some(ID_SALT), bytes)
            .expand(ID_INFO, &mut id)
            .map_err(|_| KeyError::Seal)?;
        let legacy_id = hex(&digest::digest(&digest::SHA256, bytes).as_ref()[..8]);
        Ok(Kek {
            key,
            id: hex(&id),
            legacy_id,
        })
    }

    /// The secret's id: 16 hex digits derived from it (HKDF-SHA-256, [`ID_SALT`], [`ID_INFO`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether a row naming `stored` was sealed with this secret: its id, or the id rows were
    /// named by before it.
    pub fn names(&self, stored: &str) -> bool {
        stored == self.id || stored == self.legacy_id
    }

    /// Whether `sealed` names this secret by the id of rows sealed before the derived one
    /// (it opens; the next write names the derived id).
    pub(super) fn is_legacy(&self, sealed: &SealedRing) -> bool {
        sealed.kek_id == self.legacy_id
    }

    /// `ring` sealed as version `version` of the row.
    pub(super) fn seal(&self, ring: &RingFile, version: i64) -> Result<SealedRing, KeyError> {
        let mut data = super::ring::ring_json(ring, false).map_err(|_| KeyError::Seal)?;
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(version, &self.id)), &mut *data)
            .map_err(|_| KeyError::Seal)?;
        Ok(SealedRing {
            version,
            kek_id: self.id.clone(),
            nonce: nonce.as_ref().to_vec(),
            ciphertext: data.to_vec(),
        })
    }

    /// The ring `sealed` holds: [`KeyError::RingDecrypt`] when another secret sealed it (the
    /// row names another secret id), [`KeyError::RingTampered`] when it names this secret but
    /// fails authentication (altered or corrupted).
    pub(super) fn open(&self, sealed: &SealedRing) -> Result<RingFile, KeyError> {
        if !self.names(&sealed.kek_id) {
            return Err(KeyError::RingDecrypt {
                stored: sealed.kek_id.clone(),
                ours: self.id.clone(),
            });
        }
        let refused = || KeyError::RingTampered {
            kek: self.id.clone(),
            version: sealed.version,
        };
        let nonce = Nonce::try_assume_unique_for_key(&sealed.nonce).map_err(|_| refused())?;
        let mut data = Zeroizing::new(sealed.ciphertext.clone());
        let plain = self
            .key
            .open_in_place(
                nonce,
                Aad::from(aad(sealed.version, &sealed.kek_id)),
                &mut data[..],
            )
            .map_err(|_| refused())?;
        let ring: RingFile =
            serde_json::from_slice(plain).map_err(|source| KeyError::RingParse {
                path: PG_RING.into(),
                source,
            })?;
        if ring.version != RING_VERSION {
            return Err(KeyError::RingVersion {
                path: PG_RING.into(),
                version: ring.version,
            });
        }
        Ok(ring)
    }
}

/// What the ciphertext of row version `version` sealed by secret `kek_id` is bound to.
fn aad(version: i64, kek_id: &str) -> String {
    format!("chatsdk_auth_signing_keys id=1 format={RING_VERSION} version={version} kek={kek_id}")
}

#[cfg(test)]
impl Kek {
    /// `ring` sealed as the versions before the derived id sealed it (named, and bound in the
    /// associated data, by the plain SHA-256 prefix).
    pub(super) fn seal_as_before(&self, ring: &RingFile, version: i64) -> SealedRing {
        let mut data = super::ring::ring_json(ring, false).unwrap();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(version, &self.legacy_id)), &mut *data)
            .unwrap();
        SealedRing {
            version,
            kek_id: self.legacy_id.clone(),
            nonce: nonce.as_ref().to_vec(),
            ciphertext: data.to_vec(),
        }
    }
}
