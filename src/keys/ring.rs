//! Both kinds of keys ([`KeyRing`]) and the key ring file that holds them after a rotation:
//! read (owner-only, like every secret file), changed only under an exclusive lock
//! ([`RingLock`], an OS file lock, so the CLI and every server on the data directory take
//! turns) and replaced atomically (a temp file in the same directory, then a rename).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{algorithm_name, Key, KeyError, KeySet, Kind, Schedule};
use crate::config::algorithm::parse_algorithm;
use crate::config::{Config, TokenConfig};
use crate::secrets::{self, Secret, Secrets};

/// The file name of the key ring inside the data directory.
pub const RING_FILE: &str = "keyring.json";
/// The lock file beside it: it is never replaced, so every writer locks the same file.
const LOCK_FILE: &str = "keyring.lock";
/// The ring file's format version.
pub(super) const RING_VERSION: u32 = 1;

/// The keys of both kinds.
#[derive(Debug)]
pub struct KeyRing {
    pub rest: KeySet,
    pub ws: KeySet,
}

impl KeyRing {
    pub fn set(&self, kind: Kind) -> &KeySet {
        match kind {
            Kind::Rest => &self.rest,
            Kind::Ws => &self.ws,
        }
    }

    /// The configured keys only (no ring file): what runs until the first rotation.
    pub fn configured(tokens: &TokenConfig, secrets: &Secrets) -> Result<KeyRing, KeyError> {
        Ok(KeyRing {
            rest: KeySet::new(
                Kind::Rest,
                Arc::new(configured_key(Kind::Rest, tokens, secrets)?),
                Vec::new(),
            ),
            ws: KeySet::new(
                Kind::Ws,
                Arc::new(configured_key(Kind::Ws, tokens, secrets)?),
                Vec::new(),
            ),
        })
    }

    /// The configured keys, replaced kind by kind by the ring file's keys when it has some.
    pub fn load(config: &Config, secrets: &Secrets) -> Result<KeyRing, KeyError> {
        let path = ring_path(config);
        let file = read_ring(&path)?;
        Self::from_parts(&config.tokens, secrets, &path, file.as_ref())
    }

    /// The configured keys, replaced kind by kind by `file`'s keys (read from `path`).
    pub(super) fn from_parts(
        tokens: &TokenConfig,
        secrets: &Secrets,
        path: &Path,
        file: Option<&RingFile>,
    ) -> Result<KeyRing, KeyError> {
        let set = |kind: Kind, stored: Option<&Vec<StoredKey>>| -> Result<KeySet, KeyError> {
            match stored.and_then(|s| s.split_first()) {
                Some((first, others)) => {
                    let others = others
                        .iter()
                        .map(|s| s.to_key(kind, path).map(Arc::new))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(KeySet::new(
                        kind,
                        Arc::new(first.to_key(kind, path)?),
                        others,
                    ))
                }
                None => Ok(KeySet::new(
                    kind,
                    Arc::new(configured_key(kind, tokens, secrets)?),
                    Vec::new(),
                )),
            }
        };
        Ok(KeyRing {
            rest: set(Kind::Rest, file.map(|f| &f.rest))?,
            ws: set(Kind::Ws, file.map(|f| &f.ws))?,
        })
    }

    /// The JWKS document at `now`: every published public key of both kinds.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let keys: Vec<&Jwk> = self
            .rest
            .published(now)
            .chain(self.ws.published(now))
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// The configured key of one kind, named by where it came from.
fn configured_key(kind: Kind, tokens: &TokenConfig, secrets: &Secrets) -> Result<Key, KeyError> {
    let (alg, material, name) = match kind {
        Kind::Rest => (tokens.rest_algorithm, &secrets.rest_key, "secrets.rest_key"),
        Kind::Ws => (
            tokens.ws_algorithm,
            &secrets.centrifugo_key,
            "secrets.centrifugo_key",
        ),
    };
    let name = format!(
        "{name} (for {} = {})",
        kind.algorithm_key(),
        algorithm_name(alg)
    );
    Key::parse(&name, alg, material, Schedule::CONFIGURED)
}

/// Where the key ring lives.
pub fn ring_path(config: &Config) -> PathBuf {
    config.data_dir.join(RING_FILE)
}

/// The key ring file as stored. No `Debug`: it holds private keys.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RingFile {
    pub(super) version: u32,
    #[serde(default)]
    pub(super) rest: Vec<StoredKey>,
    #[serde(default)]
    pub(super) ws: Vec<StoredKey>,
}

impl RingFile {
    /// This ring with the keys of `other` it lacks (still valid at `now`) added, and, for a key
    /// both hold, the earlier end of signing and of validity (a retirement is never undone).
    /// What a replica writes back over a row that went back a version (a restored backup, or
    /// a rotation made on one), so that every key any replica signed with keeps verifying.
    /// Which key signs: this ring's, while one of its keys still signs; the added keys are
    /// then retired at `now` (verifying for one token lifetime, `ttl` of their kind). When
    /// `other` retired this ring's signing key (this ring is a backup older than `other`), the
    /// added keys keep their schedules, so `other`'s newer key signs.
    pub(super) fn merged_with(&self, other: &RingFile, now: i64, ttl: (i64, i64)) -> RingFile {
        let merge = |mine: &[StoredKey], theirs: &[StoredKey], ttl: i64| {
            let earlier = |a: Option<i64>, b: Option<i64>| match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut out: Vec<StoredKey> = mine.to_vec();
            for k in theirs {
                if let Some(o) = out.iter_mut().find(|o| o.kid == k.kid) {
                    o.schedule.signs_until =
                        earlier(o.schedule.signs_until, k.schedule.signs_until);
                    o.schedule.expires_at = earlier(o.schedule.expires_at, k.schedule.expires_at);
                }
            }
            let mine_signs = out.iter().any(|k| k.schedule.signs_at(now));
            let until = now.saturating_add(ttl);
            for k in theirs.iter().filter(|k| k.schedule.valid_at(now)) {
                if out.iter().any(|o| o.kid == k.kid) {
                    continue;
                }
                let mut k = k.clone();
                if mine_signs {
                    k.schedule.signs_until = earlier(k.schedule.signs_until, Some(now));
                    k.schedule.expires_at = earlier(k.schedule.expires_at, Some(until));
                }
                out.push(k);
            }
            out
        };
        RingFile {
            version: self.version,
            rest: merge(&self.rest, &other.rest, ttl.0),
            ws: merge(&self.ws, &other.ws, ttl.1),
        }
    }

    /// Whether both hold the same keys with the same schedules.
    pub(super) fn same_keys(&self, other: &RingFile) -> bool {
        let ids = |v: &[StoredKey]| {
            let mut ids: Vec<_> = v.iter().map(|k| (k.kid.clone(), k.schedule)).collect();
            ids.sort_by(|a, b| a.0.cmp(&b.0));
            ids
        };
        ids(&self.rest) == ids(&other.rest) && ids(&self.ws) == ids(&other.ws)
    }
}

/// One key as stored in the ring file. No `Debug`: `material` is a private key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredKey {
    kid: String,
    alg: String,
    /// The HMAC secret or the PKCS#8 PEM private key: a [`Secret`] from the ring's JSON to the
    /// parsed [`Key`] (wiped when dropped, never copied into a plain `String`), written as
    /// the JSON string it always was.
    #[serde(with = "secret_text")]
    material: Secret,
    #[serde(flatten)]
    pub(super) schedule: Schedule,
}

impl StoredKey {
    pub(super) fn of(key: &Key) -> StoredKey {
        StoredKey {
            kid: key.kid.clone(),
            alg: algorithm_name(key.alg).to_string(),
            material: key.material().clone(),
            schedule: key.schedule,
        }
    }

    fn to_key(&self, kind: Kind, path: &Path) -> Result<Key, KeyError> {
        let alg = parse_algorithm(&self.alg).ok_or_else(|| KeyError::RingAlgorithm {
            path: path.to_path_buf(),
            kid: self.kid.clone(),
            kind: kind.label(),
            alg: self.alg.clone(),
        })?;
        let name = format!(
            "key ring {} {} key {}",
            path.display(),
            kind.label(),
            self.kid
        );
        let key = Key::parse(&name, alg, &self.material, self.schedule)?;
        if key.kid != self.kid {
            return Err(KeyError::RingKid {
                path: path.to_path_buf(),
                kid: self.kid.clone(),
                kind: kind.label(),
            });
        }
        Ok(key)
    }
}

/// A key's material as a JSON string, read straight into a [`Secret`] (serde_json's scratch
/// buffer for an escaped string, as a PEM's line breaks are, is its own and is not wiped).
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secrets::Secret;

    pub(super) fn serialize<S: Serializer>(v: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        // Moved into the secret, not copied.
        String::deserialize(d).map(Secret::new)
    }
}

/// The ring's JSON (pretty for the file), in a buffer wiped when dropped. Written in place
/// into room for a ring of a few RSA keys, so in the usual case it is never reallocated
/// (which would leave a copy behind).
pub(super) fn ring_json(ring: &RingFile, pretty: bool) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(32 * 1024));
    if pretty {
        serde_json::to_writer_pretty(&mut *out, ring)?;
    } else {
        serde_json::to_writer(&mut *out, ring)?;
    }
    Ok(out)
}

/// The ring file at `path`, `None` when there is none yet.
pub(super) fn read_ring(path: &Path) -> Result<Option<RingFile>, KeyError> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        Zeroizing::new(
            secrets::read_private_file(path).map_err(|source| KeyError::RingRead {
                path: path.to_path_buf(),
                source,
            })?,
        );
    let ring: RingFile = serde_json::from_str(&text).map_err(|source| KeyError::RingParse {
        path: path.to_path_buf(),
        source,
    })?;
    if ring.version != RING_VERSION {
        return Err(KeyError::RingVersion {
            path: path.to_path_buf(),
            version: ring.version,
        });
    }
    Ok(Some(ring))
}

/// One key as `keys list` and `GET /admin/keys` show it (never the private part).
#[derive(Debug, Serialize)]
pub struct KeyInfo {
    pub kind: &'static str,
    pub kid: String,
    pub alg: &'static str,
    /// `current`, `next` (published, not signing yet), `previous` (verifying until
    /// `expires_at`) or `expired`.
    pub state: &'static str,
    pub signs_from: i64,
    pub signs_until: Option<i64>,
    pub expires_at: Option<i64>,
    /// The public key (PEM, SPKI) of an asymmetric key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

impl KeyRing {
    /// Every key of both kinds with its state at `now`.
    pub fn list(&self, now: i64) -> Vec<KeyInfo> {
        [&self.rest, &self.ws]
            .into_iter()
            .flat_map(|set| {
                let current = set.signing(now).kid.clone();
                set.all().iter().map(move |k| {
                    let s = k.schedule;
                    let state = if k.kid == current {
                        "current"
                    } else if s.signs_from > now {
                        "next"
                    } else if s.valid_at(now) {
                        "previous"
                    } else {
                        "expired"
                    };
                    KeyInfo {
                        kind: set.kind.label(),
                        kid: k.kid.clone(),
                        alg: algorithm_name(k.alg),
                        state,
                        signs_from: s.signs_from,
                        signs_until: s.signs_until,
                        expires_at: s.expires_at,
                        public_key: k.public_pem.clone(),
                    }
                })
            })
            .collect()
    }
}

/// Replaces the ring file atomically (a temp file of mode 0600 in the same directory, synced,
/// then renamed over it: `tempfile`'s `persist`), so a server that reads it concurrently sees the
/// old or the new file, never half of one, and a failed write leaves the old file and no temp
/// file behind. Called with the [`RingLock`] held.
pub(super) fn write_ring(path: &Path, ring: &RingFile) -> Result<(), KeyError> {
    let err = |source| KeyError::RingWrite {
        path: path.to_path_buf(),
        source,
    };
    let text = ring_json(ring, true).map_err(|e| err(std::io::Error::other(e)))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // `tempfile` creates the file with mode 0600 and a random name.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(&text)
        .and_then(|()| tmp.write_all(b"\n"))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// The exclusive lock on the key ring (an OS file lock on `keyring.lock` beside it): held
/// from reading the ring to writing the new one, so two rotations (two admin calls, or the CLI
/// and a server, or two servers sharing the data directory) take turns and neither loses the
/// other's key. Released when dropped (the file is closed).
pub(super) struct RingLock {
    _file: File,
}

impl RingLock {
    /// Waits for the lock (a blocking call: run it off the async workers).
    pub(super) fn acquire(ring: &Path) -> Result<RingLock, KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = ring.with_file_name(LOCK_FILE);
        let err = |source| KeyError::RingLock {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            secrets::ensure_data_dir(dir).map_err(|e| err(std::io::Error::other(e)))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| err(e.into()))?;
        Ok(RingLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring file as every version wrote it reads into zeroizing material and is written
    /// back field for field, the material the same JSON string.
    #[test]
    fn stored_material_is_a_secret_and_the_file_format_is_unchanged() {
        let hmac = "h".repeat(43);
        let text = format!(
            r#"{{"version":1,"rest":[{{"kid":"k1","alg":"HS256","material":"{hmac}","created_at":5,"signs_from":5}}]}}"#
        );
        let ring: RingFile = serde_json::from_str(&text).unwrap();
        let stored = &ring.rest[0];
        let material: &Secret = &stored.material;
        assert_eq!(material.expose(), hmac);
        let key = stored.to_key(Kind::Rest, Path::new("keyring.json"));
        // The kid is the material's, so this one is refused: parsed from the secret as stored.
        assert!(matches!(key, Err(KeyError::RingKid { .. })));
        let back: serde_json::Value =
            serde_json::from_slice(&ring_json(&ring, true).unwrap()).unwrap();
        assert_eq!(back["rest"][0]["material"], hmac.as_str());
        assert_eq!(back["rest"][0]["kid"], "k1");
        // A key of the ring keeps its material through `StoredKey::of` and back.
        let parsed = Key::parse(
            "k",
            jsonwebtoken::Algorithm::HS256,
            material,
            Schedule::CONFIGURED,
        )
        .unwrap();
        let again = StoredKey::of(&parsed);
        assert_eq!(again.material.expose(), hmac);
        assert_eq!(
            again.to_key(Kind::Rest, Path::new("x")).unwrap().kid,
            parsed.kid
        );
    }
}
