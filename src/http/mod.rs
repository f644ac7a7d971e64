//! HTTP plumbing shared by every route: body reading, the error envelope, API-key and shared
//! secret checks, the request fields several routes read, and the method sets of `Allow`.

pub(crate) mod auth;
pub(crate) mod body;
pub mod code;
pub mod error;
pub(crate) mod fields;
pub mod query;

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub use code::{Code, Field};
pub use error::{ApiError, TokenProblem, TokenRefusal};

use crate::error_chain::Context;

/// The response type of every handler.
pub type Resp = Response<Full<Bytes>>;

/// A 200 JSON response from already-serialised bytes.
pub(crate) fn ok(body: impl Into<Bytes>) -> Resp {
    json(StatusCode::OK, body)
}

/// A JSON response with the given status.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Serialises `value` as a 200 JSON response; a serialisation failure is an internal error.
pub(crate) fn ok_json<T: serde::Serialize>(value: &T) -> Result<Resp, ApiError> {
    to_json_vec(value)
        .map(|b| json(StatusCode::OK, b))
        .map_err(|e| ApiError::Internal(Context::new("cannot serialise response", e).into()))
}

/// Serialises `value` as a 201 JSON response (something was created).
pub(crate) fn created_json<T: serde::Serialize>(value: &T) -> Result<Resp, ApiError> {
    let mut r = ok_json(value)?;
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// `serde_json::to_vec` into a buffer that already fits a typical reply (a token response is
/// about 1 KiB, a proxy reply a few hundred bytes), instead of growing from 128 bytes by
/// reallocating and copying.
pub(crate) fn to_json_vec<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// Marks a response as never to be stored by a cache or proxy (it carries tokens).
pub(crate) fn no_store(mut r: Resp) -> Resp {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The client's address: the last entry of `trusted` (a header a reverse proxy in front of the
/// service sets, such as `X-Forwarded-For`) when configured and parseable, else the TCP peer.
pub(crate) fn client_addr(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: Option<&HeaderName>,
) -> IpAddr {
    trusted
        .and_then(|h| headers.get_all(h).iter().next_back())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

/// A set of the methods the route table uses, listed by `Allow` in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(u8);

impl Methods {
    /// Every method a route may take, in the order `Allow` lists them.
    pub const NAMES: [&'static str; 7] =
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    /// The set with `method` added; a method outside [`Methods::NAMES`] is not added (the
    /// router's unit tests check that every method of the route table is one of them).
    pub const fn with(self, method: &str) -> Methods {
        let mut i = 0;
        while i < Self::NAMES.len() {
            if eq(Self::NAMES[i].as_bytes(), method.as_bytes()) {
                return Methods(self.0 | 1 << i);
            }
            i += 1;
        }
        self
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when `method` is in the set.
    pub fn contains(self, method: &str) -> bool {
        let one = Methods::default().with(method);
        !one.is_empty() && self.0 & one.0 != 0
    }
}

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl std::fmt::Display for Methods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (i, name) in Self::NAMES.iter().enumerate() {
            if self.0 & 1 << i != 0 {
                if !first {
                    f.write_str(", ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}
