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
//!
//! A job that panics (a bug in a statement's code) does not take the thread with it: the panic
//! is caught around that job, its open transaction rolled back, and its caller answered
//! `Internal` (500); the writes after it proceed and readiness is untouched, since the store
//! still takes writes. Should the thread be gone all the same, every write fails as
//! `Unavailable`, which turns `/readyz` red (see `Store::writes_work`).

use std::panic::AssertUnwindSafe;
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
                let out = match std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))) {
                    Ok(out) => out,
                    Err(panic) => {
                        // Whatever the job left open is undone, not committed by the next one.
                        if !conn.is_autocommit() {
                            let _ = conn.execute_batch("ROLLBACK");
                        }
                        break Err(StoreError::Internal(
                            format!("a SQLite write panicked: {}", panic_message(&*panic)).into(),
                        ));
                    }
                };
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
                return Err(StoreError::Unavailable(
                    "the SQLite writer thread stopped".into(),
                ))
            }
        }
        // Every job answers, a panicking one included: no answer means the thread is gone.
        rx.await
            .map_err(|_| StoreError::Unavailable("the SQLite writer thread stopped".into()))?
    }
}

/// The text a panic was raised with, when it was a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// True when `cause` is SQLite saying the database is locked by another connection.
fn is_busy(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|c| matches!(c, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that panics (a bug in a statement's code) answers its caller with an error, and
    /// the writer keeps serving the writes after it.
    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_writer_survives() {
        let conn = Connection::open_in_memory().unwrap();
        let w = Writer::spawn(conn, Duration::from_millis(50)).unwrap();
        w.run(|c| {
            c.execute_batch("CREATE TABLE t (x)")
                .map_err(crate::store::sqlite::map_err)
        })
        .await
        .unwrap();
        let panicked: Result<(), StoreError> = w
            .run(|c| {
                c.execute_batch("BEGIN; INSERT INTO t VALUES (1)").unwrap();
                panic!("a bug in a write");
            })
            .await;
        assert!(
            matches!(&panicked, Err(StoreError::Internal(c)) if c.to_string().contains("a bug in a write")),
            "{panicked:?}"
        );
        let n: i64 = w
            .run(|c| {
                c.execute_batch("INSERT INTO t VALUES (2)")
                    .and_then(|_| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
                    .map_err(crate::store::sqlite::map_err)
            })
            .await
            .unwrap();
        // The panicked job's open transaction was rolled back, not committed with the next.
        assert_eq!(n, 1);
    }
}
