//! Seeds a large world for the load benchmark: `N` users upserted through the service's own
//! store code, then `M` wsTokens and REST tokens signed with the service's own keys.
//!
//! `cargo bench --profile dist --bench seed -- --users N [--tokens M --step S --out DIR
//! --custom JSON|segments]`
//!
//! It loads the configuration exactly as `chatsdk-auth serve` does (`config/chatsdk-auth.toml`,
//! `CHATSDK_AUTH_*`), so it writes to the store (SQLite file or PostgreSQL database) and signs
//! with the keys the server will use. Users are `user-1..user-N` with the profile the load
//! sends, so a later `POST /tokens` for one of them reads and changes nothing, as in the small
//! world once its 10,000 ids exist. Tokens go to `DIR/wstokens.txt` and `DIR/resttokens.txt`,
//! one per line, for users `user-S, user-2S, ...` (wrapping at N), each token distinct.
//! `--custom JSON` stores that `custom` for every user instead; `--custom segments` gives user
//! `i` the segment fields of `tests/bench/segments.sh`'s world ([`segment_custom`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chatsdk_auth::jwt::Info;
use chatsdk_auth::store::{Field, UserPatch};
use chatsdk_auth::telemetry::AccessLog;
use chatsdk_auth::{App, Config};

/// The profile `tests/bench/load.sh` and the shared harness send.
const NAME: &str = "Alice";
const IMAGE: &str = "https://example.com/avatars/alice.png";
const CUSTOM: &str = r#"{"department":"Engineering"}"#;
/// Upserts in flight at once, so the SQLite writer thread (or the PostgreSQL pool) never idles.
const IN_FLIGHT: usize = 64;

struct Args {
    users: u64,
    tokens: u64,
    step: u64,
    out: std::path::PathBuf,
    custom: Option<String>,
}

/// User `i`'s `custom` in the segments world: `organizationId` one of 1,000 values (1,000
/// users each), `tenantId` one of 10 (100,000 each; organization `k` is in tenant `k % 10`),
/// `plan` one of 3 (a third each), `role` one of 4, `permissions` an array of 1 to 3 values.
fn segment_custom(i: u64) -> String {
    let plan = ["free", "pro", "team"][(i % 3) as usize];
    let role = ["member", "admin", "owner", "guest"][(i % 4) as usize];
    let mut perms = vec!["\"read\""];
    if i % 2 == 0 {
        perms.push("\"write\"");
    }
    if i % 5 == 0 {
        perms.push("\"delete\"");
    }
    format!(
        r#"{{"department":"Engineering","organizationId":"org-{}","tenantId":"tenant-{}","plan":"{plan}","role":"{role}","permissions":[{}]}}"#,
        i % 1000,
        i % 10,
        perms.join(",")
    )
}

fn args() -> Args {
    let mut a = Args {
        users: 0,
        tokens: 0,
        step: 7,
        out: ".".into(),
        custom: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--users" => a.users = value().parse().expect("--users N"),
            "--tokens" => a.tokens = value().parse().expect("--tokens M"),
            "--step" => a.step = value().parse().expect("--step S"),
            "--out" => a.out = value().into(),
            "--custom" => a.custom = Some(value()),
            "--bench" => {} // cargo bench passes it to every bench target
            other => {
                panic!("unknown argument {other}; usage: --users N [--tokens M --step S --out DIR --custom JSON|segments]")
            }
        }
    }
    assert!(a.users > 0, "--users N is required (N > 0)");
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = Config::load(None).expect("configuration");
        let app = App::start(config, AccessLog::disabled())
            .await
            .expect("start (store, keys)");

        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let (app, next, users) = (app.clone(), next.clone(), a.users);
            let custom = a.custom.clone();
            tasks.spawn(async move {
                let now = chatsdk_auth::now_unix();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i > users {
                        break;
                    }
                    let id = format!("user-{i}");
                    let text = match custom.as_deref() {
                        Some("segments") => segment_custom(i),
                        Some(json) => json.to_string(),
                        None => CUSTOM.to_string(),
                    };
                    let patch = UserPatch {
                        id: &id,
                        name: Field::Set(NAME),
                        image: Field::Set(IMAGE),
                        custom: Field::Set(&text),
                    };
                    app.store.upsert_user(&patch, now).await.expect("upsert");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("seeding task");
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "seeded {} users in {secs:.1} s ({:.0} users/s)",
            a.users,
            a.users as f64 / secs
        );

        if a.tokens > 0 {
            let now = chatsdk_auth::now_unix();
            let mut ws = std::io::BufWriter::new(
                std::fs::File::create(a.out.join("wstokens.txt")).expect("wstokens.txt"),
            );
            let mut rest = std::io::BufWriter::new(
                std::fs::File::create(a.out.join("resttokens.txt")).expect("resttokens.txt"),
            );
            for k in 1..=a.tokens {
                let id = format!("user-{}", (k * a.step - 1) % a.users + 1);
                let info = Info {
                    name: Some(NAME),
                    image: Some(IMAGE),
                    custom: &[],
                };
                let m = app.signer.mint(&id, info, now).expect("sign");
                writeln!(ws, "{}", m.ws_token).unwrap();
                writeln!(rest, "{}", m.token).unwrap();
            }
            ws.flush().unwrap();
            rest.flush().unwrap();
            eprintln!("signed {} token pairs into {}", a.tokens, a.out.display());
        }
    });
}
