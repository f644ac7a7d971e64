//! Initialises tracing: an `EnvFilter` from `log.level` and `pretty` or `json` output on stderr,
//! written by a thread of its own so that logging never blocks a request.
//!
//! Children: [`sink`] (the buffer and the non-blocking writer in front of stderr, and the count
//! of lines dropped when stderr does not drain) and [`access_log`] (the per-request line,
//! written into the same buffer in the same [`LogFormat`]).
//!
//! One access-log line per request is the service's busiest output, so lines are not handed to
//! the writer thread one by one: they collect in a buffer that is handed over when it passes
//! [`sink::FLUSH_BYTES`], at least every [`FLUSH_INTERVAL`] (a task on the serving runtime), at
//! once for `WARN` and `ERROR` lines, and when the [`LogGuard`] returned by [`init`] is dropped
//! at exit (which also waits, about a second at most, for the writer thread to write it out).
//! Colours are used only when stderr is a terminal (never in the access log, see
//! [`access_log`], which shares the buffer).

pub(crate) mod access_log;
mod sink;

use std::io::IsTerminal;
use std::time::Duration;

use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

pub use access_log::AccessLog;
pub use sink::DroppedCount;
pub(crate) use sink::DroppedLines;
use sink::LogSink;

use crate::config::{LogConfig, LogFormat};

/// The longest an `INFO` line waits in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Installs the global subscriber; a second call (tests) is a no-op. Keep the guard alive for
/// the life of the process: dropping it writes out whatever is still buffered.
#[must_use = "dropping the guard flushes the log; hold it until the process exits"]
pub fn init(log: &LogConfig) -> LogGuard {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, writer) = LogSink::new(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // A second call (tests) keeps the subscriber installed first.
    let installed = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // Decided once: the access log is on when its INFO events would pass the filter.
    let access =
        if installed.is_ok() && tracing::enabled!(target: "chatsdk_auth::access", Level::INFO) {
            AccessLog::new(sink.clone(), log.format)
        } else {
            AccessLog::silent(sink.dropped())
        };
    LogGuard {
        sink,
        access,
        _writer: writer,
    }
}

/// Hands the log buffer to the writer thread when dropped, then waits (bounded) for the thread
/// to write it out.
pub struct LogGuard {
    sink: LogSink,
    access: AccessLog,
    /// Dropped after [`Drop::drop`] has handed the buffer over: flushes the writer thread.
    _writer: WorkerGuard,
}

impl LogGuard {
    /// The access log that writes to this log's output (disabled when `log.level` hides it).
    pub fn access_log(&self) -> AccessLog {
        self.access.clone()
    }

    /// Hands buffered lines over every [`FLUSH_INTERVAL`]; spawn it on the runtime that serves.
    /// A task rather than a timer thread: the hand-over is a memory copy under the buffer's
    /// lock, cheap enough for a worker.
    pub fn periodic_flush(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        flush_every_interval(self.sink.clone())
    }
}

/// Hands `sink`'s buffered lines over every [`FLUSH_INTERVAL`], for ever.
async fn flush_every_interval(sink: LogSink) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        sink.flush();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.sink.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On paused time: a line appended after a hand-over waits in the buffer until the next
    /// one, [`FLUSH_INTERVAL`] later, and not a millisecond less.
    #[tokio::test(start_paused = true)]
    async fn a_buffered_line_is_handed_over_at_the_next_flush_interval() {
        let (sink, _guard) = LogSink::new(std::io::sink());
        let flusher = tokio::spawn(flush_every_interval(sink.clone()));
        // The first hand-over is at once (nothing buffered yet).
        tokio::task::yield_now().await;
        sink.append(|b| b.extend_from_slice(b"one line\n"));
        assert_eq!(sink.buffered(), 9);
        tokio::time::advance(FLUSH_INTERVAL - Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        assert_eq!(sink.buffered(), 9, "before the interval");
        tokio::time::advance(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        assert_eq!(sink.buffered(), 0, "at the interval");
        flusher.abort();
    }
}
