//! Centrifugo's proxy wire format: the request fields the sidecar reads, the decision
//! envelopes it writes, and the codecs between bytes and those types.
//!
//! Every *decision* is HTTP 200 with exactly one of `result`, `error` or `disconnect`; see
//! Centrifugo's proxy documentation (https://centrifugal.dev/docs/server/proxy). The refusal
//! envelopes and their codes are Centrifugo's vocabulary, in [`crate::centrifugo::protocol`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::centrifugo::protocol::Reason;
use crate::error_chain::Context;
use crate::http::ApiError;
/// The connection `info`, as the wsToken carries it.
pub use crate::jwt::Info as UserInfo;
use crate::metrics::ProxyOutcome as Outcome;
use crate::store::SessionUser;

/// The connection meta the sidecar sets (connect result) or mints (wsToken `meta`), sent back
/// to refresh/subscribe when `include_connection_meta` is on: `iat` is the authenticating
/// token's issue time, which is what revocation is judged against; `app` the application
/// (`app.id`) of the service that authenticated it (absent in connections from before
/// `app.id`).
#[derive(Debug, Deserialize, Default)]
pub struct ConnMeta<'a> {
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(borrow, default)]
    pub app: Option<&'a str>,
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
    /// The connection meta, when Centrifugo sent it (`include_connection_meta`) and it is an
    /// object of the shape the sidecar sets.
    pub fn conn_meta(&self) -> Option<ConnMeta<'_>> {
        self.meta
            .and_then(|m| serde_json::from_str::<ConnMeta>(m.get()).ok())
    }
}

/// True when a connection whose meta is `meta` may belong to application `app_id`: no meta
/// (Centrifugo did not send it, so nothing can be told), the same `app`, or none while
/// `app_id` is the default (a connection from before `app.id`), as tokens are judged.
pub fn is_this_application(meta: Option<&ConnMeta<'_>>, app_id: &str) -> bool {
    match meta.map(|m| m.app) {
        None => true,
        Some(Some(app)) => app == app_id,
        Some(None) => app_id == crate::api_key::DEFAULT_APP_ID,
    }
}

/// Parses a proxy request body; malformed input is a 400 (Centrifugo never sends it).
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    crate::http::body::decode_object(bytes, "a JSON object, as Centrifugo sends a proxy request")
}

/// Serialises a decision body.
pub fn body_of<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    crate::http::to_json_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(Context::new("cannot serialise proxy reply", e).into()))
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

/// The `info` object for a user: only the fields the user has, then the declared info fields
/// of its `custom` (`extra`, from [`crate::segments::info_values`]); `None` when empty.
pub fn user_info<'a>(
    u: &'a SessionUser,
    extra: &'a [(&'a str, &'a RawValue)],
) -> Option<UserInfo<'a>> {
    let info = UserInfo {
        name: u.name.as_deref(),
        image: u.image.as_deref(),
        custom: extra,
    };
    (!info.is_empty()).then_some(info)
}
