//! Rate limits: 429 `rate_limited` with `Retry-After`, counted, per user, per API key, per
//! address for failed keys only; the proxies are never limited; trips reach the audit trail.

use serde_json::json;

use crate::helpers::{connect_body, until, TestApp};

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
    let trips = until("the trip in the audit trail", || async {
        let events = t.app.store.list_audit(&Default::default()).await.unwrap();
        let trips: Vec<_> = events
            .into_iter()
            .filter(|e| e.event == "rate_limit.tripped")
            .collect();
        if trips.is_empty() {
            Err("no rate_limit.tripped event")
        } else {
            Ok(trips)
        }
    })
    .await;
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

/// The admin limit counts only failed token checks: 60 calls without the token (or with a
/// wrong one) from an address get 429 past the budget, and the right token from the same
/// address still passes, every time.
#[tokio::test]
async fn admin_failures_are_limited_and_never_lock_out_the_right_token() {
    let t = TestApp::spawn_with(|c| c.limits.admin_per_ip_per_minute = 2).await;
    let token = t.app.secrets.admin_token.expose().to_string();
    let admin = |bearer: Option<String>| {
        let mut rb = t.client.get(t.url("/admin/users"));
        if let Some(b) = bearer {
            rb = rb.bearer_auth(b);
        }
        async move { rb.send().await.unwrap().status().as_u16() }
    };
    let mut failures = Vec::new();
    for i in 0..60 {
        let bearer = (i % 2 == 0).then(|| "wrong".to_string());
        failures.push(admin(bearer).await);
    }
    assert_eq!(&failures[..2], [401, 401]);
    assert!(failures[2..].iter().all(|s| *s == 429), "{failures:?}");
    for _ in 0..5 {
        assert_eq!(admin(Some(token.clone())).await, 200, "locked out");
    }
}

/// A wrong metrics bearer token or proxy secret is counted and limited like a failed API key
/// (toward `failed_auth_per_ip_per_minute`, which then also refuses the address's API keys
/// before the lookup); the right one always passes.
#[tokio::test]
async fn wrong_metrics_tokens_and_proxy_secrets_are_counted_and_limited() {
    let t = TestApp::spawn_with(|c| {
        c.limits.failed_auth_per_ip_per_minute = 5;
        c.metrics.require_token = Some(true);
    })
    .await;
    let metrics_token = t.app.secrets.metrics_token.expose().to_string();
    let scrape = |bearer: &str| {
        let rb = t.client.get(t.url("/metrics")).bearer_auth(bearer);
        async move { rb.send().await.unwrap().status().as_u16() }
    };
    let mut statuses = Vec::new();
    for _ in 0..300 {
        statuses.push(scrape("wrong").await);
    }
    assert_eq!(&statuses[..5], [401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "not limited");
    assert_eq!(scrape(&metrics_token).await, 200, "the right token passes");
    let text = t
        .client
        .get(t.url("/metrics"))
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        crate::helpers::metric_value(&text, "chatsdk_auth_metrics_unauthorized_total"),
        300.0
    );
    // The address spent its failed-auth budget: its API keys wait, even the right one.
    assert_eq!(mint_status(&t, &t.key, "u").await.0, 429);

    // The proxy secret, on a fresh server.
    let t = TestApp::spawn_with(|c| c.limits.failed_auth_per_ip_per_minute = 3).await;
    let connect = |secret: String| {
        let rb = t
            .client
            .post(t.url("/centrifugo/connect"))
            .header("Content-Type", "application/json")
            .header("X-Chatsdk-Proxy-Secret", secret)
            .body(connect_body(json!({})));
        async move { rb.send().await.unwrap().status().as_u16() }
    };
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(connect("wrong".into()).await);
    }
    assert_eq!(&statuses[..3], [401; 3]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(
        connect(t.proxy_secret()).await,
        200,
        "the right secret passes"
    );
}

/// A full failed-auth table never admits: 300 addresses spraying wrong keys (10,200 failures,
/// 34 rounds) at `max_tracked_keys = 100`, and the address beyond the table gets its key
/// tested no more often than the limit allows; the checks past the table are exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_failed_auth_table_refuses_rather_than_admits() {
    const SPRAYERS: usize = 300;
    const ROUNDS: usize = 34;
    const PER_MINUTE: u32 = 3;
    let t = TestApp::spawn_with(|c| {
        c.limits.failed_auth_per_ip_per_minute = PER_MINUTE;
        c.limits.max_tracked_keys = 100;
        c.limits.trusted_proxy_header = "X-Forwarded-For".into();
    })
    .await;
    let send = |ip: String| {
        let (client, url) = (t.client.clone(), t.url("/tokens"));
        async move {
            client
                .post(url)
                .header("X-API-Key", "chatsdk_wrong")
                .header("X-Forwarded-For", ip)
                .json(&json!({"userId": "u"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let sprayer = |i: usize| format!("198.18.{}.{}", i / 250, i % 250 + 1);
    let target = "203.0.113.77".to_string();
    let mut target_tested = 0;
    let start = std::time::Instant::now();
    for round in 0..ROUNDS {
        // The sprayers first (in the first round they fill the table), then the target.
        let mut spray = tokio::task::JoinSet::new();
        for i in 0..SPRAYERS {
            spray.spawn(send(sprayer(i)));
        }
        let statuses = spray.join_all().await;
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 429),
            "{statuses:?}"
        );
        match send(target.clone()).await {
            401 => target_tested += 1,
            429 => {}
            s => panic!("round {round}: {s}"),
        }
    }
    // The burst, one more per refill (every 20 s at 3 a minute) while the spray ran, and one
    // for a shared bucket's edge.
    let allowed = PER_MINUTE as usize + (start.elapsed().as_secs() / 20) as usize + 1;
    assert!(
        target_tested <= allowed,
        "the address past the full table had its key tested {target_tested} times in {ROUNDS} rounds"
    );
    let untracked = t
        .metric(r#"chatsdk_auth_rate_limit_untracked_total{limit="failed_auth_per_ip"}"#)
        .await;
    assert!(untracked > 0.0, "{untracked}");
}

/// Every address that trips a limit gets its audit row (once a minute per address), not only
/// the first address of the minute.
#[tokio::test]
async fn every_address_that_trips_is_audited_once_a_minute() {
    let t = TestApp::spawn_with(|c| {
        c.limits.failed_auth_per_ip_per_minute = 2;
        c.limits.trusted_proxy_header = "X-Forwarded-For".into();
    })
    .await;
    let addresses: Vec<String> = (1..=5).map(|i| format!("198.51.100.{i}")).collect();
    for ip in &addresses {
        for _ in 0..4 {
            let r = t
                .client
                .post(t.url("/tokens"))
                .header("X-API-Key", "chatsdk_wrong")
                .header("X-Forwarded-For", ip)
                .json(&json!({"userId": "u"}))
                .send()
                .await
                .unwrap();
            assert!(matches!(r.status().as_u16(), 401 | 429));
        }
    }
    let sources = until("a trip per address in the audit trail", || async {
        let events = t.app.store.list_audit(&Default::default()).await.unwrap();
        let mut sources: Vec<String> = events
            .into_iter()
            .filter(|e| e.event == "rate_limit.tripped")
            .filter_map(|e| e.source)
            .collect();
        sources.sort();
        if sources.len() >= addresses.len() {
            Ok(sources)
        } else {
            Err(format!("{sources:?}"))
        }
    })
    .await;
    assert_eq!(sources, addresses, "one row per address that tripped");
}
