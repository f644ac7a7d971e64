//! Centrifugo's vocabulary as this sidecar speaks it: the proxy callbacks, why a proxy call is
//! refused and the answer each refusal gets (an error, or a terminal disconnect code), and the
//! server-API methods the sidecar calls.
//!
//! A leaf: it imports nothing of ours. The proxy handlers answer with these codes, the operator
//! actions kick live connections with the same ones ([`Reason::kick`]), the generated
//! Centrifugo config maps them for unidirectional transports, and the metrics registry
//! pre-creates one series per value (the `callback`, `reason` and `method` labels are the
//! variant names in snake case, derived by strum). See
//! https://centrifugal.dev/docs/server/proxy: every *decision* is HTTP 200 with exactly one of
//! `result`, `error` or `disconnect`; disconnect codes 4500-4999 are terminal (the client does
//! not reconnect), reasons at most 32 bytes.

use serde::Serialize;
use strum::{EnumCount, EnumIter, IntoStaticStr};

/// Which proxy callback Centrifugo made (the `callback` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, EnumCount, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Callback {
    Connect,
    Refresh,
    Subscribe,
    SubRefresh,
}

impl Callback {
    /// The `callback` metric label.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Why a proxy call was not accepted (the `reason` metric label; [`Reason::reply`] is the
/// answer Centrifugo gets). Declared in the order of the generated config's
/// `connect_code_to_unidirectional_disconnect` transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, EnumCount, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Reason {
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    UserUnknown,
    UserDisabled,
    NoCredentials,
    /// The token, or the connection's meta, names another application (`app.id`).
    WrongApplication,
    ChannelForbidden,
}

impl Reason {
    /// The `reason` metric label.
    pub fn label(self) -> &'static str {
        self.into()
    }

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
            Reason::WrongApplication => Rejection::Disconnect(Disconnect {
                code: 4506,
                reason: "wrong application",
            }),
        }
    }

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

/// A refusal, as Centrifugo reads it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rejection {
    Error(WireError),
    Disconnect(Disconnect),
}

/// A server-API method the sidecar calls (https://centrifugal.dev/docs/server/server_api):
/// the path after `centrifugo.api_url`, and the `method` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, EnumCount, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ApiMethod {
    Disconnect,
    Batch,
    Info,
}

impl ApiMethod {
    /// The method's path segment and `method` metric label.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

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
            Reason::WrongApplication,
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

    #[test]
    fn labels_are_the_documented_ones() {
        let labels = |v: Vec<&'static str>| v.join(" ");
        assert_eq!(
            labels(Callback::iter().map(Callback::label).collect()),
            "connect refresh subscribe sub_refresh"
        );
        assert_eq!(
            labels(Reason::iter().map(Reason::label).collect()),
            "token_expired token_invalid token_revoked user_unknown user_disabled \
             no_credentials wrong_application channel_forbidden"
        );
        assert_eq!(
            labels(ApiMethod::iter().map(ApiMethod::label).collect()),
            "disconnect batch info"
        );
    }
}
