//! Reading the committed OpenAPI document (`src/openapi.json`) for openapi.rs and
//! openapi_live.rs: operations, responses, the error codes a response allows.

use std::collections::BTreeSet;

use chatsdk_auth::router::Listener;
use http::Method;
use serde_json::Value;

pub const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi.json");

/// The main listener as it runs by default (`/metrics` on it).
pub const MAIN: Listener = Listener::Main {
    serves_metrics: true,
    serves_admin: true,
};

/// The operation keys of an OpenAPI path item.
pub const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every method a client could try on a path.
pub fn methods() -> Vec<Method> {
    let mut all: Vec<Method> = OPERATIONS
        .iter()
        .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap())
        .collect();
    all.push(Method::CONNECT);
    all
}

pub fn doc() -> Value {
    serde_json::from_str(&std::fs::read_to_string(DOC_PATH).unwrap()).unwrap()
}

/// Follows a local `$ref` (`#/components/...`) once.
pub fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.strip_prefix('#').unwrap())
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

pub fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} is not in src/openapi.json");
    op
}

/// The documented response of `op` for `status`, if any.
pub fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    op["responses"]
        .get(status.to_string())
        .map(|r| deref(doc, r))
}

/// Every `code` value a response's JSON schema allows: the `enum`/`const` of its `code`
/// property; a schema without one allows what its `allOf`/`oneOf`/`anyOf` parts allow (`$ref`s
/// followed). A schema that narrows `code` next to `allOf: [Error]` is taken at its word.
pub fn documented_codes(doc: &Value, resp: &Value) -> BTreeSet<String> {
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
pub fn assert_documented(doc: &Value, method: &str, path: &str, status: u16, code: &str) {
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
