//! Operational endpoints: `/healthz` (process up), `/readyz` (store readable and writable, not
//! draining), `/metrics` (Prometheus text, behind a bearer token unless served on loopback),
//! `/openapi.json` (the API contract).
//!
//! Readiness asks two things of the store: a read (`ping`) and whether writes work
//! ([`crate::store::Store::writes_work`]: the last write's outcome, and after a failure a probe
//! write that changes nothing), so a full disk or a read-only database takes the instance out of
//! rotation even though reads still answer.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use crate::http::{json, Code, Resp};
use crate::router::context::{Ops, Readiness};

pub(crate) fn healthz() -> Resp {
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// The OpenAPI 3.1 document of every route, committed as `src/openapi.json`.
const OPENAPI_JSON: &str = include_str!("openapi.json");

pub(crate) fn openapi() -> Resp {
    json(StatusCode::OK, Bytes::from_static(OPENAPI_JSON.as_bytes()))
}

pub(crate) async fn readyz(ctx: &Ops<'_>) -> Resp {
    let (status, code, error) = match ctx.status.readiness().await {
        Readiness::Ready => {
            return json(StatusCode::OK, Bytes::from_static(br#"{"status":"ready"}"#))
        }
        Readiness::Draining => ("draining", Code::Draining, "The service is shutting down"),
        Readiness::ReadOnly => ("unavailable", Code::StoreReadOnly, "The token store refuses writes (disk full, read-only or locked); tokens for new or changed users would fail"),
        Readiness::Unavailable => ("unavailable", Code::StoreUnavailable, "The token store is unavailable"),
    };
    let body = serde_json::json!({"status": status, "error": error, "code": code.as_str()});
    json(code.status(), body.to_string())
}

/// The Prometheus text; the router checked the bearer token when `metrics.require_token`.
pub(crate) fn metrics(ctx: &Ops<'_>) -> Resp {
    let mut r = json(StatusCode::OK, ctx.status.metrics.encode());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
