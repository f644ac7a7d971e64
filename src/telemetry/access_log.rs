//! The access log: one line per request, formatted straight into the log buffer ([`super::sink`]).
//!
//! It is the service's busiest output, so it does not go through `tracing`'s generic event
//! machinery (field visitors, `fmt::Write` plumbing, a timestamp formatted from scratch per
//! line): that cost about 3 µs a request on the connect proxy, some 10% of the whole request.
//! Here the fields are known, the integers go through `itoa` and the date part of the
//! timestamp is formatted once a second. The lines are byte for byte the shape `tracing` prints
//! for every other event, in both formats:
//!
//! ```text
//! 2026-11-26T14:27:22.991687Z  INFO request method=GET route="healthz" status=200 latency_us=13 request_id=b5c9
//! {"timestamp":"2026-11-26T14:27:23.813348Z","level":"INFO","message":"request","method":"GET","route":"healthz","status":200,"latency_us":24,"request_id":"a96e"}
//! ```
//!
//! `log.level` still decides: the log is on when an `INFO` event of target
//! `chatsdk_auth::access` would be, checked once when [`super::init`] hands it out.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use super::sink::{DroppedCount, LogSink};
use crate::config::LogFormat;

/// One request, as the access log records it. Every string is from a closed set or has been
/// checked to be printable without escaping (methods are HTTP tokens, request ids are
/// `[A-Za-z0-9._-]`), so nothing a caller sends can break a line.
pub struct Entry<'a> {
    pub method: &'a str,
    pub route: &'static str,
    pub status: u16,
    pub latency_us: u64,
    pub request_id: &'a str,
}

/// Where access-log lines go, if anywhere, and the count of lines their output dropped (one
/// output for the access log and the tracing log: the count is the log's, on or off).
#[derive(Clone, Default)]
pub struct AccessLog {
    out: Option<(LogSink, LogFormat)>,
    dropped: DroppedCount,
}

impl AccessLog {
    /// An access log that writes nothing, on no output (tests, commands other than `serve`).
    pub fn disabled() -> AccessLog {
        AccessLog::default()
    }

    /// Writes nothing, but reports the drops of the log's output `sink`.
    pub(super) fn silent(sink: DroppedCount) -> AccessLog {
        AccessLog {
            out: None,
            dropped: sink,
        }
    }

    pub(super) fn new(sink: LogSink, format: LogFormat) -> AccessLog {
        AccessLog {
            dropped: sink.dropped(),
            out: Some((sink, format)),
        }
    }

    /// The count of lines the log's output dropped.
    pub fn dropped_lines(&self) -> DroppedCount {
        self.dropped.clone()
    }

    /// Appends one line for `e`.
    pub(crate) fn record(&self, e: &Entry<'_>) {
        let Some((sink, format)) = &self.out else {
            return;
        };
        let mut ts = [0u8; TIMESTAMP_LEN];
        timestamp(SystemTime::now(), &mut ts);
        sink.append(|buf| format_line(buf, *format, &ts, e));
    }
}

fn format_line(buf: &mut Vec<u8>, format: LogFormat, ts: &[u8; TIMESTAMP_LEN], e: &Entry<'_>) {
    let (mut status, mut latency) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (status, latency) = (
        status.format(e.status).as_bytes(),
        latency.format(e.latency_us).as_bytes(),
    );
    let (method, route, id) = (
        e.method.as_bytes(),
        e.route.as_bytes(),
        e.request_id.as_bytes(),
    );
    let parts: &[&[u8]] = match format {
        LogFormat::Pretty => &[
            ts,
            b"  INFO request method=",
            method,
            b" route=\"",
            route,
            b"\" status=",
            status,
            b" latency_us=",
            latency,
            b" request_id=",
            id,
            b"\n",
        ],
        LogFormat::Json => &[
            b"{\"timestamp\":\"",
            ts,
            b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":\"",
            method,
            b"\",\"route\":\"",
            route,
            b"\",\"status\":",
            status,
            b",\"latency_us\":",
            latency,
            b",\"request_id\":\"",
            id,
            b"\"}\n",
        ],
    };
    for p in parts {
        buf.extend_from_slice(p);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as `tracing-subscriber` prints it.
const TIMESTAMP_LEN: usize = 27;

thread_local! {
    /// The second last formatted on this thread and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

fn timestamp(now: SystemTime, out: &mut [u8; TIMESTAMP_LEN]) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        text = date_time(secs);
        SECOND.set((secs, text));
    }
    out[..19].copy_from_slice(&text);
    out[19] = b'.';
    let mut micros = d.subsec_micros();
    for i in (20..26).rev() {
        out[i] = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out[26] = b'Z';
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for Unix seconds, by Howard Hinnant's `civil_from_days`.
fn date_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut t = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            t[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3_600);
    put(14, 2, rem % 3_600 / 60);
    put(17, 2, rem % 60);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ts(secs: u64, micros: u32) -> String {
        let mut out = [0u8; TIMESTAMP_LEN];
        timestamp(
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
            &mut out,
        );
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn timestamps_match_known_instants() {
        // Reference values from `date -u -d @N +%Y-%m-%dT%H:%M:%S`.
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(ts(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(ts(1_709_251_199, 999_999), "2024-02-29T23:59:59.999999Z");
        assert_eq!(ts(1_795_702_754, 123_456), "2026-11-26T14:19:14.123456Z");
        assert_eq!(ts(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
        assert_eq!(ts(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
        // The per-second cache does not leak one second's text into the next.
        assert_eq!(ts(1_795_702_755, 0), "2026-11-26T14:19:15.000000Z");
    }

    #[test]
    fn every_day_for_four_centuries_agrees_with_httpdate() {
        // httpdate (hyper's date formatter) is an independent implementation of the calendar.
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for day in 0..(400 * 366) {
            let secs = day * 86_400 + 3_723;
            let ours = String::from_utf8(date_time(secs).to_vec()).unwrap();
            let theirs = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            // "Thu, 01 Jan 1970 01:02:03 GMT"
            let (d, m, y) = (&theirs[5..7], &theirs[8..11], &theirs[12..16]);
            let month = months.iter().position(|x| *x == m).unwrap() + 1;
            assert_eq!(ours, format!("{y}-{month:02}-{d}T01:02:03"), "day {day}");
        }
    }

    #[test]
    fn lines_have_tracing_shapes() {
        let e = Entry {
            method: "POST",
            route: "tokens",
            status: 200,
            latency_us: 57,
            request_id: "req-1",
        };
        let ts = *b"2026-11-26T14:27:22.991687Z";
        let mut pretty = Vec::new();
        format_line(&mut pretty, LogFormat::Pretty, &ts, &e);
        assert_eq!(
            String::from_utf8(pretty).unwrap(),
            "2026-11-26T14:27:22.991687Z  INFO request method=POST route=\"tokens\" status=200 latency_us=57 request_id=req-1\n"
        );
        let mut json = Vec::new();
        format_line(&mut json, LogFormat::Json, &ts, &e);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"timestamp": "2026-11-26T14:27:22.991687Z", "level": "INFO",
                "message": "request", "method": "POST", "route": "tokens", "status": 200,
                "latency_us": 57, "request_id": "req-1"})
        );
        assert!(json.ends_with(b"}\n"));
    }
}
