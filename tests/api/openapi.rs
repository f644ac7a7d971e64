//! The committed API contract (`src/openapi.json`) against the router and the running server:
//! the same operations both ways, the statuses the router and the handlers really produce, every
//! error code, and the document served byte for byte.

use std::collections::BTreeSet;

use chatsdk_auth::config::RawConfig;
use chatsdk_auth::http::ApiError;
use chatsdk_auth::router::{route, Listener, ENDPOINTS};
use chatsdk_auth::store::StoreError;
use http::Method;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::ops::stalled_body;

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi.json");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The main listener as it runs by default (`/metrics` on it).
const MAIN: Listener = Listener::Main {
    serves_metrics: true,
    serves_admin: true,
};

/// The operation keys of an OpenAPI path item.
const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every method a client could try on a path.
fn methods() -> Vec<Method> {
    let mut all: Vec<Method> = OPERATIONS
        .iter()
        .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap())
        .collect();
    all.push(Method::CONNECT);
    all
}

fn doc() -> Value {
    serde_json::from_str(&std::fs::read_to_string(DOC_PATH).unwrap()).unwrap()
}

/// Follows a local `$ref` (`#/components/...`) once.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.strip_prefix('#').unwrap())
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} is not in src/openapi.json");
    op
}

/// The documented response of `op` for `status`, if any.
fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    op["responses"]
        .get(status.to_string())
        .map(|r| deref(doc, r))
}

/// Every `code` value a response's JSON schema allows: the `enum`/`const` of its `code`
/// property; a schema without one allows what its `allOf`/`oneOf`/`anyOf` parts allow (`$ref`s
/// followed). A schema that narrows `code` next to `allOf: [Error]` is taken at its word.
fn documented_codes(doc: &Value, resp: &Value) -> BTreeSet<String> {
    fn walk(doc: &Value, s: &Value, out: &mut BTreeSet<String>) {
        let s = deref(doc, s);
        let code = &s["properties"]["code"];
        if code.is_object() {
            for v in code["enum"].as_array().into_iter().flatten() {
                out.insert(v.as_str().unwrap().to_string());
            }
            if let Some(c) = code["const"].as_str() {
                out.insert(c.to_string());
            }
            return;
        }
        for k in ["allOf", "oneOf", "anyOf"] {
            for sub in s[k].as_array().into_iter().flatten() {
                walk(doc, sub, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(
        doc,
        &resp["content"]["application/json"]["schema"],
        &mut out,
    );
    out
}

/// `status` and `code` are documented for `method path`: the status is a response of the
/// operation and its schema allows the code.
fn assert_documented(doc: &Value, method: &str, path: &str, status: u16, code: &str) {
    let op = operation(doc, method, path);
    let Some(resp) = response(doc, op, status) else {
        panic!("{method} {path}: status {status} ({code}) is not documented");
    };
    let codes = documented_codes(doc, resp);
    assert!(
        codes.contains(code),
        "{method} {path}: {status} documents codes {codes:?}, not {code:?}"
    );
}

#[test]
fn every_documented_operation_is_routed_and_every_route_documented() {
    let doc = doc();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in OPERATIONS {
            if item.get(m).is_some() {
                documented.insert((m.to_ascii_uppercase(), path.clone()));
                let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap();
                assert!(
                    route(&method, path, MAIN).is_ok(),
                    "{m} {path} is documented but the router does not serve it"
                );
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_string()))
        .collect();
    assert_eq!(documented, routed, "src/openapi.json vs router::ENDPOINTS");
}

#[test]
fn router_rejections_are_documented_for_every_operation() {
    let doc = doc();
    for e in ENDPOINTS {
        for m in methods() {
            let Err(err) = route(&m, e.path, MAIN) else {
                continue;
            };
            assert_documented(&doc, e.method, e.path, err.status().as_u16(), err.code());
            // The `Allow` header the 405 carries is among the documented values.
            if let ApiError::MethodNotAllowed(allow) = err {
                let op = operation(&doc, e.method, e.path);
                let resp = response(&doc, op, 405).unwrap();
                let allowed = &resp["headers"]["Allow"]["schema"]["enum"];
                assert!(
                    allowed
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|v| *v == allow.to_string()),
                    "{} {}: Allow {allow} is not documented",
                    e.method,
                    e.path
                );
            }
        }
        // With a metrics (or admin) listener of its own the main listener drops `/metrics`
        // (or `/admin/...`).
        for elsewhere in [
            Listener::Main {
                serves_metrics: false,
                serves_admin: true,
            },
            Listener::Main {
                serves_metrics: true,
                serves_admin: false,
            },
        ] {
            let m = Method::from_bytes(e.method.as_bytes()).unwrap();
            if let Err(err) = route(&m, e.path, elsewhere) {
                assert_documented(&doc, e.method, e.path, err.status().as_u16(), err.code());
            }
        }
    }
}

/// One of each [`ApiError`] variant. The match makes a new variant a compile error here, so it
/// cannot be added without deciding whether the contract documents its code.
fn every_api_error() -> Vec<ApiError> {
    let all = vec![
        ApiError::InvalidApiKey,
        ApiError::InvalidJson(String::new()),
        ApiError::InvalidField {
            code: "invalid_user_id",
            message: String::new(),
        },
        ApiError::PayloadTooLarge(1),
        ApiError::UnsupportedMediaType,
        ApiError::FormRequired,
        ApiError::InvalidToken {
            code: "invalid_token",
            message: "",
        },
        ApiError::InvalidToken {
            code: "token_expired",
            message: "",
        },
        ApiError::InvalidToken {
            code: "wrong_token_type",
            message: "",
        },
        ApiError::TokenRefused {
            code: "user_disabled",
            message: "",
        },
        ApiError::TokenRefused {
            code: "token_revoked",
            message: "",
        },
        ApiError::NotFound,
        ApiError::MethodNotAllowed(chatsdk_auth::http::Methods::default().with("POST")),
        ApiError::UserDisabled,
        ApiError::UserUnknown(String::new()),
        ApiError::ChannelForbidden("room:x".into()),
        ApiError::ProxyUnauthorized,
        ApiError::MetricsUnauthorized,
        ApiError::AdminUnauthorized,
        ApiError::UnknownApiKey(String::new()),
        ApiError::Conflict {
            code: "api_key_exists",
            message: String::new(),
        },
        ApiError::Conflict {
            code: "rotation_refused",
            message: String::new(),
        },
        ApiError::StoreUnavailable(StoreError::Unavailable("down".into())),
        ApiError::RequestTimeout,
        ApiError::Timeout,
        ApiError::Internal("bug".into()),
        ApiError::DuplicateApiKey,
        ApiError::RateLimited(chatsdk_auth::limits::Limited {
            limit: chatsdk_auth::limits::Limit::MintPerUser,
            retry_after: std::time::Duration::from_secs(1),
        }),
    ];
    for e in &all {
        match e {
            ApiError::InvalidApiKey
            | ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType
            | ApiError::FormRequired
            | ApiError::InvalidToken { .. }
            | ApiError::TokenRefused { .. }
            | ApiError::NotFound
            | ApiError::MethodNotAllowed(_)
            | ApiError::UserDisabled
            | ApiError::UserUnknown(_)
            | ApiError::ChannelForbidden(_)
            | ApiError::ProxyUnauthorized
            | ApiError::MetricsUnauthorized
            | ApiError::AdminUnauthorized
            | ApiError::UnknownApiKey(_)
            | ApiError::Conflict { .. }
            | ApiError::StoreUnavailable(_)
            | ApiError::RequestTimeout
            | ApiError::Timeout
            | ApiError::Internal(_)
            | ApiError::DuplicateApiKey
            | ApiError::RateLimited(_) => {}
        }
    }
    all
}

/// The `code` column of README.md's "Error codes" table, with its status.
fn readme_error_table() -> BTreeSet<(u16, String)> {
    let text = std::fs::read_to_string(README).unwrap();
    let table = text
        .split("### Error codes")
        .nth(1)
        .expect("README has an Error codes section");
    table
        .lines()
        .skip_while(|l| !l.starts_with("| Status"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].parse().unwrap(),
                cells[2].trim_matches('`').to_string(),
            )
        })
        .collect()
}

#[test]
fn every_error_code_is_in_the_error_enum() {
    let doc = doc();
    let enumerated: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    // What the code can send: every ApiError, and every field code of POST /tokens and
    // POST /tokens/subscription.
    let mut emitted: BTreeSet<(u16, String)> = every_api_error()
        .iter()
        .map(|e| (e.status().as_u16(), e.code().to_string()))
        .collect();
    for body in [
        r#"{}"#,
        r#"{"userId":"u","name":5}"#,
        r#"{"userId":"u","image":5}"#,
        r#"{"userId":"u","custom":5}"#,
    ] {
        let e = chatsdk_auth::tokens::parse(body.as_bytes()).unwrap_err();
        emitted.insert((e.status().as_u16(), e.code().to_string()));
    }
    for body in [
        r#"{"channel":"room:a"}"#,
        r#"{"userId":"u","channel":""}"#,
        r#"{"userId":"u","channels":[]}"#,
    ] {
        let e = chatsdk_auth::subscription_tokens::parse(body.as_bytes()).unwrap_err();
        emitted.insert((e.status().as_u16(), e.code().to_string()));
    }
    // ... and every parameter code of the admin API.
    for (_, code) in chatsdk_auth::admin::FIELD_CODES {
        emitted.insert((400, code.to_string()));
    }
    for (status, code) in &emitted {
        assert!(enumerated.contains(code), "{code} is not in the Error enum");
        // Some operation documents this status with this code.
        let documented = doc["paths"].as_object().unwrap().values().any(|item| {
            OPERATIONS.iter().any(|m| {
                item.get(*m).is_some_and(|op| {
                    response(&doc, op, *status).is_some_and(|r| {
                        let codes = documented_codes(&doc, r);
                        codes.contains(code)
                    })
                })
            })
        });
        assert!(documented, "no operation documents {status} {code}");
    }

    // The README table, the enum and the code say the same.
    let readme = readme_error_table();
    assert_eq!(readme, emitted, "README error table vs ApiError");
    let readme_codes: BTreeSet<String> = readme.into_iter().map(|(_, c)| c).collect();
    assert_eq!(readme_codes, enumerated, "README error table vs Error enum");
}

#[test]
fn security_schemes_name_the_real_headers() {
    let doc = doc();
    let s = &doc["components"]["securitySchemes"];
    assert_eq!(s["apiKey"]["in"], "header");
    assert_eq!(s["apiKey"]["name"], "X-API-Key");
    assert_eq!(s["proxySecret"]["in"], "header");
    assert_eq!(
        s["proxySecret"]["name"],
        RawConfig::default().centrifugo.proxy_secret_header.as_str()
    );
    assert_eq!(s["metricsToken"]["type"], "http");
    assert_eq!(s["metricsToken"]["scheme"], "bearer");
    assert_eq!(s["adminToken"]["type"], "http");
    assert_eq!(s["adminToken"]["scheme"], "bearer");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["info"]["license"]["identifier"],
        env!("CARGO_PKG_LICENSE")
    );
    for e in ENDPOINTS {
        let op = operation(&doc, e.method, e.path);
        assert!(
            op["security"].is_array(),
            "{} {}: no security",
            e.method,
            e.path
        );
    }
}

#[tokio::test]
async fn the_served_document_is_the_committed_file() {
    let t = TestApp::spawn().await;
    let r = t.client.get(t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.bytes().await.unwrap();
    assert_eq!(served.as_ref(), std::fs::read(DOC_PATH).unwrap().as_slice());

    let r = t.client.head(t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.headers()["content-length"],
        served.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());
}

/// One request: method, path, headers, body.
type Probe<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, String);

/// Requests each operation refuses, sent to the running server (and bodies that stall past the
/// request timeout): the status and code it answers are documented for that operation.
#[tokio::test]
async fn live_rejections_are_documented() {
    let t = TestApp::spawn_with(|c| {
        c.metrics.require_token = Some(true);
        c.server.request_timeout_seconds = 1;
    })
    .await;
    let doc = doc();
    let too_big = "x".repeat(t.app.config.server.max_body_bytes + 1);
    let secret = t.proxy_secret();
    let admin = t.app.secrets.admin_token.expose().to_string();
    let mut probes: Vec<Probe> = vec![
        ("POST", "/tokens", vec![], "{}".into()),
        (
            "POST",
            "/tokens",
            vec![("x-api-key", t.key.clone())],
            "{}".into(),
        ),
        (
            "POST",
            "/tokens",
            vec![
                ("x-api-key", t.key.clone()),
                ("content-type", "application/json".into()),
            ],
            too_big.clone(),
        ),
        (
            "POST",
            "/tokens",
            vec![
                ("x-api-key", t.key.clone()),
                ("content-type", "application/json".into()),
            ],
            "[".into(),
        ),
        ("GET", "/metrics", vec![], String::new()),
        ("GET", "/verify", vec![], String::new()),
        (
            "GET",
            "/verify",
            vec![("authorization", "Bearer not.a.token".into())],
            String::new(),
        ),
        ("POST", "/introspect", vec![], "token=x".into()),
        (
            "POST",
            "/introspect",
            vec![("x-api-key", t.key.clone())],
            "token=x".into(),
        ),
        (
            "POST",
            "/introspect",
            vec![
                ("x-api-key", t.key.clone()),
                ("content-type", "application/x-www-form-urlencoded".into()),
            ],
            too_big.clone(),
        ),
    ];
    // POST /tokens/subscription: no key, no JSON, too big, malformed, and each refusal of a
    // well-formed body.
    let key = ("x-api-key", t.key.clone());
    let json_type = ("content-type", "application/json".to_string());
    probes.push(("POST", "/tokens/subscription", vec![], "{}".into()));
    probes.push((
        "POST",
        "/tokens/subscription",
        vec![key.clone()],
        "{}".into(),
    ));
    for body in [
        too_big.clone(),
        "[".into(),
        r#"{"userId":"u","channels":[]}"#.into(),
        r#"{"userId":"u","channel":"x y:z"}"#.into(),
        r#"{"userId":"nobody","channel":"chat:a"}"#.into(),
        r#"{"userId":"known","channel":"admin:a"}"#.into(),
        r#"{"userId":"off","channel":"chat:a"}"#.into(),
    ] {
        probes.push((
            "POST",
            "/tokens/subscription",
            vec![key.clone(), json_type.clone()],
            body,
        ));
    }
    for user in ["known", "off"] {
        assert_eq!(t.tokens(serde_json::json!({"userId": user})).await.0, 200);
    }
    t.app
        .store
        .set_user_disabled("off", true, chatsdk_auth::now_unix())
        .await
        .unwrap();
    for e in ENDPOINTS
        .iter()
        .filter(|e| e.path.starts_with("/centrifugo/"))
    {
        probes.push(("POST", e.path, vec![], "{}".into()));
        let with_secret = vec![("x-chatsdk-proxy-secret", secret.clone())];
        probes.push(("POST", e.path, with_secret.clone(), "[]".into()));
        probes.push(("POST", e.path, with_secret, too_big.clone()));
    }
    // The admin API: no token, bad bodies and parameters, unknown users and keys, conflicts.
    let bearer = format!("Bearer {admin}");
    t.mint("known").await;
    let admin_probes: Vec<(&str, &str, &str, &str)> = vec![
        ("GET", "/admin/users/{id}", "/admin/users/known", ""),
        ("GET", "/admin/users/{id}", "/admin/users/nobody", ""),
        ("GET", "/admin/users/{id}", "/admin/users/%zz", ""),
        ("DELETE", "/admin/users/{id}", "/admin/users/nobody", ""),
        ("GET", "/admin/users", "/admin/users?limit=0", ""),
        (
            "POST",
            "/admin/users/{id}/disable",
            "/admin/users/nobody/disable",
            "",
        ),
        (
            "POST",
            "/admin/users/{id}/disable",
            "/admin/users/known/disable",
            "[]",
        ),
        (
            "POST",
            "/admin/users/{id}/enable",
            "/admin/users/known/enable",
            r#"{"x":1}"#,
        ),
        (
            "POST",
            "/admin/users/{id}/revoke-tokens",
            "/admin/users/known/revoke-tokens",
            r#"{"before":"x"}"#,
        ),
        (
            "POST",
            "/admin/revoke-tokens",
            "/admin/revoke-tokens",
            r#"{"before":99999999999}"#,
        ),
        (
            "POST",
            "/admin/api-keys",
            "/admin/api-keys",
            r#"{"name":"test"}"#,
        ),
        (
            "POST",
            "/admin/api-keys",
            "/admin/api-keys",
            r#"{"name":"no spaces"}"#,
        ),
        (
            "DELETE",
            "/admin/api-keys/{name}",
            "/admin/api-keys/never",
            "",
        ),
    ];
    for (method, documented, path, body) in admin_probes {
        for auth in [None, Some(bearer.as_str())] {
            let mut req = t
                .client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), t.url(path))
                .header("content-type", "application/json")
                .body(body.to_string());
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            if status < 400 {
                continue;
            }
            let code = v["code"].as_str().unwrap_or_else(|| panic!("{v}"));
            assert_documented(&doc, method, documented, status, code);
        }
    }
    let r = t
        .client
        .post(t.url("/admin/users/known/disable"))
        .header("authorization", &bearer)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_documented(
        &doc,
        "POST",
        "/admin/users/{id}/disable",
        415,
        v["code"].as_str().unwrap(),
    );

    for (method, path, headers, body) in probes {
        let mut req = t
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), t.url(path))
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        let code = v["code"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(status >= 400, "{method} {path}: {status}");
        assert_documented(&doc, method, path, status, code);
    }
    // A body that stops half way: every route that reads one answers 408 at the deadline.
    for e in ENDPOINTS.iter().filter(|e| e.method == "POST") {
        let auth = if e.path.starts_with("/tokens") || e.path == "/introspect" {
            format!("x-api-key: {}", t.key)
        } else if e.path.starts_with("/admin/") {
            format!("authorization: Bearer {admin}")
        } else {
            format!("x-chatsdk-proxy-secret: {secret}")
        };
        let path = e.path.replace("{id}", "someone");
        let (_, text) = stalled_body(&t, &path, &auth).await;
        let status: u16 = text[9..12].parse().unwrap();
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_documented(&doc, "POST", e.path, status, body["code"].as_str().unwrap());
    }
}
