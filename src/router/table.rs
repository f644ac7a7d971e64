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
pub const ROUTE_LABELS: [&str; 11] = [
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
    "unmatched",
];

/// The `route` index of requests that matched no route.
pub(super) const UNMATCHED: usize = ROUTE_LABELS.len() - 1;

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
        }
    }

    /// True for the routes that never read a request body.
    pub fn reads_no_body(self) -> bool {
        matches!(
            self,
            Route::Healthz | Route::Readyz | Route::Metrics | Route::OpenApi
        )
    }

    /// The `route` metric label (a closed set).
    pub fn label(self) -> &'static str {
        ROUTE_LABELS[self.index()]
    }
}

/// Which listener a request arrived on. [`crate::serve`] decides it from the listeners it was
/// given, the one source of truth for where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The main listener: everything, and `/metrics` when `serves_metrics` (no metrics
    /// listener of its own).
    Main { serves_metrics: bool },
    /// The separate metrics listener: `/metrics` and `/healthz` only.
    Metrics,
}

/// One (method, path) the main listener serves. `HEAD` is answered wherever `GET` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub route: Route,
}

/// Every endpoint of the main listener: [`route`] resolves against this table, and
/// `src/openapi.json` documents exactly these (tests/api/openapi.rs checks both ways). `/metrics`
/// leaves the main listener when the metrics have a listener of their own, which serves only
/// `/metrics` and `/healthz`.
pub const ENDPOINTS: [Endpoint; 10] = [
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
];

impl Endpoint {
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
}

/// Resolves a method and path; 404 for an unknown path, 405 for a known one with another method.
pub fn route(method: &Method, path: &str, listener: Listener) -> Result<Route, ApiError> {
    let Some(e) = ENDPOINTS.iter().find(|e| e.path == path) else {
        return Err(ApiError::NotFound);
    };
    let served = match listener {
        Listener::Main { serves_metrics } => serves_metrics || e.route != Route::Metrics,
        Listener::Metrics => matches!(e.route, Route::Metrics | Route::Healthz),
    };
    if !served {
        return Err(ApiError::NotFound);
    }
    if method.as_str() == e.method || (e.method == "GET" && *method == Method::HEAD) {
        Ok(e.route)
    } else {
        Err(ApiError::MethodNotAllowed(e.method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ];
        for (route, label) in all {
            assert_eq!(route.label(), label);
            assert_ne!(route.index(), UNMATCHED);
        }
        // Every route has exactly one endpoint.
        for (route, _) in all {
            assert_eq!(ENDPOINTS.iter().filter(|e| e.route == route).count(), 1);
        }
        assert_eq!(ROUTE_LABELS[UNMATCHED], "unmatched");
    }

    #[test]
    fn not_found_is_not_method_not_allowed() {
        let main = Listener::Main {
            serves_metrics: true,
        };
        let r = |m: Method, p: &str| route(&m, p, main).map_err(|e| e.code());
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
        assert_eq!(
            route(
                &Method::GET,
                "/metrics",
                Listener::Main {
                    serves_metrics: false
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
}
