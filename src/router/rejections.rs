//! The rejection accounting: every refused request counted where its route's policy says
//! (the minting routes' reasons, the proxies' error outcomes), whichever step refused it (the
//! guard, the body, the handler or the router's deadline).

use super::table::{Policy, Rejections};
use crate::app::App;
use crate::http::ApiError;
use crate::metrics::{ProxyFailure, ProxyOutcome, RejectReason};

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
pub(super) fn mint_reason(e: &ApiError) -> RejectReason {
    match e {
        ApiError::InvalidApiKey
        | ApiError::ApiKeyRevoked { .. }
        | ApiError::ApiKeyWrongApplication { .. } => RejectReason::InvalidApiKey,
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
