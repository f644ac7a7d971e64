//! Operational endpoints: `/healthz` (process up), `/readyz` (store reachable, not draining),
//! `/metrics` (Prometheus text, optionally behind a bearer token), `/openapi.json` (the API
//! contract).

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::http::{json, ApiError, Resp};

pub fn healthz() -> Resp {
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// The OpenAPI 3.1 document of every route, committed as `src/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub fn openapi() -> Resp {
    json(StatusCode::OK, Bytes::from_static(OPENAPI_JSON.as_bytes()))
}

pub async fn readyz(app: &App) -> Resp {
    if !app.is_ready() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(br#"{"status":"draining","error":"The service is shutting down","code":"draining"}"#),
        );
    }
    match app.store.ping().await {
        Ok(()) => json(StatusCode::OK, Bytes::from_static(br#"{"status":"ready"}"#)),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(br#"{"status":"unavailable","error":"The token store is unavailable","code":"store_unavailable"}"#),
            )
        }
    }
}

pub fn metrics(app: &App, headers: &HeaderMap) -> Result<Resp, ApiError> {
    if app.config.metrics.require_token {
        let expected = format!("Bearer {}", app.secrets.metrics_token.expose());
        let given = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(given.ct_eq(expected.as_bytes())) {
            return Err(ApiError::MetricsUnauthorized);
        }
    }
    let mut r = json(StatusCode::OK, app.metrics.encode());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}
