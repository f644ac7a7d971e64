//! [`ApiError`]: every way a request can fail, mapped once to a status and a JSON envelope.
//!
//! The body is always `{"error": "<sentence a person can act on>", "code": "<machine_code>"}`.
//! Client errors say what to fix; internal errors say only "internal error" and log the cause
//! here, once. No message ever contains a key, a secret or a token.

use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use super::{json, Methods, Resp};
use crate::error_chain::{Cause, Chain};
use crate::limits::Limited;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Invalid API key")]
    InvalidApiKey,
    /// A known key that an operator revoked (`chatsdk-auth api-key revoke`); 401 like
    /// [`ApiError::InvalidApiKey`], and counted by the same failed-auth limit.
    #[error("This API key was revoked on {}; use a current key (an operator creates one with `chatsdk-auth api-key create <name>` or POST /admin/api-keys)", http_date(*revoked_at))]
    ApiKeyRevoked { revoked_at: i64 },
    #[error("Send exactly one X-API-Key header")]
    DuplicateApiKey,
    /// The body is not JSON, or not a JSON object.
    #[error("{0}")]
    InvalidJson(String),
    /// One field is wrong; `code` names it (`invalid_user_id`, ...).
    #[error("{message}")]
    InvalidField { code: &'static str, message: String },
    #[error("Request body is larger than the {0}-byte limit")]
    PayloadTooLarge(usize),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// `POST /introspect` takes an HTML form, as RFC 7662 says.
    #[error("Content-Type must be application/x-www-form-urlencoded, with the token as token=...")]
    FormRequired,
    /// `/verify`: no usable bearer token. `code` says which (`invalid_token`, `token_expired`,
    /// `wrong_token_type`); the message also goes into `WWW-Authenticate` (RFC 6750), so it
    /// never contains a double quote or a backslash.
    #[error("{message}")]
    InvalidToken {
        code: &'static str,
        message: &'static str,
    },
    /// `/verify`: a valid token the service refuses (`user_disabled`, `token_revoked`).
    #[error("{message}")]
    TokenRefused {
        code: &'static str,
        message: &'static str,
    },
    #[error("No such endpoint; see the API section of the README")]
    NotFound,
    /// The path is served, not with this method; `Allow` lists the methods it takes.
    #[error("Method not allowed on this endpoint; use {0}")]
    MethodNotAllowed(Methods),
    #[error("This user is disabled; enable it with `chatsdk-auth user enable <id>` to issue tokens again")]
    UserDisabled,
    /// No user with this id (`POST /tokens/subscription`, the admin API): a user exists once
    /// `POST /tokens` was called for it.
    #[error("No user with id \"{0}\"; POST /tokens creates a user")]
    UserUnknown(String),
    /// The channel rules do not give the user this channel (the first refused one).
    #[error(
        "The channel rules (centrifugo.channel_rules) do not allow channel \"{0}\" for this user"
    )]
    ChannelForbidden(String),
    #[error("Missing or wrong proxy secret header; configure Centrifugo's http.static_headers with the sidecar's proxy secret")]
    ProxyUnauthorized,
    #[error("Missing or wrong bearer token for /metrics")]
    MetricsUnauthorized,
    #[error("Missing or wrong admin token: send Authorization: Bearer <admin token> (admin-token.key in the data directory, or CHATSDK_AUTH_SECRETS__ADMIN_TOKEN)")]
    AdminUnauthorized,
    /// No active API key with this name (admin API).
    #[error("No active API key named \"{0}\"")]
    UnknownApiKey(String),
    /// The request conflicts with what exists (a taken API-key name).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("The token store is unavailable; retry shortly")]
    StoreUnavailable(#[source] StoreError),
    /// The client did not finish sending its body within `server.request_timeout_seconds`.
    #[error(
        "The request body did not arrive within the request timeout; send the whole request again"
    )]
    RequestTimeout,
    /// A rate limit (`[limits]`) refused the request; `Retry-After` says when to try again.
    #[error("Too many requests; retry after the number of seconds in the Retry-After header")]
    RateLimited(Limited),
    /// The service did not finish within `server.request_timeout_seconds`.
    #[error("The request took too long and was abandoned; retry")]
    Timeout,
    #[error("Internal error")]
    Internal(#[source] Cause),
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidApiKey
            | ApiError::ApiKeyRevoked { .. }
            | ApiError::ProxyUnauthorized
            | ApiError::MetricsUnauthorized
            | ApiError::AdminUnauthorized
            | ApiError::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            ApiError::TokenRefused { .. } => StatusCode::FORBIDDEN,
            ApiError::UserUnknown(_) | ApiError::UnknownApiKey(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::DuplicateApiKey => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::FormRequired => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UserDisabled | ApiError::ChannelForbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StoreUnavailable(_) | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::ApiKeyRevoked { .. } => "api_key_revoked",
            ApiError::DuplicateApiKey => "duplicate_api_key",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { code, .. } => code,
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType | ApiError::FormRequired => "unsupported_media_type",
            ApiError::InvalidToken { code, .. } | ApiError::TokenRefused { code, .. } => code,
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::UserDisabled => "user_disabled",
            ApiError::UserUnknown(_) => "user_unknown",
            ApiError::ChannelForbidden(_) => "channel_forbidden",
            ApiError::ProxyUnauthorized => "invalid_proxy_secret",
            ApiError::MetricsUnauthorized => "invalid_metrics_token",
            ApiError::AdminUnauthorized => "invalid_admin_token",
            ApiError::UnknownApiKey(_) => "api_key_not_found",
            ApiError::Conflict { code, .. } => code,
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The response; internal causes are logged here and never sent.
    pub fn into_response(self) -> Resp {
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %Chain(cause.as_ref()), "internal error")
            }
            ApiError::StoreUnavailable(cause) => {
                tracing::warn!(error = %Chain(cause), "store unavailable")
            }
            _ => {}
        }
        let message = self.to_string();
        let body = serde_json::to_vec(&Envelope {
            error: &message,
            code: self.code(),
        })
        .unwrap_or_else(|_| br#"{"error":"Internal error","code":"internal_error"}"#.to_vec());
        let mut resp = json(self.status(), body);
        if let ApiError::PayloadTooLarge(_) | ApiError::RequestTimeout = self {
            // The rest of the body is not read: tell keep-alive clients not to reuse the socket.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::RateLimited(limited) = &self {
            let mut secs = itoa::Buffer::new();
            if let Ok(v) = HeaderValue::from_str(secs.format(limited.retry_after_secs())) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let ApiError::InvalidToken { message, .. } = self {
            // RFC 6750 section 3: the scheme, the error and a human description.
            let v = format!("Bearer error=\"invalid_token\", error_description=\"{message}\"");
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if matches!(
            self,
            ApiError::InvalidToken { .. } | ApiError::TokenRefused { .. }
        ) {
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            if let Ok(v) = HeaderValue::from_str(&allow.to_string()) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        resp
    }
}

/// Unix seconds as an HTTP date (`Sun, 06 Dec 2026 15:12:23 GMT`), clamped to the years
/// 1970 to 9999 that the format (and `httpdate`, which panics beyond) can show.
fn http_date(unix: i64) -> String {
    const LAST: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = u64::try_from(unix).unwrap_or(0).min(LAST);
    let since = std::time::Duration::from_secs(secs);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + since)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::StoreUnavailable(e)
        } else {
            ApiError::Internal(Box::new(e))
        }
    }
}
