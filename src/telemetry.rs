//! Initialises tracing: an `EnvFilter` from `log.level` and `pretty` or `json` output on stderr.
//!
//! One access-log line per request is the service's busiest output, so lines are not written
//! one syscall each: they collect in a buffer that is written to stderr when it passes
//! [`FLUSH_BYTES`], at least every [`FLUSH_INTERVAL`] (a small background thread), at once for
//! `WARN` and `ERROR` lines, and when the [`LogGuard`] returned by [`init`] is dropped at exit.
//! Colours are used only when stderr is a terminal.
//!
//! Without colours, the `pretty` format renders the timestamp and the fields with the
//! [`Rfc3339Utc`] timer and [`PlainFields`]: the same text as tracing-subscriber's defaults
//! (unit tests compare them byte for byte), without going through `format_args!` for every
//! field name, `=` and number.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Level, Metadata};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::EnvFilter;

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
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .with_ansi(ansi)
        .with_target(false)
        .with_timer(Rfc3339Utc);
    let installed = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty if ansi => builder.compact().try_init(),
        LogFormat::Pretty => builder.compact().fmt_fields(PlainFields).try_init(),
    };
    if installed.is_ok() {
        let periodic = sink.clone();
        // Without the thread the process still works; lines then wait for the next flush.
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_INTERVAL);
                periodic.flush();
            });
    }
    LogGuard(sink)
}

/// Flushes the log buffer when dropped.
pub struct LogGuard(StderrSink);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
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

/// tracing-subscriber's default `SystemTime` timer output (`2026-11-26T12:16:11.155174Z`),
/// written from one stack buffer instead of seven `format_args!` numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfc3339Utc;

impl FormatTime for Rfc3339Utc {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = std::time::SystemTime::now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => match rfc3339(d.as_secs(), d.subsec_micros()) {
                Some(buf) => w.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?),
                None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
            },
            // Before 1970: let the default timer handle the sign conventions.
            Err(_) => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` for a time since the epoch; `None` past year 9999.
fn rfc3339(secs: u64, micros: u32) -> Option<[u8; 27]> {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    if year > 9999 {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 6, u64::from(micros));
    Some(b)
}

/// Renders event fields exactly as tracing-subscriber's `DefaultFields` does without colours
/// (`name=value`, separated by spaces, values in `Debug` form), writing names and integers
/// directly. The message, `r#` names, `log.` fields, errors and strings that `Debug` would
/// escape go to `DefaultVisitor` itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Names this visitor writes itself; the rest go to `DefaultVisitor`.
    fn plain(name: &str) -> bool {
        name != "message" && !name.starts_with("r#") && !name.starts_with("log.")
    }

    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut inner = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut inner);
        self.result = tracing_subscriber::field::VisitOutput::finish(inner);
        self.is_empty = false;
    }

    /// ` name=` (the space only after the first field).
    fn name(&mut self, field: &Field) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    fn integer(&mut self, field: &Field, negative: bool, mut v: u64) {
        if self.result.is_err() {
            return;
        }
        let mut buf = [0u8; 21];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if negative {
            i -= 1;
            buf[i] = b'-';
        }
        self.result = self.name(field).and_then(|_| {
            self.writer
                .write_str(std::str::from_utf8(&buf[i..]).map_err(|_| fmt::Error)?)
        });
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if Self::plain(field.name()) {
            self.integer(field, false, value);
        } else {
            self.delegate(|d| d.record_u64(field, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if Self::plain(field.name()) {
            self.integer(field, value < 0, value.unsigned_abs());
        } else {
            self.delegate(|d| d.record_i64(field, value));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // `Debug` for `str` quotes and escapes; printable ASCII other than `"` and `\` is
        // written as is.
        let verbatim = value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if Self::plain(field.name()) && verbatim {
            if self.result.is_err() {
                return;
            }
            self.result = self.name(field).and_then(|_| {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            });
        } else {
            self.delegate(|d| d.record_str(field, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.delegate(|d| d.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if Self::plain(field.name()) {
            if self.result.is_err() {
                return;
            }
            self.result = self
                .name(field)
                .and_then(|_| write!(self.writer, "{value:?}"));
        } else {
            self.delegate(|d| d.record_debug(field, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        let f = |s, us| String::from_utf8(rfc3339(s, us).unwrap().to_vec()).unwrap();
        assert_eq!(f(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(f(951_827_696, 789_012), "2000-02-29T12:34:56.789012Z");
        assert_eq!(f(1_795_693_535, 155_174), "2026-11-26T11:45:35.155174Z");
        assert_eq!(f(4_107_542_400, 1), "2100-03-01T00:00:00.000001Z");
        assert_eq!(f(253_402_300_799, 999_999), "9999-12-31T23:59:59.999999Z");
        assert!(rfc3339(253_402_300_800, 0).is_none());
    }

    #[test]
    fn timer_agrees_with_the_default_timer() {
        for _ in 0..5 {
            let (mut ours, mut theirs) = (String::new(), String::new());
            Rfc3339Utc.format_time(&mut Writer::new(&mut ours)).unwrap();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
            // Same second (retry if it ticked between the two calls).
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("timestamps never agreed to the second");
    }

    /// Renders events through a compact, colourless subscriber with the given field formatter.
    fn render<N>(fields: N) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Capture::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_max_level(Level::TRACE)
            .compact()
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let method = http::Method::POST;
            let id = String::from("0fada345d2861f26");
            tracing::info!(
                method = %method,
                route = "centrifugo_connect",
                status = 200u16,
                latency_us = 586u64,
                request_id = %id,
                "request"
            );
            tracing::warn!(delta = -42i64, ok = true, ratio = 0.5f64, "mixed \"types\"");
            tracing::info!(path = %"data/api-key.txt", quoted = "a \"b\" \\ c", tab = "x\ty", "files");
            tracing::info!(r#type = "raw", debug = ?Some("x"), esc = "\u{1b}[31m", "esc \u{1b} message");
            let err = std::io::Error::other("boom");
            tracing::error!(error = &err as &(dyn std::error::Error + 'static), "failed");
            tracing::debug!(big = u64::MAX, small = i64::MIN, "bounds");
            tracing::info!("only a message");
        });
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn plain_fields_render_like_default_fields() {
        let ours = render(PlainFields);
        let theirs = render(tracing_subscriber::fmt::format::DefaultFields::new());
        assert_eq!(ours, theirs);
        assert!(ours.contains(
            "request method=POST route=\"centrifugo_connect\" status=200 latency_us=586 request_id=0fada345d2861f26"
        ), "{ours}");
    }
}
