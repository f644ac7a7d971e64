//! `POST /centrifugo/refresh`: extends a connection while its user is active and its tokens
//! are not revoked; otherwise `{"result":{"expired":true}}` (Centrifugo then closes with 3005).
//!
//! Revocation needs the authenticating token's `iat`, which arrives in the connection `meta`
//! when Centrifugo's refresh proxy has `include_connection_meta: true` (the generated configs
//! set it). Without it only disable is enforced here.

use bytes::Bytes;
use serde::Serialize;

use super::{
    body_of, expired, parse, session_verdict, user_info, Outcome, SessionRequest, UserInfo,
};
use crate::http::ApiError;
use crate::router::context::Proxy;

#[derive(Serialize)]
struct RefreshResult<'a> {
    expire_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<UserInfo<'a>>,
}

#[derive(Serialize)]
struct Reply<'a> {
    result: RefreshResult<'a>,
}

/// Decides one connection refresh.
pub(crate) async fn decide(ctx: &Proxy<'_>, bytes: &[u8]) -> Result<(Outcome, Bytes), ApiError> {
    let req: SessionRequest<'_> = parse(bytes)?;
    if req.user.is_empty() {
        return expired(super::Reason::UserUnknown);
    }
    let meta = req.conn_meta();
    if !super::wire::is_this_application(meta.as_ref(), ctx.app_id) {
        return expired(super::Reason::WrongApplication);
    }
    let auth_iat = meta.and_then(|m| m.iat);
    let user = match session_verdict(ctx.store.get_session(&req.user).await?, auth_iat) {
        Ok(user) => user,
        Err(reason) => return expired(reason),
    };
    let extra = crate::segments::info_values(user.custom.as_deref(), ctx.info_fields);
    let reply = Reply {
        result: RefreshResult {
            expire_at: ctx.now + ctx.centrifugo.refresh_interval_seconds,
            info: user_info(&user, &extra),
        },
    };
    Ok((Outcome::Accepted, body_of(&reply)?))
}
