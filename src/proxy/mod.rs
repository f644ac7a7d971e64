//! Centrifugo's HTTP proxy callbacks: dispatch to [`connect`], [`refresh`] and [`subscribe`],
//! and counting of every decision. The router checks the caller (the proxy secret), reads the
//! body and counts the errors (`router/guard.rs`, declared in `router/table.rs`).
//!
//! [`Outcome`] is what a handler decided, [`wire`] the Centrifugo wire types and codecs;
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
//! | another application (`app.id`) | disconnect 4506 | expired | disconnect 4506 |
//! | channel not allowed | — | — | error 403 |

pub mod connect;
pub(crate) mod refresh;
pub(crate) mod subscribe;
pub(crate) mod wire;

pub use crate::centrifugo::protocol::{Callback, Disconnect, Reason, Rejection, WireError};
pub use crate::metrics::ProxyFailure;
pub use crate::metrics::ProxyOutcome as Outcome;
use wire::{body_of, expired, reject, user_info, UserInfo};
pub use wire::{parse, SessionRequest};

use crate::http::{ok, ApiError, Resp};
use crate::router::context::Proxy;
use crate::store::session::{self, Refused};
use crate::store::SessionUser;

/// The session verdict ([`session::verdict`]) in Centrifugo's words: the user, when it may
/// continue, else the reason it may not. `auth_iat` is the issue time of the token that
/// authenticated the connection.
pub(crate) fn session_verdict(
    user: Option<SessionUser>,
    auth_iat: Option<i64>,
) -> Result<SessionUser, Reason> {
    session::verdict(user, auth_iat).map_err(|r| match r {
        Refused::UnknownUser => Reason::UserUnknown,
        Refused::Disabled => Reason::UserDisabled,
        Refused::Revoked => Reason::TokenRevoked,
    })
}

/// Decides one proxy call the router let through (Centrifugo's secret checked, the body read)
/// and counts the decision; an error is counted by the router.
pub(crate) async fn handle(ctx: &Proxy<'_>, cb: Callback, bytes: &[u8]) -> Result<Resp, ApiError> {
    let (outcome, body) = match cb {
        Callback::Connect => connect::decide(ctx, bytes).await,
        Callback::Refresh => refresh::decide(ctx, bytes).await,
        Callback::Subscribe => subscribe::decide_subscribe(ctx, bytes).await,
        Callback::SubRefresh => subscribe::decide_sub_refresh(ctx, bytes).await,
    }?;
    ctx.series.count(outcome);
    Ok(ok(body))
}
