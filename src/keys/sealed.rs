//! The key ring sealed for PostgreSQL: its JSON (what `keyring.json` holds) encrypted as a
//! whole with AES-256-GCM (aws-lc-rs's `aead`, a random 96-bit nonce per write) under a key
//! derived from the key-encryption secret (`secrets.key_encryption_key`) with HKDF-SHA-256.
//! The associated data binds the ciphertext to its table row, the ring format, the row's
//! version and the secret's id, so a ciphertext moved to another version or row does not open.
//! The secret's id ([`Kek::id`]) is the first 16 hex digits of the SHA-256 of the secret, so
//! `keys rewrap` and the errors can say which secret sealed the ring without showing it
//! (`printf %s "$SECRET" | sha256sum | cut -c1-16`).

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM};
use aws_lc_rs::{digest, hkdf};
use zeroize::Zeroizing;

use super::ring::{RingFile, RING_VERSION};
use super::KeyError;
use crate::secrets::Secret;
use crate::store::SealedRing;

/// How errors and logs name the ring in PostgreSQL (the row this file seals and opens).
pub(super) const PG_RING: &str = "chatsdk_auth_signing_keys (PostgreSQL)";

/// The key-encryption key, derived from the key-encryption secret.
pub struct Kek {
    key: RandomizedNonceKey,
    id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id)
    }
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
        let id = digest::digest(&digest::SHA256, bytes).as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Kek { key, id })
    }

    /// The secret's id: the first 16 hex digits of its SHA-256.
    pub fn id(&self) -> &str {
        &self.id
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
        if sealed.kek_id != self.id {
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
