//! Concurrent key rotations: two admin calls at once, and the CLI (another process) beside the
//! admin API of the running binary. Every rotation either succeeds or is cleanly refused, and
//! every key an answer named as new is in `GET /admin/keys` and in the ring file afterwards: the
//! ring file is changed under a file lock and replaced atomically (src/keys/ring.rs). A ring
//! file the running server cannot use is refused and counted.

use std::collections::BTreeSet;
use std::path::Path;

use chatsdk_auth::keys;
use serde_json::Value;

use crate::helpers::{until, TestApp};
use crate::process::{cli, stdout, Server};

/// The kids of one kind in the ring file.
fn ring_kids(ring: &Path, kind: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(ring).unwrap()).unwrap();
    v[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// The kids of one kind `GET /admin/keys` lists.
pub(crate) async fn listed_kids(
    c: &reqwest::Client,
    base: &str,
    bearer: &str,
    kind: &str,
) -> BTreeSet<String> {
    let r = c
        .get(format!("{base}/admin/keys"))
        .header("Authorization", bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    b["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == kind)
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// `POST /admin/keys/rest/rotate`: the new kid on success; `None` on a clean refusal (409
/// with its code). Anything else fails the test.
async fn admin_rotate(c: &reqwest::Client, base: &str, bearer: &str) -> Option<String> {
    let r = c
        .post(format!("{base}/admin/keys/rest/rotate"))
        .header("Authorization", bearer)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let b: Value = r.json().await.unwrap();
    match status {
        200 => Some(b["new_kid"].as_str().unwrap().to_string()),
        409 => {
            assert_eq!(b["code"], "rotation_refused", "{b}");
            None
        }
        _ => panic!("a rotation answered {status}: {b}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admin_rotations_all_succeed_and_keep_every_key() {
    let t = TestApp::spawn().await;
    let bearer = format!("Bearer {}", t.app.secrets.admin_token.expose());
    let base = t.url("");
    let mut named = Vec::new();
    for _ in 0..4 {
        let (a, b) = tokio::join!(
            admin_rotate(&t.client, &base, &bearer),
            admin_rotate(&t.client, &base, &bearer)
        );
        named.extend([a, b].into_iter().flatten());
    }
    // HMAC REST keys sign at once, so nothing makes a REST rotation wait: all eight succeed.
    assert_eq!(named.len(), 8, "{named:?}");
    let distinct: BTreeSet<String> = named.iter().cloned().collect();
    assert_eq!(distinct.len(), 8, "{named:?}");
    let listed = listed_kids(&t.client, &base, &bearer, "rest").await;
    let stored = ring_kids(&t.dir.join(keys::RING_FILE), "rest");
    for kid in &named {
        assert!(listed.contains(kid), "{kid} is not listed: {listed:?}");
        assert!(
            stored.contains(kid),
            "{kid} is not in the ring file: {stored:?}"
        );
    }
    // The original key and the eight new ones, nothing else.
    assert_eq!(stored.len(), 9, "{stored:?}");
    // No temp file is left beside the ring.
    let leftovers: Vec<String> = std::fs::read_dir(&t.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("keyring") && n != keys::RING_FILE && !n.ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_admin_rotations_at_once_keep_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let server = Server::start(&dir, &[]);
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;
    let data = dir.join("data");
    let token = std::fs::read_to_string(data.join("admin-token.key")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    let base = server.url("");

    let mut named = Vec::new();
    for _ in 0..3 {
        let d = dir.clone();
        let from_cli = tokio::task::spawn_blocking(move || {
            let out = cli(&d, &["keys", "rotate", "rest"]);
            assert!(
                out.status.success(),
                "keys rotate failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout(&out).trim().to_string()
        });
        let (a, b) = tokio::join!(admin_rotate(&c, &base, &bearer), from_cli);
        named.extend(a);
        named.push(b.unwrap());
    }
    assert_eq!(named.len(), 6, "{named:?}");
    let stored = ring_kids(&data.join(keys::RING_FILE), "rest");
    for kid in &named {
        assert!(
            stored.contains(kid),
            "{kid} is not in the ring file: {stored:?}"
        );
    }
    // The server follows the file (it re-reads it when it changes): every kid gets listed.
    until("every new kid listed", || async {
        let listed = listed_kids(&c, &base, &bearer, "rest").await;
        if named.iter().all(|k| listed.contains(k)) {
            Ok(())
        } else {
            Err(format!("{named:?} vs {listed:?}"))
        }
    })
    .await;
}

/// A ring file the running server cannot use (here, not JSON) is refused at its next look:
/// the keys in effect keep serving, and the refusal is counted in
/// `chatsdk_auth_key_ring_loads_refused_total` (0 until then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_file_the_server_refuses_is_counted_and_the_keys_stay() {
    const SERIES: &str = "chatsdk_auth_key_ring_loads_refused_total";
    let t = TestApp::spawn().await;
    let bearer = format!("Bearer {}", t.app.secrets.admin_token.expose());
    let base = t.url("");
    assert!(admin_rotate(&t.client, &base, &bearer).await.is_some());
    let before = listed_kids(&t.client, &base, &bearer, "rest").await;
    assert_eq!(t.metric(SERIES).await, 0.0);
    std::fs::write(t.dir.join(keys::RING_FILE), "{ not a key ring").unwrap();
    until("the refused ring counted", || async {
        match t.metric(SERIES).await {
            n if n >= 1.0 => Ok(()),
            n => Err(format!("{SERIES} {n}")),
        }
    })
    .await;
    assert_eq!(t.app.keys.refused_loads() as f64, t.metric(SERIES).await);
    assert_eq!(listed_kids(&t.client, &base, &bearer, "rest").await, before);
    assert!(
        t.mint("u1").await["token"].is_string(),
        "the keys in effect still sign"
    );
}
