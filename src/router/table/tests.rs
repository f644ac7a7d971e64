//! Unit tests of the route table: labels, policies, paths, resolution and `Allow`.

use strum::IntoEnumIterator;

use super::*;

const MAIN: Listener = Listener::Main {
    serves_metrics: true,
    serves_admin: true,
};

/// The `Allow` of a 405 on the main listener.
fn allow(m: Method, p: &str) -> String {
    match route(&m, p, MAIN) {
        Err(ApiError::MethodNotAllowed(allow)) => allow.to_string(),
        other => panic!("{m} {p}: {other:?}"),
    }
}

#[test]
fn allow_lists_every_method_of_the_path_and_head_with_get() {
    assert_eq!(
        allow(Method::TRACE, "/verify"),
        "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    );
    assert_eq!(allow(Method::POST, "/healthz"), "GET, HEAD");
    assert_eq!(allow(Method::GET, "/tokens"), "POST");
    assert_eq!(allow(Method::HEAD, "/tokens"), "POST");
    assert_eq!(allow(Method::PUT, "/admin/keys/rest/rotate"), "POST");
    // Every method of the table is one `Allow` can name, and every path's `Allow` names
    // exactly its methods (HEAD with GET) and resolves each of them.
    for e in ENDPOINTS {
        assert!(Methods::NAMES.contains(&e.method), "{}", e.method);
        let listed = allow(Method::TRACE, e.path);
        for m in listed.split(", ") {
            let row = if m == "HEAD" { "GET" } else { m };
            let want = ENDPOINTS
                .iter()
                .find(|r| r.path == e.path && r.method == row)
                .map(|r| r.route);
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(want.is_some(), "{m} {}", e.path);
            assert_eq!(route(&m, e.path, MAIN).ok(), want, "{m} {}", e.path);
        }
        for row in ENDPOINTS.iter().filter(|r| r.path == e.path) {
            assert!(listed.split(", ").any(|m| m == row.method), "{listed}");
        }
    }
}

#[test]
fn every_route_declares_a_policy_and_a_path() {
    for e in ENDPOINTS {
        let policy = e.route.policy();
        assert_eq!(e.route.path(), e.path, "{:?}", e.route);
        // Admin routes all take the admin token; nothing else does.
        assert_eq!(
            matches!(e.route, Route::Admin(_)),
            policy.guard == Guard::AdminBearer,
            "{:?}",
            e.route
        );
        // A GET (and a HEAD) never reads a body; /verify reads none with any method.
        if e.method == "GET" || e.route == Route::Verify {
            assert_eq!(policy.body, BodyRule::None, "{:?}", e.route);
        }
        // The routes that take an API key are the minting routes and /introspect.
        assert_eq!(
            matches!(policy.guard, Guard::ApiKey { .. }),
            matches!(
                e.route,
                Route::Tokens | Route::SubscriptionTokens | Route::Introspect
            ),
            "{:?}",
            e.route
        );
        if let Route::Proxy(cb) = e.route {
            assert_eq!(policy.guard, Guard::ProxySecret(cb));
            assert_eq!(policy.rejections, Rejections::Proxy(cb));
        }
    }
    assert_eq!(
        Route::Proxy(Callback::SubRefresh).path(),
        "/centrifugo/sub_refresh"
    );
}

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
        (Route::Admin(AdminRoute::Bulk), "admin_bulk"),
        (Route::ConsolePage, "admin_console"),
        (Route::ConsoleAsset, "admin_console_asset"),
        (Route::Verify, "verify"),
        (Route::Introspect, "introspect"),
        (Route::Jwks, "jwks"),
    ];
    for (route, label) in all {
        assert_eq!(route.label(), label);
        assert_eq!(ROUTE_LABELS[route.index()], label);
        assert_ne!(route.index(), UNMATCHED);
    }
    // Every label but `unmatched` is exactly one route's.
    for label in RouteLabel::iter().filter(|l| *l != RouteLabel::Unmatched) {
        let routes = all
            .iter()
            .filter(|(r, _)| r.metric_label() == label)
            .count();
        assert_eq!(routes, 1, "{label:?}");
    }
    assert_eq!(ROUTE_LABELS.len(), all.len() + 1);
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
    let r = |m: Method, p: &str| route(&m, p, MAIN).map_err(|e| e.code().as_str());
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
        .map_err(|e| e.code().as_str()),
        Err("not_found")
    );
    assert_eq!(
        route(&Method::POST, "/tokens", Listener::Metrics).map_err(|e| e.code().as_str()),
        Err("not_found")
    );
    assert_eq!(
        route(&Method::GET, "/openapi.json", Listener::Metrics).map_err(|e| e.code().as_str()),
        Err("not_found")
    );
}

#[test]
fn admin_paths_resolve_by_method_and_only_where_served() {
    let r = |m: Method, p: &str| route(&m, p, MAIN).map_err(|e| e.code().as_str());
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
    assert_eq!(allow(Method::POST, "/admin/users/a"), "GET, HEAD, DELETE");
    assert_eq!(allow(Method::PUT, "/admin/api-keys"), "GET, HEAD, POST");
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
        route(&Method::GET, "/admin/users", elsewhere).map_err(|e| e.code().as_str()),
        Err("not_found")
    );
    assert_eq!(
        route(&Method::GET, "/admin/users", Listener::Admin).map_err(|e| e.code().as_str()),
        Ok(Route::Admin(AdminRoute::ListUsers))
    );
    assert_eq!(
        route(&Method::POST, "/tokens", Listener::Admin).map_err(|e| e.code().as_str()),
        Err("not_found")
    );
    for e in &ENDPOINTS {
        assert_eq!(
            e.route.label().starts_with("admin_"),
            e.route.is_admin(),
            "{e:?}"
        );
    }
}

#[test]
fn the_minting_routes_are_behind_the_api_key_guard() {
    // The router hands their handlers the checked caller; this guard is what produces it.
    for r in [Route::Tokens, Route::SubscriptionTokens] {
        assert_eq!(r.policy().guard, Guard::ApiKey { mints: true }, "{r:?}");
    }
}

#[test]
fn path_parameters_are_read_by_the_name_the_table_gives_them() {
    let user = Route::Admin(AdminRoute::RevokeUserTokens);
    assert_eq!(
        param(user, "/admin/users/a%2Fb/revoke-tokens", "id"),
        Some("a%2Fb")
    );
    assert_eq!(param(user, "/admin/users/a/revoke-tokens", "name"), None);
    let rotate = Route::Admin(AdminRoute::RotateKey);
    assert_eq!(param(rotate, "/admin/keys/ws/rotate", "kind"), Some("ws"));
    let key = Route::Admin(AdminRoute::RevokeApiKey);
    assert_eq!(
        param(key, "/admin/api-keys/backend", "name"),
        Some("backend")
    );
    assert_eq!(
        param(Route::ConsoleAsset, "/admin/console/console.js", "file"),
        Some("console.js")
    );
    // A path of another route names nothing.
    assert_eq!(param(Route::ConsoleAsset, "/admin/users/x", "file"), None);
    // Every `{name}` in the table is found by its name.
    for e in ENDPOINTS.iter() {
        for seg in e.path.split('/').filter(|s| s.starts_with('{')) {
            let name = &seg[1..seg.len() - 1];
            let concrete = e.path.replace(seg, "v");
            assert_eq!(param(e.route, &concrete, name), Some("v"), "{}", e.path);
        }
    }
}
