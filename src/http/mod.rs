//! HTTP plumbing shared by every route: body reading, the error envelope, API-key auth.

pub mod auth;
pub mod body;
pub mod error;

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub use error::ApiError;

use crate::error_chain::Context;

/// The response type of every handler.
pub type Resp = Response<Full<Bytes>>;

/// A 200 JSON response from already-serialised bytes.
pub fn ok(body: impl Into<Bytes>) -> Resp {
    json(StatusCode::OK, body)
}

/// A JSON response with the given status.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Serialises `value` as a 200 JSON response; a serialisation failure is an internal error.
pub fn ok_json<T: serde::Serialize>(value: &T) -> Result<Resp, ApiError> {
    to_json_vec(value)
        .map(|b| json(StatusCode::OK, b))
        .map_err(|e| ApiError::Internal(Context::new("cannot serialise response", e).into()))
}

/// Serialises `value` as a 201 JSON response (something was created).
pub fn created_json<T: serde::Serialize>(value: &T) -> Result<Resp, ApiError> {
    let mut r = ok_json(value)?;
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// `serde_json::to_vec` into a buffer that already fits a typical reply (a token response is
/// about 1 KiB, a proxy reply a few hundred bytes), instead of growing from 128 bytes by
/// reallocating and copying.
pub fn to_json_vec<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// Marks a response as never to be stored by a cache or proxy (it carries tokens).
pub fn no_store(mut r: Resp) -> Resp {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The client's address: the last entry of `trusted` (a header a reverse proxy in front of the
/// service sets, such as `X-Forwarded-For`) when configured and parseable, else the TCP peer.
pub fn client_addr(headers: &HeaderMap, peer: IpAddr, trusted: Option<&HeaderName>) -> IpAddr {
    trusted
        .and_then(|h| headers.get_all(h).iter().next_back())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}
