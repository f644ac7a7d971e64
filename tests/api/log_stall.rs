//! A log reader that stops reading (a blocked log collector) never stalls the service: the
//! built binary's stderr goes to a pipe nobody drains, `/healthz` keeps answering, and the log
//! lines that could not be written are dropped and counted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use crate::helpers::find_metric;
use crate::process::{KillOnDrop, BIN};

const DROPPED: &str = "chatsdk_auth_log_lines_dropped_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_reader_stalls_no_request_and_dropped_lines_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(tmp.path())
        .env("CHATSDK_AUTH_SERVER__LISTEN", "127.0.0.1:0")
        .env("CHATSDK_AUTH_LOG__FORMAT", "json")
        .env("CHATSDK_AUTH_LOG__LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    // The reader: finds the address, then stops reading until told to resume.
    let (addr_tx, addr_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = addr_tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                    break;
                }
            }
            line.clear();
        }
        // Paused, as a blocked log collector would be.
        let _ = resume_rx.recv();
        let _ = std::io::copy(&mut lines, &mut std::io::sink());
    });
    let addr = addr_rx
        .recv_timeout(crate::helpers::GIVE_UP)
        .expect("the server logs its address");
    let token = std::fs::read_to_string(tmp.path().join("data/metrics-token.key")).unwrap();
    let client = reqwest::Client::builder()
        // Bounded wait per request: a stalled service (a log write waiting on the paused
        // pipe) never answers, and fails the test instead of hanging it. The bound is the
        // suite's, no claim about speed: 250 requests at once answer slowly under load.
        .timeout(crate::helpers::GIVE_UP)
        .build()
        .unwrap();
    let healthz = format!("http://{addr}/healthz");
    let mut dropped = 0.0;
    // Every request writes an access-log line; far more than the pipe and the bounded queue
    // in front of it hold. Stop as soon as lines are being dropped.
    for round in 0..160 {
        let mut batch = Vec::new();
        for _ in 0..250 {
            let (c, url) = (client.clone(), healthz.clone());
            batch.push(tokio::spawn(async move { c.get(url).send().await }));
        }
        for h in batch {
            let r = h.await.unwrap().unwrap_or_else(|e| {
                panic!("/healthz did not answer in round {round}: {e}");
            });
            assert_eq!(r.status(), 200);
        }
        let metrics = client
            .get(format!("http://{addr}/metrics"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap_or_else(|e| panic!("/metrics did not answer in round {round}: {e}"))
            .text()
            .await
            .unwrap();
        // Absent until the service counts drops at all.
        dropped = find_metric(&metrics, DROPPED).unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
    }
    assert!(dropped > 0.0, "no log line was dropped");
    resume_tx.send(()).unwrap();
    drop(child);
    reader.join().unwrap();
}
