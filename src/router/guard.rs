//! Enforces a route's [`Policy`](super::table::Policy) before its handler runs.
//!
//! # Design
//! The route table (`router/table.rs`) declares each route's policy with
//! [`Route::policy`](super::table::Route::policy), a `const` `match` on a `Copy` enum: its
//! [`Guard`] (who may call), its [`BodyRule`](super::table::BodyRule) (what it reads) and its [`Rejections`](super::table::Rejections) (where its
//! refusals are counted). The router resolves the route, then, inside the request deadline:
//!
//! 1. [`check`] runs the guard: `Public` passes; `ApiKey` refuses an address over
//!    `limits.failed_auth_per_ip_per_minute` before the lookup, counts *every* failed check
//!    against it (a missing, malformed, duplicated, unknown, revoked or another application's
//!    key alike; only an
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
//! 2. The router reads the body the route declares (none, a JSON object, an optional JSON
//!    object, a form, raw bytes), within `server.max_body_bytes`.
//! 3. The handler gets its family's context (`router/context.rs`: the slice of the services
//!    its routes need, the request facts, the authenticated caller) and the body bytes: never
//!    the request, never the [`App`], never a chance to skip a step. After it succeeds, an API
//!    key's use is recorded (at most once a minute per key).
//! 4. Whatever fails (guard, body, handler, or the router's deadline),
//!    `router/rejections.rs` counts it where the policy says.
//!
//! A new route therefore cannot forget its limiter or its counter: it has to declare a policy
//! to compile. Nothing here allocates or boxes: the guard is a `match`, the context a few
//! borrowed words on the stack.
//!
//! It imports no handler, so the router is the only file that knows every family.

use std::net::IpAddr;

use http::HeaderMap;

use super::shared::{self, Shared};
use super::table::Guard;
use crate::app::App;
use crate::http::auth::{self, Caller, Scheme};
use crate::http::{client_addr, ApiError};
use crate::limits::{Limit, Limited, Mark};

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
    if let Err(l) = shared::ask(app, limit, client, Shared::Count).await {
        return rate_limited(app, l, client, None);
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
        shared::ask(app, Limit::FailedAuthPerIp, client, Shared::Peek)
            .await
            .map_err(|l| rate_limited(app, l, client, None))?;
    }
    let caller = match auth::authenticate(&app.store, &app.config.app.id, headers).await {
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
