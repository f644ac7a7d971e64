//! Runs the real binary the way an operator does: first start on an empty directory, the CLI
//! against the running server, SIGTERM, and a check that no secret reached the logs.

use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::helpers::{verify_hs256, UUID};
use crate::process::{cli, stdout, Server, Signal, BIN};

async fn post_tokens(c: &reqwest::Client, s: &Server, key: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(s.url("/tokens"))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn first_start_cli_against_running_server_sigterm_and_clean_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(dir, &[]);
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;

    // First start created the data dir, the secrets and one API key, all owner-only.
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("data");
    for f in [
        "rest-signing.key",
        "centrifugo-hmac.key",
        "proxy-secret.key",
        "metrics-token.key",
        "subscription-hmac.key",
        "api-key.txt",
        "chatsdk-auth.db",
    ] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let read = |f: &str| {
        std::fs::read_to_string(data.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    let key = read("api-key.txt");
    let (rest_key, ws_key, proxy_secret, metrics_token, sub_key) = (
        read("rest-signing.key"),
        read("centrifugo-hmac.key"),
        read("proxy-secret.key"),
        read("metrics-token.key"),
        read("subscription-hmac.key"),
    );
    assert!(key.starts_with("chatsdk_"));
    assert!(ws_key.len() >= 32 && rest_key.len() >= 32 && rest_key != ws_key);
    assert!(sub_key.len() >= 32 && sub_key != ws_key && sub_key != rest_key);

    let mut secrets_seen = vec![
        key.clone(),
        rest_key.clone(),
        ws_key.clone(),
        proxy_secret.clone(),
        metrics_token.clone(),
        sub_key.clone(),
    ];
    let (s, b) = post_tokens(&c, &server, &key, json!({"userId": "u1", "name": "Alice"})).await;
    assert_eq!(s, 200, "{b}");
    let ws = b["wsToken"].as_str().unwrap().to_string();
    verify_hs256(&ws, &ws_key);
    verify_hs256(b["token"].as_str().unwrap(), &rest_key);
    secrets_seen.push(ws.clone());
    secrets_seen.push(b["token"].as_str().unwrap().to_string());
    // A subscription token (the default rules allow chat:*), signed with its own key.
    let r = c
        .post(server.url("/tokens/subscription"))
        .header("X-API-Key", &key)
        .json(&json!({"userId": "u1", "channel": "chat:room-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let b: Value = r.json().await.unwrap();
    let sub_token = b["tokens"][0]["token"].as_str().unwrap().to_string();
    assert_eq!(
        verify_hs256(&sub_token, &sub_key).1["channel"],
        "chat:room-1"
    );
    secrets_seen.push(sub_token);
    assert_eq!(
        post_tokens(&c, &server, "chatsdk_wrong", json!({"userId": "u1"}))
            .await
            .0,
        401
    );

    // A proxy connect, as Centrifugo sends it.
    let connect = |token: &str| {
        json!({"client": UUID, "transport": "websocket", "protocol": "json", "encoding": "json", "data": {"token": token}}).to_string()
    };
    let r = c
        .post(server.url("/centrifugo/connect"))
        .header("X-Chatsdk-Proxy-Secret", &proxy_secret)
        .body(connect(&ws))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["result"]["user"], "u1");

    // The CLI works on the same store while the server runs.
    let out = cli(dir, &["api-key", "create", "--name", "ci"]);
    assert!(out.status.success(), "{out:?}");
    let ci_key = stdout(&out).lines().last().unwrap().trim().to_string();
    secrets_seen.push(ci_key.clone());
    assert_eq!(
        post_tokens(&c, &server, &ci_key, json!({"userId": "u2"}))
            .await
            .0,
        200
    );
    let list = stdout(&cli(dir, &["api-key", "list"]));
    assert!(list.contains("ci") && list.contains("default"), "{list}");
    assert!(!list.contains(&ci_key) && !list.contains(&key));
    let listed: Value =
        serde_json::from_str(&stdout(&cli(dir, &["api-key", "list", "--json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        !cli(dir, &["api-key", "create", "--name", "ci"])
            .status
            .success(),
        "names are unique"
    );
    assert!(cli(dir, &["api-key", "revoke", "ci"]).status.success());
    assert_eq!(
        post_tokens(&c, &server, &ci_key, json!({"userId": "u2"}))
            .await
            .0,
        401,
        "revocation is immediate"
    );
    assert!(!cli(dir, &["api-key", "revoke", "ci"]).status.success());

    let shown: Value = serde_json::from_str(&stdout(&cli(dir, &["user", "show", "u1"]))).unwrap();
    assert_eq!(shown["id"], "u1");
    assert_eq!(shown["name"], "Alice");
    assert_eq!(shown["disabled"], false);
    assert!(!cli(dir, &["user", "show", "nobody"]).status.success());
    assert!(cli(dir, &["user", "disable", "u1"]).status.success());
    let (s, b) = post_tokens(&c, &server, &key, json!({"userId": "u1"})).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("user_disabled")));
    assert!(cli(dir, &["user", "enable", "u1"]).status.success());
    assert_eq!(
        post_tokens(&c, &server, &key, json!({"userId": "u1"}))
            .await
            .0,
        200
    );
    assert!(cli(dir, &["user", "revoke-tokens", "u1"]).status.success());
    let r = c
        .post(server.url("/centrifugo/connect"))
        .header("X-Chatsdk-Proxy-Secret", &proxy_secret)
        .body(connect(&ws))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["disconnect"]["code"], 4504);
    assert!(!cli(dir, &["user", "disable", "nobody"]).status.success());

    // centrifugo-config carries the live HMAC key and proxy secret.
    let out = cli(dir, &["centrifugo-config", "--mode", "jwt"]);
    assert!(out.status.success(), "{out:?}");
    let cfg: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cfg["client"]["token"]["hmac_secret_key"], ws_key.as_str());
    assert_eq!(
        cfg["client"]["subscription_token"]["hmac_secret_key"],
        sub_key.as_str()
    );
    assert_eq!(
        cfg["client"]["proxy"]["refresh"]["http"]["static_headers"]["x-chatsdk-proxy-secret"],
        proxy_secret.as_str()
    );
    let out = cli(dir, &["centrifugo-config", "--mode", "proxy"]);
    let cfg: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        cfg["client"]["proxy"]["connect"]["http"]["static_headers"]["x-chatsdk-proxy-secret"],
        proxy_secret.as_str()
    );
    assert!(
        cfg["client"].get("token").is_none(),
        "proxy mode must not let token connects bypass the proxy"
    );
    let v5: Value = serde_json::from_str(&stdout(&cli(
        dir,
        &["centrifugo-config", "--centrifugo-version", "5"],
    )))
    .unwrap();
    assert_eq!(v5["token_hmac_secret_key"], ws_key.as_str());

    let (status, logs) = server.terminate();
    assert!(status.success(), "exit 0 after SIGTERM, got {status:?}");
    let text = logs.join("\n");
    assert!(
        text.contains("shutdown requested") && text.contains("SIGTERM"),
        "{text}"
    );
    let requests: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert!(
        requests.len() >= 9,
        "{} request lines in:\n{text}",
        requests.len()
    );
    for r in &requests {
        for field in ["method", "route", "status", "latency_us", "request_id"] {
            assert!(r.get(field).is_some(), "access log lacks {field}: {r}");
        }
    }
    for secret in &secrets_seen {
        assert!(
            !text.contains(secret.as_str()),
            "a secret or token reached the logs"
        );
        // Also no signature segment of a token, nor a long prefix of a key.
        let tail = secret.rsplit('.').next().unwrap();
        assert!(!text.contains(tail));
        assert!(!text.contains(&secret[..secret.len().min(20)]) || secret.starts_with("eyJ"));
    }
}

#[tokio::test]
async fn initial_key_from_env_and_check_config_redaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let initial = chatsdk_auth::api_key::generate(chatsdk_auth::api_key::DEFAULT_APP_ID);
    let server = Server::start(dir, &[("CHATSDK_AUTH_SECRETS__INITIAL_API_KEY", &initial)]);
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;
    assert_eq!(
        post_tokens(&c, &server, &initial, json!({"userId": "x"}))
            .await
            .0,
        200
    );
    assert!(
        !dir.join("data/api-key.txt").exists(),
        "no key is generated when one is provided"
    );
    let (status, logs) = server.terminate();
    assert!(status.success());
    assert!(!logs.join("\n").contains(&initial));

    let out = Command::new(BIN)
        .args(["check-config"])
        .current_dir(dir)
        .env("CHATSDK_AUTH_SECRETS__REST_KEY", "r".repeat(40))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("rest_key = \"<redacted>\""), "{text}");
    assert!(!text.contains(&"r".repeat(40)));
}

#[tokio::test]
async fn sigint_also_drains_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]);
    server.wait_ready(&reqwest::Client::new()).await;
    let (status, logs) = server.signal(Signal::INT);
    assert!(status.success(), "{status:?}");
    assert!(logs.join("\n").contains("SIGINT"));
}

#[tokio::test]
async fn one_worker_thread_serves_and_drains() {
    // worker_threads = 1 (what a server pinned to one CPU gets) runs the current-thread
    // scheduler: same answers, same graceful stop.
    let tmp = tempfile::tempdir().unwrap();
    let key = chatsdk_auth::api_key::generate(chatsdk_auth::api_key::DEFAULT_APP_ID);
    let server = Server::start(
        tmp.path(),
        &[
            ("CHATSDK_AUTH_SERVER__WORKER_THREADS", "1"),
            ("CHATSDK_AUTH_SECRETS__INITIAL_API_KEY", &key),
        ],
    );
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;
    // Three threads in all: the worker, the SQLite writer that waits for locks so that the
    // worker never does, and the log writer that waits for stderr so that the worker never
    // does (no blocking pool).
    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
        .unwrap()
        .map(|t| {
            std::fs::read_to_string(t.unwrap().path().join("comm"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    threads.sort();
    assert_eq!(
        threads,
        ["chatsdk-auth", "log-writer", "sqlite-writer"],
        "threads of a one-worker server"
    );
    let (status, body) =
        post_tokens(&c, &server, &key, json!({"userId": "solo", "name": "S"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "S");
    let (status, body) = post_tokens(&c, &server, "chatsdk_wrong", json!({"userId": "solo"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "{status:?}");
    let text = logs.join("\n");
    assert!(text.contains("drained"), "{text}");
    let listening: Value = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "listening")
        .unwrap();
    assert_eq!(listening["workers"], 1, "{listening}");
}

#[test]
fn invalid_config_stops_startup_listing_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.toml"),
        "[server]\nlisten = \"nowhere\"\n[tokens]\nalgorithm = \"none\"\n[storage]\nbackend = \"mysql\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", "bad.toml", "serve"])
        .current_dir(tmp.path())
        .env("CHATSDK_AUTH_TOKENS__TTL_SECONDS", "5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen",
        "tokens.algorithm",
        "storage.backend",
        "tokens.ttl_seconds",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    assert!(
        !tmp.path().join("data").exists(),
        "nothing is created when config is invalid"
    );
    let out = Command::new(BIN)
        .args(["--config", "missing.toml", "check-config"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

/// Runs the CLI on `t`'s data directory (the running in-process server's store).
fn cli_on(t: &crate::helpers::TestApp, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(&t.dir)
        .env("CHATSDK_AUTH_STORAGE__DATA_DIR", &t.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    out
}

#[tokio::test]
async fn the_audit_trail_records_operator_actions_and_never_a_secret() {
    let t = crate::helpers::TestApp::spawn().await;
    t.mint("u1").await;
    t.mint("u2").await;
    let created = cli_on(&t, &["api-key", "create", "--name", "ci"]);
    let ci_key = stdout(&created).trim().to_string();
    cli_on(&t, &["api-key", "revoke", "ci"]);
    cli_on(&t, &["user", "disable", "u1"]);
    cli_on(&t, &["user", "enable", "u1"]);
    cli_on(&t, &["user", "revoke-tokens", "u2"]);

    let out = cli_on(&t, &["audit", "--json"]);
    let events: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("api_key.created", "cli", "ci"),
        ("api_key.revoked", "cli", "ci"),
        ("user.disabled", "cli", "u1"),
        ("user.enabled", "cli", "u1"),
        ("user.tokens_revoked", "cli", "u2"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    // The first key, generated at startup, comes first, then the test's own key.
    assert_eq!(seen[0].0, "api_key.created");
    assert_eq!(seen[0].1, "startup");
    assert_eq!(seen[1].1, "test");
    assert_eq!(&seen[2..], &expected[..]);
    for e in &events {
        assert!(e["at"].as_i64().unwrap() > 0);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(&ci_key) && !text.contains(&t.key),
        "a key reached the trail"
    );

    let out = cli_on(&t, &["audit", "--user", "u1"]);
    let table = stdout(&out);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("user.disabled") && table.contains("user.enabled"));
    assert!(!table.contains("u2"));
    let later = cli_on(
        &t,
        &[
            "audit",
            "--since",
            &(crate::helpers::now() + 10).to_string(),
        ],
    );
    assert_eq!(stdout(&later).lines().count(), 1, "header only");

    // Append-only: the table refuses an update.
    let db = rusqlite::Connection::open(t.dir.join("chatsdk-auth.db")).unwrap();
    let err = db
        .execute("UPDATE audit_events SET actor = 'someone else'", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // Retention deletes old rows only.
    let deleted = t
        .app
        .store
        .prune_audit(crate::helpers::now() + 1)
        .await
        .unwrap();
    assert_eq!(deleted as usize, events.len());
}

#[test]
fn check_config_runs_the_secret_checks_serve_runs() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let secret = data.join("proxy-secret.key");
    std::fs::write(&secret, chatsdk_auth::api_key::random_token()).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let check = |envs: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.arg("check-config").current_dir(tmp.path());
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = check(&[]);
    assert!(!out.status.success(), "a group-readable secret file passed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy-secret.key") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        !data.join("rest-signing.key").exists(),
        "check-config generated a secret"
    );

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(check(&[]).status.success());
    let typed = format!("chatsdk_{}", "a".repeat(32));
    let out = check(&[("CHATSDK_AUTH_SECRETS__INITIAL_API_KEY", &typed)]);
    assert!(!out.status.success(), "a typed initial key passed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secrets.initial_api_key"), "{err}");
    assert!(!err.contains(&typed));
    let random = chatsdk_auth::api_key::generate(chatsdk_auth::api_key::DEFAULT_APP_ID);
    assert!(check(&[("CHATSDK_AUTH_SECRETS__INITIAL_API_KEY", &random)])
        .status
        .success());
}

#[tokio::test]
async fn admin_api_changes_are_audited_with_the_client_address() {
    let t = crate::helpers::TestApp::spawn().await;
    t.mint("carol").await;
    let token = t.app.secrets.admin_token.expose().to_string();
    let r = t
        .client
        .post(t.url("/admin/users/carol/disable"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = t.app.store.list_audit(&Default::default()).await.unwrap();
    let e = events.last().unwrap();
    assert_eq!(
        (
            e.event.as_str(),
            e.actor.as_str(),
            e.target.as_deref(),
            e.source.as_deref()
        ),
        ("user.disabled", "admin", Some("carol"), Some("127.0.0.1"))
    );
}
