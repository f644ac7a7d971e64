//! Centrifugo's HTTP proxy callbacks: wire types, caller authentication and the decision
//! envelope, shared by [`connect`], [`refresh`] and [`subscribe`].
//!
//! Every *decision* is HTTP 200 with exactly one of `result`, `error` or `disconnect`
//! (shared/centrifugo.md §3.3). A non-200 answer is reserved for cases where Centrifugo should
//! treat the call as failed and retry: a missing shared secret (401, not Centrifugo calling),
//! a malformed body (400) and an unreachable store (503, which Centrifugo turns into a
//! temporary error 100 on connect and a 60 s extension on refresh).
//!
//! Codes (the README's "Proxy decisions" table says the same; keep them in step):
//!
//! | situation | connect | refresh / sub_refresh | subscribe |
//! |---|---|---|---|
//! | token expired | error 1109 temporary | — | — |
//! | invalid token | disconnect 4501 | — | — |
//! | unknown user | disconnect 4502 | expired | disconnect 4502 |
//! | user disabled | disconnect 4503 | expired | disconnect 4503 |
//! | tokens revoked | disconnect 4504 | expired | disconnect 4504 |
//! | no credentials | disconnect 4505 | — | — |
//! | channel not allowed | — | — | error 403 |

pub mod connect;
pub mod refresh;
pub mod subscribe;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::http::{body, json, ApiError, Resp};
use crate::store::SessionUser;

/// Which callback (the `callback` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    Connect,
    Refresh,
    Subscribe,
    SubRefresh,
}

impl Callback {
    pub const ALL: [Callback; 4] = [
        Callback::Connect,
        Callback::Refresh,
        Callback::Subscribe,
        Callback::SubRefresh,
    ];

    /// Position in [`Callback::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Callback::Connect => "connect",
            Callback::Refresh => "refresh",
            Callback::Subscribe => "subscribe",
            Callback::SubRefresh => "sub_refresh",
        }
    }
}

/// Why a proxy call was not accepted (the `reason` label, and the wire code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    UserUnknown,
    UserDisabled,
    NoCredentials,
    ChannelForbidden,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::TokenExpired,
        Reason::TokenInvalid,
        Reason::TokenRevoked,
        Reason::UserUnknown,
        Reason::UserDisabled,
        Reason::NoCredentials,
        Reason::ChannelForbidden,
    ];

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Reason::TokenExpired => "token_expired",
            Reason::TokenInvalid => "token_invalid",
            Reason::TokenRevoked => "token_revoked",
            Reason::UserUnknown => "user_unknown",
            Reason::UserDisabled => "user_disabled",
            Reason::NoCredentials => "no_credentials",
            Reason::ChannelForbidden => "channel_forbidden",
        }
    }

    /// The Centrifugo answer for a rejected connect or subscribe.
    pub fn reply(self) -> Rejection {
        match self {
            Reason::TokenExpired => Rejection::Error(WireError {
                code: 1109,
                message: "token expired",
                temporary: true,
            }),
            Reason::ChannelForbidden => Rejection::Error(WireError {
                code: 403,
                message: "permission denied",
                temporary: false,
            }),
            Reason::TokenInvalid => Rejection::Disconnect(Disconnect {
                code: 4501,
                reason: "invalid token",
            }),
            Reason::UserUnknown => Rejection::Disconnect(Disconnect {
                code: 4502,
                reason: "unknown user",
            }),
            Reason::UserDisabled => Rejection::Disconnect(Disconnect {
                code: 4503,
                reason: "user disabled",
            }),
            Reason::TokenRevoked => Rejection::Disconnect(Disconnect {
                code: 4504,
                reason: "token revoked",
            }),
            Reason::NoCredentials => Rejection::Disconnect(Disconnect {
                code: 4505,
                reason: "no credentials",
            }),
        }
    }
}

/// `{"error": {...}}` body.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct WireError {
    pub code: u32,
    pub message: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

/// `{"disconnect": {...}}` body; reasons are ASCII and at most 32 bytes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u32,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rejection {
    Error(WireError),
    Disconnect(Disconnect),
}

/// The connection meta the sidecar sets (connect result) or mints (wsToken `meta`), sent back
/// to refresh/subscribe when `include_connection_meta` is on: `iat` is the authenticating
/// token's issue time, which is what revocation is judged against.
#[derive(Debug, Deserialize, Default)]
pub struct ConnMeta {
    #[serde(default)]
    pub iat: Option<i64>,
}

/// Fields common to refresh, subscribe and sub_refresh requests.
#[derive(Debug, Deserialize)]
pub struct SessionRequest<'a> {
    #[allow(dead_code)]
    pub client: String,
    pub user: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(borrow, default)]
    pub meta: Option<&'a RawValue>,
}

impl SessionRequest<'_> {
    /// The authenticating token's `iat` from the connection meta, when Centrifugo sent it.
    pub fn auth_iat(&self) -> Option<i64> {
        self.meta
            .and_then(|m| serde_json::from_str::<ConnMeta>(m.get()).ok())
            .and_then(|m| m.iat)
    }
}

/// Checks a stored user against a session: the user, when it may continue, else the reason
/// it may not. `auth_iat` is the issue time of the token that authenticated the connection.
pub fn session_verdict(
    user: Option<SessionUser>,
    auth_iat: Option<i64>,
) -> Result<SessionUser, Reason> {
    match user {
        None => Err(Reason::UserUnknown),
        Some(u) if u.disabled => Err(Reason::UserDisabled),
        Some(u) if auth_iat.is_some_and(|iat| iat < u.tokens_valid_after) => {
            Err(Reason::TokenRevoked)
        }
        Some(u) => Ok(u),
    }
}

/// Authenticates the caller as Centrifugo, reads the body and dispatches; counts the outcome
/// (the router times the call).
pub async fn handle(app: &App, cb: Callback, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let (parts, body) = req.into_parts();
    if !caller_is_centrifugo(app, &parts.headers) {
        app.metrics
            .proxy_unauthenticated
            .with_label_values(&[cb.label()])
            .inc();
        return Err(ApiError::ProxyUnauthorized);
    }
    let bytes = match body::read_limited(&parts.headers, body, app.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            count(app, cb, Outcome::Error(Failure::BadRequest));
            return Err(e);
        }
    };
    let now = crate::now_unix();
    let result = match cb {
        Callback::Connect => connect::decide(app, &parts.headers, &bytes, now).await,
        Callback::Refresh => refresh::decide(app, &bytes, now).await,
        Callback::Subscribe => subscribe::decide_subscribe(app, &bytes, now).await,
        Callback::SubRefresh => subscribe::decide_sub_refresh(app, &bytes, now).await,
    };
    match result {
        Ok((outcome, body)) => {
            count(app, cb, outcome);
            Ok(json(StatusCode::OK, body))
        }
        Err(e) => {
            let failure = match &e {
                ApiError::StoreUnavailable(_) => Failure::StoreUnavailable,
                ApiError::InvalidJson(_) | ApiError::InvalidField { .. } => Failure::BadRequest,
                _ => Failure::Internal,
            };
            count(app, cb, Outcome::Error(failure));
            Err(e)
        }
    }
}

/// What a proxy call decided (metrics only).
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Accepted,
    Rejected(Reason),
    Error(Failure),
}

/// Why a proxy call ended in an error rather than a decision (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    BadRequest,
    StoreUnavailable,
    Internal,
}

impl Failure {
    pub const ALL: [Failure; 3] = [
        Failure::BadRequest,
        Failure::StoreUnavailable,
        Failure::Internal,
    ];

    /// Position in [`Failure::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Failure::BadRequest => "bad_request",
            Failure::StoreUnavailable => "store_unavailable",
            Failure::Internal => "internal_error",
        }
    }
}

fn count(app: &App, cb: Callback, outcome: Outcome) {
    let series = app.metrics.proxy(cb);
    match outcome {
        Outcome::Accepted => series.accepted.inc(),
        Outcome::Rejected(r) => series.rejected[r.index()].inc(),
        Outcome::Error(f) => series.errors[f.index()].inc(),
    }
}

fn caller_is_centrifugo(app: &App, headers: &HeaderMap) -> bool {
    let expected = app.secrets.proxy_secret.expose().as_bytes();
    headers
        .get(&app.config.centrifugo.proxy_secret_header)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected)))
}

/// Parses a proxy request body; malformed input is a 400 (Centrifugo never sends it).
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON array; Centrifugo always sends an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidJson(
            "Malformed proxy request: the body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::InvalidJson(format!(
            "Malformed proxy request: {}",
            e.to_string()
                .split(" at line")
                .next()
                .unwrap_or("invalid JSON")
        ))
    })
}

/// Serialises a decision body.
pub fn body_of<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    crate::http::to_json_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("cannot serialise proxy reply: {e}")))
}

/// A rejection envelope.
pub fn reject(reason: Reason) -> Result<(Outcome, Bytes), ApiError> {
    Ok((Outcome::Rejected(reason), body_of(&reason.reply())?))
}

/// `{"result":{"expired":true}}`: the only negative answer refresh proxies have.
pub fn expired(reason: Reason) -> Result<(Outcome, Bytes), ApiError> {
    Ok((
        Outcome::Rejected(reason),
        Bytes::from_static(br#"{"result":{"expired":true}}"#),
    ))
}

/// The `info` object for a user: only the fields the user has.
#[derive(Debug, Serialize)]
pub struct UserInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<&'a str>,
}

impl<'a> UserInfo<'a> {
    pub fn of(u: &'a SessionUser) -> Option<UserInfo<'a>> {
        (u.name.is_some() || u.image.is_some()).then_some(UserInfo {
            name: u.name.as_deref(),
            image: u.image.as_deref(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_all_arrays() {
        for (i, cb) in Callback::ALL.iter().enumerate() {
            assert_eq!(cb.index(), i);
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, f) in Failure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }

    #[test]
    fn rejection_envelopes_match_the_wire_contract() {
        let j = |r: Reason| serde_json::to_string(&r.reply()).unwrap();
        assert_eq!(
            j(Reason::TokenExpired),
            r#"{"error":{"code":1109,"message":"token expired","temporary":true}}"#
        );
        assert_eq!(
            j(Reason::TokenInvalid),
            r#"{"disconnect":{"code":4501,"reason":"invalid token"}}"#
        );
        assert_eq!(
            j(Reason::ChannelForbidden),
            r#"{"error":{"code":403,"message":"permission denied"}}"#
        );
        for r in [
            Reason::TokenInvalid,
            Reason::UserUnknown,
            Reason::UserDisabled,
            Reason::TokenRevoked,
            Reason::NoCredentials,
        ] {
            match r.reply() {
                Rejection::Disconnect(d) => {
                    assert!((4500..=4999).contains(&d.code), "terminal range");
                    assert!(d.reason.len() <= 32 && d.reason.is_ascii());
                }
                Rejection::Error(_) => panic!("{r:?} must disconnect"),
            }
        }
    }
}
