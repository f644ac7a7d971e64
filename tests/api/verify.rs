//! `GET /verify`, `POST /introspect` and `GET /.well-known/jwks.json` against the running
//! server, on both backends.

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{now, Backend, TestApp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `GET /verify` with `Authorization` set to `auth` (when given) and extra headers.
pub async fn verify(
    t: &TestApp,
    auth: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = t.client.get(t.url("/verify"));
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// `POST /introspect` with the test key and `form` as the body.
pub async fn introspect(t: &TestApp, form: &str) -> (u16, Value) {
    let r = t
        .client
        .post(t.url("/introspect"))
        .header("X-API-Key", &t.key)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Signs `claims` with the app's current REST key (its header, `kid` included).
fn sign_rest(t: &TestApp, claims: &Value) -> String {
    let ring = t.app.keys.current();
    let key = ring.rest.signing(now());
    jsonwebtoken::encode(&key.header, claims, &key.encoding).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The same token with one claim changed and the signature kept.
fn tampered(token: &str, f: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    f(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    )
}

async fn verify_contract(backend: Backend) {
    let t = TestApp::spawn_on(backend).await;
    let minted = t.mint("user-1").await;
    let token = minted["token"].as_str().unwrap();
    let ws = minted["wsToken"].as_str().unwrap();

    // Valid: 200, the user for the gateway, {sub, exp}.
    let (s, h, b) = verify(&t, Some(&bearer(token)), &[]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(h["x-user-id"], "user-1");
    assert_eq!(h["x-user-name"], "Ada");
    assert_eq!(h["cache-control"], "no-store");
    let exp = now() + 86_400;
    assert_eq!(b["sub"], "user-1");
    assert!((exp - 5..=exp).contains(&b["exp"].as_i64().unwrap()), "{b}");
    assert_eq!(b.as_object().unwrap().len(), 2, "{b}");

    // A user without a name: no X-User-Name.
    let (_, nb) = t.tokens(json!({"userId": "nameless"})).await;
    let (s, h, _) = verify(&t, Some(&bearer(nb["token"].as_str().unwrap())), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-user-id"], "nameless");
    assert!(h.get("x-user-name").is_none());

    // Missing, malformed, tampered, badly signed: 401 invalid_token with WWW-Authenticate.
    let forged = tampered(token, |c| c["sub"] = json!("someone-else"));
    let longer = tampered(token, |c| c["exp"] = json!(now() + 10 * 86_400));
    let other_key = crate::helpers::sign_hs256(
        &json!({"sub": "user-1", "iss": "chatsdk-auth", "aud": "chatsdk-api", "iat": now(), "exp": now() + 60, "jti": "j"}),
        &"k".repeat(43),
    );
    for auth in [
        None,
        Some(String::new()),
        Some("Bearer".to_string()),
        Some(format!("Basic {token}")),
        Some(bearer("not-a-jwt")),
        Some(bearer("a.b.c")),
        Some(bearer(&forged)),
        Some(bearer(&longer)),
        Some(bearer(&other_key)),
        Some(bearer(&token[..token.len() - 3])),
    ] {
        let (s, h, b) = verify(&t, auth.as_deref(), &[]).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (401, Some("invalid_token")),
            "{auth:?}: {b}"
        );
        let www = h["www-authenticate"].to_str().unwrap();
        assert!(
            www.starts_with(r#"Bearer error="invalid_token", error_description=""#),
            "{www}"
        );
    }

    // Expired (signed correctly by the service's key): 401 token_expired.
    let expired = sign_rest(
        &t,
        &json!({"sub": "user-1", "iss": "chatsdk-auth", "aud": "chatsdk-api", "iat": now() - 100, "exp": now() - 1, "jti": "j"}),
    );
    let (s, h, b) = verify(&t, Some(&bearer(&expired)), &[]).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("token_expired")), "{b}");
    assert!(h.contains_key("www-authenticate"));
    // Right key, wrong audience or issuer: invalid.
    for claims in [
        json!({"sub": "user-1", "iss": "chatsdk-auth", "aud": "other", "iat": now(), "exp": now() + 60, "jti": "j"}),
        json!({"sub": "user-1", "iss": "other", "aud": "chatsdk-api", "iat": now(), "exp": now() + 60, "jti": "j"}),
        json!({"sub": "user-1", "iss": "chatsdk-auth", "iat": now(), "exp": now() + 60, "jti": "j"}),
    ] {
        let (s, _, b) = verify(&t, Some(&bearer(&sign_rest(&t, &claims))), &[]).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (401, Some("invalid_token")),
            "{claims}"
        );
    }

    // A wsToken where the REST token belongs: the seed's troubleshooting, in the product.
    let (s, h, b) = verify(&t, Some(&bearer(ws)), &[]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (401, Some("wrong_token_type")),
        "{b}"
    );
    let msg = b["error"].as_str().unwrap();
    assert!(
        msg.contains("token field") && msg.contains("wsToken"),
        "{msg}"
    );
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));

    // The gateway's own headers never change the decision.
    let gateway = [
        ("X-Original-URI", "/admin"),
        ("X-Original-Method", "DELETE"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-User", "admin"),
        ("X-Forwarded-Proto", "https"),
        ("X-User-Id", "admin"),
    ];
    let (s, h, _) = verify(&t, Some(&bearer(token)), &gateway).await;
    assert_eq!((s, h["x-user-id"].to_str().unwrap()), (200, "user-1"));
    let (s, _, _) = verify(&t, Some(&bearer(&forged)), &gateway).await;
    assert_eq!(s, 401);
    let (s, _, _) = verify(&t, None, &gateway).await;
    assert_eq!(s, 401);

    // Revoked, then disabled: 403 with its own code.
    let now_s = now();
    t.app
        .actions()
        .revoke_user_tokens("user-1", Some(now_s), now_s)
        .await
        .unwrap();
    let (s, _, b) = verify(&t, Some(&bearer(token)), &[]).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("token_revoked")), "{b}");
    let (_, fresh) = t.tokens(json!({"userId": "user-1"})).await;
    let fresh = fresh["token"].as_str().unwrap().to_string();
    assert_eq!(verify(&t, Some(&bearer(&fresh)), &[]).await.0, 200);
    t.app.actions().disable("user-1", now()).await.unwrap();
    let (s, _, b) = verify(&t, Some(&bearer(&fresh)), &[]).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("user_disabled")), "{b}");

    // HEAD answers like GET, without a body.
    let r = t
        .client
        .head(t.url("/verify"))
        .header("Authorization", bearer(nb["token"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user-id"], "nameless");

    // Every answer above is counted under its result, never a token or a user.
    let text = t.metrics_text().await;
    for (result, n) in [
        ("valid", 5.0),
        ("invalid_token", 15.0),
        ("token_expired", 1.0),
        ("wrong_token_type", 1.0),
        ("token_revoked", 1.0),
        ("user_disabled", 1.0),
        ("store_unavailable", 0.0),
    ] {
        let series = format!(
            r#"chatsdk_auth_token_verifications_total{{endpoint="verify",result="{result}"}}"#
        );
        assert_eq!(crate::helpers::metric_value(&text, &series), n, "{series}");
    }
    assert!(!text.contains("user-1\""), "no user id in a label");
}

#[tokio::test]
async fn verify_contract_sqlite() {
    verify_contract(Backend::Sqlite).await;
}

#[tokio::test]
async fn verify_contract_postgres() {
    crate::need::need!(Postgres);
    verify_contract(Backend::Postgres).await;
}

async fn introspect_contract(backend: Backend) {
    let t = TestApp::spawn_on_with(backend, |c| {
        c.tokens.ws_audience = "centrifugo".into();
        c.tokens.ws_issuer = "chatsdk-auth-ws".into();
    })
    .await;
    let minted = t.mint("user-2").await;
    let token = minted["token"].as_str().unwrap();
    let ws = minted["wsToken"].as_str().unwrap();

    let (s, b) = introspect(&t, &format!("token={token}")).await;
    assert_eq!(s, 200, "{b}");
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "active",
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "sub",
            "token_type"
        ]
    );
    assert_eq!(b["active"], true);
    assert_eq!(b["token_type"], "rest");
    assert_eq!(b["sub"], "user-2");
    assert_eq!(b["aud"], json!(["chatsdk-api", "app:default"]));
    assert_eq!(b["iss"], "chatsdk-auth");
    assert_eq!(
        b["exp"].as_i64().unwrap() - b["iat"].as_i64().unwrap(),
        86_400
    );
    assert_eq!(b["jti"].as_str().unwrap().len(), 32);

    // The wsToken is active too, and says so; a hint is accepted and ignored.
    let (s, b) = introspect(&t, &format!("token_type_hint=access_token&token={ws}")).await;
    assert_eq!(s, 200);
    assert_eq!(b["active"], true, "{b}");
    assert_eq!(b["token_type"], "ws");
    assert_eq!(
        (b["aud"].as_str(), b["iss"].as_str()),
        (Some("centrifugo"), Some("chatsdk-auth-ws"))
    );

    // Everything not active is exactly {"active": false}.
    let expired = sign_rest(
        &t,
        &json!({"sub": "user-2", "iss": "chatsdk-auth", "aud": "chatsdk-api", "iat": now() - 100, "exp": now() - 1, "jti": "j"}),
    );
    let forged = tampered(token, |c| c["sub"] = json!("root"));
    for form in [
        String::new(),
        "token=".to_string(),
        "token=garbage".to_string(),
        "tok=x".to_string(),
        format!("token={expired}"),
        format!("token={forged}"),
        "token=%ZZ%".to_string(),
        "token=eyJhbGciOiJub25lIn0.e30.".to_string(),
    ] {
        let (s, b) = introspect(&t, &form).await;
        assert_eq!((s, b), (200, json!({"active": false})), "{form}");
    }
    t.app.actions().disable("user-2", now()).await.unwrap();
    for tok in [token, ws] {
        let (s, b) = introspect(&t, &format!("token={tok}")).await;
        assert_eq!((s, b), (200, json!({"active": false})));
    }

    // An API key is required, and the body is a form.
    let r = t
        .client
        .post(t.url("/introspect"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .client
        .post(t.url("/introspect"))
        .header("X-API-Key", &t.key)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], "unsupported_media_type");
    for (result, n) in [("active", 2.0), ("inactive", 10.0)] {
        let series = format!(
            r#"chatsdk_auth_token_verifications_total{{endpoint="introspect",result="{result}"}}"#
        );
        assert_eq!(t.metric(&series).await, n, "{series}");
    }
}

#[tokio::test]
async fn introspect_contract_sqlite() {
    introspect_contract(Backend::Sqlite).await;
}

#[tokio::test]
async fn introspect_contract_postgres() {
    crate::need::need!(Postgres);
    introspect_contract(Backend::Postgres).await;
}

#[tokio::test]
async fn hmac_keys_are_never_published_and_tokens_carry_a_kid() {
    let t = TestApp::spawn().await;
    let r = t
        .client
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b, json!({"keys": []}));
    let minted = t.mint("k").await;
    let ring = t.app.keys.current();
    for (field, kid) in [
        ("token", &ring.rest.signing(now()).kid),
        ("wsToken", &ring.ws.signing(now()).kid),
    ] {
        let (h, _) = crate::helpers::verify_hs256(
            minted[field].as_str().unwrap(),
            &if field == "token" {
                t.rest_key()
            } else {
                t.ws_key()
            },
        );
        assert_eq!(h["kid"], kid.as_str(), "{field}");
        assert_eq!(h["alg"], "HS256");
    }
}

/// An app-wide revocation (`revoke-tokens --all`, `POST /admin/revoke-tokens`) refuses every
/// token issued before it, like a user's own.
#[tokio::test]
async fn app_wide_revocation_is_refused_by_verify() {
    let t = TestApp::spawn().await;
    let token = t.mint("app-1").await["token"].as_str().unwrap().to_string();
    assert_eq!(verify(&t, Some(&bearer(&token)), &[]).await.0, 200);
    t.app
        .store
        .revoke_all_tokens(
            now() + 1,
            &crate::helpers::test_event("app.tokens_revoked", "all"),
        )
        .await
        .unwrap();
    let (s, _, b) = verify(&t, Some(&bearer(&token)), &[]).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("token_revoked")), "{b}");
    let (_, b) = introspect(&t, &format!("token={token}")).await;
    assert_eq!(b, json!({"active": false}));
    let fresh = t.mint("app-1").await["token"].as_str().unwrap().to_string();
    assert_eq!(verify(&t, Some(&bearer(&fresh)), &[]).await.0, 200);
}
