//! Micro-benchmarks of the hot pieces: `cargo bench --bench micro`.
//!
//! Request parse + validate, minting both tokens, verifying a wsToken, and the SQLite upsert
//! (on a temp file; insert-or-update over a pool of 10,000 ids like the shared harness).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use chatsdk_auth::config::RawConfig;
use chatsdk_auth::jwt::{Info, Signer, Verifier};
use chatsdk_auth::keys::{KeyRing, LiveKeys};
use chatsdk_auth::secrets::{Secret, Secrets};
use chatsdk_auth::store::{Field, Store, UserPatch};
use criterion::{criterion_group, criterion_main, Criterion};

const BODY: &[u8] = br#"{"userId":"user-42","name":"Alice","image":"https://example.com/avatars/alice.png","custom":{"department":"Engineering"}}"#;

fn secrets() -> Secrets {
    Secrets {
        rest_key: Secret::new("r".repeat(43)),
        centrifugo_key: Secret::new("w".repeat(43)),
        proxy_secret: Secret::new("p".repeat(43)),
        metrics_token: Secret::new("m".repeat(43)),
        subscription_key: Secret::new("s".repeat(43)),
        centrifugo_api_key: Secret::new("c".repeat(43)),
        admin_token: Secret::new("a".repeat(43)),
        key_encryption_key: None,
    }
}

fn tokens(c: &mut Criterion) {
    let cfg = RawConfig::default().validate().unwrap();
    let s = secrets();
    let keys = std::sync::Arc::new(LiveKeys::fixed(
        KeyRing::configured(&cfg.tokens, &s).unwrap(),
    ));
    let signer = Signer::new(
        &cfg.tokens,
        keys.clone(),
        &s.subscription_key,
        &Default::default(),
    );
    let verifier = Verifier::new(&cfg.tokens, keys);
    let now = chatsdk_auth::now_unix();
    let info = || Info {
        name: Some("Alice"),
        image: Some("https://example.com/avatars/alice.png"),
        custom: &[],
    };
    let ws = signer.mint("user-42", info(), now).unwrap().ws_token;

    c.bench_function("parse_and_validate", |b| {
        b.iter(|| chatsdk_auth::tokens::parse(black_box(BODY)).unwrap())
    });
    c.bench_function("mint_both_tokens", |b| {
        b.iter(|| signer.mint(black_box("user-42"), info(), now).unwrap())
    });
    c.bench_function("verify_ws_token", |b| {
        b.iter(|| verifier.verify(black_box(&ws), now).unwrap())
    });
}

fn upsert(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = RawConfig::default();
    raw.storage.data_dir = dir.path().to_string_lossy().into_owned();
    let cfg = raw.validate().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(Store::open(&cfg.store)).unwrap();
    let ids: Vec<String> = (1..=10_000).map(|i| format!("user-{i}")).collect();
    let mut i = 0usize;
    let mut n = 0i64;
    c.bench_function("sqlite_upsert", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            n += 1;
            // Alternate the name so that the update really writes.
            let name = if n % 2 == 0 { "Alice" } else { "Alicia" };
            let patch = UserPatch {
                id: &ids[i],
                name: Field::Set(name),
                image: Field::Keep,
                custom: Field::Set(r#"{"department":"Engineering"}"#),
            };
            rt.block_on(store.upsert_user(&patch, 1_800_000_000))
                .unwrap()
        })
    });
    c.bench_function("sqlite_get_user", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            rt.block_on(store.get_user(&ids[i])).unwrap()
        })
    });
    // The proxies' lookup (connect, refresh, subscribe).
    c.bench_function("sqlite_get_session", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            rt.block_on(store.get_session(&ids[i])).unwrap()
        })
    });
}

criterion_group!(benches, tokens, upsert);
criterion_main!(benches);
