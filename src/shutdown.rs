//! The shutdown signal: the first SIGTERM or SIGINT, logged by name.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves when SIGTERM or SIGINT arrives. If the handlers cannot be installed (which only
/// happens without a signal-capable runtime), it never resolves and the error is logged.
pub async fn signal_received() {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        "shutdown requested; draining in-flight requests"
    );
}
