//! Active revocation through Centrifugo's server API, against [`FakeCentrifugo`]: the client's
//! retries and failures, and (below) kicks from every action and entry point.

use std::time::Duration;

use chatsdk_auth::centrifugo::api::{CentrifugoApi, CentrifugoApiError, DisconnectUser};
use chatsdk_auth::secrets::Secret;

use crate::enforce_env::{cli, kick, seed_users, KEY};
use crate::fake_centrifugo::{FakeCentrifugo, Kick, Mode};
use crate::helpers::GIVE_UP;

fn client(f: &FakeCentrifugo, timeout_ms: u64) -> (CentrifugoApi, chatsdk_auth::metrics::Metrics) {
    let m =
        chatsdk_auth::metrics::Metrics::new(chatsdk_auth::router::ROUTE_LABELS, Default::default())
            .unwrap();
    let c = CentrifugoApi::new(
        &f.api_url(),
        Duration::from_millis(timeout_ms),
        &Secret::new(KEY.into()),
        Some(m.centrifugo_api.clone()),
    )
    .unwrap();
    (c, m)
}

fn count(m: &chatsdk_auth::metrics::Metrics, method: &str, outcome: &str) -> u64 {
    m.centrifugo_api
        .calls
        .with_label_values(&[method, outcome])
        .get()
}

const CAROL: DisconnectUser<'static> = DisconnectUser {
    user: "carol",
    code: 4503,
    reason: "user disabled",
};

#[tokio::test]
async fn client_speaks_the_server_api_and_retries_only_what_may_pass() {
    let mut f = FakeCentrifugo::start(KEY).await;
    let (c, m) = client(&f, 300);

    c.disconnect(&CAROL).await.unwrap();
    let call = &f.calls()[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/api/disconnect");
    assert_eq!(call.api_key.as_deref(), Some(KEY));
    assert_eq!(
        call.body,
        serde_json::json!({"user": "carol", "disconnect": {"code": 4503, "reason": "user disabled"}})
    );
    let nodes = c.info().await.unwrap();
    assert_eq!(nodes[0].version, "6.9.1");
    let two = [
        CAROL,
        DisconnectUser {
            user: "dave",
            code: 4504,
            reason: "token revoked",
        },
    ];
    let replies = c.disconnect_batch(&two).await.unwrap();
    assert!(replies.iter().all(Result::is_ok));
    assert_eq!(f.calls()[2].body["parallel"], true);
    assert_eq!(
        f.kicks_of("dave"),
        vec![Kick {
            user: "dave".into(),
            code: 4504,
            reason: "token revoked".into()
        }]
    );
    assert_eq!(count(&m, "disconnect", "ok"), 1);
    assert_eq!(count(&m, "info", "ok"), 1);

    // A wrong key: 401, not retried (it will not pass by itself), counted.
    f.set_mode(Mode::Status(401));
    let before = f.calls().len();
    assert!(matches!(
        c.disconnect(&CAROL).await,
        Err(CentrifugoApiError::Unauthorized)
    ));
    assert_eq!(f.calls().len(), before + 1);
    assert_eq!(count(&m, "disconnect", "unauthorized"), 1);

    // 5xx: three attempts with backoff, then the error.
    f.set_mode(Mode::Status(503));
    let before = f.calls().len();
    assert!(matches!(
        c.disconnect(&CAROL).await,
        Err(CentrifugoApiError::Status(503))
    ));
    assert_eq!(f.calls().len(), before + 3);
    assert_eq!(count(&m, "disconnect", "http_error"), 3);

    // Slower than the timeout: each attempt is cut at 300 ms (an attempt left to run would be
    // answered, successfully, after the 2 s hang), three attempts, then the timeout error.
    f.set_mode(Mode::Hang(Duration::from_secs(2)));
    let e = tokio::time::timeout(GIVE_UP, c.disconnect(&CAROL))
        .await
        .expect("the client never gave up on a hanging Centrifugo")
        .unwrap_err();
    assert!(matches!(e, CentrifugoApiError::Timeout(_)), "{e:?}");
    assert_eq!(count(&m, "disconnect", "timeout"), 3);

    // Down: refused connections are "unreachable"; back up, the same client works again.
    f.set_mode(Mode::Normal);
    f.down();
    let e = c.disconnect(&CAROL).await.unwrap_err();
    assert!(matches!(e, CentrifugoApiError::Unreachable(_)), "{e:?}");
    assert!(count(&m, "disconnect", "unreachable") >= 1);
    f.up().await;
    c.disconnect(&CAROL).await.unwrap();
    // No error message names the key.
    for e in [
        CentrifugoApiError::Unauthorized.to_string(),
        format!("{:?}", CentrifugoApiError::Unauthorized),
    ] {
        assert!(!e.contains(KEY));
    }
}

// ------------------------------------------------------------------ kicks from every entry point

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_without_a_server_kicks_for_each_action() {
    let f = FakeCentrifugo::start(KEY).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    seed_users(&dir, &["carol", "dave", "erin"]).await;

    for (args, user, want) in [
        (
            vec!["user", "disable", "carol"],
            "carol",
            kick("carol", 4503, "user disabled"),
        ),
        (
            vec!["user", "revoke-tokens", "dave"],
            "dave",
            kick("dave", 4504, "token revoked"),
        ),
        (
            vec!["user", "delete", "erin"],
            "erin",
            kick("erin", 4502, "unknown user"),
        ),
    ] {
        let (code, err) = cli(&dir, &f.api_url(), &args).await;
        assert_eq!(code, 0, "{err}");
        let (k, _) = f.wait_kick(user).await;
        assert_eq!(k, want);
        assert!(err.contains("disconnected"), "{err}");
        assert_eq!(f.kicks_of(user).len(), 1);
    }
    // Enable kicks nobody; an unknown user exits 1 and calls nothing.
    let calls = f.calls().len();
    let (code, err) = cli(&dir, &f.api_url(), &["user", "enable", "carol"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, err) = cli(&dir, &f.api_url(), &["user", "disable", "nobody"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no user with id \"nobody\""), "{err}");
    assert_eq!(
        f.calls().len(),
        calls,
        "no Centrifugo call for enable or an unknown user"
    );
    // The deleted user is gone.
    let (code, _) = cli(&dir, &f.api_url(), &["user", "show", "erin"]).await;
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_survives_a_centrifugo_outage_and_is_delivered_once_by_the_running_server() {
    let mut f = FakeCentrifugo::start(KEY).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let api = f.api_url();
    let t = crate::helpers::TestApp::start_in(&dir, |c| {
        c.centrifugo.api_url = api.clone();
        c.centrifugo.api_timeout_ms = 300;
        c.centrifugo.kick_poll_interval_ms = 100;
        c.secrets.centrifugo_api_key = KEY.into();
    })
    .await;
    t.mint("carol").await;
    t.mint("dave").await;

    // Centrifugo up, CLI beside a running server: one kick, whoever sends it.
    let (code, err) = cli(&dir, &api, &["user", "disable", "dave"]).await;
    assert_eq!(code, 0, "{err}");
    f.wait_kick("dave").await;

    // Centrifugo down: the CLI cannot deliver; the change is done and the kick is kept.
    f.down();
    let (code, err) = cli(&dir, &api, &["user", "disable", "carol"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kick queued"), "{err}");
    assert!(
        t.app
            .store
            .get_user("carol")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    // The server keeps trying (and counts it) while Centrifugo is down.
    crate::helpers::eventually("the server did not retry", || async {
        t.metric(
            r#"chatsdk_auth_centrifugo_api_calls_total{method="disconnect",outcome="unreachable"}"#,
        )
        .await
            >= 1.0
    })
    .await;
    assert_eq!(t.metric("chatsdk_auth_kicks_pending").await, 1.0);
    // Back up: delivered by the server's next retry.
    f.up().await;
    let (k, _) = f.wait_kick("carol").await;
    assert_eq!(k, kick("carol", 4503, "user disabled"));
    // Delivered rows leave the outbox, so nothing can send them again.
    crate::helpers::eventually("outbox not emptied", || async {
        t.app.store.count_kicks(i64::MAX).await.unwrap() == (0, 0)
    })
    .await;
    assert_eq!(f.kicks_of("carol").len(), 1);
    assert_eq!(f.kicks_of("dave").len(), 1);
    assert!(t.metric("chatsdk_auth_kicks_delivered_total").await >= 1.0);

    // A wrong key (Centrifugo answers 401): kept, retried, counted, delivered once fixed.
    f.set_mode(Mode::Status(401));
    t.app
        .actions()
        .revoke_user_tokens("carol", None, crate::helpers::now())
        .await
        .unwrap();
    t.app.kick_wake.notify_one();
    crate::helpers::eventually("no 401 counted", || async { t.metric(r#"chatsdk_auth_centrifugo_api_calls_total{method="disconnect",outcome="unauthorized"}"#).await >= 1.0 }).await;
    f.set_mode(Mode::Normal);
    crate::helpers::eventually("not delivered after the key was fixed", || async {
        f.kicks_of("carol").len() >= 2
    })
    .await;
    assert_eq!(f.kicks_of("carol")[1], kick("carol", 4504, "token revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_deliver_each_kick_once() {
    crate::need::need!(Postgres);
    let pg = crate::pg::PgServer::start().await;
    let f = FakeCentrifugo::start(KEY).await;
    let api = f.api_url();
    let on = |url: String, api: String| {
        move |c: &mut chatsdk_auth::config::RawConfig| {
            c.storage.backend = "postgres".into();
            c.storage.postgres_url = url;
            c.secrets.rest_key = "r".repeat(40);
            c.secrets.centrifugo_key = "w".repeat(40);
            c.secrets.proxy_secret = "p".repeat(40);
            c.secrets.centrifugo_api_key = KEY.into();
            c.centrifugo.api_url = api;
            c.centrifugo.kick_poll_interval_ms = 50;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = crate::helpers::TestApp::start_in(tmp.path(), on(pg.url(), api.clone())).await;
    let b = crate::helpers::TestApp::start_in(tmp.path(), on(pg.url(), api.clone())).await;
    let users: Vec<String> = (0..40).map(|i| format!("u{i:02}")).collect();
    for u in &users {
        a.mint(u).await;
    }
    // Changes land on both replicas at once; both loops poll every 50 ms and race to claim.
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let app = if i % 2 == 0 {
            a.app.clone()
        } else {
            b.app.clone()
        };
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            let now = chatsdk_auth::now_unix();
            match i % 3 {
                0 => app.actions().disable(&u, now).await.unwrap(),
                1 => {
                    app.actions()
                        .revoke_user_tokens(&u, None, now)
                        .await
                        .unwrap()
                        .1
                }
                _ => app.actions().delete_user(&u, now).await.unwrap(),
            };
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for u in &users {
        f.wait_kick(u).await;
    }
    // Every row leaves the shared outbox (once its delivery round has finished): nothing is
    // left to be sent again.
    crate::helpers::eventually("outbox not emptied", || async {
        a.app.store.count_kicks(i64::MAX).await.unwrap() == (0, 0)
    })
    .await;
    for u in &users {
        assert_eq!(f.kicks_of(u).len(), 1, "{u} kicked {:?}", f.kicks_of(u));
    }
    let by_a = a.metric("chatsdk_auth_kicks_delivered_total").await;
    let by_b = b.metric("chatsdk_auth_kicks_delivered_total").await;
    eprintln!("replica a delivered {by_a}, replica b {by_b}");
    assert_eq!(by_a + by_b, users.len() as f64);

    // App-wide revocation on one replica is in force on the other at once.
    let now = chatsdk_auth::now_unix();
    a.app.actions().revoke_all_tokens(None, now).await.unwrap();
    let s = b.app.store.get_session("u00").await.unwrap().unwrap();
    assert_eq!(s.tokens_valid_after, now + 1);
}
