//! [`ApiError`]: every way a request can fail, mapped once to a status and a JSON envelope.
//!
//! The body is always `{"error": "<sentence a person can act on>", "code": "<machine_code>"}`.
//! Client errors say what to fix; internal errors say only "internal error" and log the cause
//! here, once. No message ever contains a key, a secret or a token.

use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use super::code::{Code, Field};
use super::{json, Methods, Resp};
use crate::error_chain::{Cause, Chain};
use crate::keys::Refusal;
use crate::limits::Limited;
use crate::store::{Conflict, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Invalid API key")]
    InvalidApiKey,
    /// A known key that an operator revoked (`chatsdk-auth api-key revoke`); 401 like
    /// [`ApiError::InvalidApiKey`], and counted by the same failed-auth limit.
    #[error("This API key was revoked on {}; use a current key (an operator creates one with `chatsdk-auth api-key create <name>` or POST /admin/api-keys)", http_date(*revoked_at))]
    ApiKeyRevoked { revoked_at: i64 },
    /// A key whose prefix names another application (`app.id`); 401 like
    /// [`ApiError::InvalidApiKey`], and counted by the same failed-auth limit.
    #[error("This API key belongs to application \"{key_app}\", but this service is application \"{app}\" (app.id); send a key of \"{app}\", or call the service of \"{key_app}\"")]
    ApiKeyWrongApplication { key_app: String, app: String },
    #[error("Send exactly one X-API-Key header")]
    DuplicateApiKey,
    /// The body is not JSON, or not a JSON object.
    #[error("{0}")]
    InvalidJson(String),
    /// One field or parameter is wrong; its code is the field's (`invalid_user_id`, ...).
    #[error("{message}")]
    InvalidField { field: Field, message: String },
    #[error("Request body is larger than the {0}-byte limit")]
    PayloadTooLarge(usize),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// `POST /introspect` takes an HTML form, as RFC 7662 says.
    #[error("Content-Type must be application/x-www-form-urlencoded, with the token as token=...")]
    FormRequired,
    /// `/verify`: no usable bearer token; the sentence also goes into `WWW-Authenticate`
    /// (RFC 6750).
    #[error("{}", .0.sentence())]
    InvalidToken(TokenProblem),
    /// `/verify`: a valid token the service refuses.
    #[error("{}", .0.sentence())]
    TokenRefused(TokenRefusal),
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
    /// The API-key name is taken, or the key is installed under another name.
    #[error("{0}")]
    ApiKeyExists(Conflict),
    /// A bulk action's segment changed since its dry run (nothing changed).
    #[error("{0}")]
    SegmentChanged(String),
    /// A signing-key rotation the schedule refuses now (nothing changed).
    #[error("{0}")]
    RotationRefused(Refusal),
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
    /// The status of the answer: its code's.
    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The one code of each error.
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidApiKey => Code::InvalidApiKey,
            ApiError::ApiKeyRevoked { .. } => Code::ApiKeyRevoked,
            ApiError::ApiKeyWrongApplication { .. } => Code::ApiKeyWrongApplication,
            ApiError::DuplicateApiKey => Code::DuplicateApiKey,
            ApiError::InvalidJson(_) => Code::InvalidJson,
            ApiError::InvalidField { field, .. } => field.code(),
            ApiError::PayloadTooLarge(_) => Code::PayloadTooLarge,
            ApiError::UnsupportedMediaType | ApiError::FormRequired => Code::UnsupportedMediaType,
            ApiError::InvalidToken(p) => p.code(),
            ApiError::TokenRefused(r) => r.code(),
            ApiError::NotFound => Code::NotFound,
            ApiError::MethodNotAllowed(_) => Code::MethodNotAllowed,
            ApiError::UserDisabled => Code::UserDisabled,
            ApiError::UserUnknown(_) => Code::UserUnknown,
            ApiError::ChannelForbidden(_) => Code::ChannelForbidden,
            ApiError::ProxyUnauthorized => Code::InvalidProxySecret,
            ApiError::MetricsUnauthorized => Code::InvalidMetricsToken,
            ApiError::AdminUnauthorized => Code::InvalidAdminToken,
            ApiError::UnknownApiKey(_) => Code::ApiKeyNotFound,
            ApiError::ApiKeyExists(_) => Code::ApiKeyExists,
            ApiError::RotationRefused(_) => Code::RotationRefused,
            ApiError::SegmentChanged(_) => Code::SegmentChanged,
            ApiError::StoreUnavailable(_) => Code::StoreUnavailable,
            ApiError::RequestTimeout => Code::RequestTimeout,
            ApiError::RateLimited(_) => Code::RateLimited,
            ApiError::Timeout => Code::Timeout,
            ApiError::Internal(_) => Code::InternalError,
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
            code: self.code().as_str(),
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
        if let ApiError::InvalidToken(p) = self {
            // RFC 6750 section 3: the scheme, the error and a human description.
            let v = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                p.sentence()
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if matches!(self, ApiError::InvalidToken(_) | ApiError::TokenRefused(_)) {
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

/// Why `/verify` found no usable bearer token. Each sentence also goes into
/// `WWW-Authenticate`, so none contains a double quote or a backslash (unit-tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum TokenProblem {
    /// No `Authorization: Bearer` token.
    Missing,
    /// Malformed, not signed by this service, or by a key that no longer verifies.
    Invalid,
    Expired,
    /// A wsToken where a REST token belongs.
    WrongType,
    /// Signed by this service's keys but for another application (`app.id`).
    WrongApplication,
    /// A valid token of a user that does not exist.
    UnknownUser,
}

impl TokenProblem {
    pub const fn code(self) -> Code {
        match self {
            TokenProblem::Missing | TokenProblem::Invalid | TokenProblem::UnknownUser => {
                Code::InvalidToken
            }
            TokenProblem::Expired => Code::TokenExpired,
            TokenProblem::WrongType => Code::WrongTokenType,
            TokenProblem::WrongApplication => Code::WrongApplication,
        }
    }

    pub const fn sentence(self) -> &'static str {
        match self {
            TokenProblem::Missing => "Missing bearer token: send the token field of POST /tokens as Authorization: Bearer <token>",
            TokenProblem::Invalid => "The token is malformed, not signed by this service, or signed with a key that no longer verifies; get a new one from POST /tokens",
            TokenProblem::Expired => "The token has expired; get a new one from POST /tokens",
            TokenProblem::WrongType => "This is a wsToken: use the token field for REST API calls (Authorization: Bearer <token>) and wsToken only for the WebSocket connection",
            TokenProblem::UnknownUser => "The token's user does not exist; get a new token from POST /tokens",
            TokenProblem::WrongApplication => "This token belongs to another application (app.id), or to none while this service has its own app.id; get a token from this application's POST /tokens",
        }
    }
}

/// Why `/verify` refuses a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum TokenRefusal {
    UserDisabled,
    /// Issued before the user's tokens were revoked.
    TokenRevoked,
}

impl TokenRefusal {
    pub const fn code(self) -> Code {
        match self {
            TokenRefusal::UserDisabled => Code::UserDisabled,
            TokenRefusal::TokenRevoked => Code::TokenRevoked,
        }
    }

    pub const fn sentence(self) -> &'static str {
        match self {
            TokenRefusal::UserDisabled => "This user is disabled; its tokens are refused until `chatsdk-auth user enable <id>`",
            TokenRefusal::TokenRevoked => "This token was revoked (issued before the user's tokens were revoked); get a new one from POST /tokens",
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn token_sentences_fit_a_www_authenticate_quoted_string() {
        for m in TokenProblem::iter().map(TokenProblem::sentence) {
            assert!(!m.contains('"') && !m.contains('\\') && m.is_ascii(), "{m}");
        }
    }
}
