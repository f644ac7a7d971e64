//! `app.id`: the application a key and a token belong to. A staging key at production is
//! `401 api_key_wrong_application` (naming both, counted as a failed check); a staging token at
//! production's `/verify`, `/introspect` and proxies is refused as `wrong_application`; keys
//! and tokens from before `app.id` keep working where the default is kept.

use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::{connect_with, now, session_body, TestApp};
use crate::verify::{introspect, verify};

/// Starts `staging` on a data dir of its own, mints a token for `u1` there, stops it, and
/// starts `production` on a new data dir holding the same secrets and signing keys (not its
/// database): the case where only the application tells the two apart.
async fn staging_then_production(root: &Path) -> (Value, TestApp) {
    let staging_dir = root.join("staging");
    let mut staging = TestApp::start_in(&staging_dir, |c| c.app.id = "staging".into()).await;
    assert!(
        staging.key.starts_with("chatsdk_staging_"),
        "{}",
        staging.key
    );
    let minted = staging.mint("u1").await;
    assert!(staging.stop().await);
    let production_dir = root.join("production");
    std::fs::create_dir_all(&production_dir).unwrap();
    for entry in std::fs::read_dir(&staging_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".key") || name.ends_with(".pem") || name == "keyring.json" {
            std::fs::copy(&path, production_dir.join(&name)).unwrap();
        }
    }
    let production = TestApp::start_in(&production_dir, |c| c.app.id = "production".into()).await;
    (minted, production)
}

#[tokio::test]
async fn another_applications_key_is_refused_naming_both_applications() {
    let t = TestApp::spawn_with(|c| {
        c.app.id = "production".into();
        c.limits.failed_auth_per_ip_per_minute = 3;
    })
    .await;
    assert!(t.key.starts_with("chatsdk_production_"), "{}", t.key);
    let (status, _) = t.tokens_with_key(&t.key, json!({"userId": "u1"})).await;
    assert_eq!(status, 200);

    let staging_key = chatsdk_auth::api_key::generate("staging");
    let (status, body) = t
        .tokens_with_key(&staging_key, json!({"userId": "u1"}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "api_key_wrong_application");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("\"staging\"") && message.contains("\"production\""),
        "{message}"
    );
    assert!(
        !message.contains(&staging_key[20..]),
        "the key leaked: {message}"
    );
    // /introspect takes an API key too.
    let r = t
        .client
        .post(t.url("/introspect"))
        .header("X-API-Key", &staging_key)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "api_key_wrong_application");
    assert!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="invalid_api_key"}"#)
            .await
            >= 1.0
    );
    // Counted against the failed-auth limit like any refused key: the third failure is the
    // last the budget allows, the fourth is refused, and then so is the right key.
    let (status, _) = t
        .tokens_with_key(&staging_key, json!({"userId": "u1"}))
        .await;
    assert_eq!(status, 401);
    let (status, _) = t
        .tokens_with_key(&staging_key, json!({"userId": "u1"}))
        .await;
    assert_eq!(status, 429);
    let (status, body) = t.tokens_with_key(&t.key, json!({"userId": "u1"})).await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn keys_from_before_app_id_keep_working() {
    // The old shape (`chatsdk_` + 43 characters), installed as the initial key.
    let old = format!("chatsdk_{}", chatsdk_auth::api_key::random_token());
    assert_eq!(chatsdk_auth::api_key::application(&old), None);
    let o = old.clone();
    let t = TestApp::spawn_with(move |c| {
        c.app.id = "production".into();
        c.secrets.initial_api_key = o;
    })
    .await;
    let (status, body) = t.tokens_with_key(&old, json!({"userId": "u1"})).await;
    assert_eq!(status, 200, "{body}");
    // A key of this application in another case is not this application's: unknown.
    let upper = chatsdk_auth::api_key::generate("production").replace("production", "Production");
    let (status, body) = t.tokens_with_key(&upper, json!({"userId": "u1"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
}

#[tokio::test]
async fn a_staging_token_is_refused_by_production_as_wrong_application() {
    let root = tempfile::tempdir().unwrap();
    let (staging, production) = staging_then_production(root.path()).await;
    let t = &production;
    // Production knows u1 too (it would accept its own token for u1).
    let own = t.mint("u1").await;
    let (status, _, _) = verify(
        t,
        Some(&format!("Bearer {}", own["token"].as_str().unwrap())),
        &[],
    )
    .await;
    assert_eq!(status, 200);

    let token = staging["token"].as_str().unwrap();
    let (status, headers, body) = verify(t, Some(&format!("Bearer {token}")), &[]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "wrong_application");
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains("another application"), "{www}");
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_verifications_total{endpoint="verify",result="wrong_application"}"#)
            .await,
        1.0
    );

    for kind in ["token", "wsToken"] {
        let form = format!("token={}", staging[kind].as_str().unwrap());
        let (status, body) = introspect(t, &form).await;
        assert_eq!((status, body), (200, json!({"active": false})), "{kind}");
    }
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_verifications_total{endpoint="introspect",result="wrong_application"}"#)
            .await,
        2.0
    );
    let (_, body) = introspect(t, &format!("token={}", own["token"].as_str().unwrap())).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["aud"], json!(["chatsdk-api", "app:production"]));

    // The connect proxy: the staging wsToken is disconnected with 4506.
    let (status, body) = t
        .proxy(
            "/centrifugo/connect",
            &connect_with(staging["wsToken"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"disconnect": {"code": 4506, "reason": "wrong application"}})
    );
    // Production's own connect answers a meta naming production, which refresh and
    // subscribe check.
    let (_, body) = t
        .proxy(
            "/centrifugo/connect",
            &connect_with(own["wsToken"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(body["result"]["meta"]["app"], "production", "{body}");
    let staging_meta = json!({"iat": now(), "app": "staging"});
    let (_, body) = t
        .proxy(
            "/centrifugo/refresh",
            &session_body("u1", None, Some(staging_meta.clone())),
            &[],
        )
        .await;
    assert_eq!(body, json!({"result": {"expired": true}}));
    let (_, body) = t
        .proxy(
            "/centrifugo/subscribe",
            &session_body("u1", Some("chat:general"), Some(staging_meta)),
            &[],
        )
        .await;
    assert_eq!(
        body,
        json!({"disconnect": {"code": 4506, "reason": "wrong application"}})
    );
    // A connection from before app.id (meta without app) fails closed on production.
    let (_, body) = t
        .proxy(
            "/centrifugo/refresh",
            &session_body("u1", None, Some(json!({"iat": now()}))),
            &[],
        )
        .await;
    assert_eq!(body, json!({"result": {"expired": true}}));
    let own_meta = json!({"iat": now(), "app": "production"});
    let (_, body) = t
        .proxy(
            "/centrifugo/refresh",
            &session_body("u1", None, Some(own_meta)),
            &[],
        )
        .await;
    assert!(body["result"]["expire_at"].is_i64(), "{body}");
    for cb in ["connect", "refresh", "subscribe"] {
        let series = format!(
            r#"chatsdk_auth_proxy_decisions_total{{callback="{cb}",outcome="rejected",reason="wrong_application"}}"#
        );
        assert!(t.metric(&series).await >= 1.0, "{series}");
    }
}

#[tokio::test]
async fn an_install_that_keeps_the_default_accepts_tokens_without_an_application() {
    let t = TestApp::spawn().await;
    assert!(t.key.starts_with("chatsdk_default_"), "{}", t.key);
    t.mint("u1").await;
    let claims = json!({"iss": "chatsdk-auth", "aud": "chatsdk-api", "sub": "u1",
        "iat": now(), "exp": now() + 600, "jti": "j"});
    let ring = t.app.keys.current();
    let key = ring.rest.signing(now());
    let old = jsonwebtoken::encode(&key.header, &claims, &key.encoding).unwrap();
    let (status, _, body) = verify(&t, Some(&format!("Bearer {old}")), &[]).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = t
        .proxy(
            "/centrifugo/refresh",
            &session_body("u1", None, Some(json!({"iat": now()}))),
            &[],
        )
        .await;
    assert!(body["result"]["expire_at"].is_i64(), "{body}");
}
