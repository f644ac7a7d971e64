//! Serves HTTP/1.1 on already-bound listeners until the shutdown future resolves, then drains.
//!
//! At most `server.max_connections` client connections are open at once (both listeners
//! together); one more is accepted and closed at once, and counted, so that a flood of idle
//! connections can neither exhaust the open-file limit nor make good requests queue. A failed
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
use crate::router::{self, Listener};

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
        main: listener,
        metrics: metrics_listener,
        admin: admin_listener,
    } = listeners;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.server.header_read_timeout)
        .half_close(true)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    // The kick delivery loop runs beside the listeners and stops when they do.
    let (stop_kicks, kicks_stopped) = tokio::sync::oneshot::channel::<()>();
    let kicks = tokio::spawn(crate::outbox::run(app.clone(), async {
        let _ = kicks_stopped.await;
    }));
    let main = Listener::Main {
        serves_metrics: metrics_listener.is_none(),
        serves_admin: admin_listener.is_none(),
    };
    tokio::pin!(shutdown);
    let max = app.config.server.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    app.metrics.connections_max.set(max as i64);
    let mut backoff = Backoff::default();
    let housekeeping = tokio::spawn(app.clone().housekeeping());
    let watcher = tokio::spawn(watch_key_ring(app.clone()));

    loop {
        let (stream, which) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => (accepted, main),
            accepted = accept_optional(metrics_listener.as_ref()) => (accepted, Listener::Metrics),
            accepted = accept_optional(admin_listener.as_ref()) => (accepted, Listener::Admin),
        };
        let (stream, peer) = match stream {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                app.metrics.accept_errors.inc();
                let pause = backoff.failed(&e);
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
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
        let app = app.clone();
        let open = OpenConnection::new(app.clone(), slot);
        let peer = peer.ip();
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

    app.set_not_ready();
    let _ = stop_kicks.send(());
    drop(kicks);
    housekeeping.abort();
    watcher.abort();
    drop(listener);
    drop(metrics_listener);
    drop(admin_listener);
    tokio::select! {
        _ = graceful.shutdown() => {
            tracing::info!("drained; all connections closed");
            true
        }
        _ = tokio::time::sleep(app.config.server.drain_timeout) => {
            tracing::warn!(timeout_s = app.config.server.drain_timeout.as_secs(), "drain deadline passed; closing remaining connections");
            false
        }
    }
}

/// How often the key ring is checked for a rotation (one `stat` call on the ring file, or on
/// PostgreSQL one read of the ring's version).
pub const KEY_RING_POLL: Duration = Duration::from_secs(1);

/// Picks up key rotations made by `chatsdk-auth keys rotate` (here or on another replica
/// sharing the file or the database) without a restart.
async fn watch_key_ring(app: Arc<App>) {
    let mut tick = tokio::time::interval(KEY_RING_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.keys.refresh(&app.store).await;
    }
}

async fn accept_optional(
    l: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
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
}
