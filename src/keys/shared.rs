//! [`RingStore`]: where the key ring lives. With SQLite it is the ring file
//! (`<data_dir>/keyring.json`, [`super::ring`]); with PostgreSQL it is one encrypted row of
//! `chatsdk_auth_signing_keys` ([`crate::store::SealedRing`], sealed by [`super::sealed`]),
//! shared by every replica: the first to start seeds it with its configured keys (under the
//! ring's advisory lock, so only one does), the others load it, and a rotation or a
//! [`rewrap`] is one transaction under that lock.

use std::path::PathBuf;

use serde::Serialize;

use super::ring::{ring_path, RingFile, StoredKey, RING_VERSION};
use super::sealed::Kek;
use super::{KeyError, KeyRing};
use crate::config::{Config, TokenConfig};
use crate::secrets::{Secret, Secrets};
use crate::store::{SealedRing, Store};

/// How errors and logs name the ring in PostgreSQL.
pub(super) const PG_RING: &str = "chatsdk_auth_signing_keys (PostgreSQL)";

/// Where the key ring lives.
pub enum RingStore<'a> {
    /// The ring file (SQLite: one instance, or replicas sharing the data directory).
    File(PathBuf),
    /// The encrypted row in PostgreSQL, shared by every replica.
    Postgres { store: &'a Store, kek: Kek },
}

impl<'a> RingStore<'a> {
    /// The ring of this configuration: in the store when the store keeps it (PostgreSQL).
    pub fn of(
        config: &Config,
        secrets: &Secrets,
        store: &'a Store,
    ) -> Result<RingStore<'a>, KeyError> {
        if !store.keeps_key_ring() {
            return Ok(RingStore::File(ring_path(config)));
        }
        let secret = secrets
            .key_encryption_key
            .as_ref()
            .ok_or(KeyError::NoKeyEncryptionKey)?;
        Ok(RingStore::Postgres {
            store,
            kek: Kek::new(secret)?,
        })
    }
}

/// The ring file every replica starts from: each kind's configured key (environment or file).
fn seed(tokens: &TokenConfig, secrets: &Secrets) -> Result<RingFile, KeyError> {
    let ring = KeyRing::configured(tokens, secrets)?;
    let first = |set: &super::KeySet| set.all().iter().map(|k| StoredKey::of(k)).collect();
    Ok(RingFile {
        version: RING_VERSION,
        rest: first(&ring.rest),
        ws: first(&ring.ws),
    })
}

/// Opens the stored ring, or seeds and writes it when there is none yet (the first replica).
/// Returns the ring and its version.
pub(super) async fn load_or_seed(
    store: &Store,
    kek: &Kek,
    tokens: &TokenConfig,
    secrets: &Secrets,
) -> Result<(KeyRing, i64), KeyError> {
    let file: Result<_, KeyError> = store
        .change_key_ring(|current| async move {
            match current {
                Some(s) => Ok((None, (kek.open(&s)?, s.version))),
                None => {
                    let file = seed(tokens, secrets)?;
                    let sealed = kek.seal(&file, 1)?;
                    tracing::info!(
                        kek = kek.id(),
                        "key ring created in PostgreSQL from the configured keys"
                    );
                    Ok((Some(sealed), (file, 1)))
                }
            }
        })
        .await;
    let (file, version) = file?;
    let ring = KeyRing::from_parts(tokens, secrets, PG_RING.as_ref(), Some(&file))?;
    Ok((ring, version))
}

/// The stored ring if its version is not `known`: `None` when unchanged (or not there).
pub(super) async fn load_if_newer(
    store: &Store,
    kek: &Kek,
    tokens: &TokenConfig,
    secrets: &Secrets,
    known: Option<i64>,
) -> Result<Option<(KeyRing, i64)>, KeyError> {
    let version = store.key_ring_version().await?;
    match (version, known) {
        (None, _) => return Ok(None),
        (Some(v), Some(k)) if v == k => return Ok(None),
        // Versions only grow: a lower one is an older row put back (a restored backup, or a
        // write by someone without the key-encryption secret), which would bring retired
        // keys back. Keep the ring in force and say so.
        (Some(v), Some(k)) if v < k => {
            tracing::warn!(
                stored = v,
                in_force = k,
                "the key ring in PostgreSQL is older than the one in force; not loaded"
            );
            return Ok(None);
        }
        _ => {}
    }
    let Some(sealed) = store.load_key_ring().await? else {
        return Ok(None);
    };
    if known.is_some_and(|k| sealed.version <= k) {
        return Ok(None);
    }
    let file = kek.open(&sealed)?;
    let ring = KeyRing::from_parts(tokens, secrets, PG_RING.as_ref(), Some(&file))?;
    Ok(Some((ring, sealed.version)))
}

/// Changes the stored ring with `f` (seeded first if there is none), in one transaction under
/// the ring's lock; `f` runs on the blocking pool (it may generate an RSA key).
pub(super) async fn change<T: Send + 'static>(
    store: &Store,
    kek: &Kek,
    tokens: &TokenConfig,
    secrets: &Secrets,
    f: impl FnOnce(RingFile) -> Result<(RingFile, T), KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    store
        .change_key_ring(|current| async move {
            let (file, version) = match current {
                Some(s) => (kek.open(&s)?, s.version),
                None => (seed(tokens, secrets)?, 0),
            };
            let (out, result) = tokio::task::spawn_blocking(move || f(file))
                .await
                .map_err(KeyError::Aborted)??;
            Ok((Some(kek.seal(&out, version + 1)?), result))
        })
        .await
}

/// The ring as this configuration keeps it (`keys list`, `centrifugo-config`): the ring file,
/// or the ring in PostgreSQL (seeded first when there is none yet, as a server would).
pub async fn load_ring(
    config: &Config,
    secrets: &Secrets,
    store: &Store,
) -> Result<KeyRing, KeyError> {
    match RingStore::of(config, secrets, store)? {
        RingStore::File(_) => KeyRing::load(config, secrets),
        RingStore::Postgres { store, kek } => {
            Ok(load_or_seed(store, &kek, &config.tokens, secrets).await?.0)
        }
    }
}

/// What `keys rewrap` did.
#[derive(Debug, Serialize)]
pub struct Rewrap {
    /// The secret id the ring was sealed with.
    pub from: String,
    /// The secret id it is sealed with now.
    pub to: String,
    /// The ring's version after the rewrap.
    pub version: i64,
}

/// Re-encrypts the ring in PostgreSQL under this configuration's key-encryption secret, from
/// `old` (the secret it was sealed with), in one transaction under the ring's lock. A ring
/// already sealed with the configured secret is left as it is (the command can be rerun).
pub async fn rewrap(
    config: &Config,
    secrets: &Secrets,
    store: &Store,
    old: &Secret,
) -> Result<Rewrap, KeyError> {
    let RingStore::Postgres { kek: new, .. } = RingStore::of(config, secrets, store)? else {
        return Err(KeyError::RewrapNeedsPostgres);
    };
    let old = Kek::new(old)?;
    let new = &new;
    let old = &old;
    store
        .change_key_ring(|current: Option<SealedRing>| async move {
            let s = current.ok_or(KeyError::RewrapNothing)?;
            if s.kek_id == new.id() {
                new.open(&s)?;
                return Ok((
                    None,
                    Rewrap {
                        from: s.kek_id.clone(),
                        to: new.id().to_string(),
                        version: s.version,
                    },
                ));
            }
            if s.kek_id != old.id() {
                return Err(KeyError::RewrapWrongOld {
                    stored: s.kek_id,
                    given: old.id().to_string(),
                });
            }
            let file = old.open(&s)?;
            let sealed = new.seal(&file, s.version + 1)?;
            let done = Rewrap {
                from: s.kek_id,
                to: new.id().to_string(),
                version: sealed.version,
            };
            Ok((Some(sealed), done))
        })
        .await
}
