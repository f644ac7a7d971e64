//! Initialises tracing: an `EnvFilter` from `log.level` and `pretty` or `json` output on stderr.
//!
//! One access-log line per request is the service's busiest output, so lines are not written
//! one syscall each: they collect in a buffer that is written to stderr when it passes
//! [`FLUSH_BYTES`], at least every [`FLUSH_INTERVAL`] (a task on the serving runtime), at once for
//! `WARN` and `ERROR` lines, and when the [`LogGuard`] returned by [`init`] is dropped at exit.
//! Colours are used only when stderr is a terminal (never in the access log, see
//! [`crate::access_log`], which shares the buffer).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::access_log::{self, AccessLog};
use crate::config::{LogConfig, LogFormat};

/// Buffered bytes that trigger a write.
const FLUSH_BYTES: usize = 32 * 1024;
/// The longest an `INFO` line waits in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Installs the global subscriber; a second call (tests) is a no-op. Keep the guard alive for
/// the life of the process: dropping it writes out whatever is still buffered.
#[must_use = "dropping the guard flushes the log; hold it until the process exits"]
pub fn init(log: &LogConfig) -> LogGuard {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let sink = StderrSink::default();
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
            let format = match log.format {
                LogFormat::Json => access_log::Format::Json,
                LogFormat::Pretty => access_log::Format::Pretty,
            };
            AccessLog::new(sink.clone(), format)
        } else {
            AccessLog::disabled()
        };
    LogGuard { sink, access }
}

/// Flushes the log buffer when dropped.
pub struct LogGuard {
    sink: StderrSink,
    access: AccessLog,
}

impl LogGuard {
    /// The access log that writes to this log's output (disabled when `log.level` hides it).
    pub fn access_log(&self) -> AccessLog {
        self.access.clone()
    }

    /// Writes buffered lines out every [`FLUSH_INTERVAL`]; spawn it on the runtime that serves.
    /// A task rather than a thread: with one worker the whole process is then one thread, and
    /// glibc's allocator stays on its lock-free single-thread path.
    pub fn periodic_flush(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let sink = self.sink.clone();
        async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                sink.flush();
            }
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.sink.flush();
    }
}

/// The shared buffer in front of stderr.
#[derive(Clone, Default)]
pub struct StderrSink(Arc<Mutex<Vec<u8>>>);

impl StderrSink {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves at worst a partial line; keep logging.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends whole lines written by `fill`, flushing when the buffer is full.
    pub(crate) fn append(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = self.lock();
        fill(&mut buf);
        if buf.len() >= FLUSH_BYTES {
            write_out(&mut buf);
        }
    }

    /// Writes out everything buffered.
    pub fn flush(&self) {
        write_out(&mut self.lock());
    }
}

fn write_out(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        // Nowhere to report a failed write to stderr; drop the lines rather than block.
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

/// One event's writer: appends to the buffer, flushing when it is full or the line is urgent.
pub struct SinkWriter<'a> {
    sink: &'a StderrSink,
    urgent: bool,
}

impl Write for SinkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.sink.lock();
        buf.extend_from_slice(data);
        if self.urgent || buf.len() >= FLUSH_BYTES {
            write_out(&mut buf);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for StderrSink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter {
            sink: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        SinkWriter {
            sink: self,
            // WARN and ERROR are written at once: they may be the last lines before a crash.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}
