//! Serves HTTP/1.1 on already-bound listeners until the shutdown future resolves, then drains.
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

use crate::app::App;
use crate::router::{self, Listener};

/// The already-bound listeners: the main one, and optional ones of their own for `/metrics`
/// (`metrics.listen`) and `/admin/...` (`admin.listen`).
pub struct Listeners {
    pub main: TcpListener,
    pub metrics: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

/// Runs until `shutdown` resolves and in-flight requests finish (or the drain deadline passes).
/// Returns true when the drain completed within the deadline. The admin API is served on the
/// main listener.
pub async fn serve(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    serve_on(
        Listeners {
            main: listener,
            metrics: metrics_listener,
            admin: None,
        },
        app,
        shutdown,
    )
    .await
}

/// [`serve`] on every listener given.
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

    loop {
        let (stream, which) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => (accepted, main),
            accepted = accept_optional(metrics_listener.as_ref()) => (accepted, Listener::Metrics),
            accepted = accept_optional(admin_listener.as_ref()) => (accepted, Listener::Admin),
        };
        let stream = match stream {
            Ok((s, _peer)) => s,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = service_fn(move |req| router::handle(app.clone(), which, req));
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }

    app.set_not_ready();
    let _ = stop_kicks.send(());
    drop(kicks);
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

async fn accept_optional(
    l: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}
