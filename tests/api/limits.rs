//! Rate limits: 429 `rate_limited` with `Retry-After`, counted, per user, per API key, per
//! address for failed keys only; the proxies are never limited; trips reach the audit trail.

use serde_json::json;

use crate::helpers::{connect_body, TestApp};

async fn mint_status(t: &TestApp, key: &str, user: &str) -> (u16, Option<String>, String) {
    let r = t
        .client
        .post(t.url("/tokens"))
        .header("X-API-Key", key)
        .json(&json!({"userId": user}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = r.json().await.unwrap();
    (
        status,
        retry,
        body["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn minting_for_one_user_is_limited_per_minute() {
    let t = TestApp::spawn_with(|c| c.limits.mint_per_user_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(mint_status(&t, &t.key, "hot").await.0, 200);
    }
    let (s, retry, code) = mint_status(&t, &t.key, "hot").await;
    assert_eq!((s, code.as_str()), (429, "rate_limited"));
    // 3 a minute: the next one is at most 20 s away.
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(mint_status(&t, &t.key, "other").await.0, 200, "per user");
    assert_eq!(
        t.metric(r#"chatsdk_auth_token_requests_rejected_total{reason="rate_limited"}"#)
            .await,
        1.0
    );
    // Nothing was written for the refused request, and the trip is in the audit trail (once).
    let _ = mint_status(&t, &t.key, "hot").await;
    let start = std::time::Instant::now();
    let trips = loop {
        let events = t.app.store.list_audit(&Default::default()).await.unwrap();
        let trips: Vec<_> = events
            .into_iter()
            .filter(|e| e.event == "rate_limit.tripped")
            .collect();
        if !trips.is_empty() || start.elapsed() > std::time::Duration::from_secs(5) {
            break trips;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert_eq!(trips[0].actor, "test");
    assert_eq!(trips[0].source.as_deref(), Some("127.0.0.1"));
    assert!(trips[0]
        .detail
        .as_deref()
        .unwrap()
        .starts_with("mint_per_user"));
}

#[tokio::test]
async fn minting_per_api_key_is_off_by_default_and_limits_when_set() {
    let t = TestApp::spawn().await;
    for i in 0..30 {
        assert_eq!(mint_status(&t, &t.key, &format!("u{i}")).await.0, 200);
    }
    let t = TestApp::spawn_with(|c| c.limits.mint_per_api_key_per_second = 2).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(mint_status(&t, &t.key, &format!("u{i}")).await.0);
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn failed_keys_block_the_address_and_good_keys_never_count() {
    let t = TestApp::spawn_with(|c| c.limits.failed_auth_per_ip_per_minute = 5).await;
    // Successful requests do not count toward the failure limit.
    for i in 0..20 {
        assert_eq!(mint_status(&t, &t.key, &format!("ok{i}")).await.0, 200);
    }
    for _ in 0..5 {
        assert_eq!(mint_status(&t, "chatsdk_wrong", "u").await.0, 401);
    }
    let (s, retry, code) = mint_status(&t, "chatsdk_wrong", "u").await;
    assert_eq!((s, code.as_str()), (429, "rate_limited"));
    assert!(retry.is_some());
    // Blocked: even the right key from this address waits (it is not even looked up).
    assert_eq!(mint_status(&t, &t.key, "u").await.0, 429);
}

#[tokio::test]
async fn a_trusted_proxy_header_names_the_client() {
    let t = TestApp::spawn_with(|c| {
        c.limits.failed_auth_per_ip_per_minute = 2;
        c.limits.trusted_proxy_header = "X-Forwarded-For".into();
    })
    .await;
    let send = |ip: &'static str, key: String| {
        let (client, url) = (t.client.clone(), t.url("/tokens"));
        async move {
            client
                .post(url)
                .header("X-API-Key", key)
                .header("X-Forwarded-For", format!("203.0.113.250, {ip}"))
                .json(&json!({"userId": "u"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for _ in 0..2 {
        assert_eq!(send("198.51.100.1", "chatsdk_wrong".into()).await, 401);
    }
    assert_eq!(send("198.51.100.1", "chatsdk_wrong".into()).await, 429);
    assert_eq!(
        send("198.51.100.2", t.key.clone()).await,
        200,
        "another client"
    );
}

#[tokio::test]
async fn the_proxies_are_never_limited() {
    let t = TestApp::spawn_with(|c| {
        c.limits.mint_per_user_per_minute = 1;
        c.limits.failed_auth_per_ip_per_minute = 1;
    })
    .await;
    let ws = t.mint("storm").await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    let body = connect_body(json!({"data": {"token": ws}}));
    for _ in 0..200 {
        let (s, b) = t.proxy("/centrifugo/connect", &body, &[]).await;
        assert_eq!(s, 200);
        assert_eq!(b["result"]["user"], "storm");
    }
}

#[tokio::test]
async fn admin_calls_are_limited_per_address() {
    let t = TestApp::spawn_with(|c| c.limits.admin_per_ip_per_minute = 2).await;
    let token = t.app.secrets.admin_token.expose().to_string();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = t
            .client
            .get(t.url("/admin/users"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}
