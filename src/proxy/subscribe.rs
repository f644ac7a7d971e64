//! `POST /centrifugo/subscribe` and `POST /centrifugo/sub_refresh`: channel authorisation.
//!
//! A user may subscribe to the channels made from `centrifugo.user_channels` for *their own*
//! id, and to channels matching `centrifugo.subscribe_patterns` (a trailing `*` matches any
//! suffix). Everything else is denied explicitly, because Centrifugo treats `{}` as allowed.
//! A disabled, unknown or revoked user is disconnected. Subscriptions get an `expire_at` only
//! when `centrifugo.subscription_refresh_interval_seconds` is set; sub_refresh then extends
//! them while the user stays active.

use bytes::Bytes;
use serde::Serialize;

use super::{body_of, expired, parse, reject, session_verdict, Outcome, Reason, SessionRequest};
use crate::app::App;
use crate::http::ApiError;
use crate::jwt::user_channels;

#[derive(Serialize)]
struct SubscribeResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_at: Option<i64>,
}

#[derive(Serialize)]
struct Reply {
    result: SubscribeResult,
}

/// True when `user` may subscribe to `channel`.
pub fn channel_allowed(app: &App, user: &str, channel: &str) -> bool {
    let c = &app.config.centrifugo;
    user_channels(&c.user_channels, user)
        .iter()
        .any(|own| own == channel)
        || c.subscribe_patterns
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix) && channel.len() > prefix.len(),
                None => p == channel,
            })
}

/// What subscribe and sub_refresh both decide: why the user may not have the channel, if so.
async fn channel_verdict(app: &App, bytes: &[u8]) -> Result<Option<Reason>, ApiError> {
    let req: SessionRequest<'_> = parse(bytes)?;
    let Some(channel) = req.channel.as_deref().filter(|c| !c.is_empty()) else {
        return Err(ApiError::InvalidJson(
            "Malformed proxy request: channel is missing".into(),
        ));
    };
    if req.user.is_empty() {
        return Ok(Some(Reason::ChannelForbidden));
    }
    if let Err(reason) = session_verdict(app.store.get_session(&req.user).await?, req.auth_iat()) {
        return Ok(Some(reason));
    }
    if !channel_allowed(app, &req.user, channel) {
        return Ok(Some(Reason::ChannelForbidden));
    }
    Ok(None)
}

/// Decides one subscribe: denied explicitly, because Centrifugo treats `{}` as allowed.
pub async fn decide_subscribe(
    app: &App,
    bytes: &[u8],
    now: i64,
) -> Result<(Outcome, Bytes), ApiError> {
    if let Some(reason) = channel_verdict(app, bytes).await? {
        return reject(reason);
    }
    let interval = app.config.centrifugo.subscription_refresh_interval_seconds;
    let reply = Reply {
        result: SubscribeResult {
            expire_at: (interval > 0).then_some(now + interval),
        },
    };
    Ok((Outcome::Accepted, body_of(&reply)?))
}

/// Decides one subscription refresh.
pub async fn decide_sub_refresh(
    app: &App,
    bytes: &[u8],
    now: i64,
) -> Result<(Outcome, Bytes), ApiError> {
    if let Some(reason) = channel_verdict(app, bytes).await? {
        return expired(reason);
    }
    // A zero interval would clear the expiry for good (centrifugo.md §5.5); extend instead.
    let interval = match app.config.centrifugo.subscription_refresh_interval_seconds {
        0 => app.config.centrifugo.refresh_interval_seconds,
        n => n,
    };
    let body = format!(r#"{{"result":{{"expire_at":{}}}}}"#, now + interval);
    Ok((Outcome::Accepted, Bytes::from(body)))
}
