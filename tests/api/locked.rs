//! A SQLite write lock held by another process never stalls the service: `/healthz`,
//! `/metrics` and the connect proxy (a pure read) are answered while new-user writes queue
//! behind the lock and are applied once it goes; they each give up after the busy timeout with
//! 503 (not one busy timeout per queued write); the request timeout still fires when it is the
//! shorter of the two.
//!
//! The lock is real: a second process (this test binary, re-run as [`hold_write_lock`]) opens
//! the database and runs `BEGIN IMMEDIATE`, as `sqlite3`, a backup tool or the CLI would.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{connect_body, eventually, TestApp, GIVE_UP};

const LOCK_DB_ENV: &str = "CHATSDK_TEST_HOLD_LOCK_ON";
const LOCKED: &str = "CHATSDK-TEST-LOCK-HELD";

/// Not a test: the body of the second process. Takes the write lock, says so on stdout, and
/// holds it until its stdin closes or sends a line.
#[test]
#[ignore = "run by the tests below as a child process"]
fn hold_write_lock() {
    let Ok(path) = std::env::var(LOCK_DB_ENV) else {
        return;
    };
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    println!("{LOCKED}");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    c.execute_batch("ROLLBACK").unwrap();
}

/// A second process holding the write lock on `db`; released on drop.
struct LockHolder(Child, BufReader<std::process::ChildStdout>);

impl LockHolder {
    fn take(db: &Path) -> LockHolder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "locked::hold_write_lock",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LOCK_DB_ENV, db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut holder = LockHolder(child, out);
        let mut line = String::new();
        // The test harness prints its own words before ours on the same line.
        while holder.1.read_line(&mut line).unwrap() > 0 {
            if line.trim_end().ends_with(LOCKED) {
                return holder;
            }
            line.clear();
        }
        panic!("the lock-holding process exited before taking the lock");
    }

    fn release(mut self) {
        self.0.stdin.take().unwrap().write_all(b"\n").unwrap();
        // Read the child's last words so that it never writes into a closed pipe.
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.1, &mut rest);
        assert!(self.0.wait().unwrap().success(), "{rest}");
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const WRITERS: usize = 16;

/// Starts `WRITERS` new-user writes (each queued behind `lock`) and waits until every one is
/// in the service.
async fn queued_writes(t: &TestApp) -> Vec<tokio::task::JoinHandle<(u16, serde_json::Value)>> {
    let writes: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (client, url, key) = (t.client.clone(), t.url("/tokens"), t.key.clone());
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("X-API-Key", key)
                    .json(&json!({"userId": format!("new-{i}"), "name": "Queued"}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    eventually("every write in flight", || async {
        t.app.metrics.http_in_flight.get() >= WRITERS as i64
    })
    .await;
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_elsewhere_stalls_no_read() {
    // Neither the busy timeout nor the request timeout can end a write while the reads run,
    // however slowly they run: the writes end when the lock goes, an event of the test's.
    let t = TestApp::spawn_with(|c| {
        c.storage.busy_timeout_ms = 600_000;
        c.server.request_timeout_seconds = 600;
    })
    .await;
    let ws = t.mint("reader").await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    let connect = connect_body(json!({"data": {"token": ws}}));

    let lock = LockHolder::take(&t.dir.join("chatsdk-auth.db"));
    let writes = queued_writes(&t).await;
    let reads = async {
        for _ in 0..100 {
            let r = t.client.get(t.url("/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(t.proxy("/centrifugo/connect", &connect, &[]).await.0, 200);
        }
        for _ in 0..10 {
            let r = t.client.get(t.url("/metrics")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    tokio::time::timeout(GIVE_UP, reads)
        .await
        .expect("a read waited for the lock");
    // All of that was answered while every write was still waiting for the lock (nothing
    // else could have ended them): a read that waited for the lock would still be waiting.
    assert_eq!(
        t.app.metrics.http_in_flight.get(),
        WRITERS as i64,
        "only the writes are in flight"
    );
    // Once the lock goes, every queued write is applied.
    lock.release();
    for w in writes {
        let (status, body) = w.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_give_up_after_one_busy_timeout_not_one_per_write() {
    const BUSY_MS: u64 = 5000;
    let t = TestApp::spawn_with(|c| c.storage.busy_timeout_ms = BUSY_MS).await;
    let lock = LockHolder::take(&t.dir.join("chatsdk-auth.db"));
    let started = Instant::now();
    let writes = queued_writes(&t).await;
    // All of them are answered before a queue that waited out the busy timeout once per
    // write could have answered half of them (8 busy timeouts: a margin, not a speed).
    let deadline = started + Duration::from_millis(BUSY_MS * WRITERS as u64 / 2);
    for w in writes {
        let (status, body) = tokio::time::timeout_at(deadline.into(), w)
            .await
            .expect("the queued writes did not all give up after one busy timeout")
            .unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "store_unavailable");
    }
    lock.release();
    let (s, b) = t.tokens(json!({"userId": "after-lock"})).await;
    assert_eq!(s, 200, "writes recover once the lock is gone: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_fires_before_a_longer_busy_timeout() {
    let t = TestApp::spawn_with(|c| {
        c.storage.busy_timeout_ms = 20_000;
        c.server.request_timeout_seconds = 1;
    })
    .await;
    let lock = LockHolder::take(&t.dir.join("chatsdk-auth.db"));
    // Answered by the request timeout: the busy timeout would answer `store_unavailable`.
    let (s, b) = tokio::time::timeout(GIVE_UP, t.tokens(json!({"userId": "late"})))
        .await
        .expect("no answer while the lock is held");
    assert_eq!((s, b["code"].as_str()), (503, Some("timeout")), "{b}");
    lock.release();
    // The abandoned write was skipped, not applied after its caller had been told 503.
    let (s, _) = t.tokens(json!({"userId": "after"})).await;
    assert_eq!(s, 200);
    assert!(t.app.store.get_user("late").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_whether_writes_succeed() {
    let t = TestApp::spawn_with(|c| c.storage.busy_timeout_ms = 100).await;
    let ready = || async {
        let r = t.client.get(t.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);
    let lock = LockHolder::take(&t.dir.join("chatsdk-auth.db"));
    // Reads still answer, but a write fails: the instance must leave the rotation.
    assert_eq!(t.tokens(json!({"userId": "blocked"})).await.0, 503);
    let (s, b) = ready().await;
    assert_eq!(
        (s, b["code"].as_str()),
        (503, Some("store_read_only")),
        "{b}"
    );
    lock.release();
    // The probe write succeeds now: ready again without any client write.
    let (s, b) = ready().await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(t.tokens(json!({"userId": "blocked"})).await.0, 200);
}
