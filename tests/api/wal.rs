//! The SQLite write-ahead log stays bounded under sustained `POST /tokens` load.
//!
//! SQLite runs its WAL auto-checkpoint (every 1000 pages, ~4 MiB) only when a write statement
//! is stepped to completion; an `INSERT ... RETURNING` read with `query_row` (one step, then
//! reset) never checkpoints and the `-wal` file grows by a few pages per request, forever.

use std::path::Path;

use serde_json::json;

use crate::helpers::TestApp;

/// Writes that would put well over 20 MiB into a WAL that never checkpoints.
const WRITES: usize = 3000;
/// Twice the auto-checkpoint size: what a checkpointing WAL can reach between checkpoints.
const BOUND: u64 = 8 * 1024 * 1024;

fn wal_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("chatsdk-auth.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Sends `POST /tokens` for `ids` from 16 concurrent clients; every answer must be 200.
async fn load(t: &TestApp, ids: Vec<String>, name: &'static str) {
    let mut handles = Vec::new();
    for chunk in ids.chunks(ids.len().div_ceil(16)) {
        let (client, url, key) = (t.client.clone(), t.url("/tokens"), t.key.clone());
        let chunk = chunk.to_vec();
        handles.push(tokio::spawn(async move {
            for id in chunk {
                let status = client
                    .post(&url)
                    .header("X-API-Key", &key)
                    .json(&json!({"userId": id, "name": name, "custom": {"n": 1}}))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_bounded_under_sustained_upserts() {
    let t = TestApp::spawn().await;
    // Inserts, then updates of the same users: every request writes.
    let ids: Vec<String> = (0..WRITES / 2).map(|i| format!("wal-{i}")).collect();
    load(&t, ids.clone(), "first").await;
    load(&t, ids, "second").await;
    let size = wal_size(&t.dir);
    assert!(
        size <= BOUND,
        "-wal is {size} bytes after {WRITES} upserts: checkpoints are not running"
    );
    let updated = t
        .metric(r#"chatsdk_auth_users_upserted_total{result="updated"}"#)
        .await;
    assert_eq!(updated, (WRITES / 2) as f64);
}

#[tokio::test]
async fn an_unchanged_profile_appends_nothing_to_the_wal() {
    let t = TestApp::spawn().await;
    let ids: Vec<String> = (0..50).map(|i| format!("same-{i}")).collect();
    load(&t, ids.clone(), "Ada").await;
    let before = wal_size(&t.dir);
    load(&t, ids, "Ada").await;
    assert_eq!(
        wal_size(&t.dir),
        before,
        "a repeated profile was written again"
    );
    // Still counted as an upsert of an existing user.
    let updated = t
        .metric(r#"chatsdk_auth_users_upserted_total{result="updated"}"#)
        .await;
    assert_eq!(updated, 50.0);
}
