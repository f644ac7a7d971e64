//! Enforces a route's [`Policy`] before its handler runs.
//!
//! # Design
//! The route table (`router/table.rs`) declares each route's policy with
//! [`Route::policy`](super::table::Route::policy), a `const` `match` on a `Copy` enum: its
//! [`Guard`] (who may call), its [`BodyRule`] (what it reads) and its [`Rejections`] (where its
//! refusals are counted). The router resolves the route, then, inside the request deadline:
//!
//! 1. [`check`] runs the guard: `Public` passes; `ApiKey` refuses an address over
//!    `limits.failed_auth_per_ip_per_minute` before the lookup, counts *every* failed check
//!    against it (a missing, malformed, duplicated, unknown or revoked key alike; only an
//!    unreachable store is not the caller's failure), counts the key in
//!    `chatsdk_auth_api_key_requests_total` and, for a minting route, applies
//!    `limits.mint_per_api_key_per_second`; `ProxySecret` compares Centrifugo's header,
//!    `AdminBearer` the admin token and `MetricsBearer` (when `metrics.require_token`) the
//!    metrics token. Those three secrets are long and random: they are always compared, the
//!    right one always passes, and only a failure is counted (per secret) and limited
//!    ([`failed`]: `limits.admin_per_ip_per_minute` for the admin token,
//!    `limits.failed_auth_per_ip_per_minute` for the other two), so nobody sharing an address
//!    can lock out the holder of the right one. They go through one constant-time comparison
//!    ([`auth::secret_matches`]) and the bearer tokens through one parser ([`auth::bearer`]).
//! 2. [`read_body`] reads the body the route declares (none, a JSON object, an optional JSON
//!    object, a form, raw bytes), within `server.max_body_bytes`.
//! 3. The handler gets its family's context (`router/context.rs`: the slice of the services
//!    its routes need, the request facts, the authenticated caller) and the body bytes: never
//!    the request, never the [`App`], never a chance to skip a step. After it succeeds, an API
//!    key's use is recorded (at most once a minute per key).
//! 4. Whatever fails (guard, body, handler, or the router's deadline), [`count_rejection`]
//!    counts it where the policy says.
//!
//! A new route therefore cannot forget its limiter or its counter: it has to declare a policy
//! to compile. Nothing here allocates or boxes: the guard is a `match`, the context a few
//! borrowed words on the stack.
//!
//! It imports no handler, so the router is the only file that knows every family.

use std::net::IpAddr;

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::Incoming;

use super::table::{BodyRule, Guard, Policy, Rejections};
use crate::app::App;
use crate::error_chain::Chain;
use crate::http::auth::{self, Caller, Scheme};
use crate::http::body::{self, BodyProgress};
use crate::http::{client_addr, ApiError};
use crate::limits::{self, Limit, Limited, Mark};
use crate::metrics::RejectReason;
use crate::metrics::{ProxyFailure, ProxyOutcome};
use crate::store::SharedVerdict;

fn rate_limited(app: &App, l: Limited, client: IpAddr, key_name: Option<&str>) -> ApiError {
    app.trips.note(l, client, key_name);
    ApiError::RateLimited(l)
}

/// Who passed a guard.
pub struct Passed {
    pub client: IpAddr,
    pub caller: Option<Caller>,
}

/// Runs `guard` for a request from `peer` (see the module documentation).
pub(crate) async fn check(
    app: &App,
    guard: Guard,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<Passed, ApiError> {
    let client_of = || {
        client_addr(
            headers,
            peer,
            app.config.limits.trusted_proxy_header.as_ref(),
        )
    };
    match guard {
        Guard::Public => Ok(Passed {
            client: peer,
            caller: None,
        }),
        Guard::ApiKey { mints } => {
            let client = client_of();
            let caller = api_key(app, headers, client, mints).await?;
            Ok(Passed {
                client,
                caller: Some(caller),
            })
        }
        Guard::ProxySecret(cb) => {
            let given = headers
                .get(&app.config.centrifugo.proxy_secret_header)
                .map(|v| v.as_bytes());
            if !auth::secret_matches(given, app.secrets.proxy_secret.expose().as_bytes()) {
                app.metrics
                    .proxy_unauthenticated
                    .with_label_values(&[cb.label()])
                    .inc();
                let client = client_of();
                return Err(failed(
                    app,
                    Limit::FailedAuthPerIp,
                    client,
                    ApiError::ProxyUnauthorized,
                )
                .await);
            }
            Ok(Passed {
                client: peer,
                caller: None,
            })
        }
        Guard::AdminBearer => {
            let client = client_of();
            let given = auth::bearer(headers, Scheme::Exact);
            if !auth::secret_matches(given, app.secrets.admin_token.expose().as_bytes()) {
                app.metrics.admin_unauthorized.inc();
                return Err(
                    failed(app, Limit::AdminPerIp, client, ApiError::AdminUnauthorized).await,
                );
            }
            Ok(Passed {
                client,
                caller: None,
            })
        }
        Guard::MetricsBearer => {
            if app.config.metrics.require_token {
                let given = auth::bearer(headers, Scheme::Exact);
                if !auth::secret_matches(given, app.secrets.metrics_token.expose().as_bytes()) {
                    app.metrics.metrics_unauthorized.inc();
                    let client = client_of();
                    return Err(failed(
                        app,
                        Limit::FailedAuthPerIp,
                        client,
                        ApiError::MetricsUnauthorized,
                    )
                    .await);
                }
            }
            Ok(Passed {
                client: peer,
                caller: None,
            })
        }
    }
}

/// A failed credential check from `client` (a wrong or missing secret or key): counted against
/// `limit` here and in the bucket the replicas share. The answer is `refusal`, or a 429 once
/// either budget is used up. A right secret is never counted, so nobody sharing an address can
/// lock its holder out (API keys are the exception: an address over its budget is refused
/// before the lookup, see [`api_key`]).
async fn failed(app: &App, limit: Limit, client: IpAddr, refusal: ApiError) -> ApiError {
    let local = match limit {
        Limit::FailedAuthPerIp => app.limits.auth_failed(client),
        Limit::AdminPerIp => app.limits.admin_failed(client),
        Limit::MintPerUser | Limit::MintPerApiKey => Ok(()),
    };
    // Counted in the shared bucket even when this replica's own limit just ran out.
    if let Err(e) = shared(app, limit, client, Shared::Count).await {
        return e;
    }
    match local {
        Ok(()) => refusal,
        Err(l) => rate_limited(app, l, client, None),
    }
}

/// The API-key guard with its limits.
async fn api_key(
    app: &App,
    headers: &HeaderMap,
    client: IpAddr,
    mints: bool,
) -> Result<Caller, ApiError> {
    if let Some(l) = app.limits.marked(Mark::Blocked, client) {
        return Err(rate_limited(app, l, client, None));
    }
    if app.store.shares_limits() && app.limits.marked(Mark::Watched, client).is_some() {
        // Failed lately: the budget may be spent on another replica; ask before testing a key.
        shared(app, Limit::FailedAuthPerIp, client, Shared::Peek).await?;
    }
    let caller = match auth::authenticate(&app.store, headers).await {
        Ok(caller) => caller,
        // Not the caller's failure: the key was never checked.
        Err(e @ ApiError::StoreUnavailable(_)) => return Err(e),
        Err(e) => return Err(failed(app, Limit::FailedAuthPerIp, client, e).await),
    };
    app.metrics
        .api_key_requests
        .with_label_values(&[&caller.key_name])
        .inc();
    if mints {
        app.limits
            .mint_with_key(&caller.key_name)
            .map_err(|l| rate_limited(app, l, client, Some(&caller.key_name)))?;
    }
    Ok(caller)
}

/// What [`shared`] does with the bucket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shared {
    /// Count one event.
    Count,
    /// Only ask whether one more would conform.
    Peek,
}

/// The bucket of `limit` for `client` that every replica shares (PostgreSQL; nothing on
/// SQLite): counts a failed API-key check or an admin call, or peeks before the key check of
/// an address that failed lately. Over the shared budget, the address is refused here too
/// until the bucket refills, without asking again. A failed key check keeps the address
/// watched for a minute (a full refill). A store that cannot answer leaves the per-process
/// limit in charge (logged): the key check or the admin token comparison still decides, and
/// the local limiter still counts.
async fn shared(app: &App, limit: Limit, client: IpAddr, what: Shared) -> Result<(), ApiError> {
    let per_minute = match limit {
        Limit::FailedAuthPerIp => app.config.limits.failed_auth_per_ip_per_minute,
        Limit::AdminPerIp => app.config.limits.admin_per_ip_per_minute,
        Limit::MintPerUser | Limit::MintPerApiKey => return Ok(()),
    };
    if per_minute == 0 || !app.store.shares_limits() {
        return Ok(());
    }
    if limit == Limit::FailedAuthPerIp && what == Shared::Count {
        app.limits
            .mark(Mark::Watched, client, std::time::Duration::from_secs(60));
    }
    let key = format!("{}:{:032x}", limit.label(), limits::client_key(client));
    let answer = match what {
        Shared::Count => {
            app.store
                .count_shared(&key, per_minute, crate::now_unix_ms())
                .await
        }
        Shared::Peek => {
            app.store
                .peek_shared(&key, per_minute, crate::now_unix_ms())
                .await
        }
    };
    match answer {
        Ok(SharedVerdict::Allowed) => Ok(()),
        Ok(SharedVerdict::Limited(retry_after)) => {
            if limit == Limit::FailedAuthPerIp {
                app.limits.mark(Mark::Blocked, client, retry_after);
            }
            let l = Limited { limit, retry_after };
            Err(rate_limited(app, l, client, None))
        }
        Err(e) => {
            tracing::warn!(error = %Chain(&e), limit = limit.label(), "cannot ask a limit the replicas share; this replica's own limit still applies");
            Ok(())
        }
    }
}

/// Reads the body `rule` declares; empty for [`BodyRule::None`] (the body is left unread).
pub(crate) async fn read_body(
    app: &App,
    rule: BodyRule,
    headers: &HeaderMap,
    incoming: Incoming,
    progress: &BodyProgress,
) -> Result<Bytes, ApiError> {
    let limit = app.config.server.max_body_bytes;
    match rule {
        BodyRule::None => Ok(Bytes::new()),
        BodyRule::Json => body::read_json_body(headers, incoming, limit, progress).await,
        BodyRule::OptionalJson => {
            body::read_optional_json(headers, incoming, limit, progress).await
        }
        BodyRule::Form => body::read_form_body(headers, incoming, limit, progress).await,
        BodyRule::Raw => body::read_limited(headers, incoming, limit, progress).await,
    }
}

/// Counts a refused request where its policy says. The router calls this for every error of a
/// route, its guard's, its body's and its own timeout included.
pub(crate) fn count_rejection(app: &App, policy: Policy, e: &ApiError) {
    match policy.rejections {
        Rejections::None => {}
        Rejections::Tokens => app.metrics.reject(mint_reason(e)),
        Rejections::SubscriptionTokens => app.metrics.reject_subscription(mint_reason(e)),
        Rejections::Proxy(cb) => {
            if let Some(failure) = proxy_failure(e) {
                app.metrics.proxy(cb).count(ProxyOutcome::Error(failure));
            }
        }
    }
}

/// The `error` outcome of a failed proxy call; `None` for a refused secret (counted in
/// `chatsdk_auth_proxy_unauthenticated_total` instead: not Centrifugo calling).
fn proxy_failure(e: &ApiError) -> Option<ProxyFailure> {
    Some(match e {
        ApiError::ProxyUnauthorized => return None,
        ApiError::StoreUnavailable(_) => ProxyFailure::StoreUnavailable,
        ApiError::Timeout | ApiError::RequestTimeout => ProxyFailure::Timeout,
        ApiError::InvalidJson(_) | ApiError::InvalidField { .. } | ApiError::PayloadTooLarge(_) => {
            ProxyFailure::BadRequest
        }
        _ => ProxyFailure::InternalError,
    })
}

/// The rejection reason label of an error of a minting route (`POST /tokens` and
/// `POST /tokens/subscription`; `user_unknown` and `channel_forbidden` only occur on the latter).
fn mint_reason(e: &ApiError) -> RejectReason {
    match e {
        ApiError::InvalidApiKey | ApiError::ApiKeyRevoked { .. } => RejectReason::InvalidApiKey,
        ApiError::InvalidJson(_) | ApiError::InvalidField { .. } | ApiError::DuplicateApiKey => {
            RejectReason::InvalidRequest
        }
        ApiError::PayloadTooLarge(_) => RejectReason::PayloadTooLarge,
        ApiError::UnsupportedMediaType => RejectReason::UnsupportedMediaType,
        ApiError::UserUnknown(_) => RejectReason::UserUnknown,
        ApiError::UserDisabled => RejectReason::UserDisabled,
        ApiError::ChannelForbidden(_) => RejectReason::ChannelForbidden,
        ApiError::StoreUnavailable(_) => RejectReason::StoreUnavailable,
        ApiError::RequestTimeout => RejectReason::RequestTimeout,
        ApiError::RateLimited(_) => RejectReason::RateLimited,
        ApiError::Timeout => RejectReason::Timeout,
        _ => RejectReason::InternalError,
    }
}
