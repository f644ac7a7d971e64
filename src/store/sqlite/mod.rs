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
        let existed = path.exists();
        let writer = open_conn(path, busy_timeout, false)?;
        if !existed {
            // The database holds key hashes and user profiles: owner-only, like the secrets.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
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
