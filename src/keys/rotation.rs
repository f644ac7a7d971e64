//! Key rotation, one implementation for the CLI (`chatsdk-auth keys rotate`) and the admin API
//! (`POST /admin/keys/{rest|ws}/rotate`), both through `crate::actions::Actions`: the ring
//! ([`RingStore`]) is read, changed and replaced under its lock (the ring file's
//! [`super::ring::RingLock`], or PostgreSQL's advisory lock in one transaction), with the
//! change computed on tokio's blocking pool (RSA key generation and file I/O never hold an
//! async worker).

use std::path::Path;

use jsonwebtoken::Algorithm;
use serde::Serialize;

use super::ring::{read_ring, ring_path, write_ring, RingFile, RingLock, StoredKey, RING_VERSION};
use super::sealed::PG_RING;
use super::shared::{self, RingStore};
use super::{
    algorithm_name, generate, is_asymmetric, Key, KeyError, KeyRing, Kind, Refusal, Schedule,
};
use crate::config::{Config, TokenConfig};
use crate::error_chain::Chain;
use crate::secrets::Secrets;
use crate::store::{AuditEvent, Store};

/// What a rotation did.
#[derive(Debug, Serialize)]
pub struct Rotation {
    #[serde(serialize_with = "kind_label")]
    pub kind: Kind,
    pub old_kid: String,
    pub new_kid: String,
    #[serde(serialize_with = "alg_label")]
    pub alg: Algorithm,
    /// When the new key starts signing.
    pub signs_from: i64,
    /// When the old key stops verifying (its last token has expired).
    pub old_expires_at: i64,
}

/// Rotates the key of `kind`: a new key of the configured algorithm is added to the ring file,
/// signing at once (HMAC) or after `tokens.jwks_publish_delay_seconds` (asymmetric: published as
/// "next" until then); the old key signs until the new one starts and verifies until the last
/// token it signed has expired. Keys whose tokens have all expired are dropped.
///
/// Runs under the ring's lock (the file's, or PostgreSQL's in one transaction), so
/// concurrent rotations (in this process, another, or another replica) take turns: each sees
/// the ring the previous one wrote. A refusal ([`KeyError::Refused`]) changes nothing.
///
/// The audit event `record` makes of the rotation is written in the ring's transaction in
/// PostgreSQL (a rotation whose event cannot be written is rolled back, and fails). The ring
/// file cannot share a transaction with the store's audit table: its event is appended once
/// the file is written, and a failure to append it is logged (the rotation stands).
pub async fn rotate(
    config: &Config,
    secrets: &Secrets,
    store: &Store,
    kind: Kind,
    now: i64,
    record: &(dyn Fn(&Rotation) -> AuditEvent + Sync),
) -> Result<Rotation, KeyError> {
    let tokens = config.tokens.clone();
    let owned = secrets.clone();
    match RingStore::of(config, secrets, store)? {
        RingStore::File(_) => {
            let path = ring_path(config);
            let r = tokio::task::spawn_blocking(move || {
                rotate_locked(&tokens, &owned, &path, kind, now)
            })
            .await
            .map_err(KeyError::Aborted)??;
            if let Err(err) = store.append_audit(&record(&r)).await {
                tracing::warn!(error = %Chain(&err), target = kind.label(), "the signing key was rotated but its audit event could not be written");
            }
            Ok(r)
        }
        RingStore::Postgres { store, kek } => {
            // A lost update (the row written without the ring's lock between this rotation's
            // read and its write, as by a restore) wrote nothing: rotate again over the row
            // as it is now, a few times.
            let mut attempt = 1;
            loop {
                let (t, owned) = (tokens.clone(), owned.clone());
                let f = move |file| rotated(&t, &owned, Path::new(PG_RING), Some(file), kind, now);
                match shared::change(store, &kek, &tokens, secrets, f, record).await {
                    Err(KeyError::RingStore(e)) if e.is_lost_update() && attempt < 3 => {
                        tracing::info!(attempt, "the key ring changed during a rotation; rotating again over the new row");
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        }
    }
}

/// [`rotate`] on the calling thread, holding the ring file's lock from the read to the write.
fn rotate_locked(
    tokens: &TokenConfig,
    secrets: &Secrets,
    path: &Path,
    kind: Kind,
    now: i64,
) -> Result<Rotation, KeyError> {
    let _lock = RingLock::acquire(path)?;
    let file = read_ring(path)?;
    let (out, rotation) = rotated(tokens, secrets, path, file, kind, now)?;
    write_ring(path, &out)?;
    Ok(rotation)
}

/// The ring file after rotating `kind`, and what the rotation did.
fn rotated(
    tokens: &TokenConfig,
    secrets: &Secrets,
    path: &Path,
    file: Option<RingFile>,
    kind: Kind,
    now: i64,
) -> Result<(RingFile, Rotation), KeyError> {
    let ring = KeyRing::from_parts(tokens, secrets, path, file.as_ref())?;
    let set = ring.set(kind);
    if let Some(pending) = set.all().iter().find(|k| k.schedule.signs_from > now) {
        return Err(Refusal::Pending {
            kind,
            kid: pending.kid.clone(),
            signs_from: pending.schedule.signs_from,
        }
        .into());
    }
    let alg = match kind {
        Kind::Rest => tokens.rest_algorithm,
        Kind::Ws => tokens.ws_algorithm,
    };
    if kind == Kind::Ws && !is_asymmetric(alg) {
        if let Some((prev, until)) = set.previous_hmac(now) {
            return Err(Refusal::PreviousHmac {
                kid: prev.kid.clone(),
                until,
            }
            .into());
        }
    }
    let delay = if is_asymmetric(alg) {
        tokens.jwks_publish_delay_seconds
    } else {
        0
    };
    // The old key's last token expires one lifetime of its kind after it stops signing.
    let ttl = match kind {
        Kind::Rest => tokens.ttl_seconds,
        Kind::Ws => tokens.ws_ttl_seconds,
    };
    let current = set.signing(now).clone();
    let switch = now + delay;
    let new_key = Key::parse(
        &format!("new {} key", kind.label()),
        alg,
        &generate(alg)?,
        Schedule {
            created_at: now,
            signs_from: switch,
            signs_until: None,
            expires_at: None,
        },
    )?;
    let mut stored: Vec<StoredKey> = set
        .all()
        .iter()
        .filter(|k| k.schedule.valid_at(now))
        .map(|k| {
            let mut s = StoredKey::of(k);
            if k.kid == current.kid {
                s.schedule.signs_until = Some(switch);
                s.schedule.expires_at = Some(switch + ttl);
            } else if s.schedule.signs_until.is_none() {
                // A key that was never the current one (should not happen): retire it too.
                s.schedule.signs_until = Some(now);
                s.schedule.expires_at = Some(now + ttl);
            }
            s
        })
        .collect();
    stored.push(StoredKey::of(&new_key));
    let mut out = file.unwrap_or(RingFile {
        version: RING_VERSION,
        ..RingFile::default()
    });
    // The other kind keeps what it has; a kind not in the file yet is seeded by its rotation.
    match kind {
        Kind::Rest => out.rest = stored,
        Kind::Ws => out.ws = stored,
    }
    let rotation = Rotation {
        kind,
        old_kid: current.kid.clone(),
        new_kid: new_key.kid.clone(),
        alg,
        signs_from: switch,
        old_expires_at: switch + ttl,
    };
    Ok((out, rotation))
}

fn kind_label<S: serde::Serializer>(k: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.label())
}

fn alg_label<S: serde::Serializer>(a: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(algorithm_name(*a))
}
