//! Enforcement from the operator's side: app-wide revocation (`revoke-tokens --all`), `doctor`
//! against Centrifugo's config and server API, and no secret in any log.

use crate::enforce_env::{cli, env_for, KEY};
use crate::fake_centrifugo::{FakeCentrifugo, Mode};
use crate::process::BIN;

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
    let (code, err) = cli(
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
    let (code, _) = cli(&dir, "", &["revoke-tokens"]).await;
    assert_eq!(code, 2, "--all is required");

    let (code, err) = cli(&dir, "", &["revoke-tokens", "--all"]).await;
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
    let (code, _) = cli(&dir, "", &["revoke-tokens", "--all", "--before", "1000"]).await;
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
    let (code, generated) = cli(&dir, &api, &["centrifugo-config", "--mode", "jwt"]).await;
    assert_eq!(code, 0, "{generated}");
    let cfg_path = tmp.path().join("centrifugo.json");
    std::fs::write(&cfg_path, &generated).unwrap();
    let cfg_arg = cfg_path.display().to_string();
    let doctor = ["doctor", "--centrifugo-config", &cfg_arg];
    let (code, out) = cli(&dir, &api, &doctor).await;
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
    let (code, out) = cli(&dir, &api, &doctor).await;
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
    let (_, out) = cli(&dir, &api, &doctor).await;
    assert!(out.contains("client.proxy.refresh is not enabled"), "{out}");

    // Centrifugo refusing the key, then down: problems, exit 1, never the key in the output.
    f.set_mode(Mode::Status(401));
    let (code, out) = cli(&dir, &api, &["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refuses the API key"), "{out}");
    f.down();
    let (code, out) = cli(&dir, &api, &["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fails"), "{out}");
    assert!(!out.contains(KEY));
    // Revocation off.
    let (code, out) = cli(&dir, "", &["doctor"]).await;
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
        .recv_timeout(crate::helpers::GIVE_UP)
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
    f.wait_kick("carol").await;
    // Failures get logged: a refused key, then an unreachable Centrifugo.
    f.set_mode(Mode::Status(401));
    assert_eq!(
        admin("/admin/users/carol/revoke-tokens", admin_token)
            .await
            .unwrap()
            .status(),
        200
    );
    crate::helpers::eventually("no delivery failure logged", || async {
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("cannot deliver kicks"))
    })
    .await;
    let (_, cli_out) = cli(&dir, &f.api_url(), &["user", "delete", "carol"]).await;
    let (_, doctor_out) = cli(&dir, &f.api_url(), &["doctor"]).await;
    let (_, check_out) = cli(&dir, &f.api_url(), &["check-config"]).await;
    crate::process::send_signal(&child, crate::process::Signal::TERM);
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
