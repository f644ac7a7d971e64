//! `segments.info_fields`: the declared `custom` keys reach Centrifugo's connection `info` in the
//! wsToken (claim `info`, "any JSON value", shown in presence and publications) and in the connect
//! and refresh proxy answers (`result.info`, which replaces the connection info), field by field
//! as Centrifugo's authentication and proxy docs define them; nothing of `custom` by default.

use serde_json::{json, Value};

use crate::helpers::{connect_with, session_body, verify_hs256, TestApp};

const CUSTOM: &str =
    r#"{"role":"admin","badges":["early",3],"tenantId":"tenant-789","plan":{"tier":"pro"}}"#;

async fn mint(t: &TestApp, body: Value) -> String {
    let (s, b) = t.tokens(body).await;
    assert_eq!(s, 200, "{b}");
    b["wsToken"].as_str().unwrap().to_string()
}

/// The wsToken's `info` claim, and the `info` of the connect and refresh answers.
async fn infos(t: &TestApp, ws: &str, user: &str) -> (Value, Value, Value) {
    let (_, claims) = verify_hs256(ws, &t.ws_key());
    let (s, c) = t.proxy("/centrifugo/connect", &connect_with(ws), &[]).await;
    assert_eq!(s, 200, "{c}");
    let res = c["result"].as_object().unwrap();
    assert_eq!(res["user"], user);
    assert!(res["expire_at"].is_i64());
    assert!(!res.contains_key("b64info"), "b64info would win over info");
    let meta = json!({"iat": claims["iat"]});
    let (s, r) = t
        .proxy(
            "/centrifugo/refresh",
            &session_body(user, None, Some(meta)),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert!(r["result"]["expire_at"].is_i64() && r["result"].get("expired").is_none());
    (
        claims.get("info").cloned().unwrap_or(Value::Null),
        res.get("info").cloned().unwrap_or(Value::Null),
        r["result"].get("info").cloned().unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_info_fields_reach_the_ws_token_and_the_proxy_answers() {
    let t = TestApp::spawn_with(|c| {
        c.segments.info_fields = vec!["role".into(), "badges".into(), "plan".into()];
    })
    .await;
    let custom: Value = serde_json::from_str(CUSTOM).unwrap();
    let ws = mint(
        &t,
        json!({"userId": "ada", "name": "Ada", "custom": custom}),
    )
    .await;
    // Name and image as before, then each declared key as sent (any JSON value); never an
    // undeclared one (tenantId).
    let want =
        json!({"name": "Ada", "role": "admin", "badges": ["early", 3], "plan": {"tier": "pro"}});
    let (token, connect, refresh) = infos(&t, &ws, "ada").await;
    assert_eq!(token, want);
    assert_eq!(connect, want);
    assert_eq!(refresh, want);
    // A later POST /tokens without custom keeps the stored one, so the info stays.
    let ws = mint(&t, json!({"userId": "ada", "name": "Ada"})).await;
    assert_eq!(infos(&t, &ws, "ada").await.0, want);
    // The proxies answer from the store: a changed custom shows at the next refresh.
    let ws = mint(&t, json!({"userId": "ada", "custom": {"role": "member"}})).await;
    let member = json!({"name": "Ada", "role": "member"});
    assert_eq!(
        infos(&t, &ws, "ada").await,
        (member.clone(), member.clone(), member)
    );
    // Cleared custom: the profile only. No profile and no custom: no info at all.
    let ws = mint(&t, json!({"userId": "ada", "custom": null})).await;
    let only = json!({"name": "Ada"});
    assert_eq!(
        infos(&t, &ws, "ada").await,
        (only.clone(), only.clone(), only)
    );
    let ws = mint(&t, json!({"userId": "bare"})).await;
    assert_eq!(
        infos(&t, &ws, "bare").await,
        (Value::Null, Value::Null, Value::Null)
    );
    let ws = mint(&t, json!({"userId": "badge", "custom": {"role": "guest"}})).await;
    let guest = json!({"role": "guest"});
    assert_eq!(
        infos(&t, &ws, "badge").await,
        (guest.clone(), guest.clone(), guest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_custom_is_in_the_connection_info_by_default() {
    let t = TestApp::spawn().await;
    let custom: Value = serde_json::from_str(CUSTOM).unwrap();
    let ws = mint(
        &t,
        json!({"userId": "ada", "name": "Ada", "image": "https://i/a.png", "custom": custom}),
    )
    .await;
    let want = json!({"name": "Ada", "image": "https://i/a.png"});
    assert_eq!(
        infos(&t, &ws, "ada").await,
        (want.clone(), want.clone(), want)
    );
}
