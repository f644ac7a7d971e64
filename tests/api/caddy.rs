//! A real Caddy (Debian package `caddy`, installed by tests/run.sh) with `forward_auth` to
//! `/verify` in front of a small upstream, configured as the README's Caddy snippet: only
//! requests the sidecar accepts reach the upstream, with the `X-User-Id` the sidecar answered
//! (never the one the client sent). Caddy listens on 127.0.0.1 only, without its admin
//! endpoint or automatic HTTPS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::helpers::{now, TestApp};
use crate::nginx::upstream;
use crate::process::{serve_on_free_port, tool, KillOnDrop};

/// `caddy run` in the foreground, every file under a temp prefix; killed on drop.
struct Caddy {
    /// Kept for its `Drop`: the server stops with the test.
    _child: KillOnDrop,
    port: u16,
}

impl Caddy {
    /// The README's snippet (section "`GET /verify`: forward auth for API gateways"), with the
    /// test's addresses and the global options a test needs.
    fn caddyfile(port: u16, sidecar: &str, upstream: &str) -> String {
        format!(
            r#"{{
	admin off
	auto_https off
}}

http://127.0.0.1:{port} {{
	bind 127.0.0.1
	route {{
		request_header -X-User-Id
		request_header -X-User-Name
		forward_auth {sidecar} {{
			uri /verify
			copy_headers X-User-Id X-User-Name
		}}
		reverse_proxy {upstream}
	}}
}}
"#
        )
    }

    /// Starts Caddy on a free port (again on another one when the port was taken meanwhile).
    async fn start(prefix: &Path, sidecar: &str, upstream: &str) -> Caddy {
        let bin = tool("caddy");
        let log = prefix.join("caddy.log");
        let (child, port) = serve_on_free_port(
            "caddy",
            |port| {
                let conf = prefix.join("Caddyfile");
                std::fs::write(&conf, Self::caddyfile(port, sidecar, upstream)).unwrap();
                Command::new(&bin)
                    .args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(&conf)
                    // Caddy's own files (autosave, storage) under the prefix, not $HOME.
                    .env("HOME", prefix)
                    .env("XDG_CONFIG_HOME", prefix.join("config"))
                    .env("XDG_DATA_HOME", prefix.join("data"))
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("start caddy")
            },
            || std::fs::read_to_string(&log).unwrap_or_default(),
        )
        .await;
        Caddy {
            _child: child,
            port,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_lets_only_valid_rest_tokens_through() {
    crate::need::need!(Caddy);
    let t = TestApp::spawn().await;
    let (up, hits) = upstream().await;
    let prefix = tempfile::tempdir().unwrap();
    let caddy = Caddy::start(prefix.path(), &t.addr.to_string(), &up.to_string()).await;
    let base = format!("http://127.0.0.1:{}", caddy.port);
    let c = reqwest::Client::new();
    let get = |auth: Option<String>| {
        let mut rb = c
            .get(format!("{base}/api/messages?room=1"))
            .header("X-User-Id", "admin")
            .header("X-User-Name", "Mallory");
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        async move {
            let r = rb.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.text().await.unwrap())
        }
    };

    let minted = t.mint("user-c").await;
    let token = minted["token"].as_str().unwrap().to_string();
    let ws = minted["wsToken"].as_str().unwrap().to_string();

    // Valid: the upstream sees the sidecar's X-User-Id and X-User-Name, not the client's.
    let (s, body) = get(Some(format!("Bearer {token}"))).await;
    assert_eq!(s, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["path"], "/api/messages");
    assert_eq!(b["x_user_id"], "user-c");
    assert_eq!(b["x_user_name"], "Ada");
    assert_eq!(b["authorization"], true);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Refused by the sidecar: Caddy answers with the sidecar's status, the upstream never sees it.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for (what, auth, want) in [
        ("no token", None, 401),
        ("wsToken", Some(format!("Bearer {ws}")), 401),
        ("tampered", Some(format!("Bearer {tampered}")), 401),
    ] {
        let (s, body) = get(auth).await;
        assert_eq!(s, want, "{what}: {body}");
    }
    t.app.actions().disable("user-c", now()).await.unwrap();
    let (s, body) = get(Some(format!("Bearer {token}"))).await;
    assert_eq!(s, 403, "disabled: {body}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the upstream saw only the valid one"
    );
    drop(caddy);
}
