//! Centrifugo's proxy wire format: the request fields the sidecar reads, the decision
//! envelopes it writes, and the codecs between bytes and those types.
//!
//! Every *decision* is HTTP 200 with exactly one of `result`, `error` or `disconnect`; see
//! Centrifugo's proxy documentation (https://centrifugal.dev/docs/server/proxy). Disconnect
//! codes 4500-4999 are terminal (the client does not reconnect), reasons at most 32 bytes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::decision::{Outcome, Reason};
use crate::error_chain::Context;
use crate::http::ApiError;
use crate::store::SessionUser;

impl Reason {
    /// The Centrifugo answer for a rejected connect or subscribe.
    pub fn reply(self) -> Rejection {
        match self {
            Reason::TokenExpired => Rejection::Error(WireError {
                code: 1109,
                message: "token expired",
                temporary: true,
            }),
            Reason::ChannelForbidden => Rejection::Error(WireError {
                code: 403,
                message: "permission denied",
                temporary: false,
            }),
            Reason::TokenInvalid => Rejection::Disconnect(Disconnect {
                code: 4501,
                reason: "invalid token",
            }),
            Reason::UserUnknown => Rejection::Disconnect(Disconnect {
                code: 4502,
                reason: "unknown user",
            }),
            Reason::UserDisabled => Rejection::Disconnect(Disconnect {
                code: 4503,
                reason: "user disabled",
            }),
            Reason::TokenRevoked => Rejection::Disconnect(Disconnect {
                code: 4504,
                reason: "token revoked",
            }),
            Reason::NoCredentials => Rejection::Disconnect(Disconnect {
                code: 4505,
                reason: "no credentials",
            }),
        }
    }
}

impl Reason {
    /// The terminal disconnect a *live* connection gets through Centrifugo's server API when
    /// an operator makes this reason true (disable, revoke, delete): the same code and reason
    /// the connect proxy answers, so clients see one vocabulary.
    pub fn kick(self) -> Option<Disconnect> {
        match self.reply() {
            Rejection::Disconnect(d) => Some(d),
            Rejection::Error(_) => None,
        }
    }
}

/// `{"error": {...}}` body.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct WireError {
    pub code: u32,
    pub message: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

/// `{"disconnect": {...}}` body; reasons are ASCII and at most 32 bytes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u32,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rejection {
    Error(WireError),
    Disconnect(Disconnect),
}

/// The connection meta the sidecar sets (connect result) or mints (wsToken `meta`), sent back
/// to refresh/subscribe when `include_connection_meta` is on: `iat` is the authenticating
/// token's issue time, which is what revocation is judged against.
#[derive(Debug, Deserialize, Default)]
pub struct ConnMeta {
    #[serde(default)]
    pub iat: Option<i64>,
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
    /// The authenticating token's `iat` from the connection meta, when Centrifugo sent it.
    pub fn auth_iat(&self) -> Option<i64> {
        self.meta
            .and_then(|m| serde_json::from_str::<ConnMeta>(m.get()).ok())
            .and_then(|m| m.iat)
    }
}

/// Parses a proxy request body; malformed input is a 400 (Centrifugo never sends it).
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON array; Centrifugo always sends an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidJson(
            "Malformed proxy request: the body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::InvalidJson(format!(
            "Malformed proxy request: {}",
            e.to_string()
                .split(" at line")
                .next()
                .unwrap_or("invalid JSON")
        ))
    })
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

/// The `info` object for a user: only the fields the user has.
#[derive(Debug, Serialize)]
pub struct UserInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<&'a str>,
}

impl<'a> UserInfo<'a> {
    pub fn of(u: &'a SessionUser) -> Option<UserInfo<'a>> {
        (u.name.is_some() || u.image.is_some()).then_some(UserInfo {
            name: u.name.as_deref(),
            image: u.image.as_deref(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_envelopes_match_the_wire_contract() {
        let j = |r: Reason| serde_json::to_string(&r.reply()).unwrap();
        assert_eq!(
            j(Reason::TokenExpired),
            r#"{"error":{"code":1109,"message":"token expired","temporary":true}}"#
        );
        assert_eq!(
            j(Reason::TokenInvalid),
            r#"{"disconnect":{"code":4501,"reason":"invalid token"}}"#
        );
        assert_eq!(
            j(Reason::ChannelForbidden),
            r#"{"error":{"code":403,"message":"permission denied"}}"#
        );
        for r in [
            Reason::TokenInvalid,
            Reason::UserUnknown,
            Reason::UserDisabled,
            Reason::TokenRevoked,
            Reason::NoCredentials,
        ] {
            match r.reply() {
                Rejection::Disconnect(d) => {
                    assert!((4500..=4999).contains(&d.code), "terminal range");
                    assert!(d.reason.len() <= 32 && d.reason.is_ascii());
                }
                Rejection::Error(_) => panic!("{r:?} must disconnect"),
            }
        }
    }
}
