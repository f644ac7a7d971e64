//! [`LiveKeys`]: the key ring the server runs on, re-read when the ring file changes, or on
//! PostgreSQL when the stored ring's version changes (that is how a rotation, by this server,
//! the CLI or another replica, reaches a running server).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::ring::{read_ring, ring_path};
use super::sealed::Kek;
use super::shared::{self, RingStore};
use super::{KeyError, KeyRing};
use crate::config::{Config, TokenConfig};
use crate::secrets::Secrets;
use crate::store::Store;

/// Identity of the ring file as last read: changes when it is replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// The key ring the service runs on, replaced when the ring file changes.
pub struct LiveKeys {
    ring: RwLock<Arc<KeyRing>>,
    path: PathBuf,
    stamp: Mutex<Option<Stamp>>,
    /// What the configured keys are built from; `None` for a fixed ring.
    source: Option<(TokenConfig, Secrets)>,
    /// On PostgreSQL: the key-encryption key and the row write of the ring in effect.
    shared: Option<(Kek, tokio::sync::Mutex<shared::RowStamp>)>,
    /// Rings found in the store that could not be loaded (logged each time).
    refused: std::sync::atomic::AtomicU64,
}

impl LiveKeys {
    /// Loads the ring (configured keys and the ring file); any error stops startup.
    pub fn load(config: &Config, secrets: &Secrets) -> Result<LiveKeys, KeyError> {
        let path = ring_path(config);
        let before = stamp(&path);
        let ring = KeyRing::load(config, secrets)?;
        Ok(LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            path,
            stamp: Mutex::new(before),
            source: Some((config.tokens.clone(), secrets.clone())),
            shared: None,
            refused: Default::default(),
        })
    }

    /// Loads the ring from where this configuration keeps it ([`RingStore`]): the ring file,
    /// or PostgreSQL, where the first replica seeds it with its configured keys. Any error
    /// stops startup, a ring this process cannot decrypt included.
    pub async fn open(
        config: &Config,
        secrets: &Secrets,
        store: &Store,
    ) -> Result<LiveKeys, KeyError> {
        let kek = match RingStore::of(config, secrets, store)? {
            RingStore::File(_) => return LiveKeys::load(config, secrets),
            RingStore::Postgres { kek, .. } => kek,
        };
        let (ring, stamp) = shared::load_or_seed(store, &kek, &config.tokens, secrets).await?;
        tracing::info!(
            version = stamp.0,
            kek = kek.id(),
            "key ring loaded from PostgreSQL"
        );
        Ok(LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            path: PathBuf::new(),
            stamp: Mutex::new(None),
            source: Some((config.tokens.clone(), secrets.clone())),
            shared: Some((kek, tokio::sync::Mutex::new(stamp))),
            refused: Default::default(),
        })
    }

    /// Installs the ring's latest version when it changed: on PostgreSQL one read of the
    /// version (the stored ring only when it changed), else [`LiveKeys::reload_if_changed`].
    /// Returns true when a new ring was installed. A ring that cannot be read or decrypted
    /// keeps the ring in effect (logged).
    pub async fn refresh(&self, store: &Store) -> bool {
        let (Some((kek, version)), Some((tokens, secrets))) = (&self.shared, &self.source) else {
            return self.reload_if_changed();
        };
        // Held until the new ring is installed, so two refreshes never install an older
        // version over a newer one.
        let mut version = version.lock().await;
        let ours = self.current();
        match shared::sync(store, kek, tokens, secrets, &version, &ours).await {
            Ok(Some((ring, v))) => {
                tracing::info!(
                    version = v.0,
                    rest_signing = %ring.rest.signing(crate::now_unix()).kid,
                    ws_signing = %ring.ws.signing(crate::now_unix()).kid,
                    "key ring reloaded from PostgreSQL"
                );
                *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
                *version = v;
                true
            }
            Ok(None) => false,
            // A database outage is reported by the requests that need it (503) and by
            // readiness; the keys in memory serve on, so once a second at debug only.
            Err(KeyError::RingStore(e)) if e.is_unavailable() => {
                tracing::debug!(error = %crate::error_chain::Chain(&e), "key ring version not read; the keys in effect stay");
                false
            }
            Err(e) => {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring in PostgreSQL not loaded; the keys in effect stay");
                false
            }
        }
    }

    /// How many rings found in the store could not be loaded (each also logged).
    pub fn refused_loads(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A fixed ring (tests and benchmarks): never re-read.
    pub fn fixed(ring: KeyRing) -> LiveKeys {
        LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            path: PathBuf::new(),
            stamp: Mutex::new(None),
            source: None,
            shared: None,
            refused: Default::default(),
        }
    }

    /// The ring in effect.
    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the ring file when it changed since the last read. Returns true when a new
    /// ring was installed. A file that cannot be used keeps the ring in effect (logged).
    pub fn reload_if_changed(&self) -> bool {
        let Some((tokens, secrets)) = &self.source else {
            return false;
        };
        // Held until the new ring is installed, so two reloads (the watch loop and a
        // rotation's own) never install an older file over a newer one. `current` does not
        // take it.
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        let now_stamp = stamp(&self.path);
        if *last == now_stamp {
            return false;
        }
        // Taken before the read: a file replaced in between is read again next time.
        *last = now_stamp;
        let file = match read_ring(&self.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring not reloaded; the keys in effect stay");
                return false;
            }
        };
        match KeyRing::from_parts(tokens, secrets, &self.path, file.as_ref()) {
            Ok(ring) => {
                tracing::info!(
                    rest_signing = %ring.rest.signing(crate::now_unix()).kid,
                    ws_signing = %ring.ws.signing(crate::now_unix()).kid,
                    "key ring reloaded"
                );
                *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring not reloaded; the keys in effect stay");
                false
            }
        }
    }
}
