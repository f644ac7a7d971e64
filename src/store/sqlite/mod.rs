//! The embedded SQLite backend: one writer connection on its own thread, a few reader
//! connections used in place, WAL mode.
//!
//! This file owns the connections (opening, pooling, error mapping); [`queries`] holds every
//! statement the store runs, [`outbox`] the operator changes and the kick outbox,
//! [`migrations`] the schema steps and [`writer`] the writer thread.
//!
//! WAL lets readers (API-key checks, proxy user lookups) run while a write is in progress, even
//! one another process holds open ("readers do not block writers and a writer does not block
//! readers", <https://www.sqlite.org/wal.html>), and `synchronous=NORMAL` makes a commit an
//! append to the WAL with no fsync; checkpoints sync.
//!
//! Two paths, so that a queued writer never occupies a thread a reader needs:
//! - Reads run inline on the async worker: each is a few microseconds on an indexed primary
//!   key, cheaper than a hop to another thread (the connect proxy is a pure read, and the
//!   common `POST /tokens` reads only; see below). They never wait for the write lock; their
//!   busy timeout is capped at [`READER_BUSY_TIMEOUT`] for the rare moments a WAL reader can
//!   be told to retry (another process recovering the WAL after a crash).
//! - Writes go to the writer thread ([`writer`]) and wait there, for at most
//!   `storage.busy_timeout_ms` in total, when another process (the CLI, a backup, `sqlite3`)
//!   holds the write lock; past it they fail as `Unavailable` (503).
//!
//! Trap avoided: SQLite only runs its WAL auto-checkpoint when a statement is stepped to the
//! end, so every `RETURNING` statement here is drained (`rows.next()` until `None`).
//!
//! Most `POST /tokens` calls repeat a profile the store already holds (clients mint again on
//! every login or reconnect), so the upsert first reads the row on a reader connection and
//! writes only when something would change: the common case takes no write lock, appends no
//! WAL frame and never waits for the writer.

mod migrations;
mod outbox;
mod queries;
mod segments;
pub(super) use queries::audit_event_from_row;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::StoreError;
use crate::error_chain::Context;

/// Reader connections; two cores rarely need more.
const READERS: usize = 4;

/// The longest a read waits on a tokio worker when SQLite reports the database busy.
pub const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(100);

pub struct SqliteStore {
    writer: writer::Writer,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl SqliteStore {
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::secrets::ensure_data_dir(parent)
                .map_err(|e| StoreError::Unavailable(e.into()))?;
        }
        owner_only(path)?;
        let writer = open_conn(path, busy_timeout, false)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(map_err)?;
        migrations::migrate(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(open_conn(
                path,
                busy_timeout.min(READER_BUSY_TIMEOUT),
                true,
            )?));
        }
        Ok(SqliteStore {
            writer: writer::Writer::spawn(writer, busy_timeout)?,
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub(super) fn reader(&self) -> MutexGuard<'_, Connection> {
        // The first free reader, so that a lightly loaded server keeps reusing one connection
        // (its page and statement caches stay warm); only when all are busy, wait on one
        // chosen round-robin.
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return g;
            }
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The database holds key hashes and user profiles: owner-only, like the secret files. A new
/// one is created 0600 before SQLite opens it; an existing one (or its `-wal`/`-shm`) that
/// group or others can read, as a restore that lost its mode leaves it, is set back to 0600
/// with a warning; one whose mode cannot be changed stops startup.
fn owner_only(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let refuse = |file: &Path, e: std::io::Error| {
        StoreError::Unavailable(
            Context::new(
                format!(
                    "the SQLite database {} is readable by other users and its mode cannot be set to 0600; run chmod 600 on it",
                    file.display()
                ),
                e,
            )
            .into(),
        )
    };
    if !path.exists() {
        return match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => Ok(()),
            // Created meanwhile (another process): checked as an existing one below.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => owner_only(path),
            Err(e) => Err(StoreError::Unavailable(
                Context::new(
                    format!("cannot create SQLite database {}", path.display()),
                    e,
                )
                .into(),
            )),
        };
    }
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in &files {
        let Ok(meta) = std::fs::metadata(file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| refuse(file, e))?;
            tracing::warn!(
                file = %file.display(),
                was = format!("{mode:o}"),
                "the SQLite database was readable by other users; its mode is now 0600"
            );
        }
    }
    Ok(())
}

fn open_conn(
    path: &Path,
    busy_timeout: Duration,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let c = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(
            Context::new(format!("cannot open SQLite database {}", path.display()), e).into(),
        )
    })?;
    c.busy_timeout(busy_timeout).map_err(map_err)?;
    if !read_only {
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(map_err)?;
    }
    c.set_prepared_statement_cache_capacity(32);
    Ok(c)
}

/// A driver error as a [`StoreError`]: a lock, I/O or permission problem is `Unavailable`;
/// anything else, a constraint no call site expected included, is `Internal` (the call sites
/// that expect one map it to a typed [`super::Conflict`] first).
pub(super) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed => StoreError::Unavailable(e.into()),
            _ => StoreError::Internal(e.into()),
        },
        _ => StoreError::Internal(e.into()),
    }
}
