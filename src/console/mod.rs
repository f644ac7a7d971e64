//! The operator console: `GET /admin/` and `GET /admin/console/{file}`, a static page,
//! stylesheet, two JavaScript modules (`console.js`, which imports `segments.js`) and an icon
//! embedded in the binary, served where the admin API is unless `admin.console = false`; and
//! [`harden`], the headers every answer under `/admin/` carries.
//!
//! The page holds no data and needs no token: it is a client of the documented admin API, with
//! the admin token the operator types kept in `sessionStorage` and sent as
//! `Authorization: Bearer` by `fetch` (no cookie, so nothing a forged cross-site request could
//! ride on). The CSP allows nothing but this origin: no inline script or style, no frames.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};
use http_body_util::Full;

use crate::http::{ApiError, Resp};

/// `Content-Security-Policy` of every `/admin/` answer: this origin only, no inline code, no
/// plugins, no framing, no `<base>` rewriting, forms post nowhere else.
pub const CSP: &str = "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'none'";

/// The console's files: name under `/admin/console/`, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console.js"),
    ),
    (
        "segments.js",
        "text/javascript; charset=utf-8",
        include_bytes!("segments.js"),
    ),
    ("icon.svg", "image/svg+xml", include_bytes!("icon.svg")),
];

/// The page itself (`GET /admin/`).
const PAGE: &[u8] = include_bytes!("index.html");

/// Answers `GET /admin/`; 404 when the console is off (`admin.console = false`).
pub fn page(enabled: bool) -> Result<Resp, ApiError> {
    if !enabled {
        return Err(ApiError::NotFound);
    }
    Ok(file("text/html; charset=utf-8", PAGE))
}

/// Answers `GET /admin/console/{file}` for the file the route names; 404 when the console is
/// off or the file is not one of the console's.
pub fn asset(enabled: bool, name: &str) -> Result<Resp, ApiError> {
    if !enabled {
        return Err(ApiError::NotFound);
    }
    let (content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, b)| (*t, *b))
        .ok_or(ApiError::NotFound)?;
    Ok(file(content_type, body))
}

fn file(content_type: &'static str, body: &'static [u8]) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The strict headers of every answer under `/admin/` (the console's files and the admin API's
/// JSON alike, errors included): never cached, framed, sniffed or sent a referrer from.
pub fn harden(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
