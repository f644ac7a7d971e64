//! The committed API contract (`src/openapi.json`) against the router and the running server:
//! the same operations both ways, the statuses the router and the handlers really produce, every
//! error code, and the document served byte for byte. What the running server refuses is in
//! openapi_live.rs.

use std::collections::BTreeSet;

use chatsdk_auth::config::RawConfig;
use chatsdk_auth::http::ApiError;
use chatsdk_auth::router::{route, Listener, ENDPOINTS};
use chatsdk_auth::store::StoreError;
use http::Method;

use crate::helpers::TestApp;
use crate::openapi_doc::{
    assert_documented, doc, documented_codes, methods, operation, response, DOC_PATH, MAIN,
    OPERATIONS,
};

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

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
        ApiError::ApiKeyRevoked { revoked_at: 0 },
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
            | ApiError::ApiKeyRevoked { .. }
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
