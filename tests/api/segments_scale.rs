//! A bulk disable of 10,000 users of one segment over the admin API, on SQLite and on
//! PostgreSQL, with active revocation against the Centrifugo contract server
//! (tests/api/fake_centrifugo.rs): every user kicked exactly once with `4503 user disabled` (counted at the fake), every one's wsToken
//! refused by the connect proxy afterwards (a sample of them connected before), nobody outside
//! the segment kicked, and `POST /tokens` for users outside the segment answered 200 while the
//! action ran (the longest answer it saw is printed, never asserted: no wall-clock claims).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::fake_centrifugo::FakeCentrifugo;
use crate::helpers::{connect_with, eventually, on_both_backends, Backend, TestApp};

const KEY: &str = "centrifugo-api-key-for-the-10k-bulk-test";
const N: usize = 10_000;
/// Requests in flight at once while the world is built and checked.
const PARALLEL: usize = 16;

fn user(i: usize) -> String {
    format!("u{i:05}")
}

on_both_backends!(a_bulk_disable_of_10000_users_kicks_each_once_while_tokens_keep_answering);

async fn a_bulk_disable_of_10000_users_kicks_each_once_while_tokens_keep_answering(
    backend: Backend,
) {
    let f = FakeCentrifugo::start(KEY).await;
    let api = f.api_url();
    let t = Arc::new(
        TestApp::spawn_on_with(backend, move |c| {
            c.centrifugo.api_url = api;
            c.secrets.centrifugo_api_key = KEY.into();
            c.segments.fields = vec!["tenantId".into()];
            c.limits.admin_per_ip_per_minute = 0;
            // The answer waits for the whole action; a loaded machine must not cut it.
            c.server.request_timeout_seconds = 120;
        })
        .await,
    );

    // 10,000 users of tenant-789, each with its wsToken.
    let ws: Vec<String> = stream::iter(0..N)
        .map(|i| {
            let t = t.clone();
            async move {
                let body = json!({"userId": user(i), "custom": {"tenantId": "tenant-789"}});
                let (s, b) = t.tokens(body).await;
                assert_eq!(s, 200, "{b}");
                b["wsToken"].as_str().unwrap().to_string()
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    // A sample connects before: the tokens are good.
    for i in (0..N).step_by(1000) {
        let (s, b) = t
            .proxy("/centrifugo/connect", &connect_with(&ws[i]), &[])
            .await;
        assert_eq!(
            (s, b["result"]["user"].as_str()),
            (200, Some(user(i).as_str())),
            "{b}"
        );
    }

    // Users outside the segment keep minting while the action runs.
    let stop = Arc::new(AtomicBool::new(false));
    let minting = {
        let (t, stop) = (t.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answers: Vec<(Instant, Instant)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"userId": format!("other-{i}"), "custom": {"tenantId": "t-1"}});
                let sent = Instant::now();
                let (s, b) = t.tokens(body).await;
                assert_eq!(s, 200, "POST /tokens during the bulk action: {b}");
                answers.push((sent, Instant::now()));
                i += 1;
            }
            answers
        })
    };
    let admin = format!("Bearer {}", t.app.secrets.admin_token.expose());
    let bulk = |body: Value| {
        let (t, admin) = (t.clone(), admin.clone());
        async move {
            let r = t
                .client
                .post(t.url("/admin/bulk/disable"))
                .header("Authorization", admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, dry) = bulk(json!({"where": ["tenantId=tenant-789"], "dry_run": true})).await;
    assert_eq!((s, dry["count"].clone()), (200, json!(N)), "{dry}");
    let started = Instant::now();
    let (s, done) = bulk(json!({"where": ["tenantId=tenant-789"], "expected_count": N})).await;
    let ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let answers = minting.await.unwrap();
    assert_eq!(s, 200, "{done}");
    assert_eq!(
        (
            done["count"].clone(),
            done["changed"].clone(),
            done["kicks_queued"].clone()
        ),
        (json!(N), json!(N), json!(N)),
        "{done}"
    );
    let during: Vec<Duration> = answers
        .iter()
        .filter(|(sent, got)| *sent >= started && *got <= ended)
        .map(|(sent, got)| *got - *sent)
        .collect();
    assert!(
        !during.is_empty(),
        "no POST /tokens was answered while the action ran ({} in all)",
        answers.len()
    );
    eprintln!(
        "10,000-user bulk disable: {} POST /tokens answered meanwhile, the longest in {:?}",
        during.len(),
        during.iter().max().unwrap()
    );

    // Every user kicked once, with the disable's code; nobody else.
    eventually("every user of the segment kicked", || async {
        f.kicks().len() >= N
    })
    .await;
    let mut per_user: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, _) in f.kicks() {
        per_user.entry(k.user).or_default().push(k.code);
    }
    assert_eq!(per_user.len(), N, "users kicked");
    for i in 0..N {
        assert_eq!(per_user.get(&user(i)), Some(&vec![4503]), "{}", user(i));
    }

    // And refused by the connect proxy afterwards, every one.
    let refused: Vec<(usize, Value)> = stream::iter(0..N)
        .map(|i| {
            let (t, token) = (t.clone(), ws[i].clone());
            async move {
                let (s, b) = t
                    .proxy("/centrifugo/connect", &connect_with(&token), &[])
                    .await;
                assert_eq!(s, 200);
                (i, b)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let want = json!({"disconnect": {"code": 4503, "reason": "user disabled"}});
    for (i, b) in &refused {
        assert_eq!(b, &want, "{}", user(*i));
    }
    assert_eq!(refused.len(), N);
}
