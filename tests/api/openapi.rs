//! The committed API contract (`src/openapi.json`) against the router and the running server:
//! the same operations both ways, the statuses the router and the handlers really produce, every
//! error code, and the document served byte for byte. What the running server refuses is in
//! openapi_live.rs.

use std::collections::BTreeSet;

use chatsdk_auth::config::RawConfig;
use chatsdk_auth::http::{ApiError, Code};
use chatsdk_auth::router::{route, Listener, ENDPOINTS};
use chatsdk_auth::store::StoreError;
use http::Method;
use strum::IntoEnumIterator;

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
            assert_documented(
                &doc,
                e.method,
                e.path,
                err.status().as_u16(),
                err.code().as_str(),
            );
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
                assert_documented(
                    &doc,
                    e.method,
                    e.path,
                    err.status().as_u16(),
                    err.code().as_str(),
                );
            }
        }
    }
}

/// README.md's "Error codes" table, as written (header line to the last row).
fn readme_error_table() -> String {
    let text = std::fs::read_to_string(README).unwrap();
    let section = text
        .split("### Error codes")
        .nth(1)
        .expect("README has an Error codes section");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| Status"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The `code` values a schema of `components.schemas` allows.
fn schema_codes(doc: &serde_json::Value, schema: &str) -> BTreeSet<String> {
    let code = &doc["components"]["schemas"][schema]["properties"]["code"];
    code["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema} has no code enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_error_table_and_the_code_lists_are_the_code_enum() {
    // The README table is the enum rendered: code, status and sentence.
    assert_eq!(
        readme_error_table(),
        Code::table(),
        "README.md's Error codes table must be Code::table() (src/http/code.rs), which is:\n{}",
        Code::table()
    );
    // openapi.json: the error envelope lists every code but /readyz's own, its NotReady body
    // /readyz's and store_unavailable.
    let doc = doc();
    let envelope: BTreeSet<String> = Code::iter()
        .filter(|c| !c.readiness_only())
        .map(|c| c.to_string())
        .collect();
    assert_eq!(schema_codes(&doc, "Error"), envelope, "Error.code vs Code");
    let not_ready: BTreeSet<String> = Code::iter()
        .filter(|c| c.readiness_only() || *c == Code::StoreUnavailable)
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        schema_codes(&doc, "NotReady"),
        not_ready,
        "NotReady.code vs Code"
    );
    // Some operation documents each code with its status.
    for code in Code::iter() {
        let status = code.status().as_u16();
        let documented = doc["paths"].as_object().unwrap().values().any(|item| {
            OPERATIONS.iter().any(|m| {
                item.get(*m).is_some_and(|op| {
                    response(&doc, op, status)
                        .is_some_and(|r| documented_codes(&doc, r).contains(code.as_str()))
                })
            })
        });
        assert!(documented, "no operation documents {status} {code}");
    }
}

#[tokio::test]
async fn every_error_answers_with_its_codes_status() {
    // The field codes the parsers produce are the fields' (the type says so; this is the
    // wire).
    for (body, code) in [
        (r#"{}"#, Code::InvalidUserId),
        (r#"{"userId":"u","name":5}"#, Code::InvalidName),
        (r#"{"userId":"u","image":5}"#, Code::InvalidImage),
        (r#"{"userId":"u","custom":5}"#, Code::InvalidCustom),
    ] {
        let e = chatsdk_auth::tokens::parse(body.as_bytes()).unwrap_err();
        assert_eq!((e.code(), e.status()), (code, code.status()), "{body}");
    }
    for (body, code) in [
        (r#"{"channel":"room:a"}"#, Code::InvalidUserId),
        (r#"{"userId":"u","channel":""}"#, Code::InvalidChannel),
        (r#"{"userId":"u","channels":[]}"#, Code::InvalidChannels),
    ] {
        let e = chatsdk_auth::subscription_tokens::parse(body.as_bytes()).unwrap_err();
        assert_eq!((e.code(), e.status()), (code, code.status()), "{body}");
    }
    for e in [
        ApiError::StoreUnavailable(StoreError::Unavailable("down".into())),
        ApiError::Internal("bug".into()),
        ApiError::InvalidToken(chatsdk_auth::http::TokenProblem::Expired),
    ] {
        let resp = e.into_response();
        let status = resp.status();
        let body = body_text(resp).await;
        let code: Code = Code::iter()
            .find(|c| body.contains(&format!(r#""code":"{c}""#)))
            .expect("a code of the enum");
        assert_eq!(status, code.status(), "{body}");
    }
}

/// The text of a response built in memory.
async fn body_text(resp: chatsdk_auth::http::Resp) -> String {
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
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
