//! Reads a request body the way its route declares (a JSON object, an optional JSON object, a
//! form for `/introspect`, raw bytes for Centrifugo's proxies): content type, size limit, then
//! collection.

use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::ApiError;

/// How far a request's body has been read. The router holds one per request and reads it:
/// - when the request deadline passes: a body still arriving then is the client's delay (408
///   `request_timeout`), anything later is the service's (503 `timeout`);
/// - when it answers: a body that was not read to its end (an early 401, a refused type or
///   size, a timeout) leaves unread bytes on the connection, so the answer says
///   `Connection: close` and the connection is not reused.
#[derive(Debug, Default)]
pub struct BodyProgress(AtomicU8);

const PENDING: u8 = 0;
const REFUSED: u8 = 1;
const READ: u8 = 2;

impl BodyProgress {
    /// True once the body was read to its end (or refused for its size or type).
    pub fn complete(&self) -> bool {
        self.0.load(Ordering::Relaxed) != PENDING
    }

    /// True only when the body was read to its end.
    pub fn read_to_end(&self) -> bool {
        self.0.load(Ordering::Relaxed) == READ
    }

    fn finish(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }
}

/// True when the request says `application/json` (parameters such as `charset` allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Collects the body, refusing a wrong content type (415) or more than `limit` bytes (413).
pub async fn read_json_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    progress: &BodyProgress,
) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        progress.finish(REFUSED);
        return Err(ApiError::UnsupportedMediaType);
    }
    read_limited(headers, body, limit, progress).await
}

/// True when the request says `application/x-www-form-urlencoded`.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Collects a form body, refusing another content type (415) or more than `limit` bytes (413).
pub async fn read_form_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    progress: &BodyProgress,
) -> Result<Bytes, ApiError> {
    if !is_form(headers) {
        progress.finish(REFUSED);
        return Err(ApiError::FormRequired);
    }
    read_limited(headers, body, limit, progress).await
}

/// Collects a body that may be empty (or only whitespace, read as empty); a non-empty one must
/// say `application/json` (415 otherwise) and be at most `limit` bytes (413).
pub async fn read_optional_json(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    progress: &BodyProgress,
) -> Result<Bytes, ApiError> {
    let bytes = read_limited(headers, body, limit, progress).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::new());
    }
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(bytes)
}

/// Collects at most `limit` bytes of body.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    progress: &BodyProgress,
) -> Result<Bytes, ApiError> {
    let result = collect(headers, body, limit).await;
    progress.finish(if result.is_ok() { READ } else { REFUSED });
    result
}

async fn collect(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(_) => Err(ApiError::InvalidJson(
            "The request body could not be read completely; send it again".into(),
        )),
    }
}

/// Decodes a request body that must be a JSON object. `shape` completes the sentence "Request
/// body must be ..." (for example `a JSON object like {"userId": "user-123"}`), so each route
/// says what it expects; a syntax error names its line and column instead.
pub fn decode_object<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    shape: &str,
) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON array; only an object is a request.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidJson(format!(
            "Request body must be {shape}"
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            // Valid JSON of the wrong shape (a wrong type, a duplicated field).
            ApiError::InvalidJson(format!(
                "Request body must be {shape} ({})",
                e.to_string()
                    .split(" at line")
                    .next()
                    .unwrap_or("wrong shape")
            ))
        } else {
            ApiError::InvalidJson(format!(
                "Request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        }
    })
}
