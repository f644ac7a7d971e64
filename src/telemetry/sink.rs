//! The log's way out: lines collect in a shared buffer (the `tracing` events and the access log
//! write into it) that is handed in bulk to a writer thread owning stderr, `tracing-appender`'s
//! non-blocking writer in lossy mode.
//!
//! A request only ever copies its line into memory under the buffer's lock; it never waits for
//! stderr. When stderr does not drain (a stalled log collector, a full pipe), the writer thread
//! blocks, its queue of at most [`QUEUE`] chunks fills, and further output is dropped: the lines
//! lost are counted, by the sink itself ([`DroppedCount`], read at each scrape by
//! `chatsdk_auth_log_lines_dropped_total`, [`DroppedLines`]), and the service keeps answering.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, Opts};
use tracing::{Level, Metadata};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

/// Buffered bytes that trigger a hand-over to the writer thread.
pub(crate) const FLUSH_BYTES: usize = 32 * 1024;

/// Chunks waiting for the writer thread; beyond this, output is dropped. A chunk is at most
/// about [`FLUSH_BYTES`] (a `WARN` line or a periodic flush hands over less), so a stalled
/// stderr holds at most about 2 MiB of log in memory.
const QUEUE: usize = 64;

/// Log lines a sink dropped because its writer thread's queue was full, since it was made;
/// shared by the sink and the metric that reads it. A default one counts for no sink (zero).
#[derive(Clone, Default, Debug)]
pub struct DroppedCount(Arc<AtomicU64>);

impl DroppedCount {
    /// Lines dropped so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The shared buffer in front of the writer thread, and its count of dropped lines.
#[derive(Clone)]
pub(crate) struct LogSink {
    inner: Arc<Mutex<Inner>>,
    dropped: DroppedCount,
}

struct Inner {
    buf: Vec<u8>,
    out: NonBlocking,
    /// `out`'s count of chunks it could not queue; only this sink writes to `out`, under the
    /// lock, so a change across one write is that write's.
    refused: ErrorCounter,
    /// The lines of the refused chunks.
    dropped: DroppedCount,
}

impl LogSink {
    /// A sink whose writer thread writes to `out`. Hold the guard for the life of the process:
    /// dropping it writes out what is queued (waiting about a second at most).
    pub(crate) fn new<W: Write + Send + 'static>(out: W) -> (LogSink, WorkerGuard) {
        let (out, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(QUEUE)
            .thread_name("log-writer")
            .finish(out);
        let refused = out.error_counter();
        let dropped = DroppedCount::default();
        let inner = Inner {
            buf: Vec::new(),
            out,
            refused,
            dropped: dropped.clone(),
        };
        let sink = LogSink {
            inner: Arc::new(Mutex::new(inner)),
            dropped,
        };
        (sink, guard)
    }

    /// This sink's count of dropped lines.
    pub(crate) fn dropped(&self) -> DroppedCount {
        self.dropped.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst a partial line; keep logging.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends whole lines written by `fill`, handing them over when the buffer is full.
    pub(crate) fn append(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = self.lock();
        fill(&mut inner.buf);
        if inner.buf.len() >= FLUSH_BYTES {
            inner.hand_over();
        }
    }

    /// Hands everything buffered to the writer thread.
    pub(crate) fn flush(&self) {
        self.lock().hand_over();
    }

    /// The bytes waiting in the buffer.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.lock().buf.len()
    }
}

impl Inner {
    /// Queues the buffer for the writer thread without waiting; when the queue is full the
    /// lines are dropped and counted.
    fn hand_over(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let before = self.refused.dropped_lines();
        // Lossy mode: never blocks and never fails; a refusal shows in the counter.
        let _ = self.out.write_all(&self.buf);
        if self.refused.dropped_lines() != before {
            let lines = self.buf.iter().filter(|&&b| b == b'\n').count();
            self.dropped.0.fetch_add(lines as u64, Ordering::Relaxed);
        }
        self.buf.clear();
    }
}

/// One event's writer: appends to the buffer, handing it over when it is full or the line is
/// urgent.
pub(crate) struct SinkWriter<'a> {
    sink: &'a LogSink,
    urgent: bool,
}

impl Write for SinkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.sink.lock();
        inner.buf.extend_from_slice(data);
        if self.urgent || inner.buf.len() >= FLUSH_BYTES {
            inner.hand_over();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
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
            // WARN and ERROR go out at once: they may be the last lines before a crash.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// `<namespace>_log_lines_dropped_total`: a sink's count of dropped log lines, read at each
/// scrape (the count is the sink's; the registry only reads it).
pub(crate) struct DroppedLines {
    opts: Opts,
    template: IntCounter,
    count: DroppedCount,
}

impl DroppedLines {
    pub(crate) fn new(
        namespace: &str,
        count: DroppedCount,
    ) -> Result<DroppedLines, prometheus::Error> {
        let opts = Opts::new(
            "log_lines_dropped_total",
            "Log and access-log lines dropped because stderr did not take them in time (a stalled log reader).",
        )
        .namespace(namespace);
        let template = IntCounter::with_opts(opts.clone())?;
        Ok(DroppedLines {
            opts,
            template,
            count,
        })
    }
}

impl Collector for DroppedLines {
    fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // A fresh counter per scrape, so that concurrent scrapes never add twice.
        match IntCounter::with_opts(self.opts.clone()) {
            Ok(c) => {
                c.inc_by(self.count.get());
                c.collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that never returns, as stderr does when nobody reads the pipe.
    struct Stalled;

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            loop {
                std::thread::park();
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_never_blocks_and_drops_are_counted_in_lines() {
        let (sink, guard) = LogSink::new(Stalled);
        // One chunk is taken by the stalled writer, QUEUE wait; the rest are dropped.
        for _ in 0..(QUEUE + 10) {
            sink.append(|b| b.extend_from_slice(b"one\ntwo\n"));
            sink.flush();
        }
        let dropped = sink.dropped().get();
        assert!(dropped >= 2 * 9, "{dropped}");
        assert_eq!(dropped % 2, 0, "counted in lines, not chunks: {dropped}");
        // The guard's drop gives up on the stalled thread after a bounded wait.
        std::mem::forget(guard);
    }
}
