//! Serves HTTP/1.1 on already-bound listeners until the shutdown future resolves, then drains.
//!
//! Each listener has its own accept task and its own connection budget
//! (`server.max_connections` for the main one, `admin.max_connections` and
//! `metrics.max_connections` for `admin.listen` and `metrics.listen`), so a flood of the
//! public listener can neither delay the operator's accepts nor take their slots. Past its
//! budget, one more connection is accepted and closed at once, and counted, so that a flood of
//! idle connections can neither exhaust the open-file limit nor make good requests queue. A failed
//! `accept()` (usually `EMFILE`) is counted and followed by a pause that doubles from 1 ms up to
//! 1 s and resets on the next success, as tokio's mini-redis does; only the first failure of a
//! streak and the recovery are logged. Clients that half-close their socket after sending a
//! request still get the answer (`half_close`).
//!
//! A background task re-reads the key ring (file or PostgreSQL) when it changes ([`KEY_RING_POLL`]).
//!
//! Shutdown order: readiness flips to 503, the listeners close (no new connections), every
//! open connection is told to finish its current request and close, and the whole drain is
//! bounded by `server.drain_timeout_seconds`. Keep-alive connections idle at that moment close
//! at once. hyper's header-read timeout applies because a timer is set. The kick delivery loop
//! ([`crate::outbox::run`]) runs beside the listeners and stops with them (a kick it was
//! sending is sent again by the next process after its lease).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::keys::LiveKeys;
use crate::router::{self, Listener};
use crate::store::Store;

/// The already-bound listeners: the main one, and optional ones of their own for `/metrics`
/// (`metrics.listen`) and `/admin/...` (`admin.listen`).
pub struct Listeners {
    pub main: TcpListener,
    pub metrics: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

/// Serves every listener given until `shutdown` resolves and in-flight requests finish (or the
/// drain deadline passes). Returns true when the drain completed within the deadline.
pub async fn serve_on(
    listeners: Listeners,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let Listeners {
        main,
        metrics,
        admin,
    } = listeners;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.server.header_read_timeout)
        .half_close(true)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = Arc::new(GracefulShutdown::new());
    // The kick delivery loop runs beside the listeners and stops when they do.
    let (stop_kicks, kicks_stopped) = tokio::sync::oneshot::channel::<()>();
    let kicks = tokio::spawn(crate::outbox::run(app.clone(), async {
        let _ = kicks_stopped.await;
    }));
    let main_kind = Listener::Main {
        serves_metrics: metrics.is_none(),
        serves_admin: admin.is_none(),
    };
    // Each listener its own accept task and its own budget: a flood on one never delays or
    // starves the others' accepts.
    let mut budgets = vec![(main, main_kind, app.config.server.max_connections)];
    budgets.extend(metrics.map(|l| (l, Listener::Metrics, app.config.metrics.max_connections)));
    budgets.extend(admin.map(|l| (l, Listener::Admin, app.config.admin.max_connections)));
    let total: usize = budgets.iter().map(|(_, _, max)| max).sum();
    app.metrics.connections_max.set(total as i64);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let accepts: Vec<_> = budgets
        .into_iter()
        .map(|(listener, which, max)| {
            tokio::spawn(accept_loop(Accepting {
                listener,
                which,
                slots: Arc::new(Semaphore::new(max)),
                app: app.clone(),
                builder: builder.clone(),
                graceful: graceful.clone(),
                stop: stopped.clone(),
            }))
        })
        .collect();
    drop(stopped);
    let housekeeping = tokio::spawn(app.clone().housekeeping());
    let watcher = tokio::spawn(watch_key_ring(app.clone()));

    shutdown.await;

    app.set_not_ready();
    let _ = stop_kicks.send(());
    drop(kicks);
    housekeeping.abort();
    watcher.abort();
    // Every accept task drops its listener (no new connections) and is done before the drain.
    let _ = stop.send(true);
    for task in accepts {
        let _ = task.await;
    }
    let drain = async {
        match Arc::try_unwrap(graceful) {
            Ok(graceful) => graceful.shutdown().await,
            // Unreachable: the accept tasks, the only other holders, have ended.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = drain => {
            tracing::info!("drained; all connections closed");
            true
        }
        _ = tokio::time::sleep(app.config.server.drain_timeout) => {
            tracing::warn!(timeout_s = app.config.server.drain_timeout.as_secs(), "drain deadline passed; closing remaining connections");
            false
        }
    }
}

/// One listener's accept task and what it needs.
struct Accepting {
    listener: TcpListener,
    which: Listener,
    /// This listener's connection budget.
    slots: Arc<Semaphore>,
    app: Arc<App>,
    builder: Arc<http1::Builder>,
    graceful: Arc<GracefulShutdown>,
    /// Turns true when the server stops.
    stop: tokio::sync::watch::Receiver<bool>,
}

/// Accepts on one listener until told to stop, within its budget: a connection over it is
/// accepted and closed at once (counted), and a failed accept backs off (see the module docs).
async fn accept_loop(a: Accepting) {
    let Accepting {
        listener,
        which,
        slots,
        app,
        builder,
        graceful,
        mut stop,
    } = a;
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                app.metrics.accept_errors.inc();
                let pause = backoff.failed(&e);
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: close at once (dropping the socket) rather than let it wait unserved.
            app.metrics.connections_refused.inc();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::new(app.clone(), slot);
        let peer = peer.ip();
        let app = app.clone();
        let svc = service_fn(move |req| router::handle(app.clone(), which, peer, req));
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// How often the key ring is checked for a rotation (one `stat` call on the ring file, or on
/// PostgreSQL one read of the ring's version).
pub const KEY_RING_POLL: Duration = Duration::from_secs(1);

/// Picks up key rotations made by `chatsdk-auth keys rotate` (here or on another replica
/// sharing the file or the database) without a restart.
async fn watch_key_ring(app: Arc<App>) {
    follow_key_ring(&app.keys, &app.store).await
}

/// Refreshes `keys` every [`KEY_RING_POLL`], the first time at once, for ever.
async fn follow_key_ring(keys: &LiveKeys, store: &Store) {
    let mut tick = tokio::time::interval(KEY_RING_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        keys.refresh(store).await;
    }
}

/// One open connection: holds its slot and the `connections_open` gauge until dropped.
struct OpenConnection {
    app: Arc<App>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(app: Arc<App>, slot: tokio::sync::OwnedSemaphorePermit) -> OpenConnection {
        app.metrics.connections_open.inc();
        OpenConnection { app, _slot: slot }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.app.metrics.connections_open.dec();
    }
}

/// The pause after a failed `accept()`: 1 ms, doubling to [`Backoff::MAX`], reset by a success.
#[derive(Default)]
struct Backoff {
    /// Failures in the current streak.
    failures: u64,
}

impl Backoff {
    const MAX: Duration = Duration::from_secs(1);

    fn failed(&mut self, e: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(error = %e, "accept failed; pausing before each retry (further failures are counted in chatsdk_auth_accept_errors_total, not logged)");
        }
        self.failures += 1;
        let pause = Duration::from_millis(1u64 << (self.failures - 1).min(10));
        pause.min(Self::MAX)
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let e = std::io::Error::from_raw_os_error(24);
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..13).map(|_| b.failed(&e).as_millis() as u64).collect();
        assert_eq!(
            pauses,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000]
        );
        b.succeeded();
        assert_eq!(b.failed(&e), Duration::from_millis(1));
    }

    /// On paused time: a rotation written to the ring file reaches the running ring at the
    /// watcher's next look, one [`KEY_RING_POLL`] after its last, and not before.
    #[tokio::test(start_paused = true)]
    async fn a_rotation_reaches_the_running_ring_at_the_next_poll_and_not_before() {
        let tmp = tempfile::tempdir().unwrap();
        let mut raw = crate::config::RawConfig::default();
        raw.storage.data_dir = tmp.path().to_string_lossy().into_owned();
        let config = raw.validate().unwrap();
        let secrets = crate::secrets::fixture();
        let store = Store::open(&config.store).await.unwrap();
        let keys = Arc::new(LiveKeys::load(&config, &secrets).unwrap());
        let now = crate::now_unix();
        let kids = |k: &LiveKeys| -> Vec<String> {
            k.current()
                .rest
                .all()
                .iter()
                .map(|k| k.kid.clone())
                .collect()
        };
        let first = kids(&keys);
        let (watched, watched_store) = (keys.clone(), Arc::new(store));
        let rotation_store = watched_store.clone();
        let watcher = tokio::spawn(async move { follow_key_ring(&watched, &watched_store).await });
        // The watcher's first look, at once: nothing changed.
        settle().await;
        assert_eq!(kids(&keys), first);
        // The rotation runs on a clock of its own (its file work is on a blocking pool, which
        // would let the paused clock run ahead to the watcher's next tick while it waits).
        let rotated = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(crate::keys::rotate(
                &config,
                &secrets,
                &rotation_store,
                crate::keys::Kind::Rest,
                now,
                &|r| {
                    let e = crate::store::audit_event::SIGNING_KEY_ROTATED;
                    crate::store::AuditEvent::new(now, e, "test", "signing_key", r.kind.label())
                },
            ))
        })
        .join()
        .unwrap()
        .unwrap();
        assert!(!first.contains(&rotated.new_kid));
        // The file changed; the running ring follows at the next look only.
        tokio::time::advance(KEY_RING_POLL - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(kids(&keys), first, "before the next look");
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        assert!(kids(&keys).contains(&rotated.new_kid), "at the next look");
        watcher.abort();
    }

    /// Lets every task that is ready run (the watcher's refresh of a file is one poll).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
}
