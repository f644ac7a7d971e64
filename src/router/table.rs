//! The route table: every endpoint, the listener it is served on, its `route` metric label,
//! the [`Policy`] the router enforces before its handler runs (guard, body, rejection counter),
//! the resolution of a method and path (404 is not 405, `Allow` from the table), and each
//! route's path for whoever must name it (the generated Centrifugo config).
//!
//! A leaf below the handlers: the composition root hands [`ROUTE_LABELS`] to the metrics
//! registry without importing the request path. `router/guard.rs` says how a policy is enforced.

use http::Method;
use strum::{EnumIter, IntoStaticStr, VariantNames};

use crate::centrifugo::protocol::Callback;
use crate::http::{ApiError, Methods};

/// The `route` metric label: one variant per value, the value being the variant's name in
/// snake case (derived by strum); [`Route::metric_label`] names each route's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr, VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum RouteLabel {
    Tokens,
    CentrifugoConnect,
    CentrifugoRefresh,
    CentrifugoSubscribe,
    CentrifugoSubRefresh,
    Healthz,
    Readyz,
    Metrics,
    Openapi,
    TokensSubscription,
    AdminGetUser,
    AdminListUsers,
    AdminDisableUser,
    AdminEnableUser,
    AdminRevokeUserTokens,
    AdminDeleteUser,
    AdminRevokeAllTokens,
    AdminListApiKeys,
    AdminCreateApiKey,
    AdminRevokeApiKey,
    AdminListKeys,
    AdminRotateKey,
    AdminAudit,
    AdminOverview,
    AdminBulk,
    Verify,
    Introspect,
    Jwks,
    AdminConsole,
    AdminConsoleAsset,
    /// Requests that matched no route.
    Unmatched,
}

/// The `route` label values, indexed by [`Route::index`]. The metrics registry is handed this
/// list at startup.
pub const ROUTE_LABELS: &[&str] = RouteLabel::VARIANTS;

/// The `route` index of requests that matched no route.
pub(super) const UNMATCHED: usize = RouteLabel::Unmatched as usize;

/// The admin API's routes (`/admin/...`); the user id or key name is read from the path by
/// the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute {
    GetUser,
    ListUsers,
    DisableUser,
    EnableUser,
    RevokeUserTokens,
    DeleteUser,
    RevokeAllTokens,
    ListApiKeys,
    CreateApiKey,
    RevokeApiKey,
    ListKeys,
    RotateKey,
    Audit,
    Overview,
    /// A bulk action (or its dry run) over a segment (`POST /admin/bulk/{action}`).
    Bulk,
}

/// Every endpoint the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Tokens,
    SubscriptionTokens,
    Proxy(Callback),
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Admin(AdminRoute),
    Verify,
    Introspect,
    Jwks,
    /// The operator console's page (`GET /admin/`), public: it holds no data.
    ConsolePage,
    /// The console's stylesheet, script and icon (`GET /admin/console/{file}`), public.
    ConsoleAsset,
}

/// Who may call a route; checked by the router before the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone.
    Public,
    /// An `X-API-Key` of the store, behind `limits.failed_auth_per_ip_per_minute` (every failed
    /// check counts); counted per key in `chatsdk_auth_api_key_requests_total`. `mints`: also
    /// `limits.mint_per_api_key_per_second`.
    ApiKey { mints: bool },
    /// Centrifugo: the proxy secret header; a refusal is counted per callback.
    ProxySecret(Callback),
    /// `Authorization: Bearer <admin token>`, behind `limits.admin_per_ip_per_minute` (checked
    /// before the comparison); a refusal is counted.
    AdminBearer,
    /// `Authorization: Bearer <metrics token>` when `metrics.require_token`, else anyone.
    MetricsBearer,
}

/// The body a route reads, at most `server.max_body_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// Never read (an unread body closes the connection after the answer).
    None,
    /// `application/json`, required.
    Json,
    /// Empty, or `application/json` (the admin actions).
    OptionalJson,
    /// `application/x-www-form-urlencoded`, required (`/introspect`, RFC 7662).
    Form,
    /// Any bytes (Centrifugo's proxy calls; the decision parses them).
    Raw,
}

/// The counter a route's errors (its guard's and body's included, and the router's own
/// timeout) are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejections {
    /// None beyond the per-route request metrics.
    None,
    /// `chatsdk_auth_token_requests_rejected_total{reason}`.
    Tokens,
    /// `chatsdk_auth_subscription_token_requests_rejected_total{reason}`.
    SubscriptionTokens,
    /// The proxy outcome counters of this callback (`error` outcomes), and its duration.
    Proxy(Callback),
}

/// What the router does for a route before and after its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub guard: Guard,
    pub body: BodyRule,
    pub rejections: Rejections,
}

impl Route {
    /// The `route` metric label of this route.
    pub const fn metric_label(self) -> RouteLabel {
        match self {
            Route::Tokens => RouteLabel::Tokens,
            Route::SubscriptionTokens => RouteLabel::TokensSubscription,
            Route::Proxy(Callback::Connect) => RouteLabel::CentrifugoConnect,
            Route::Proxy(Callback::Refresh) => RouteLabel::CentrifugoRefresh,
            Route::Proxy(Callback::Subscribe) => RouteLabel::CentrifugoSubscribe,
            Route::Proxy(Callback::SubRefresh) => RouteLabel::CentrifugoSubRefresh,
            Route::Healthz => RouteLabel::Healthz,
            Route::Readyz => RouteLabel::Readyz,
            Route::Metrics => RouteLabel::Metrics,
            Route::OpenApi => RouteLabel::Openapi,
            Route::Admin(a) => match a {
                AdminRoute::GetUser => RouteLabel::AdminGetUser,
                AdminRoute::ListUsers => RouteLabel::AdminListUsers,
                AdminRoute::DisableUser => RouteLabel::AdminDisableUser,
                AdminRoute::EnableUser => RouteLabel::AdminEnableUser,
                AdminRoute::RevokeUserTokens => RouteLabel::AdminRevokeUserTokens,
                AdminRoute::DeleteUser => RouteLabel::AdminDeleteUser,
                AdminRoute::RevokeAllTokens => RouteLabel::AdminRevokeAllTokens,
                AdminRoute::ListApiKeys => RouteLabel::AdminListApiKeys,
                AdminRoute::CreateApiKey => RouteLabel::AdminCreateApiKey,
                AdminRoute::RevokeApiKey => RouteLabel::AdminRevokeApiKey,
                AdminRoute::ListKeys => RouteLabel::AdminListKeys,
                AdminRoute::RotateKey => RouteLabel::AdminRotateKey,
                AdminRoute::Audit => RouteLabel::AdminAudit,
                AdminRoute::Overview => RouteLabel::AdminOverview,
                AdminRoute::Bulk => RouteLabel::AdminBulk,
            },
            Route::Verify => RouteLabel::Verify,
            Route::Introspect => RouteLabel::Introspect,
            Route::Jwks => RouteLabel::Jwks,
            Route::ConsolePage => RouteLabel::AdminConsole,
            Route::ConsoleAsset => RouteLabel::AdminConsoleAsset,
        }
    }

    /// This route's policy: the one declaration of who may call it, what it reads and where
    /// its refusals are counted. A `match` on a `Copy` enum: free on the request path.
    pub const fn policy(self) -> Policy {
        const fn p(guard: Guard, body: BodyRule, rejections: Rejections) -> Policy {
            Policy {
                guard,
                body,
                rejections,
            }
        }
        const PUBLIC: Policy = p(Guard::Public, BodyRule::None, Rejections::None);
        match self {
            Route::Tokens => p(
                Guard::ApiKey { mints: true },
                BodyRule::Json,
                Rejections::Tokens,
            ),
            Route::SubscriptionTokens => p(
                Guard::ApiKey { mints: true },
                BodyRule::Json,
                Rejections::SubscriptionTokens,
            ),
            Route::Introspect => p(
                Guard::ApiKey { mints: false },
                BodyRule::Form,
                Rejections::None,
            ),
            Route::Proxy(cb) => p(Guard::ProxySecret(cb), BodyRule::Raw, Rejections::Proxy(cb)),
            Route::Metrics => p(Guard::MetricsBearer, BodyRule::None, Rejections::None),
            Route::Healthz | Route::Readyz | Route::OpenApi | Route::Verify | Route::Jwks => PUBLIC,
            // The console's page and files hold no data: every data call is the admin API's.
            Route::ConsolePage | Route::ConsoleAsset => PUBLIC,
            Route::Admin(
                AdminRoute::GetUser
                | AdminRoute::ListUsers
                | AdminRoute::DeleteUser
                | AdminRoute::ListApiKeys
                | AdminRoute::RevokeApiKey
                | AdminRoute::ListKeys
                | AdminRoute::Audit
                | AdminRoute::Overview,
            ) => p(Guard::AdminBearer, BodyRule::None, Rejections::None),
            Route::Admin(
                AdminRoute::DisableUser
                | AdminRoute::EnableUser
                | AdminRoute::RevokeUserTokens
                | AdminRoute::RevokeAllTokens
                | AdminRoute::CreateApiKey
                | AdminRoute::RotateKey,
            ) => p(Guard::AdminBearer, BodyRule::OptionalJson, Rejections::None),
            // The `where` is required: a JSON body, always.
            Route::Admin(AdminRoute::Bulk) => {
                p(Guard::AdminBearer, BodyRule::Json, Rejections::None)
            }
        }
    }

    /// The path this route is served on (its first row in [`ENDPOINTS`]), for whoever must
    /// name it (the generated Centrifugo config); every route has one (unit-tested).
    pub const fn path(self) -> &'static str {
        let mut i = 0;
        while i < ENDPOINTS.len() {
            if ENDPOINTS[i].route.index() == self.index() {
                return ENDPOINTS[i].path;
            }
            i += 1;
        }
        ""
    }

    /// Position in [`ROUTE_LABELS`].
    pub const fn index(self) -> usize {
        self.metric_label() as usize
    }

    /// The `route` metric label (a closed set).
    pub fn label(self) -> &'static str {
        self.metric_label().into()
    }

    /// Served where the admin API is: its routes and the console's.
    pub const fn is_admin(self) -> bool {
        matches!(
            self,
            Route::Admin(_) | Route::ConsolePage | Route::ConsoleAsset
        )
    }
}

/// Which listener a request arrived on. [`crate::serve_on`] decides it from the listeners it was
/// given, the one source of truth for where `/metrics` and `/admin/...` are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The main listener: everything, `/metrics` when `serves_metrics` (no metrics listener
    /// of its own) and `/admin/...` when `serves_admin` (no admin listener of its own).
    Main {
        serves_metrics: bool,
        serves_admin: bool,
    },
    /// The separate metrics listener: `/metrics` and `/healthz` only.
    Metrics,
    /// The separate admin listener (`admin.listen`): `/admin/...` and `/healthz` only.
    Admin,
}

/// One (method, path) the service serves. `HEAD` is answered wherever `GET` is. A path
/// segment written `{name}` matches any one non-empty (percent-encoded) segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub route: Route,
    /// Whether `path` has a `{name}` segment, found once when the table is built, so
    /// resolving a request compares a fixed path in one string comparison.
    templated: bool,
}

/// Every endpoint: [`route`] resolves against this table, and `src/openapi.json` documents
/// exactly these (tests/api/openapi.rs checks both ways). `/metrics` leaves the main listener
/// when the metrics have a listener of their own, which serves only `/metrics` and `/healthz`;
/// `/admin/...` likewise with `admin.listen`. `/verify` answers every method a gateway may
/// forward the original request's method with (nginx `auth_request` and Envoy `ext_authz` do).
pub const ENDPOINTS: [Endpoint; 35] = [
    Endpoint::post("/tokens", Route::Tokens),
    Endpoint::post("/tokens/subscription", Route::SubscriptionTokens),
    Endpoint::post("/centrifugo/connect", Route::Proxy(Callback::Connect)),
    Endpoint::post("/centrifugo/refresh", Route::Proxy(Callback::Refresh)),
    Endpoint::post("/centrifugo/subscribe", Route::Proxy(Callback::Subscribe)),
    Endpoint::post(
        "/centrifugo/sub_refresh",
        Route::Proxy(Callback::SubRefresh),
    ),
    Endpoint::get("/healthz", Route::Healthz),
    Endpoint::get("/readyz", Route::Readyz),
    Endpoint::get("/metrics", Route::Metrics),
    Endpoint::get("/openapi.json", Route::OpenApi),
    Endpoint::get("/admin/users/{id}", Route::Admin(AdminRoute::GetUser)),
    Endpoint::get("/admin/users", Route::Admin(AdminRoute::ListUsers)),
    Endpoint::post(
        "/admin/users/{id}/disable",
        Route::Admin(AdminRoute::DisableUser),
    ),
    Endpoint::post(
        "/admin/users/{id}/enable",
        Route::Admin(AdminRoute::EnableUser),
    ),
    Endpoint::post(
        "/admin/users/{id}/revoke-tokens",
        Route::Admin(AdminRoute::RevokeUserTokens),
    ),
    Endpoint::delete("/admin/users/{id}", Route::Admin(AdminRoute::DeleteUser)),
    Endpoint::post(
        "/admin/revoke-tokens",
        Route::Admin(AdminRoute::RevokeAllTokens),
    ),
    Endpoint::get("/admin/api-keys", Route::Admin(AdminRoute::ListApiKeys)),
    Endpoint::post("/admin/api-keys", Route::Admin(AdminRoute::CreateApiKey)),
    Endpoint::delete(
        "/admin/api-keys/{name}",
        Route::Admin(AdminRoute::RevokeApiKey),
    ),
    Endpoint::get("/admin/keys", Route::Admin(AdminRoute::ListKeys)),
    Endpoint::post(
        "/admin/keys/{kind}/rotate",
        Route::Admin(AdminRoute::RotateKey),
    ),
    Endpoint::get("/admin/audit", Route::Admin(AdminRoute::Audit)),
    Endpoint::get("/admin/overview", Route::Admin(AdminRoute::Overview)),
    Endpoint::post("/admin/bulk/{action}", Route::Admin(AdminRoute::Bulk)),
    Endpoint::get("/admin/", Route::ConsolePage),
    Endpoint::get("/admin/console/{file}", Route::ConsoleAsset),
    Endpoint::get("/verify", Route::Verify),
    Endpoint::with("POST", "/verify", Route::Verify),
    Endpoint::with("PUT", "/verify", Route::Verify),
    Endpoint::with("PATCH", "/verify", Route::Verify),
    Endpoint::with("DELETE", "/verify", Route::Verify),
    Endpoint::with("OPTIONS", "/verify", Route::Verify),
    Endpoint::post("/introspect", Route::Introspect),
    Endpoint::get("/.well-known/jwks.json", Route::Jwks),
];

/// Whether an endpoint path has a `{name}` segment (a `{` anywhere in it).
const fn has_parameter(path: &str) -> bool {
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            return true;
        }
        i += 1;
    }
    false
}

impl Endpoint {
    const fn with(method: &'static str, path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method,
            path,
            route,
            templated: has_parameter(path),
        }
    }

    const fn post(path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method: "POST",
            path,
            route,
            templated: has_parameter(path),
        }
    }

    const fn get(path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method: "GET",
            path,
            route,
            templated: has_parameter(path),
        }
    }

    const fn delete(path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method: "DELETE",
            path,
            route,
            templated: has_parameter(path),
        }
    }

    /// True when `path` matches this endpoint's path (`{name}` segments match any non-empty
    /// segment).
    fn matches(&self, path: &str) -> bool {
        if !self.templated {
            return self.path == path;
        }
        let mut want = self.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') => {
                    if g.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    }

    fn served_on(&self, listener: Listener) -> bool {
        match listener {
            Listener::Main {
                serves_metrics,
                serves_admin,
            } => {
                (serves_metrics || self.route != Route::Metrics)
                    && (serves_admin || !self.route.is_admin())
            }
            Listener::Metrics => matches!(self.route, Route::Metrics | Route::Healthz),
            Listener::Admin => self.route.is_admin() || self.route == Route::Healthz,
        }
    }
}

/// The segment of `path` (still percent-encoded) that `route`'s endpoint names `{name}`;
/// `None` when its path has no such parameter. `path` is one the router resolved to `route`.
pub fn param<'p>(route: Route, path: &'p str, name: &str) -> Option<&'p str> {
    let e = ENDPOINTS
        .iter()
        .find(|e| e.route == route && e.matches(path))?;
    e.path
        .split('/')
        .zip(path.split('/'))
        .find(|(want, _)| {
            want.strip_prefix('{')
                .and_then(|w| w.strip_suffix('}'))
                .is_some_and(|w| w == name)
        })
        .map(|(_, got)| got)
}

/// Resolves a method and path; 404 for an unknown path, 405 for a known one with another method
/// (its `Allow` lists every method the path takes here, `HEAD` wherever `GET` is).
pub fn route(method: &Method, path: &str, listener: Listener) -> Result<Route, ApiError> {
    let mut allowed = Methods::default();
    for e in ENDPOINTS
        .iter()
        .filter(|e| e.matches(path) && e.served_on(listener))
    {
        if method.as_str() == e.method || (e.method == "GET" && *method == Method::HEAD) {
            return Ok(e.route);
        }
        allowed = allowed.with(e.method);
        if e.method == "GET" {
            allowed = allowed.with("HEAD");
        }
    }
    if allowed.is_empty() {
        Err(ApiError::NotFound)
    } else {
        Err(ApiError::MethodNotAllowed(allowed))
    }
}

#[cfg(test)]
mod tests;
