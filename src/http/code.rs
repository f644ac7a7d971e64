//! Every error code the service answers with, in one closed enum: its wire text, its HTTP
//! status and the sentence saying when it is sent. README.md's "Error codes" table is this
//! enum rendered ([`Code::table`]), and `src/openapi.json` lists exactly these codes
//! (tests/api/openapi.rs checks both), so a code cannot be added without documenting it.
//!
//! [`ApiError::code`](super::ApiError::code) maps every error to one of these; a field error
//! names its [`Field`], never a free string.

use http::StatusCode;
use strum::{EnumIter, IntoStaticStr};

/// A stable, machine-readable error code (`{"code": "..."}`), in the README table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Code {
    InvalidJson,
    InvalidUserId,
    InvalidName,
    InvalidImage,
    InvalidCustom,
    InvalidChannel,
    InvalidChannels,
    DuplicateApiKey,
    InvalidBefore,
    InvalidLimit,
    InvalidFilter,
    InvalidPath,
    InvalidWhere,
    InvalidExpectedCount,
    InvalidApiKey,
    ApiKeyRevoked,
    ApiKeyWrongApplication,
    InvalidProxySecret,
    InvalidMetricsToken,
    InvalidAdminToken,
    InvalidToken,
    TokenExpired,
    WrongTokenType,
    WrongApplication,
    UserDisabled,
    TokenRevoked,
    ChannelForbidden,
    NotFound,
    UserUnknown,
    ApiKeyNotFound,
    MethodNotAllowed,
    RequestTimeout,
    ApiKeyExists,
    RotationRefused,
    SegmentChanged,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    InternalError,
    StoreUnavailable,
    Timeout,
    Draining,
    StoreReadOnly,
}

impl Code {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The HTTP status every answer with this code has.
    pub const fn status(self) -> StatusCode {
        use Code as C;
        match self {
            C::InvalidJson
            | C::InvalidUserId
            | C::InvalidName
            | C::InvalidImage
            | C::InvalidCustom
            | C::InvalidChannel
            | C::InvalidChannels
            | C::DuplicateApiKey
            | C::InvalidBefore
            | C::InvalidLimit
            | C::InvalidFilter
            | C::InvalidPath
            | C::InvalidWhere
            | C::InvalidExpectedCount => StatusCode::BAD_REQUEST,
            C::InvalidApiKey
            | C::ApiKeyRevoked
            | C::ApiKeyWrongApplication
            | C::InvalidProxySecret
            | C::InvalidMetricsToken
            | C::InvalidAdminToken
            | C::InvalidToken
            | C::TokenExpired
            | C::WrongTokenType
            | C::WrongApplication => StatusCode::UNAUTHORIZED,
            C::UserDisabled | C::TokenRevoked | C::ChannelForbidden => StatusCode::FORBIDDEN,
            C::NotFound | C::UserUnknown | C::ApiKeyNotFound => StatusCode::NOT_FOUND,
            C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            C::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            C::ApiKeyExists | C::RotationRefused | C::SegmentChanged => StatusCode::CONFLICT,
            C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            C::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            C::StoreUnavailable | C::Timeout | C::Draining | C::StoreReadOnly => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// When it is sent: the "When" column of README.md's table.
    pub const fn when(self) -> &'static str {
        use Code as C;
        match self {
            C::InvalidJson => "body is not JSON, or not a JSON object (admin API: also a non-empty body with an unknown field)",
            C::InvalidUserId => "`userId` missing, neither a string nor an integer (`1.5`, `1e3`, `-0`, `true`, `null`), empty, over 255 bytes, or with control characters",
            C::InvalidName => "`name` not a string/null, over 255 characters, or with control characters (admin API: an API-key name that is missing or not `[A-Za-z0-9._-]{1,64}`)",
            C::InvalidImage => "`image` not an absolute http(s) URL, or over 2048 bytes",
            C::InvalidCustom => "`custom` not an object/null/empty array, or over 16 KiB",
            C::InvalidChannel => "(`/tokens/subscription`) a channel that is not a string, empty, over 255 bytes, with control characters, or with a namespace Centrifugo cannot have; the message says which (`channel` or `channels[i]`)",
            C::InvalidChannels => "(`/tokens/subscription`) neither or both of `channel`/`channels`, `channels` not an array, empty, or over 100",
            C::DuplicateApiKey => "more than one `X-API-Key` header (which one a proxy or framework keeps differs: refused rather than guessed)",
            C::InvalidBefore => "admin API: `before` not an integer or in the future (the revoke actions' instant), or not a positive whole number (`GET /admin/audit`'s page cursor)",
            C::InvalidLimit => "admin API: `limit` not a whole number from 1 to 1000",
            C::InvalidFilter => "`GET /admin/audit`: an `action`, `actor` or `subject` filter with a control character",
            C::InvalidPath => "admin API: the id or name is not valid percent-encoded UTF-8",
            C::InvalidWhere => "segments (`GET /admin/users?where=`, `POST /admin/bulk/{action}`, `user list --where`, `user bulk`): a `where` condition that is malformed or names a field `segments.fields` does not declare, or (bulk) `where` missing or not an array of strings",
            C::InvalidExpectedCount => "segments (`POST /admin/bulk/{action}`, `user bulk`): no `expected_count` for a bulk action that is not a dry run, or one that is not a whole number",
            C::InvalidApiKey => r#"`X-API-Key` missing, unknown (`"Invalid API key"`), or with a byte that is not printable ASCII inside it (never trimmed; the spaces and tabs *around* a header value are HTTP's optional whitespace, removed by the HTTP parser, RFC 9110 §5.5)"#,
            C::ApiKeyRevoked => r#"`X-API-Key` is a key an operator revoked; the message gives the date (`"This API key was revoked on Sun, 06 Dec 2026 15:00:00 GMT; ..."`)"#,
            C::ApiKeyWrongApplication => r#"`X-API-Key` is a key of another application: its prefix (`chatsdk_<app>_...`) names an application other than this service's `app.id`; the message names both (`"This API key belongs to application \"staging\", but this service is application \"production\" ..."`), never the key. All three 401s count against `limits.failed_auth_per_ip_per_minute`"#,
            C::InvalidProxySecret => "a proxy call without the shared secret header",
            C::InvalidMetricsToken => "`/metrics` without the bearer token when one is required",
            C::InvalidAdminToken => "`/admin/...` without the right `Authorization: Bearer <admin token>` (counted in `chatsdk_auth_admin_unauthorized_total`)",
            C::InvalidToken => r#"`/verify`: no bearer token, a malformed or badly signed one, an unknown `kid`, or a key that no longer verifies (`WWW-Authenticate: Bearer error="invalid_token"`)"#,
            C::TokenExpired => "`/verify`: the token's `exp` has passed",
            C::WrongTokenType => "`/verify`: a `wsToken` was sent; use the `token` field for REST calls and `wsToken` for the WebSocket",
            C::WrongApplication => "`/verify`: the token was issued for another application (its `aud` names another `app.id`), or names none while this service's `app.id` is not `default`; get a token from this application's `POST /tokens` (`/introspect` answers `active: false`, the proxies disconnect with 4506)",
            C::UserDisabled => "the user was disabled with `chatsdk-auth user disable` (`POST /tokens`, `/verify`)",
            C::TokenRevoked => "`/verify`: the token was issued before `chatsdk-auth user revoke-tokens` (the user's or app-wide)",
            C::ChannelForbidden => "(`/tokens/subscription`) the channel rules do not give the user this channel; the message names the first refused one",
            C::NotFound => "unknown path",
            C::UserUnknown => "(`/tokens/subscription`) no user with this `userId`: call `POST /tokens` for it first; (admin API) no user with that id (nothing changed, nothing sent to Centrifugo)",
            C::ApiKeyNotFound => "admin API: no active API key with that name",
            C::MethodNotAllowed => "wrong method for a known path; `Allow` lists every method the path takes",
            C::RequestTimeout => "the request body had not fully arrived within `server.request_timeout_seconds` (`Connection: close`)",
            C::ApiKeyExists => "admin API: an API key with that name exists (names stay taken after revocation)",
            C::RotationRefused => "`POST /admin/keys/{kind}/rotate`: a rotation is pending, or the previous ws HMAC key still verifies",
            C::SegmentChanged => "segments (`POST /admin/bulk/{action}`, `user bulk`): the segment holds another number of users than `expected_count` (nothing was changed)",
            C::PayloadTooLarge => "body over `server.max_body_bytes` (default 65536)",
            C::UnsupportedMediaType => "`Content-Type` is not `application/json` (`/introspect`: not `application/x-www-form-urlencoded`; admin API: a non-empty body without it)",
            C::RateLimited => "a `limits.*` limit; `Retry-After` gives the seconds until the next request passes",
            C::InternalError => "a bug; the cause is in the log",
            C::StoreUnavailable => "the database is unreachable or locked past `storage.busy_timeout_ms`; retry",
            C::Timeout => "the service took longer than `server.request_timeout_seconds` to answer",
            C::Draining => "`GET /readyz`: the service is shutting down (SIGTERM/SIGINT), so load balancers send traffic elsewhere while it drains",
            C::StoreReadOnly => "`GET /readyz`: reads work but writes fail (disk full, read-only file, a lock held past the busy timeout)",
        }
    }

    /// `GET /readyz`'s own codes (its `NotReady` body, not the error envelope).
    pub const fn readiness_only(self) -> bool {
        matches!(self, Code::Draining | Code::StoreReadOnly)
    }

    /// README.md's "Error codes" table, rendered from the enum (header included).
    pub fn table() -> String {
        use strum::IntoEnumIterator;
        let mut t = String::from("| Status | `code` | When |\n|---|---|---|\n");
        for c in Code::iter() {
            t.push_str(&format!(
                "| {} | `{}` | {} |\n",
                c.status().as_u16(),
                c.as_str(),
                c.when()
            ));
        }
        t
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The request field or parameter a 400 names: its code is `invalid_<field>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter)]
pub enum Field {
    UserId,
    Name,
    Image,
    Custom,
    Channel,
    Channels,
    /// `before`: a revocation instant (admin actions) or the audit's page cursor.
    Before,
    Limit,
    /// An audit filter (`action`, `actor`, `subject`).
    Filter,
    /// A path segment (a user id, key name or key kind).
    Path,
    /// A segment's `where` conditions.
    Where,
    /// A bulk action's `expected_count`.
    ExpectedCount,
}

impl Field {
    pub const fn code(self) -> Code {
        match self {
            Field::UserId => Code::InvalidUserId,
            Field::Name => Code::InvalidName,
            Field::Image => Code::InvalidImage,
            Field::Custom => Code::InvalidCustom,
            Field::Channel => Code::InvalidChannel,
            Field::Channels => Code::InvalidChannels,
            Field::Before => Code::InvalidBefore,
            Field::Limit => Code::InvalidLimit,
            Field::Filter => Code::InvalidFilter,
            Field::Path => Code::InvalidPath,
            Field::Where => Code::InvalidWhere,
            Field::ExpectedCount => Code::InvalidExpectedCount,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_field_code_is_a_400_named_after_its_field() {
        for f in Field::iter() {
            assert_eq!(f.code().status(), StatusCode::BAD_REQUEST, "{f:?}");
            assert!(f.code().as_str().starts_with("invalid_"), "{f:?}");
        }
    }

    #[test]
    fn the_table_is_ordered_by_status_and_every_sentence_fits_a_table_cell() {
        let statuses: Vec<u16> = Code::iter().map(|c| c.status().as_u16()).collect();
        assert!(statuses.windows(2).all(|w| w[0] <= w[1]), "{statuses:?}");
        for c in Code::iter() {
            assert!(!c.when().is_empty() && !c.when().contains('\n'), "{c}");
        }
    }
}
