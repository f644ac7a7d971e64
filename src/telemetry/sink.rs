//! The shared log buffer in front of stderr: lines collect here and are written out in bulk,
//! at once for `WARN` and `ERROR`.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Buffered bytes that trigger a write.
pub const FLUSH_BYTES: usize = 32 * 1024;

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
