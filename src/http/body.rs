//! Reads a request body as JSON bytes: content type, size limit, then collection.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::ApiError;

/// Whether a request's body has been read to the end. The router holds one per request and
/// reads it when the request deadline passes: a body still arriving then is the client's
/// delay (408 `request_timeout`), anything later is the service's (503 `timeout`).
#[derive(Debug, Default)]
pub struct BodyProgress(AtomicBool);

impl BodyProgress {
    /// True once the body was read to its end (or refused for its size or type).
    pub fn complete(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn finish(&self) {
        self.0.store(true, Ordering::Relaxed);
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
        progress.finish();
        return Err(ApiError::UnsupportedMediaType);
    }
    read_limited(headers, body, limit, progress).await
}

/// Collects at most `limit` bytes of body.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    progress: &BodyProgress,
) -> Result<Bytes, ApiError> {
    let result = collect(headers, body, limit).await;
    progress.finish();
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
