//! Centrifugo's HTTP proxy callbacks: caller authentication, dispatch to [`connect`],
//! [`refresh`] and [`subscribe`], and counting of every outcome.
//!
//! [`decision`] holds what a handler decided, [`wire`] the Centrifugo wire types and codecs;
//! the callbacks, refusal reasons and their codes are [`crate::centrifugo::protocol`]'s.
//! Every *decision* is HTTP 200 with exactly one of `result`, `error` or `disconnect`. A non-200 answer is reserved for cases where Centrifugo should
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
pub mod decision;
pub mod refresh;
pub mod subscribe;
pub mod wire;

use http::{HeaderMap, Request};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

pub use crate::centrifugo::protocol::{Callback, Disconnect, Reason, Rejection, WireError};
pub use crate::metrics::ProxyFailure;
pub use decision::Outcome;
pub use wire::{body_of, expired, parse, reject, ConnMeta, SessionRequest, UserInfo};

use crate::app::App;
use crate::http::body::{self, BodyProgress};
use crate::http::{ok, ApiError, Resp};
use crate::store::SessionUser;

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
pub async fn handle(
    app: &App,
    cb: Callback,
    req: Request<Incoming>,
    progress: &BodyProgress,
) -> Result<Resp, ApiError> {
    let (parts, body) = req.into_parts();
    if !caller_is_centrifugo(app, &parts.headers) {
        app.metrics
            .proxy_unauthenticated
            .with_label_values(&[cb.label()])
            .inc();
        return Err(ApiError::ProxyUnauthorized);
    }
    let limit = app.config.server.max_body_bytes;
    let bytes = match body::read_limited(&parts.headers, body, limit, progress).await {
        Ok(b) => b,
        Err(e) => {
            count(app, cb, Outcome::Error(ProxyFailure::BadRequest));
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
            Ok(ok(body))
        }
        Err(e) => {
            let failure = match &e {
                ApiError::StoreUnavailable(_) => ProxyFailure::StoreUnavailable,
                ApiError::Timeout | ApiError::RequestTimeout => ProxyFailure::Timeout,
                ApiError::InvalidJson(_) | ApiError::InvalidField { .. } => {
                    ProxyFailure::BadRequest
                }
                _ => ProxyFailure::InternalError,
            };
            count(app, cb, Outcome::Error(failure));
            Err(e)
        }
    }
}

/// Counts a call the router abandoned at the request deadline: a timeout is an outcome too.
pub fn count_timeout(app: &App, cb: Callback) {
    count(app, cb, Outcome::Error(ProxyFailure::Timeout));
}

fn count(app: &App, cb: Callback, outcome: Outcome) {
    let series = app.metrics.proxy(cb);
    match outcome {
        Outcome::Accepted => series.accepted().inc(),
        Outcome::Rejected(r) => series.rejected(r).inc(),
        Outcome::Error(f) => series.failed(f).inc(),
    }
}

fn caller_is_centrifugo(app: &App, headers: &HeaderMap) -> bool {
    let expected = app.secrets.proxy_secret.expose().as_bytes();
    headers
        .get(&app.config.centrifugo.proxy_secret_header)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected)))
}
