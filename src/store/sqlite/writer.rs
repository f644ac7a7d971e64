//! The SQLite writer thread: the one read-write connection lives on a dedicated OS thread, and
//! every write reaches it as a job on a bounded queue, answered through a oneshot channel.
//!
//! Why a thread of its own: a write can wait for a lock another process holds (the CLI, a backup
//! tool, `sqlite3` with `BEGIN IMMEDIATE`) for up to `storage.busy_timeout_ms`. Run inline, that
//! wait sleeps on a tokio worker, and a few queued writers put every worker to sleep: `/healthz`,
//! `/metrics` and the proxies (pure reads) stall with them. Here a waiting write holds only this
//! thread; the caller's task awaits a channel, so the workers keep serving, and the router's
//! request deadline still fires (dropping the receiver, which the thread then skips).
//!
//! Each job carries its deadline (enqueue time + busy timeout). The writer connection's own busy
//! timeout is zero; this thread retries a statement that found the database locked, with short
//! sleeps, until that deadline, and stops as soon as the caller is gone. So a write waits at most
//! about `storage.busy_timeout_ms` in total however many are queued behind a lock, and a write
//! whose caller was already answered 503 (request deadline) is never applied afterwards.
//! Retrying is safe: a statement refused with `SQLITE_BUSY` in autocommit mode changed nothing.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Writes that may wait for the writer at once; beyond this a write fails at once as
/// `Unavailable` (503) instead of queueing without bound while the store is locked.
const QUEUE: usize = 1024;

/// Sleeps between two attempts on a locked database, as SQLite's own busy handler spaces them
/// (`sqliteDefaultBusyCallback`), the last repeated.
const BACKOFF_MS: [u64; 8] = [1, 2, 5, 10, 15, 20, 25, 50];

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The handle the store keeps: a queue to the writer thread.
pub(super) struct Writer {
    queue: SyncSender<Job>,
    busy_timeout: Duration,
}

impl Writer {
    /// Moves `conn` to a new thread that runs jobs until every handle is dropped.
    pub(super) fn spawn(
        mut conn: Connection,
        busy_timeout: Duration,
    ) -> Result<Writer, StoreError> {
        let (queue, jobs) = mpsc::sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                // Waiting for a lock is this thread's job, with the caller's deadline (above).
                if let Err(e) = conn.busy_timeout(Duration::ZERO) {
                    tracing::warn!(error = %e, "cannot clear the SQLite writer's busy timeout");
                }
                for job in jobs {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Internal(e.into()))?;
        Ok(Writer {
            queue,
            busy_timeout,
        })
    }

    /// Runs `f` on the writer connection and returns its result. `f` may run more than once:
    /// again after each attempt the database refused as locked.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + self.busy_timeout;
        let busy_timeout = self.busy_timeout;
        let job: Job = Box::new(move |conn| {
            let mut attempt = 0;
            let result = loop {
                if tx.is_closed() {
                    // The caller gave up (its request deadline passed): do not write for nobody.
                    return;
                }
                let out = f(conn);
                let pause = Duration::from_millis(BACKOFF_MS[attempt.min(BACKOFF_MS.len() - 1)]);
                match out {
                    Err(StoreError::Unavailable(cause))
                        if is_busy(cause.as_ref()) && Instant::now() + pause < deadline =>
                    {
                        attempt += 1;
                        std::thread::sleep(pause);
                    }
                    Err(StoreError::Unavailable(cause)) if is_busy(cause.as_ref()) => {
                        break Err(StoreError::Unavailable(
                            crate::error_chain::Context::new(
                                format!(
                                    "the database stayed locked by another connection for {} ms (storage.busy_timeout_ms)",
                                    busy_timeout.as_millis()
                                ),
                                cause,
                            )
                            .into(),
                        ));
                    }
                    other => break other,
                }
            };
            let _ = tx.send(result);
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Unavailable(
                    format!("{QUEUE} writes are already waiting for the SQLite writer").into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(StoreError::Internal(
                    "the SQLite writer thread stopped".into(),
                ))
            }
        }
        rx.await
            .map_err(|_| StoreError::Internal("the SQLite writer dropped a write".into()))?
    }
}

/// True when `cause` is SQLite saying the database is locked by another connection.
fn is_busy(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|c| matches!(c, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}
