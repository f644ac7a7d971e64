//! `POST /centrifugo/connect`: proxy mode. Finds the wsToken the client passed (forwarded
//! `Authorization: Bearer`, then connect `data` `{"token": ...}`, then `b64data`), verifies it
//! with Centrifugo's rules, applies disable/revocation from the store, and answers with fresh
//! user info.

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{body_of, parse, reject, session_verdict, user_info, Outcome, Reason, UserInfo};
use crate::http::auth::{bearer, Scheme};
use crate::http::ApiError;
use crate::jwt::TokenError;
use crate::router::context::Proxy;

/// The fields of the connect request Centrifugo sends
/// (https://centrifugal.dev/docs/server/proxy#connect-proxy) that a decision reads.
/// Only `client` is always present; the others (`transport`, `protocol`, `name`, `channels`...)
/// are skipped unread. Strings are borrowed from the body where they carry no escapes.
#[derive(Debug, Deserialize)]
pub struct ConnectRequest<'a> {
    #[serde(borrow)]
    #[allow(dead_code)]
    pub client: Cow<'a, str>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub b64data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TokenData<'a> {
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Meta<'a> {
    iat: i64,
    /// `app.id`, which the refresh and subscribe proxies check.
    app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ConnectResult<'a> {
    user: &'a str,
    expire_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<UserInfo<'a>>,
    meta: Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    channels: Vec<String>,
}

#[derive(Serialize)]
struct Reply<'a> {
    result: ConnectResult<'a>,
}

/// Decides one connect.
pub(crate) async fn decide(ctx: &Proxy<'_>, bytes: &[u8]) -> Result<(Outcome, Bytes), ApiError> {
    let now = ctx.now;
    let req: ConnectRequest<'_> = parse(bytes)?;
    let Some(token) = credential(ctx.headers, &req) else {
        return reject(Reason::NoCredentials);
    };
    let claims = match ctx.verifier.verify(&token, now) {
        Ok(c) => c,
        Err(TokenError::Expired) => return reject(Reason::TokenExpired),
        Err(TokenError::Invalid) => return reject(Reason::TokenInvalid),
        Err(TokenError::WrongApplication) => return reject(Reason::WrongApplication),
    };
    let user = match session_verdict(ctx.store.get_session(&claims.sub).await?, Some(claims.iat)) {
        Ok(user) => user,
        Err(reason) => return reject(reason),
    };
    let custom = match user.custom.as_deref() {
        Some(text) => serde_json::from_str::<&RawValue>(text).ok(),
        None => None,
    };
    let extra = crate::segments::info_values(user.custom.as_deref(), ctx.info_fields);
    let reply = Reply {
        result: ConnectResult {
            // The row was found by this id (an exact, byte-wise match).
            user: &claims.sub,
            // Never beyond the token's own expiry; the refresh proxy extends from there.
            expire_at: claims
                .exp
                .min(now + ctx.centrifugo.refresh_interval_seconds),
            info: user_info(&user, &extra),
            meta: Meta {
                iat: claims.iat,
                app: ctx.app_id,
                custom,
            },
            channels: ctx
                .centrifugo
                .channel_rules
                .server_side_channels(&claims.sub),
        },
    };
    Ok((Outcome::Accepted, body_of(&reply)?))
}

/// The wsToken, from the forwarded bearer header or the connect data.
fn credential<'a>(headers: &'a HeaderMap, req: &ConnectRequest<'a>) -> Option<Cow<'a, str>> {
    let bearer = bearer(headers, Scheme::AnyCase).and_then(|t| std::str::from_utf8(t).ok());
    if let Some(b) = bearer {
        return Some(Cow::Borrowed(b));
    }
    if let Some(data) = req.data {
        return serde_json::from_str::<TokenData<'a>>(data.get())
            .ok()
            .and_then(|d| d.token)
            .filter(|t| !t.is_empty());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(req.b64data.as_deref()?)
        .ok()?;
    serde_json::from_slice::<TokenData<'_>>(&decoded)
        .ok()
        .and_then(|d| d.token)
        .filter(|t| !t.is_empty())
        .map(|t| Cow::Owned(t.into_owned()))
}
