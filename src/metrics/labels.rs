//! The closed label sets of the service's own metrics, one enum each. A label value is the
//! variant's name in snake case, derived by strum (`#[strum(serialize = ...)]` only where the
//! value is not a Rust name), and [`super::Metrics::new`] creates a series for every value.
//!
//! The values are a public contract (README "Metrics", `dashboards/`): rename a variant only
//! with them. Centrifugo's sets (`callback`, the proxy refusal `reason`, the server-API
//! `method`) are in [`crate::centrifugo::protocol`]; the `route` set is the router's, handed to
//! the registry at startup.

use strum::{EnumCount, EnumIter, IntoEnumIterator, IntoStaticStr};

/// `label()`: the value strum derives for a variant.
macro_rules! label_fn {
    ($($t:ty),+ $(,)?) => {
        $(impl $t {
            /// This value of the label.
            pub fn label(self) -> &'static str {
                self.into()
            }
        })+
    };
}

label_fn!(
    TokenKind,
    UpsertResult,
    RejectReason,
    ProxyFailure,
    DecisionOutcome,
    StatusClass,
    StoreOperation,
    BatchLookup,
    VerifyResult,
    IntrospectResult,
    Verification,
    ApiCallOutcome,
);

/// `kind` of `tokens_issued_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TokenKind {
    Rest,
    Ws,
    Subscription,
}

/// `result` of `users_upserted_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum UpsertResult {
    Created,
    Updated,
}

/// Why `POST /tokens` or `POST /tokens/subscription` was refused (`reason` of
/// `token_requests_rejected_total` and `subscription_token_requests_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RejectReason {
    InvalidApiKey,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// `POST /tokens/subscription` only.
    UserUnknown,
    UserDisabled,
    /// `POST /tokens/subscription` only.
    ChannelForbidden,
    StoreUnavailable,
    /// The client did not send its body in time (408).
    RequestTimeout,
    /// The service did not answer in time (503).
    Timeout,
    /// A rate limit refused it (429).
    RateLimited,
    InternalError,
}

impl RejectReason {
    /// True for the reasons only `POST /tokens/subscription` has.
    pub fn subscription_only(self) -> bool {
        matches!(
            self,
            RejectReason::UserUnknown | RejectReason::ChannelForbidden
        )
    }
}

/// Why a proxy call ended in an error rather than a decision (`reason` of
/// `proxy_decisions_total{outcome="error"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, EnumCount, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ProxyFailure {
    BadRequest,
    StoreUnavailable,
    InternalError,
    /// The call passed `server.request_timeout_seconds` (the router abandons it).
    Timeout,
}

/// `outcome` of `proxy_decisions_total`: its `reason` is [`NO_REASON`], a
/// [`crate::centrifugo::protocol::Reason`] or a [`ProxyFailure`] respectively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DecisionOutcome {
    Accepted,
    Rejected,
    Error,
}

/// The `reason` of an accepted proxy decision.
pub const NO_REASON: &str = "none";

/// `status_class` of `http_request_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, EnumCount, IntoStaticStr)]
pub enum StatusClass {
    #[strum(serialize = "2xx")]
    Success,
    #[strum(serialize = "3xx")]
    Redirection,
    #[strum(serialize = "4xx")]
    ClientError,
    #[strum(serialize = "5xx")]
    ServerError,
}

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

/// `operation` of `store_operation_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum StoreOperation {
    Ping,
    UpsertUser,
    GetUser,
    AuthenticateApiKey,
    TouchApiKey,
}

/// `lookup` of `store_batch_size`: which coalesced PostgreSQL read a statement served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum BatchLookup {
    /// A user's profile and state (the proxies, `/verify`, the read before an upsert).
    Profile,
    /// An API key by its hash.
    ApiKey,
}

/// `result` of `token_verifications_total{endpoint="verify"}`: `valid`, or the error code
/// `/verify` answered with (the code and the label are one string; `verify.rs` maps each
/// error to its label and tests that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, EnumCount, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum VerifyResult {
    Valid,
    InvalidToken,
    TokenExpired,
    WrongTokenType,
    WrongApplication,
    UserDisabled,
    TokenRevoked,
    StoreUnavailable,
    InternalError,
}

/// `result` of `token_verifications_total{endpoint="introspect"}` (refusals of the API key,
/// content type or size are counted by the HTTP metrics alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, EnumCount, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum IntrospectResult {
    Active,
    Inactive,
    /// Answered `active: false`: a token of another application (RFC 7662 says nothing more
    /// about an inactive token to the caller; the metric tells the operator).
    WrongApplication,
    StoreUnavailable,
    InternalError,
}

/// One `/verify` or `/introspect` answer: the variant is the `endpoint` label, its value the
/// `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Verification {
    Verify(VerifyResult),
    Introspect(IntrospectResult),
}

impl Verification {
    /// The `result` label.
    pub fn result(self) -> &'static str {
        match self {
            Verification::Verify(r) => r.label(),
            Verification::Introspect(r) => r.label(),
        }
    }

    /// Every (endpoint, result) pair.
    pub fn all() -> impl Iterator<Item = Verification> {
        VerifyResult::iter()
            .map(Verification::Verify)
            .chain(IntrospectResult::iter().map(Verification::Introspect))
    }
}

/// `outcome` of `centrifugo_api_calls_total`: one server-API attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ApiCallOutcome {
    Ok,
    Unreachable,
    Timeout,
    Unauthorized,
    HttpError,
    ApiError,
    BadResponse,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<E: IntoEnumIterator + Into<&'static str>>() -> String {
        E::iter().map(Into::into).collect::<Vec<&str>>().join(" ")
    }

    /// The values are the README's and the dashboards'; a renamed variant must fail here.
    #[test]
    fn label_values_are_the_documented_ones() {
        assert_eq!(labels::<TokenKind>(), "rest ws subscription");
        assert_eq!(labels::<UpsertResult>(), "created updated");
        assert_eq!(
            labels::<RejectReason>(),
            "invalid_api_key invalid_request payload_too_large unsupported_media_type \
             user_unknown user_disabled channel_forbidden store_unavailable request_timeout \
             timeout rate_limited internal_error"
        );
        assert_eq!(
            labels::<ProxyFailure>(),
            "bad_request store_unavailable internal_error timeout"
        );
        assert_eq!(labels::<DecisionOutcome>(), "accepted rejected error");
        assert_eq!(labels::<StatusClass>(), "2xx 3xx 4xx 5xx");
        assert_eq!(
            labels::<StoreOperation>(),
            "ping upsert_user get_user authenticate_api_key touch_api_key"
        );
        assert_eq!(labels::<BatchLookup>(), "profile api_key");
        assert_eq!(
            labels::<VerifyResult>(),
            "valid invalid_token token_expired wrong_token_type wrong_application user_disabled \
             token_revoked store_unavailable internal_error"
        );
        assert_eq!(
            labels::<IntrospectResult>(),
            "active inactive wrong_application store_unavailable internal_error"
        );
        assert_eq!(
            labels::<ApiCallOutcome>(),
            "ok unreachable timeout unauthorized http_error api_error bad_response"
        );
        let endpoints: Vec<_> = Verification::all().map(Verification::label).collect();
        assert_eq!(endpoints.iter().filter(|e| **e == "verify").count(), 9);
        assert_eq!(endpoints.iter().filter(|e| **e == "introspect").count(), 5);
    }

    #[test]
    fn status_classes() {
        let c = |s| StatusClass::of(s).label();
        assert_eq!(
            [c(200), c(304), c(429), c(503)],
            ["2xx", "3xx", "4xx", "5xx"]
        );
    }
}
