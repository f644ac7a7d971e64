//! [`RingStore`]: where the key ring lives. With SQLite it is the ring file
//! (`<data_dir>/keyring.json`, [`super::ring`]); with PostgreSQL it is one encrypted row of
//! `chatsdk_auth_signing_keys` ([`crate::store::SealedRing`], sealed by [`super::sealed`]),
//! shared by every replica: the first to start seeds it with its configured keys (under the
//! ring's advisory lock, so only one does), the others load it, and a rotation or a
//! [`rewrap`] is one transaction under that lock.

use std::path::PathBuf;

use serde::Serialize;

use super::ring::{ring_path, RingFile, StoredKey, RING_VERSION};
use super::sealed::{Kek, PG_RING};
use super::{KeyError, KeyRing};
use crate::config::{Config, TokenConfig};
use crate::secrets::{Secret, Secrets};
use crate::store::{AuditEvent, SealedRing, Store};

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

/// Which write of the ring row a replica runs on: its version and its nonce (fresh on every
/// write, so two writes at one version, as over a restored row, differ).
pub(super) type RowStamp = (i64, Vec<u8>);

fn stamp_of(s: &SealedRing) -> RowStamp {
    (s.version, s.nonce.clone())
}

/// The ring file of `ring` (every key, with its schedule).
fn file_of(ring: &KeyRing) -> RingFile {
    let all = |set: &super::KeySet| set.all().iter().map(|k| StoredKey::of(k)).collect();
    RingFile {
        version: RING_VERSION,
        rest: all(&ring.rest),
        ws: all(&ring.ws),
    }
}

/// Opens the stored ring, or seeds and writes it when there is none yet (the first replica).
/// Returns the ring and the row's stamp.
pub(super) async fn load_or_seed(
    store: &Store,
    kek: &Kek,
    tokens: &TokenConfig,
    secrets: &Secrets,
) -> Result<(KeyRing, RowStamp), KeyError> {
    let file: Result<_, KeyError> = store
        .change_key_ring(|current| async move {
            match current {
                // Named by the id rows had before the derived one: sealed again under it.
                Some(s) if kek.is_legacy(&s) => {
                    let file = kek.open(&s)?;
                    let sealed = kek.seal(&file, s.version + 1)?;
                    tracing::info!(
                        version = sealed.version,
                        kek = kek.id(),
                        "key ring in PostgreSQL sealed again, to name the key-encryption secret by its derived id"
                    );
                    let stamp = stamp_of(&sealed);
                    Ok((Some(sealed), (file, stamp)))
                }
                Some(s) => Ok((None, (kek.open(&s)?, stamp_of(&s)))),
                None => {
                    let file = seed(tokens, secrets)?;
                    let sealed = kek.seal(&file, 1)?;
                    tracing::info!(
                        kek = kek.id(),
                        "key ring created in PostgreSQL from the configured keys"
                    );
                    let stamp = stamp_of(&sealed);
                    Ok((Some(sealed), (file, stamp)))
                }
            }
        })
        .await;
    let (file, stamp) = file?;
    let ring = KeyRing::from_parts(tokens, secrets, PG_RING.as_ref(), Some(&file))?;
    Ok((ring, stamp))
}

/// The stored ring when its row is not the write `seen.in_force`, which it then becomes
/// (`None` when unchanged or not there). Any other write is taken, whatever its version: a newer ring from a rotation, or
/// a row put back from a backup (or rotated after one). When the stored ring lacks keys that
/// `ours` (the ring in force) holds, as a restored row does, they are merged back and the
/// result written as the next version, under the ring's lock: so after any sequence of
/// restores and rotations the replicas converge on one ring holding every key any of them
/// signed with, and each signs with the key its ring names.
///
/// A write whose ring cannot be loaded (another secret, altered bytes, keys that do not parse)
/// is remembered in `seen.refused` and not tried again until the row is written again, so it
/// is reported (logged and counted by the caller) once, not at every refresh.
pub(super) async fn sync(
    store: &Store,
    kek: &Kek,
    tokens: &TokenConfig,
    secrets: &Secrets,
    seen: &mut Seen,
    ours: &KeyRing,
) -> Result<Option<KeyRing>, KeyError> {
    let stamp = match store.key_ring_stamp().await? {
        None => return Ok(None),
        Some(s) if s == seen.in_force || seen.refused.as_ref() == Some(&s) => return Ok(None),
        Some(s) => s,
    };
    match take(store, kek, tokens, secrets, seen.in_force.0, ours).await {
        Ok(Some((ring, in_force))) => {
            *seen = Seen {
                in_force,
                refused: None,
            };
            Ok(Some(ring))
        }
        Ok(None) => Ok(None),
        Err(KeyError::RingStore(e)) if e.is_unavailable() => Err(KeyError::RingStore(e)),
        Err(e) => {
            seen.refused = Some(stamp);
            Err(e)
        }
    }
}

/// The writes of the ring row a replica has seen: the one in force, and the last one it
/// refused to load.
pub(super) struct Seen {
    pub in_force: RowStamp,
    pub refused: Option<RowStamp>,
}

/// [`sync`]'s read and merge of a row write other than the one in force (`known_version`).
async fn take(
    store: &Store,
    kek: &Kek,
    tokens: &TokenConfig,
    secrets: &Secrets,
    known_version: i64,
    ours: &KeyRing,
) -> Result<Option<(KeyRing, RowStamp)>, KeyError> {
    let ours = file_of(ours);
    let ttl = (tokens.ttl_seconds, tokens.ws_ttl_seconds);
    let now = crate::now_unix();
    let synced: Result<Option<(RingFile, RowStamp)>, KeyError> = store
        .change_key_ring(|current| async move {
            let Some(s) = current else {
                return Ok((None, None));
            };
            let stored = kek.open(&s)?;
            let merged = stored.merged_with(&ours, now, ttl);
            if merged.same_keys(&stored) {
                return Ok((None, Some((stored, stamp_of(&s)))));
            }
            let sealed = kek.seal(&merged, s.version + 1)?;
            tracing::warn!(
                stored = s.version,
                in_force = known_version,
                written = sealed.version,
                "the key ring in PostgreSQL lacked keys this replica signs or verifies with (a row put back from a backup, or rotated after one); merged them back"
            );
            let stamp = stamp_of(&sealed);
            Ok::<_, KeyError>((Some(sealed), Some((merged, stamp))))
        })
        .await;
    let synced = match synced {
        // Another write of the row came between the read and the merge's write (one that took
        // no lock: a restore): nothing was written, and the next refresh reads that write.
        Err(KeyError::RingStore(e)) if e.is_lost_update() => {
            tracing::info!(
                "the key ring in PostgreSQL was written during a merge; it is read again"
            );
            return Ok(None);
        }
        other => other?,
    };
    let Some((file, stamp)) = synced else {
        return Ok(None);
    };
    let ring = KeyRing::from_parts(tokens, secrets, PG_RING.as_ref(), Some(&file))?;
    Ok(Some((ring, stamp)))
}

/// Changes the stored ring with `f` (seeded first if there is none), in one transaction under
/// the ring's lock, with the audit event `audit` makes of `f`'s result; `f` runs on the
/// blocking pool (it may generate an RSA key).
pub(super) async fn change<T: Send + 'static>(
    store: &Store,
    kek: &Kek,
    tokens: &TokenConfig,
    secrets: &Secrets,
    f: impl FnOnce(RingFile) -> Result<(RingFile, T), KeyError> + Send + 'static,
    audit: impl FnOnce(&T) -> AuditEvent,
) -> Result<T, KeyError> {
    store
        .change_key_ring_audited(
            |current| async move {
                let (file, version) = match current {
                    Some(s) => (kek.open(&s)?, s.version),
                    None => (seed(tokens, secrets)?, 0),
                };
                let (out, result) = tokio::task::spawn_blocking(move || f(file))
                    .await
                    .map_err(KeyError::Aborted)??;
                Ok((Some(kek.seal(&out, version + 1)?), result))
            },
            audit,
        )
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

/// The ring as this configuration keeps it, read without writing anything (`keys list`): the
/// ring file (over the configured keys), or the ring in PostgreSQL; with no ring in PostgreSQL
/// yet, the configured keys the first server start would write there, and `false`.
pub async fn read_ring(config: &Config, secrets: &Secrets) -> Result<(KeyRing, bool), KeyError> {
    if !matches!(config.store, crate::config::StoreConfig::Postgres { .. }) {
        return Ok((KeyRing::load(config, secrets)?, true));
    }
    let secret = secrets
        .key_encryption_key
        .as_ref()
        .ok_or(KeyError::NoKeyEncryptionKey)?;
    let kek = Kek::new(secret)?;
    match Store::read_key_ring_of(&config.store).await? {
        Some(s) => {
            let file = kek.open(&s)?;
            let ring = KeyRing::from_parts(&config.tokens, secrets, PG_RING.as_ref(), Some(&file))?;
            Ok((ring, true))
        }
        None => Ok((KeyRing::configured(&config.tokens, secrets)?, false)),
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
            // Sealed with the configured secret under its former id, or with the old one.
            let from = if new.is_legacy(&s) { new } else { old };
            if !from.names(&s.kek_id) {
                return Err(KeyError::RewrapWrongOld {
                    stored: s.kek_id,
                    given: old.id().to_string(),
                });
            }
            let file = from.open(&s)?;
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
