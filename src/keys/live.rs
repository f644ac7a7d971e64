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

/// Where the ring in effect came from, and so how it is re-read: one of three modes.
enum Source {
    /// A fixed ring (tests and benchmarks): never re-read.
    Fixed,
    /// The ring file (`keyring.json`) over the configured keys: re-read when the file changes.
    File {
        path: PathBuf,
        /// The file as last read.
        stamp: Mutex<Option<Stamp>>,
        tokens: TokenConfig,
        secrets: Secrets,
    },
    /// The encrypted row in PostgreSQL: re-read when another write of it appears.
    Postgres {
        kek: Kek,
        /// The row write of the ring in effect, and the last one refused.
        seen: tokio::sync::Mutex<shared::Seen>,
        tokens: TokenConfig,
        secrets: Secrets,
    },
}

/// The key ring the service runs on, replaced when the ring it came from changes.
pub struct LiveKeys {
    ring: RwLock<Arc<KeyRing>>,
    source: Source,
    /// Rings found in the ring file or the store that could not be loaded (each logged).
    refused: std::sync::atomic::AtomicU64,
    /// Where those are exported (`chatsdk_auth_key_ring_loads_refused_total`), once attached.
    refused_metric: std::sync::OnceLock<prometheus::IntCounter>,
}

impl LiveKeys {
    fn new(ring: KeyRing, source: Source) -> LiveKeys {
        LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            source,
            refused: Default::default(),
            refused_metric: Default::default(),
        }
    }

    /// Loads the ring (configured keys and the ring file); any error stops startup.
    pub fn load(config: &Config, secrets: &Secrets) -> Result<LiveKeys, KeyError> {
        let path = ring_path(config);
        let before = stamp(&path);
        let ring = KeyRing::load(config, secrets)?;
        Ok(LiveKeys::new(
            ring,
            Source::File {
                path,
                stamp: Mutex::new(before),
                tokens: config.tokens.clone(),
                secrets: secrets.clone(),
            },
        ))
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
        let (ring, row) = shared::load_or_seed(store, &kek, &config.tokens, secrets).await?;
        tracing::info!(
            version = row.0,
            kek = kek.id(),
            "key ring loaded from PostgreSQL"
        );
        Ok(LiveKeys::new(
            ring,
            Source::Postgres {
                kek,
                seen: tokio::sync::Mutex::new(shared::Seen {
                    in_force: row,
                    refused: None,
                }),
                tokens: config.tokens.clone(),
                secrets: secrets.clone(),
            },
        ))
    }

    /// Installs the ring's latest version when it changed: on PostgreSQL one read of the
    /// version (the stored ring only when it changed), else [`LiveKeys::reload_if_changed`].
    /// Returns true when a new ring was installed. A ring that cannot be read or decrypted
    /// keeps the ring in effect (logged).
    pub async fn refresh(&self, store: &Store) -> bool {
        let Source::Postgres {
            kek,
            seen,
            tokens,
            secrets,
        } = &self.source
        else {
            return self.reload_if_changed();
        };
        // Held until the new ring is installed, so two refreshes never install an older
        // version over a newer one.
        let mut seen = seen.lock().await;
        let ours = self.current();
        match shared::sync(store, kek, tokens, secrets, &mut seen, &ours).await {
            Ok(Some(ring)) => {
                tracing::info!(
                    version = seen.in_force.0,
                    rest_signing = %ring.rest.signing(crate::now_unix()).kid,
                    ws_signing = %ring.ws.signing(crate::now_unix()).kid,
                    "key ring reloaded from PostgreSQL"
                );
                self.install(ring);
                true
            }
            Ok(None) => false,
            // A database outage is reported by the requests that need it (503) and by
            // readiness; the keys in memory serve on, so once a second at debug only.
            Err(KeyError::RingStore(e)) if e.is_unavailable() => {
                tracing::debug!(error = %crate::error_chain::Chain(&e), "key ring version not read; the keys in effect stay");
                false
            }
            // Reported once per write of the row: the next refreshes skip it until the row is
            // written again.
            Err(e) => {
                self.count_refused();
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring in PostgreSQL not loaded; the keys in effect stay until the row is written again");
                false
            }
        }
    }

    fn count_refused(&self) {
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(c) = self.refused_metric.get() {
            c.inc();
        }
    }

    /// How many rings found in the ring file or the store could not be loaded (each also
    /// logged).
    pub fn refused_loads(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Exports the refused loads in `counter` from now on (the first counter attached stays).
    pub fn export_refused_loads(&self, counter: prometheus::IntCounter) {
        let _ = self.refused_metric.set(counter);
    }

    /// A fixed ring (tests and benchmarks): never re-read.
    pub fn fixed(ring: KeyRing) -> LiveKeys {
        LiveKeys::new(ring, Source::Fixed)
    }

    /// The ring in effect.
    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
    }

    /// Re-reads the ring file when it changed since the last read. Returns true when a new
    /// ring was installed. A file that cannot be used keeps the ring in effect (logged).
    pub fn reload_if_changed(&self) -> bool {
        let Source::File {
            path,
            stamp: last,
            tokens,
            secrets,
        } = &self.source
        else {
            return false;
        };
        // Held until the new ring is installed, so two reloads (the watch loop and a
        // rotation's own) never install an older file over a newer one. `current` does not
        // take it.
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let now_stamp = stamp(path);
        if *last == now_stamp {
            return false;
        }
        // Taken before the read: a file replaced in between is read again next time.
        *last = now_stamp;
        let file = match read_ring(path) {
            Ok(f) => f,
            Err(e) => {
                self.count_refused();
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring not reloaded; the keys in effect stay");
                return false;
            }
        };
        match KeyRing::from_parts(tokens, secrets, path, file.as_ref()) {
            Ok(ring) => {
                tracing::info!(
                    rest_signing = %ring.rest.signing(crate::now_unix()).kid,
                    ws_signing = %ring.ws.signing(crate::now_unix()).kid,
                    "key ring reloaded"
                );
                self.install(ring);
                true
            }
            Err(e) => {
                self.count_refused();
                tracing::warn!(error = %crate::error_chain::Chain(&e), "key ring not reloaded; the keys in effect stay");
                false
            }
        }
    }
}
