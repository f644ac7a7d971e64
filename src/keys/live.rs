//! [`LiveKeys`]: the key ring the server runs on, re-read when the ring file changes (that is
//! how a rotation, by this server, the CLI or another replica, reaches a running server).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::ring::{read_ring, ring_path};
use super::{KeyError, KeyRing};
use crate::config::{Config, TokenConfig};
use crate::secrets::Secrets;

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
        })
    }

    /// A fixed ring (tests and benchmarks): never re-read.
    pub fn fixed(ring: KeyRing) -> LiveKeys {
        LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            path: PathBuf::new(),
            stamp: Mutex::new(None),
            source: None,
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
