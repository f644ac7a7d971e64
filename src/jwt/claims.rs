//! The claims of each token the service signs (REST, connection, subscription), and the claims
//! verification reads back from REST tokens and wsTokens.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// How an `aud` entry names the application (`app.id`) a token belongs to: `app:<id>`.
pub const APP_AUDIENCE_PREFIX: &str = "app:";

/// Claims of the ChatSDK REST token. `aud` is `[tokens.rest_audience, "app:<app.id>"]`: the
/// API the token is for, and the application it belongs to (an API that checks its own
/// audience in an array, as JWT libraries do, is unaffected).
/// `iss` and `aud` are the same for every token: their JSON text, serialised once (`Signer`).
#[derive(Debug, Serialize)]
pub struct RestClaims<'a> {
    pub iss: &'a RawValue,
    pub sub: &'a str,
    pub aud: &'a RawValue,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
}

/// Connection info carried in the wsToken (and subscription tokens): only the fields the user
/// has, then the `custom` values `segments.info_fields` copies (as the caller sent them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Info<'a> {
    pub name: Option<&'a str>,
    pub image: Option<&'a str>,
    /// `(key, value)` of each declared info field the user's `custom` has.
    pub custom: &'a [(&'a str, &'a RawValue)],
}

impl Info<'_> {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.image.is_none() && self.custom.is_empty()
    }
}

impl Serialize for Info<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let n = self.name.is_some() as usize + self.image.is_some() as usize + self.custom.len();
        let mut m = s.serialize_map(Some(n))?;
        if let Some(v) = self.name {
            m.serialize_entry("name", v)?;
        }
        if let Some(v) = self.image {
            m.serialize_entry("image", v)?;
        }
        for (k, v) in self.custom {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Claims of the Centrifugo connection token
/// (https://centrifugal.dev/docs/server/authentication#connection-jwt-claims). Never `nbf`, never
/// `exp: 0`, never `channel`.
#[derive(Debug, Serialize)]
pub struct WsClaims<'a> {
    pub sub: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
    #[serde(skip_serializing_if = "Info::is_empty")]
    pub info: Info<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub channels: &'a [String],
    /// Server-side connection meta: the token's own `iat`, which the refresh and subscribe
    /// proxies receive back (`include_connection_meta`) to judge revocation, and the
    /// application the connection belongs to.
    pub meta: WsMeta<'a>,
}

/// The `meta` claim of a wsToken (never shown to clients: Centrifugo keeps it server-side).
#[derive(Debug, Serialize)]
pub struct WsMeta<'a> {
    pub iat: i64,
    /// `app.id`, as its JSON string (serialised once, `Signer`).
    pub app: &'a RawValue,
}

/// The part of a verified wsToken's `meta` verification reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VerifiedMeta {
    /// The application (`app.id`) of the service that minted it; absent in tokens from
    /// before `app.id`.
    #[serde(default)]
    pub app: Option<String>,
}

/// An `aud` claim: a string or an array of strings (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn entries(&self) -> &[String] {
        match self {
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(v) => v,
        }
    }

    /// True when `aud` is one of the entries.
    pub fn contains(&self, aud: &str) -> bool {
        self.entries().iter().any(|a| a == aud)
    }

    /// The application the first `app:<id>` entry names, if any.
    pub fn application(&self) -> Option<&str> {
        self.entries()
            .iter()
            .find_map(|a| a.strip_prefix(APP_AUDIENCE_PREFIX))
    }
}

/// Claims of a Centrifugo subscription token (https://centrifugal.dev/docs/server/channel_token_auth):
/// `sub` is the connection's user, `channel` the one channel it opens. Never `nbf`, never
/// `exp: 0`.
#[derive(Debug, Serialize)]
pub struct SubscriptionClaims<'a> {
    pub sub: &'a str,
    pub channel: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
    #[serde(skip_serializing_if = "Info::is_empty")]
    pub info: Info<'a>,
    /// When the subscription ends (only when `tokens.subscription_expire_at_seconds` is set;
    /// without it the subscription ends with `exp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
}

/// The claims the proxies and `/introspect` need from a verified wsToken.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifiedWs {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub jti: Option<String>,
    /// A string or an array of strings (Centrifugo accepts both).
    #[serde(default)]
    pub aud: Option<serde_json::Value>,
    #[serde(default)]
    pub iss: Option<String>,
    /// Not-before, when present (the sidecar never mints it).
    #[serde(default)]
    pub nbf: Option<f64>,
    /// Present only in subscription tokens; a connection token carrying it is invalid.
    #[serde(default)]
    pub channel: Option<String>,
    /// The server-side meta (its `app`; its `iat` is the token's own).
    #[serde(default)]
    pub meta: Option<VerifiedMeta>,
}

/// The claims `/verify` and `/introspect` read from a verified REST token.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifiedRest {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: Audience,
    pub jti: String,
    #[serde(default)]
    pub nbf: Option<f64>,
}
