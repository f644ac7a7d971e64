//! `POST /centrifugo/subscribe` and `POST /centrifugo/sub_refresh`: channel authorisation.
//!
//! A user may subscribe to the channels the channel rules allow them
//! (`centrifugo.channel_rules`, `centrifugo.subscribe_patterns` and their own
//! `centrifugo.user_channels`, matched against their id and stored `custom`; see
//! [`crate::channels`]). Everything else is denied explicitly, because Centrifugo treats `{}` as
//! allowed. A disabled, unknown or revoked user is disconnected. Subscriptions get an
//! `expire_at` only when `centrifugo.subscription_refresh_interval_seconds` is set; sub_refresh
//! then extends them while the user stays active and the rules still allow the channel, so a
//! user whose `custom` changed loses the channel at the next sub_refresh.

use bytes::Bytes;
use serde::Serialize;

use super::{body_of, expired, parse, reject, session_verdict, Outcome, Reason, SessionRequest};
use crate::http::ApiError;
use crate::router::context::Proxy;

#[derive(Serialize)]
struct SubscribeResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_at: Option<i64>,
}

#[derive(Serialize)]
struct Reply {
    result: SubscribeResult,
}

/// What subscribe and sub_refresh both decide: why the user may not have the channel, if so.
async fn channel_verdict(ctx: &Proxy<'_>, bytes: &[u8]) -> Result<Option<Reason>, ApiError> {
    let req: SessionRequest<'_> = parse(bytes)?;
    let Some(channel) = req.channel.as_deref().filter(|c| !c.is_empty()) else {
        return Err(ApiError::InvalidJson(
            "Malformed proxy request: channel is missing".into(),
        ));
    };
    if req.user.is_empty() {
        return Ok(Some(Reason::ChannelForbidden));
    }
    let meta = req.conn_meta();
    if !super::wire::is_this_application(meta.as_ref(), ctx.app_id) {
        return Ok(Some(Reason::WrongApplication));
    }
    let auth_iat = meta.and_then(|m| m.iat);
    let session = match session_verdict(ctx.store.get_session(&req.user).await?, auth_iat) {
        Ok(s) => s,
        Err(reason) => return Ok(Some(reason)),
    };
    let rules = &ctx.centrifugo.channel_rules;
    if rules
        .first_refused(&req.user, session.custom.as_deref(), &[channel])
        .is_some()
    {
        return Ok(Some(Reason::ChannelForbidden));
    }
    Ok(None)
}

/// Decides one subscribe: denied explicitly, because Centrifugo treats `{}` as allowed.
pub(crate) async fn decide_subscribe(
    ctx: &Proxy<'_>,
    bytes: &[u8],
) -> Result<(Outcome, Bytes), ApiError> {
    let now = ctx.now;
    if let Some(reason) = channel_verdict(ctx, bytes).await? {
        return reject(reason);
    }
    let interval = ctx.centrifugo.subscription_refresh_interval_seconds;
    let reply = Reply {
        result: SubscribeResult {
            expire_at: (interval > 0).then_some(now + interval),
        },
    };
    Ok((Outcome::Accepted, body_of(&reply)?))
}

/// Decides one subscription refresh.
pub(crate) async fn decide_sub_refresh(
    ctx: &Proxy<'_>,
    bytes: &[u8],
) -> Result<(Outcome, Bytes), ApiError> {
    let now = ctx.now;
    if let Some(reason) = channel_verdict(ctx, bytes).await? {
        return expired(reason);
    }
    // A zero interval would clear the expiry for good
    // (https://centrifugal.dev/docs/server/proxy#sub-refresh-proxy); extend instead.
    let interval = match ctx.centrifugo.subscription_refresh_interval_seconds {
        0 => ctx.centrifugo.refresh_interval_seconds,
        n => n,
    };
    let body = format!(r#"{{"result":{{"expire_at":{}}}}}"#, now + interval);
    Ok((Outcome::Accepted, Bytes::from(body)))
}
