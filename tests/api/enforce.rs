//! Active revocation through Centrifugo's server API, against [`FakeCentrifugo`]: the client's
//! retries and failures, and (below) kicks from every action and entry point.

use std::time::Duration;

use chatsdk_auth::centrifugo_api::{CentrifugoApi, CentrifugoApiError, DisconnectUser};
use chatsdk_auth::secrets::Secret;

use crate::fake_centrifugo::{FakeCentrifugo, Kick, Mode};

const KEY: &str = "centrifugo-api-key-for-the-tests-0123456789";

fn client(f: &FakeCentrifugo, timeout_ms: u64) -> (CentrifugoApi, chatsdk_auth::metrics::Metrics) {
    let m = chatsdk_auth::metrics::Metrics::new(&chatsdk_auth::router::ROUTE_LABELS).unwrap();
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

    // Slower than the timeout: each attempt is cut at 300 ms.
    f.set_mode(Mode::Hang(Duration::from_secs(2)));
    let start = std::time::Instant::now();
    let e = c.disconnect(&CAROL).await.unwrap_err();
    assert!(matches!(e, CentrifugoApiError::Timeout(_)), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1800),
        "{:?}",
        start.elapsed()
    );
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

const BIN: &str = env!("CARGO_BIN_EXE_chatsdk-auth");

/// The sidecar's environment for a data dir and a Centrifugo API.
fn env_for(dir: &std::path::Path, api_url: &str) -> Vec<(String, String)> {
    vec![
        (
            "CHATSDK_AUTH_STORAGE__DATA_DIR".into(),
            dir.display().to_string(),
        ),
        ("CHATSDK_AUTH_CENTRIFUGO__API_URL".into(), api_url.into()),
        (
            "CHATSDK_AUTH_CENTRIFUGO__API_TIMEOUT_MS".into(),
            "300".into(),
        ),
        (
            "CHATSDK_AUTH_SECRETS__CENTRIFUGO_API_KEY".into(),
            KEY.into(),
        ),
    ]
}

/// Runs the CLI (off the async workers) and returns (exit code, stdout then stderr, started
/// at).
async fn cli(
    dir: &std::path::Path,
    api_url: &str,
    args: &[&str],
) -> (i32, String, std::time::Instant) {
    let env = env_for(dir, api_url);
    let cwd = dir.parent().unwrap().to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        let out = std::process::Command::new(BIN)
            .args(&args)
            .current_dir(cwd)
            .envs(env)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            start,
        )
    })
    .await
    .unwrap()
}

/// Creates users directly in the store of `dir`.
async fn seed_users(dir: &std::path::Path, ids: &[&str]) {
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.storage.data_dir = dir.display().to_string();
    let config = raw.validate().unwrap();
    let store = chatsdk_auth::store::Store::open(&config.store)
        .await
        .unwrap();
    for id in ids {
        let patch = chatsdk_auth::store::UserPatch {
            id,
            name: chatsdk_auth::store::Field::Keep,
            image: chatsdk_auth::store::Field::Keep,
            custom: chatsdk_auth::store::Field::Keep,
        };
        store
            .upsert_user(&patch, crate::helpers::now())
            .await
            .unwrap();
    }
}

fn kick(user: &str, code: u64, reason: &str) -> Kick {
    Kick {
        user: user.into(),
        code,
        reason: reason.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_without_a_server_kicks_within_two_seconds_for_each_action() {
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
        let (code, err, start) = cli(&dir, &f.api_url(), &args).await;
        assert_eq!(code, 0, "{err}");
        let (k, at) = f.wait_kick(user, Duration::from_secs(2)).await;
        assert_eq!(k, want);
        let took = at - start;
        eprintln!("{args:?}: disconnect reached Centrifugo {took:?} after the CLI started");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(err.contains("disconnected"), "{err}");
        assert_eq!(f.kicks_of(user).len(), 1);
    }
    // Enable kicks nobody; an unknown user exits 1 and calls nothing.
    let calls = f.calls().len();
    let (code, err, _) = cli(&dir, &f.api_url(), &["user", "enable", "carol"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, err, _) = cli(&dir, &f.api_url(), &["user", "disable", "nobody"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no user with id \"nobody\""), "{err}");
    assert_eq!(
        f.calls().len(),
        calls,
        "no Centrifugo call for enable or an unknown user"
    );
    // The deleted user is gone.
    let (code, _, _) = cli(&dir, &f.api_url(), &["user", "show", "erin"]).await;
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

    // Centrifugo up, CLI beside a running server: one kick, within 2 s, whoever sends it.
    let (code, err, start) = cli(&dir, &api, &["user", "disable", "dave"]).await;
    assert_eq!(code, 0, "{err}");
    let (_, at) = f.wait_kick("dave", Duration::from_secs(2)).await;
    assert!(at - start < Duration::from_secs(2));

    // Centrifugo down: the CLI cannot deliver; the change is done and the kick is kept.
    f.down();
    let (code, err, _) = cli(&dir, &api, &["user", "disable", "carol"]).await;
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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t
        .metric(
            r#"chatsdk_auth_centrifugo_api_calls_total{method="disconnect",outcome="unreachable"}"#,
        )
        .await
        < 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not retry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(t.metric("chatsdk_auth_kicks_pending").await, 1.0);
    // Back up: delivered within the retry backoff (at most 2 s) plus a poll.
    f.up().await;
    let back = std::time::Instant::now();
    let (k, at) = f.wait_kick("carol", Duration::from_secs(4)).await;
    eprintln!(
        "after the outage, the queued kick reached Centrifugo {:?} after it came back",
        at - back
    );
    assert_eq!(k, kick("carol", 4503, "user disabled"));
    // Delivered rows leave the outbox, so nothing can send them again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.app.store.count_kicks(i64::MAX).await.unwrap() != (0, 0) {
        assert!(std::time::Instant::now() < deadline, "outbox not emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.metric(r#"chatsdk_auth_centrifugo_api_calls_total{method="disconnect",outcome="unauthorized"}"#).await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no 401 counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.set_mode(Mode::Normal);
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while f.kicks_of("carol").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered after the key was fixed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(f.kicks_of("carol")[1], kick("carol", 4504, "token revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_deliver_each_kick_once() {
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
        f.wait_kick(u, Duration::from_secs(5)).await;
    }
    // Every row leaves the shared outbox (once its delivery round has finished): nothing is
    // left to be sent again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.app.store.count_kicks(i64::MAX).await.unwrap() != (0, 0) {
        assert!(std::time::Instant::now() < deadline, "outbox not emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

// ------------------------------------------------------------------ app-wide revocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_tokens_all_refuses_every_older_token_in_every_proxy_and_mints_fresh_ones() {
    use crate::helpers::{connect_body, now, session_body, verify_hs256};
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let t = crate::helpers::TestApp::start_in(&dir, |_| {}).await;
    let ann = t.mint("ann").await["wsToken"].as_str().unwrap().to_string();
    let bob = t.mint("bob").await["wsToken"].as_str().unwrap().to_string();
    let iat = verify_hs256(&ann, &t.ws_key()).1["iat"].clone();
    let connect = |ws: &str| connect_body(json!({"data": {"token": ws}}));
    assert!(t.proxy("/centrifugo/connect", &connect(&ann), &[]).await.1["result"].is_object());

    // Bad input first: a future instant, and a missing --all.
    let (code, err, _) = cli(
        &dir,
        "",
        &[
            "revoke-tokens",
            "--all",
            "--before",
            &(now() + 3600).to_string(),
        ],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("in the future"), "{err}");
    let (code, _, _) = cli(&dir, "", &["revoke-tokens"]).await;
    assert_eq!(code, 2, "--all is required");

    let (code, err, _) = cli(&dir, "", &["revoke-tokens", "--all"]).await;
    assert_eq!(code, 0, "{err}");
    let revoked = json!({"disconnect": {"code": 4504, "reason": "token revoked"}});
    for (user, ws) in [("ann", &ann), ("bob", &bob)] {
        assert_eq!(
            t.proxy("/centrifugo/connect", &connect(ws), &[]).await.1,
            revoked,
            "{user}"
        );
        let meta = Some(json!({"iat": iat}));
        assert_eq!(
            t.proxy(
                "/centrifugo/refresh",
                &session_body(user, None, meta.clone()),
                &[]
            )
            .await
            .1,
            json!({"result": {"expired": true}})
        );
        assert_eq!(
            t.proxy(
                "/centrifugo/subscribe",
                &session_body(user, Some("chat:room"), meta),
                &[]
            )
            .await
            .1,
            revoked
        );
    }
    // POST /tokens keeps minting, and the fresh token passes every proxy (even in the same
    // second as the revocation).
    let fresh = t.mint("ann").await["wsToken"].as_str().unwrap().to_string();
    let r = t
        .proxy("/centrifugo/connect", &connect(&fresh), &[])
        .await
        .1;
    assert_eq!(r["result"]["user"], "ann", "{r}");
    let fresh_iat = verify_hs256(&fresh, &t.ws_key()).1["iat"].clone();
    let meta = Some(json!({"iat": fresh_iat}));
    assert!(t
        .proxy(
            "/centrifugo/refresh",
            &session_body("ann", None, meta.clone()),
            &[]
        )
        .await
        .1["result"]["expire_at"]
        .is_i64());
    assert_eq!(
        t.proxy(
            "/centrifugo/subscribe",
            &session_body("ann", Some("chat:room"), meta),
            &[]
        )
        .await
        .1,
        json!({"result": {}})
    );
    // An earlier instant never moves the revocation back.
    let (code, _, _) = cli(&dir, "", &["revoke-tokens", "--all", "--before", "1000"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        t.proxy("/centrifugo/connect", &connect(&bob), &[]).await.1,
        revoked
    );
}

// ------------------------------------------------------------------ doctor

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_the_server_api_and_what_weakens_enforcement() {
    let mut f = FakeCentrifugo::start(KEY).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let api = f.api_url();
    // The config this sidecar generates is what doctor expects.
    let (code, generated, _) = cli(&dir, &api, &["centrifugo-config", "--mode", "jwt"]).await;
    assert_eq!(code, 0, "{generated}");
    let cfg_path = tmp.path().join("centrifugo.json");
    std::fs::write(&cfg_path, &generated).unwrap();
    let cfg_arg = cfg_path.display().to_string();
    let doctor = ["doctor", "--centrifugo-config", &cfg_arg];
    let (code, out) = {
        let (c, o, _) = cli(&dir, &api, &doctor).await;
        (c, o)
    };
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("6.9.1") && out.contains("accepts the API key"),
        "{out}"
    );
    assert!(!out.contains("problem"), "{out}");
    assert!(f.calls().iter().any(|c| c.path == "/api/info"));

    // What weakens enforcement, found in Centrifugo's file.
    let mut doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    doc["client"]["proxy"]["refresh"]["include_connection_meta"] = false.into();
    doc["channel"]["proxy"]["subscribe"]["http"]["static_headers"]["x-chatsdk-proxy-secret"] =
        "not-the-secret".into();
    doc["http_api"]["key"] = "other".into();
    std::fs::write(&cfg_path, doc.to_string()).unwrap();
    let (code, out, _) = cli(&dir, &api, &doctor).await;
    assert_eq!(code, 1, "{out}");
    for needle in [
        "include_connection_meta is off",
        "channel.proxy.subscribe: the x-chatsdk-proxy-secret static header differs",
        "http_api.key differs",
    ] {
        assert!(out.contains(needle), "{needle} missing from {out}");
    }
    doc["client"]["proxy"]["refresh"]["enabled"] = false.into();
    std::fs::write(&cfg_path, doc.to_string()).unwrap();
    let (_, out, _) = cli(&dir, &api, &doctor).await;
    assert!(out.contains("client.proxy.refresh is not enabled"), "{out}");

    // Centrifugo refusing the key, then down: problems, exit 1, never the key in the output.
    f.set_mode(Mode::Status(401));
    let (code, out, _) = cli(&dir, &api, &["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refuses the API key"), "{out}");
    f.down();
    let (code, out, _) = cli(&dir, &api, &["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fails"), "{out}");
    assert!(!out.contains(KEY));
    // Revocation off.
    let (code, out, _) = cli(&dir, "", &["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("centrifugo.api_url is not set"), "{out}");
}

// ------------------------------------------------------------------ no secret in any log

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_token_api_key_or_centrifugo_key_reaches_any_log() {
    use std::io::{BufRead, BufReader};
    let f = FakeCentrifugo::start(KEY).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin_token = "admin-token-for-the-log-test-0123456789abcdef";
    let hmac = "hmac-key-for-the-log-test-0123456789abcdefghij";
    let proxy = "proxy-secret-for-the-log-test-0123456789abcdef";
    let mut env = env_for(&dir, &f.api_url());
    env.extend([
        (
            "CHATSDK_AUTH_SECRETS__ADMIN_TOKEN".to_string(),
            admin_token.to_string(),
        ),
        (
            "CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY".to_string(),
            hmac.to_string(),
        ),
        (
            "CHATSDK_AUTH_SECRETS__PROXY_SECRET".to_string(),
            proxy.to_string(),
        ),
        (
            "CHATSDK_AUTH_SERVER__LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        ("CHATSDK_AUTH_LOG__FORMAT".to_string(), "json".to_string()),
        ("CHATSDK_AUTH_LOG__LEVEL".to_string(), "debug".to_string()),
        (
            "CHATSDK_AUTH_CENTRIFUGO__KICK_POLL_INTERVAL_MS".to_string(),
            "100".to_string(),
        ),
    ]);
    let mut child = std::process::Command::new(BIN)
        .arg("serve")
        .current_dir(tmp.path())
        .envs(env.clone())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                }
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server address");
    let c = reqwest::Client::new();
    let key = std::fs::read_to_string(dir.join("api-key.txt")).unwrap();
    let r = c
        .post(format!("http://{addr}/tokens"))
        .header("X-API-Key", key.trim())
        .json(&serde_json::json!({"userId": "carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let admin = |path: &str, auth: &str| {
        c.post(format!("http://{addr}{path}"))
            .header("Authorization", format!("Bearer {auth}"))
            .send()
    };
    assert_eq!(
        admin("/admin/users/carol/disable", "wrong")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        admin("/admin/users/carol/disable", admin_token)
            .await
            .unwrap()
            .status(),
        200
    );
    f.wait_kick("carol", Duration::from_secs(2)).await;
    // Failures get logged: a refused key, then an unreachable Centrifugo.
    f.set_mode(Mode::Status(401));
    assert_eq!(
        admin("/admin/users/carol/revoke-tokens", admin_token)
            .await
            .unwrap()
            .status(),
        200
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("cannot deliver kicks"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery failure logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, cli_out, _) = cli(&dir, &f.api_url(), &["user", "delete", "carol"]).await;
    let (_, doctor_out, _) = cli(&dir, &f.api_url(), &["doctor"]).await;
    let (_, check_out, _) = cli(&dir, &f.api_url(), &["check-config"]).await;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let mut all = logs.lock().unwrap().join("\n");
    all.push_str(&cli_out);
    all.push_str(&doctor_out);
    all.push_str(&check_out);
    assert!(
        all.contains("cannot deliver kicks"),
        "the failure is logged"
    );
    for (what, secret) in [
        ("admin token", admin_token),
        ("Centrifugo API key", KEY),
        ("Centrifugo HMAC key", hmac),
        ("proxy secret", proxy),
        ("API key", key.trim()),
    ] {
        assert!(!all.contains(secret), "the {what} reached a log:\n{all}");
    }
}
