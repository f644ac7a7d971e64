//! The route table: every endpoint, the listener it is served on, its `route` metric label,
//! and the resolution of a method and path (404 is not 405).
//!
//! A leaf below the handlers: the composition root hands [`ROUTE_LABELS`] to the metrics
//! registry without importing the request path.

use http::Method;

use crate::http::ApiError;
use crate::proxy::decision::Callback;

/// The `route` label values, indexed by [`Route::index`] (the last is for requests that
/// matched no route). The metrics registry is handed this list at startup.
pub const ROUTE_LABELS: [&str; 30] = [
    "tokens",
    "centrifugo_connect",
    "centrifugo_refresh",
    "centrifugo_subscribe",
    "centrifugo_sub_refresh",
    "healthz",
    "readyz",
    "metrics",
    "openapi",
    "tokens_subscription",
    "admin_get_user",
    "admin_list_users",
    "admin_disable_user",
    "admin_enable_user",
    "admin_revoke_user_tokens",
    "admin_delete_user",
    "admin_revoke_all_tokens",
    "admin_list_api_keys",
    "admin_create_api_key",
    "admin_revoke_api_key",
    "admin_list_keys",
    "admin_rotate_key",
    "admin_audit",
    "admin_overview",
    "verify",
    "introspect",
    "jwks",
    "admin_console",
    "admin_console_asset",
    "unmatched",
];

/// The `route` index of requests that matched no route.
pub(super) const UNMATCHED: usize = ROUTE_LABELS.len() - 1;

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

impl Route {
    /// Position in [`ROUTE_LABELS`].
    pub fn index(self) -> usize {
        match self {
            Route::Tokens => 0,
            Route::Proxy(Callback::Connect) => 1,
            Route::Proxy(Callback::Refresh) => 2,
            Route::Proxy(Callback::Subscribe) => 3,
            Route::Proxy(Callback::SubRefresh) => 4,
            Route::Healthz => 5,
            Route::Readyz => 6,
            Route::Metrics => 7,
            Route::OpenApi => 8,
            Route::SubscriptionTokens => 9,
            Route::Admin(a) => 10 + a as usize,
            Route::Verify => 24,
            Route::Introspect => 25,
            Route::Jwks => 26,
            Route::ConsolePage => 27,
            Route::ConsoleAsset => 28,
        }
    }

    /// True for the routes that never read a request body.
    pub fn reads_no_body(self) -> bool {
        matches!(
            self,
            Route::Healthz
                | Route::Readyz
                | Route::Metrics
                | Route::OpenApi
                | Route::Admin(
                    AdminRoute::GetUser
                        | AdminRoute::ListUsers
                        | AdminRoute::DeleteUser
                        | AdminRoute::ListApiKeys
                        | AdminRoute::RevokeApiKey
                        | AdminRoute::ListKeys
                        | AdminRoute::Audit
                        | AdminRoute::Overview
                )
                | Route::Verify
                | Route::Jwks
                | Route::ConsolePage
                | Route::ConsoleAsset
        )
    }

    /// The `route` metric label (a closed set).
    pub fn label(self) -> &'static str {
        ROUTE_LABELS[self.index()]
    }

    /// Served where the admin API is: its routes and the console's.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Route::Admin(_) | Route::ConsolePage | Route::ConsoleAsset
        )
    }
}

/// Which listener a request arrived on. [`crate::serve`] decides it from the listeners it was
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
}

/// Every endpoint: [`route`] resolves against this table, and `src/openapi.json` documents
/// exactly these (tests/api/openapi.rs checks both ways). `/metrics` leaves the main listener
/// when the metrics have a listener of their own, which serves only `/metrics` and `/healthz`;
/// `/admin/...` likewise with `admin.listen`. `/verify` answers every method a gateway may
/// forward the original request's method with (nginx `auth_request` and Envoy `ext_authz` do).
pub const ENDPOINTS: [Endpoint; 34] = [
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

impl Endpoint {
    const fn with(method: &'static str, path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method,
            path,
            route,
        }
    }

    const fn post(path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method: "POST",
            path,
            route,
        }
    }

    const fn get(path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method: "GET",
            path,
            route,
        }
    }

    const fn delete(path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method: "DELETE",
            path,
            route,
        }
    }

    /// True when `path` matches this endpoint's path (`{name}` segments match any non-empty
    /// segment).
    fn matches(&self, path: &str) -> bool {
        if !self.path.contains('{') {
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

/// Resolves a method and path; 404 for an unknown path, 405 for a known one with another method
/// (its `Allow` lists every method the path takes).
pub fn route(method: &Method, path: &str, listener: Listener) -> Result<Route, ApiError> {
    let mut allowed: [Option<&'static str>; 2] = [None, None];
    for e in ENDPOINTS
        .iter()
        .filter(|e| e.matches(path) && e.served_on(listener))
    {
        if method.as_str() == e.method || (e.method == "GET" && *method == Method::HEAD) {
            return Ok(e.route);
        }
        match allowed {
            [None, _] => allowed[0] = Some(e.method),
            _ => allowed[1] = Some(e.method),
        }
    }
    match allowed {
        [None, _] => Err(ApiError::NotFound),
        [Some(one), None] => Err(ApiError::MethodNotAllowed(one)),
        [Some("GET"), Some("DELETE")] => Err(ApiError::MethodNotAllowed("GET, DELETE")),
        [Some("GET"), Some("POST")] => Err(ApiError::MethodNotAllowed("GET, POST")),
        [Some(one), Some(_)] => Err(ApiError::MethodNotAllowed(one)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Listener = Listener::Main {
        serves_metrics: true,
        serves_admin: true,
    };

    #[test]
    fn route_labels_are_the_documented_ones() {
        let all = [
            (Route::Tokens, "tokens"),
            (Route::SubscriptionTokens, "tokens_subscription"),
            (Route::Proxy(Callback::Connect), "centrifugo_connect"),
            (Route::Proxy(Callback::Refresh), "centrifugo_refresh"),
            (Route::Proxy(Callback::Subscribe), "centrifugo_subscribe"),
            (Route::Proxy(Callback::SubRefresh), "centrifugo_sub_refresh"),
            (Route::Healthz, "healthz"),
            (Route::Readyz, "readyz"),
            (Route::Metrics, "metrics"),
            (Route::OpenApi, "openapi"),
            (Route::Admin(AdminRoute::GetUser), "admin_get_user"),
            (Route::Admin(AdminRoute::ListUsers), "admin_list_users"),
            (Route::Admin(AdminRoute::DisableUser), "admin_disable_user"),
            (Route::Admin(AdminRoute::EnableUser), "admin_enable_user"),
            (
                Route::Admin(AdminRoute::RevokeUserTokens),
                "admin_revoke_user_tokens",
            ),
            (Route::Admin(AdminRoute::DeleteUser), "admin_delete_user"),
            (
                Route::Admin(AdminRoute::RevokeAllTokens),
                "admin_revoke_all_tokens",
            ),
            (Route::Admin(AdminRoute::ListApiKeys), "admin_list_api_keys"),
            (
                Route::Admin(AdminRoute::CreateApiKey),
                "admin_create_api_key",
            ),
            (
                Route::Admin(AdminRoute::RevokeApiKey),
                "admin_revoke_api_key",
            ),
            (Route::Admin(AdminRoute::ListKeys), "admin_list_keys"),
            (Route::Admin(AdminRoute::RotateKey), "admin_rotate_key"),
            (Route::Admin(AdminRoute::Audit), "admin_audit"),
            (Route::Admin(AdminRoute::Overview), "admin_overview"),
            (Route::ConsolePage, "admin_console"),
            (Route::ConsoleAsset, "admin_console_asset"),
            (Route::Verify, "verify"),
            (Route::Introspect, "introspect"),
            (Route::Jwks, "jwks"),
        ];
        for (route, label) in all {
            assert_eq!(route.label(), label);
            assert_ne!(route.index(), UNMATCHED);
        }
        // Every route has one path; only /verify takes several methods.
        for (route, _) in all {
            let rows: Vec<&Endpoint> = ENDPOINTS.iter().filter(|e| e.route == route).collect();
            assert!(rows.iter().all(|e| e.path == rows[0].path), "{route:?}");
            assert_eq!(rows.len() == 1, route != Route::Verify, "{route:?}");
        }
        assert_eq!(ROUTE_LABELS[UNMATCHED], "unmatched");
    }

    #[test]
    fn not_found_is_not_method_not_allowed() {
        let r = |m: Method, p: &str| route(&m, p, MAIN).map_err(|e| e.code());
        assert_eq!(r(Method::POST, "/tokens"), Ok(Route::Tokens));
        assert_eq!(
            r(Method::POST, "/tokens/subscription"),
            Ok(Route::SubscriptionTokens)
        );
        assert_eq!(
            r(Method::GET, "/tokens/subscription"),
            Err("method_not_allowed")
        );
        assert_eq!(r(Method::GET, "/tokens"), Err("method_not_allowed"));
        assert_eq!(r(Method::POST, "/nope"), Err("not_found"));
        assert_eq!(r(Method::POST, "/healthz"), Err("method_not_allowed"));
        assert_eq!(r(Method::GET, "/metrics"), Ok(Route::Metrics));
        assert_eq!(r(Method::HEAD, "/openapi.json"), Ok(Route::OpenApi));
        assert_eq!(r(Method::POST, "/openapi.json"), Err("method_not_allowed"));
        for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(r(m, "/verify"), Ok(Route::Verify));
        }
        assert_eq!(r(Method::TRACE, "/verify"), Err("method_not_allowed"));
        assert_eq!(
            route(
                &Method::GET,
                "/metrics",
                Listener::Main {
                    serves_metrics: false,
                    serves_admin: true,
                }
            )
            .map_err(|e| e.code()),
            Err("not_found")
        );
        assert_eq!(
            route(&Method::POST, "/tokens", Listener::Metrics).map_err(|e| e.code()),
            Err("not_found")
        );
        assert_eq!(
            route(&Method::GET, "/openapi.json", Listener::Metrics).map_err(|e| e.code()),
            Err("not_found")
        );
    }

    #[test]
    fn admin_paths_resolve_by_method_and_only_where_served() {
        let r = |m: Method, p: &str| route(&m, p, MAIN).map_err(|e| e.code());
        assert_eq!(
            r(Method::GET, "/admin/users/a%2Fb"),
            Ok(Route::Admin(AdminRoute::GetUser))
        );
        assert_eq!(
            r(Method::DELETE, "/admin/users/a"),
            Ok(Route::Admin(AdminRoute::DeleteUser))
        );
        assert_eq!(
            r(Method::POST, "/admin/users/a/revoke-tokens"),
            Ok(Route::Admin(AdminRoute::RevokeUserTokens))
        );
        match route(&Method::POST, "/admin/users/a", MAIN) {
            Err(ApiError::MethodNotAllowed(allow)) => assert_eq!(allow, "GET, DELETE"),
            other => panic!("{other:?}"),
        }
        match route(&Method::PUT, "/admin/api-keys", MAIN) {
            Err(ApiError::MethodNotAllowed(allow)) => assert_eq!(allow, "GET, POST"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r(Method::GET, "/admin/users//disable"), Err("not_found"));
        assert_eq!(r(Method::GET, "/admin/users/a/b/disable"), Err("not_found"));
        assert_eq!(
            r(Method::POST, "/admin/api-keys"),
            Ok(Route::Admin(AdminRoute::CreateApiKey))
        );
        let elsewhere = Listener::Main {
            serves_metrics: true,
            serves_admin: false,
        };
        assert_eq!(
            route(&Method::GET, "/admin/users", elsewhere).map_err(|e| e.code()),
            Err("not_found")
        );
        assert_eq!(
            route(&Method::GET, "/admin/users", Listener::Admin).map_err(|e| e.code()),
            Ok(Route::Admin(AdminRoute::ListUsers))
        );
        assert_eq!(
            route(&Method::POST, "/tokens", Listener::Admin).map_err(|e| e.code()),
            Err("not_found")
        );
        for label in &ROUTE_LABELS[10..20] {
            assert!(label.starts_with("admin_"), "{label}");
        }
    }
}
