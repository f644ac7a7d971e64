//! Coalesced PostgreSQL lookups (src/store/postgres_batch.rs) against a real PostgreSQL: a
//! burst answers exactly as single lookups do, a change committed while a batch gathers is seen
//! by every request that arrived after it, an outage mid-batch is 503 for every waiter, and the
//! server itself counts fewer statements than decisions, each batch statement is planned a few
//! times per connection (not at every execution), and all of it holds with the statements
//! pipelined on one kept connection (`storage.postgres_lookup_connections`).

use chatsdk_auth::config::RawConfig;
use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{connect_with, eventually, now, until, use_postgres, TestApp};
use crate::pg::{self, PgServer};

/// A replica on `url`; `coalesce` off makes every lookup a statement of its own. A pool of 4
/// gives each lookup kind one statement in flight, so concurrent lookups always gather.
fn replica(url: String, coalesce: bool) -> impl FnOnce(&mut RawConfig) {
    piped(url, coalesce, 1)
}

/// [`replica`], its lookups' statements pipelined on `kept` connections of the pool (the
/// default, 1), or each on a pooled connection of its own (0).
fn piped(url: String, coalesce: bool, kept: usize) -> impl FnOnce(&mut RawConfig) {
    move |c| {
        c.storage.postgres_lookup_connections = kept;
        use_postgres(c, url);
        c.secrets.rest_key = "r".repeat(40);
        c.secrets.centrifugo_key = "w".repeat(40);
        c.secrets.proxy_secret = "p".repeat(40);
        c.storage.postgres_coalesce = coalesce;
        c.storage.postgres_pool_size = 4;
        c.storage.postgres_timeout_ms = 5000;
        c.limits.mint_per_user_per_minute = 0;
    }
}

/// The wsTokens of `ids`, minted concurrently.
async fn mint_all(t: &TestApp, ids: &[String]) -> Vec<String> {
    join_all(ids.iter().map(|id| t.mint(id)))
        .await
        .into_iter()
        .map(|b| b["wsToken"].as_str().unwrap().to_string())
        .collect()
}

/// Every connect of `tokens` sent at once.
async fn connect_burst(t: &TestApp, tokens: &[String]) -> Vec<(u16, Value)> {
    let bodies: Vec<String> = tokens.iter().map(|ws| connect_with(ws)).collect();
    join_all(
        bodies
            .iter()
            .map(|b| t.proxy("/centrifugo/connect", b, &[])),
    )
    .await
}

async fn statements(t: &TestApp, lookup: &str) -> f64 {
    t.metric(&format!(
        r#"chatsdk_auth_store_batch_size_count{{lookup="{lookup}"}}"#
    ))
    .await
}

/// A client of `url` holding `LOCK TABLE chatsdk_auth_settings` in an open transaction: every
/// profile statement (its revocation cutoff reads that table) waits until it is released,
/// while writes to the users table go on.
async fn hold_settings_lock(url: &str) -> tokio_postgres::Client {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute("BEGIN; LOCK TABLE chatsdk_auth_settings IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    db
}

/// Waits until `n` requests are in the service (counted in flight: arrived, not answered).
async fn in_flight(t: &TestApp, n: usize) {
    eventually(&format!("{n} requests in flight"), || async {
        t.app.metrics.http_in_flight.get() >= n as i64
    })
    .await
}

/// Waits until a backend of the service is waiting for a lock (its profile statement is in
/// flight, blocked by [`hold_settings_lock`]).
async fn until_a_statement_waits(url: &str) {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    until("a statement waiting for the lock", || async {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chatsdk-auth' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            Ok(())
        } else {
            Err("none")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connects_answers_as_single_lookups_do() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let on = TestApp::start_in(&dir, replica(url.clone(), true)).await;
    let off = TestApp::start_in(&dir, replica(url.clone(), false)).await;
    // Each statement on a pooled connection of its own.
    let pooled = TestApp::start_in(&dir, piped(url, true, 0)).await;
    // Four kinds of user, interleaved: active, disabled, revoked, deleted (unknown).
    let ids: Vec<String> = (0..48).map(|i| format!("burst-{i}")).collect();
    let tokens = mint_all(&on, &ids).await;
    for (i, id) in ids.iter().enumerate() {
        let a = on.app.actions();
        match i % 4 {
            1 => drop(a.disable(id, now()).await.unwrap()),
            2 => drop(a.revoke_user_tokens(id, None, now()).await.unwrap()),
            3 => drop(a.delete_user(id, now()).await.unwrap()),
            _ => {}
        }
    }
    // Each token four times over, all at once, on each replica.
    let burst: Vec<String> = (0..4).flat_map(|_| tokens.iter().cloned()).collect();
    let coalesced = connect_burst(&on, &burst).await;
    let single = connect_burst(&off, &burst).await;
    let own = connect_burst(&pooled, &burst).await;
    for (i, ((c, s), o)) in coalesced.iter().zip(&single).zip(&own).enumerate() {
        assert_eq!(c, s, "request {i} ({})", ids[i % ids.len()]);
        assert_eq!(
            o,
            s,
            "request {i} ({}), own connections",
            ids[i % ids.len()]
        );
        let id = &ids[i % ids.len()];
        let (status, body) = c;
        assert_eq!(*status, 200, "{body}");
        match i % 4 {
            0 => assert_eq!(body["result"]["user"], id.as_str(), "{body}"),
            k => assert_eq!(
                body["disconnect"]["code"],
                [0, 4503, 4504, 4502][k],
                "{id}: {body}"
            ),
        }
    }
    // The coalescing replica read the burst in fewer statements than decisions; the other
    // sent none of its kind.
    let (n_on, n_off) = (
        statements(&on, "profile").await,
        statements(&off, "profile").await,
    );
    let decisions = (ids.len() + burst.len()) as f64;
    assert!(
        n_on > 0.0 && n_on < decisions,
        "{n_on} statements for {decisions} lookups"
    );
    assert_eq!(n_off, 0.0);
    let n_own = statements(&pooled, "profile").await;
    assert!(
        n_own > 0.0 && n_own < burst.len() as f64,
        "{n_own} statements on their own connections for {} lookups",
        burst.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disabled_while_a_batch_gathers_is_refused_by_every_later_request() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let t = TestApp::spawn_with(replica(url.clone(), true)).await;
    let ids: Vec<String> = std::iter::once("victim".to_string())
        .chain((0..6).map(|i| format!("bystander-{i}")))
        .collect();
    let tokens = mint_all(&t, &ids).await;
    let base = statements(&t, "profile").await;
    let lock = hold_settings_lock(&url).await;
    let t = std::sync::Arc::new(t);
    let send = |ws: &String| {
        let (t, ws) = (t.clone(), ws.clone());
        tokio::spawn(async move {
            t.proxy("/centrifugo/connect", &connect_with(&ws), &[])
                .await
        })
    };
    // One statement in flight (blocked), then lookups queued behind it.
    let first = send(&tokens[0]);
    until_a_statement_waits(&url).await;
    let before: Vec<_> = tokens.iter().map(send).collect();
    in_flight(&t, 1 + before.len()).await;
    t.app.actions().disable("victim", now()).await.unwrap();
    // Arrived after the disable committed, gathered with the requests from before it.
    let after: Vec<_> = tokens.iter().chain(&tokens).map(send).collect();
    in_flight(&t, 1 + before.len() + after.len()).await;
    lock.batch_execute("ROLLBACK").await.unwrap();
    for h in std::iter::once(first).chain(before) {
        let (s, b) = h.await.unwrap();
        assert_eq!(s, 200, "{b}");
    }
    for (i, h) in after.into_iter().enumerate() {
        let (s, b) = h.await.unwrap();
        assert_eq!(s, 200, "{b}");
        if i % ids.len() == 0 {
            assert_eq!(b["disconnect"]["code"], 4503, "the disabled user: {b}");
        } else {
            assert_eq!(b["result"]["user"], ids[i % ids.len()].as_str(), "{b}");
        }
    }
    let requests = 1 + 3 * ids.len();
    let n = statements(&t, "profile").await - base;
    assert!(n < requests as f64, "{n} statements for {requests} lookups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_batch_is_503_for_every_waiter_then_recovers() {
    stopped_mid_batch(1).await;
}

/// The same with each statement on a pooled connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_batch_on_pooled_connections_is_503_then_recovers() {
    stopped_mid_batch(0).await;
}

/// PostgreSQL stops with statements queued: all are 503; a kept connection (`kept` = 1) is
/// lost with the server and made again from the pool when it is back.
async fn stopped_mid_batch(kept: usize) {
    crate::need::need!(Postgres);
    let mut pg = PgServer::start().await;
    let t = TestApp::spawn_with(|c| {
        piped(pg.url(), true, kept)(c);
        c.storage.postgres_timeout_ms = 1000;
        c.server.request_timeout_seconds = 8;
    })
    .await;
    let ids: Vec<String> = (0..8).map(|i| format!("outage-{i}")).collect();
    let tokens = mint_all(&t, &ids).await;
    let lock = hold_settings_lock(&pg.url()).await;
    let t = std::sync::Arc::new(t);
    let send = |ws: &String| {
        let (t, ws) = (t.clone(), ws.clone());
        tokio::spawn(async move {
            t.proxy("/centrifugo/connect", &connect_with(&ws), &[])
                .await
        })
    };
    let first = send(&tokens[0]);
    until_a_statement_waits(&pg.url()).await;
    let queued: Vec<_> = tokens.iter().chain(&tokens).map(send).collect();
    in_flight(&t, 1 + queued.len()).await;
    pg.crash();
    drop(lock);
    // Every waiter is answered by the store's failure (not by the request deadline, whose
    // answer is `timeout`), none with a decision.
    for h in std::iter::once(first).chain(queued) {
        let (s, b) = h.await.unwrap();
        assert_eq!(
            (s, b["code"].as_str()),
            (503, Some("store_unavailable")),
            "{b}"
        );
    }
    pg.run().await;
    eventually("recovered", || async {
        t.proxy("/centrifugo/connect", &connect_with(&tokens[0]), &[])
            .await
            .0
            == 200
    })
    .await;
    let burst: Vec<String> = tokens.iter().chain(&tokens).cloned().collect();
    for (i, (s, b)) in connect_burst(&t, &burst).await.into_iter().enumerate() {
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["result"]["user"], ids[i % ids.len()].as_str(), "{b}");
    }
}

/// `pg` restarted with `pg_stat_statements` loaded, counting plans too; a client of it.
async fn with_pg_stat_statements(pg: &mut PgServer) -> tokio_postgres::Client {
    let (db, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        .await
        .unwrap();
    drop(db);
    pg.stop();
    pg.run().await;
    let (db, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    // Known once the library is loaded; taken by the connections the replica opens next.
    db.batch_execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
        .await
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    eventually("track_planning on", || async {
        let (probe, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let on: String = probe
            .query_one("SHOW pg_stat_statements.track_planning", &[])
            .await
            .unwrap()
            .get(0);
        on == "on"
    })
    .await;
    db
}

/// Calls, rows and plans of the batch statement that reads `table`.
async fn batch_statement(db: &tokio_postgres::Client, table: &str) -> (i64, i64, i64) {
    let rows = db
        .query(
            "SELECT calls, rows, plans FROM pg_stat_statements WHERE query LIKE '%FROM ' || $1 || '%WHERE % = ANY((SELECT $1::%'",
            &[&table],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one batch statement reads {table}");
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_statements_counts_fewer_statements_than_decisions() {
    crate::need::need!(Postgres);
    let mut pg = PgServer::start().await;
    let db = with_pg_stat_statements(&mut pg).await;
    let t = TestApp::spawn_with(replica(pg.url(), true)).await;
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    // 120 POST /tokens (one API key, 120 new users), then two connects each.
    let ids: Vec<String> = (0..120).map(|i| format!("counted-{i}")).collect();
    let tokens = mint_all(&t, &ids).await;
    let burst: Vec<String> = tokens.iter().chain(&tokens).cloned().collect();
    for (s, b) in connect_burst(&t, &burst).await {
        assert_eq!(s, 200, "{b}");
    }
    let (key_calls, key_rows, _) = batch_statement(&db, "chatsdk_auth_api_keys").await;
    let (profile_calls, profile_rows, _) = batch_statement(&db, "chatsdk_auth_users").await;
    eprintln!(
        "api-key statements {key_calls} ({key_rows} rows) for {} requests; profile statements {profile_calls} ({profile_rows} rows) for {} lookups",
        ids.len(),
        ids.len() + burst.len()
    );
    assert!(key_calls >= 1 && key_calls < ids.len() as i64);
    assert!(profile_calls >= 1 && profile_calls < (ids.len() + burst.len()) as i64);
    // The single-id read is not sent at all.
    let single: i64 = db
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE '%FROM chatsdk_auth_users WHERE id = $1%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(single, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_applies_to_the_batch() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    // Only PostgreSQL's statement_timeout can end these reads: the store's own bound and the
    // request deadline are far beyond the test.
    let t = TestApp::spawn_with(|c| {
        replica(format!("{url}?options=-c%20statement_timeout%3D300"), true)(c);
        c.storage.postgres_timeout_ms = 60_000;
        c.server.request_timeout_seconds = 60;
    })
    .await;
    let ids: Vec<String> = (0..4).map(|i| format!("slow-{i}")).collect();
    let tokens = mint_all(&t, &ids).await;
    let _lock = hold_settings_lock(&url).await;
    let burst: Vec<String> = tokens.iter().chain(&tokens).cloned().collect();
    for (s, b) in connect_burst(&t, &burst).await {
        assert_eq!(
            (s, b["code"].as_str()),
            (503, Some("store_unavailable")),
            "{b}"
        );
    }
}

/// One request at a time, each lookup is a statement alone: PostgreSQL plans each batch
/// statement a few times per connection (five custom plans, then the generic plan it keeps),
/// not at every execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_statement_is_planned_a_few_times_per_connection_not_per_execution() {
    crate::need::need!(Postgres);
    let mut pg = PgServer::start().await;
    let db = with_pg_stat_statements(&mut pg).await;
    let t = TestApp::spawn_with(replica(pg.url(), true)).await;
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    let n = 100;
    for i in 0..n {
        let ws = t.mint(&format!("planned-{i}")).await["wsToken"]
            .as_str()
            .unwrap()
            .to_string();
        let (s, b) = t
            .proxy("/centrifugo/connect", &connect_with(&ws), &[])
            .await;
        assert_eq!(s, 200, "{b}");
    }
    // At most the pool's 4 connections, each planning a statement six times (and once more
    // if autovacuum's ANALYZE of the new users invalidates the plan).
    for (table, at_least) in [("chatsdk_auth_api_keys", n), ("chatsdk_auth_users", 2 * n)] {
        let (calls, _, plans) = batch_statement(&db, table).await;
        eprintln!("{table}: {calls} calls, {plans} plans");
        assert!(calls >= at_least, "{table}: {calls} calls");
        assert!(plans <= 4 * 7, "{table}: {plans} plans for {calls} calls");
    }
}
