//! Abuse limits shared by replicas on one PostgreSQL: wrong API keys or admin calls spread over
//! three replicas get the budget of one; a request with a valid key writes nothing there; an
//! outage is counted on every statement and logged once.

use serde_json::json;

use crate::helpers::{use_postgres, TestApp};
use crate::pg;

const ADMIN: &str = "admin-token-for-the-shared-limit-tests-0123456789";

/// Three replicas on one new database, sharing their secrets, with `f` applied to each.
async fn replicas(f: impl Fn(&mut chatsdk_auth::config::RawConfig)) -> (Vec<TestApp>, String) {
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap().keep();
    let mut out = Vec::new();
    for _ in 0..3 {
        let u = url.clone();
        // One data dir: the replicas share the test API key file, as in tests/api/postgres.rs.
        let t = TestApp::start_in(&tmp.join("data"), |c| {
            use_postgres(c, u);
            c.secrets.rest_key = "r".repeat(40);
            c.secrets.centrifugo_key = "w".repeat(40);
            c.secrets.proxy_secret = "p".repeat(40);
            c.secrets.admin_token = ADMIN.into();
            f(c);
        })
        .await;
        out.push(t);
    }
    (out, url)
}

async fn limit_rows(url: &str) -> i64 {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.query_one("SELECT count(*) FROM chatsdk_auth_limits", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_spread_over_three_replicas_get_the_budget_of_one() {
    crate::need::need!(Postgres);
    const BUDGET: u32 = 6;
    let (apps, _) = replicas(|c| c.limits.failed_auth_per_ip_per_minute = BUDGET).await;
    let wrong = "chatsdk_wrongwrongwrongwrongwrongwrongwrongwrong1";
    let (mut refused_401, mut limited_429) = (0, 0);
    for i in 0..30 {
        let (s, b) = apps[i % 3]
            .tokens_with_key(wrong, json!({"userId": "u"}))
            .await;
        match s {
            401 => refused_401 += 1,
            429 => {
                assert_eq!(b["code"], "rate_limited");
                limited_429 += 1;
            }
            other => panic!("{other}: {b}"),
        }
    }
    // Each replica alone would allow BUDGET wrong keys (18 in all); shared, the bucket allows
    // BUDGET, and each other replica at most the one attempt that learns it is over.
    assert!(
        (BUDGET..=BUDGET + 2).contains(&refused_401),
        "{refused_401} wrong keys were checked, {limited_429} refused"
    );
    // And every replica now refuses the address before looking a key up.
    for t in &apps {
        let (s, _) = t.tokens_with_key(&t.key, json!({"userId": "u"})).await;
        assert_eq!(s, 429, "even a valid key waits out the address's refill");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_budget_is_spent_three_replicas_test_one_key_per_refill_not_three() {
    crate::need::need!(Postgres);
    // 60 a minute: one more every second once the burst is spent.
    let (apps, _) = replicas(|c| c.limits.failed_auth_per_ip_per_minute = 60).await;
    let wrong = "chatsdk_wrongwrongwrongwrongwrongwrongwrongwrong1";
    let mut i = 0;
    // Spend the burst.
    loop {
        let (s, _) = apps[i % 3]
            .tokens_with_key(wrong, json!({"userId": "u"}))
            .await;
        i += 1;
        if s == 429 || i > 200 {
            break;
        }
    }
    // Then guess round-robin, one request every 50 ms, for 3.5 s. A guess is tested when its
    // key is looked up, whatever the answer (a wrong key found over the budget is a 429 too):
    // count the lookups. The bucket refills about 3 times, so about 3 may be tested; replicas
    // that looked only at their own block would test one a second each (about 10).
    let lookups =
        r#"chatsdk_auth_store_operation_duration_seconds_count{operation="authenticate_api_key"}"#;
    let mut before = 0.0;
    for t in &apps {
        before += t.metric(lookups).await;
    }
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(3500) {
        let (s, b) = apps[i % 3]
            .tokens_with_key(wrong, json!({"userId": "u"}))
            .await;
        i += 1;
        assert!(s == 401 || s == 429, "{s}: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut after = 0.0;
    for t in &apps {
        after += t.metric(lookups).await;
    }
    let tested = after - before;
    assert!(
        tested <= 5.0,
        "{tested} keys tested in 3.5 s after the budget was spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_spread_over_three_replicas_get_the_budget_of_one() {
    crate::need::need!(Postgres);
    const BUDGET: u32 = 5;
    let (apps, _) = replicas(|c| c.limits.admin_per_ip_per_minute = BUDGET).await;
    let mut ok = 0;
    for i in 0..15 {
        let t = &apps[i % 3];
        let r = t
            .client
            .get(t.url("/admin/api-keys"))
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            401 => ok += 1,
            429 => assert!(r.headers().contains_key("retry-after")),
            other => panic!("{other}"),
        }
    }
    assert_eq!(ok, BUDGET, "one budget of failures for the three replicas");
    // The right token is never limited.
    for t in &apps {
        let r = t
            .client
            .get(t.url("/admin/api-keys"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_writes_nothing_to_the_shared_buckets() {
    crate::need::need!(Postgres);
    let (apps, url) = replicas(|_| {}).await;
    for (i, t) in apps.iter().enumerate() {
        for n in 0..5 {
            let (s, b) = t.tokens(json!({"userId": format!("u{i}-{n}")})).await;
            assert_eq!(s, 200, "{b}");
        }
    }
    assert_eq!(
        limit_rows(&url).await,
        0,
        "no statement on the success path"
    );
    let (s, _) = apps[0]
        .tokens_with_key(
            "chatsdk_wrongwrongwrongwrongwrongwrongwrongwrong1",
            json!({"userId": "u"}),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(limit_rows(&url).await, 1, "one row per address and limit");
}

/// The shared buckets are keyed by a keyed hash, never the address; PostgreSQL's clock decides;
/// while PostgreSQL is down each failed statement is counted (and the admin token still
/// decides: 401, not 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_buckets_hide_the_address_and_an_outage_is_counted() {
    crate::need::need!(Postgres);
    let mut server = pg::PgServer::start().await;
    let url = server.url();
    let u = url.clone();
    let t = TestApp::spawn_with(move |c| {
        use_postgres(c, u);
        c.secrets.admin_token = ADMIN.into();
    })
    .await;
    let (s, _) = t
        .tokens_with_key(
            "chatsdk_wrongwrongwrongwrongwrongwrongwrongwrong1",
            json!({"userId": "u"}),
        )
        .await;
    assert_eq!(s, 401);
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = db
        .query(
            "SELECT key, tat_ms - (extract(epoch FROM now()) * 1000)::bigint FROM chatsdk_auth_limits",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let key: String = rows[0].get(0);
    let ahead_ms: i64 = rows[0].get(1);
    assert!(key.starts_with("failed_auth_per_ip:"), "{key}");
    for address in ["7f000001", "127.0.0.1"] {
        assert!(!key.contains(address), "the row names the address: {key}");
    }
    // One event at the database's time: one emission interval (1 s at 60 a minute) ahead.
    assert!((0..=1000).contains(&ahead_ms), "{ahead_ms} ms ahead");
    drop(db);

    server.stop();
    for _ in 0..5 {
        let r = t
            .client
            .get(t.url("/admin/api-keys"))
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        t.metric("chatsdk_auth_shared_limit_failures_total").await,
        5.0
    );
}

/// While PostgreSQL is down, the built binary logs the shared limits' failure once (not once
/// per request) and counts every failed statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_shared_limits_is_logged_once_and_counted_every_time() {
    crate::need::need!(Postgres);
    let mut pg = pg::PgServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let url = pg.url();
    let server = crate::process::Server::start(
        tmp.path(),
        &[
            ("CHATSDK_AUTH_STORAGE__BACKEND", "postgres"),
            ("CHATSDK_AUTH_STORAGE__POSTGRES_URL", &url),
            ("CHATSDK_AUTH_STORAGE__POSTGRES_TIMEOUT_MS", "500"),
            ("CHATSDK_AUTH_SECRETS__ADMIN_TOKEN", ADMIN),
        ],
    );
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;
    pg.crash();
    const CALLS: usize = 10;
    for _ in 0..CALLS {
        let r = c
            .get(server.url("/admin/api-keys"))
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let text = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        crate::helpers::metric_value(&text, "chatsdk_auth_shared_limit_failures_total"),
        CALLS as f64
    );
    let (_, logs) = server.terminate();
    let warned = logs
        .iter()
        .filter(|l| l.contains("cannot ask the limits the replicas share"))
        .count();
    assert_eq!(warned, 1, "{logs:#?}");
}
