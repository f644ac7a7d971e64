//! The sidecar pointed at a [`FakeCentrifugo`](crate::fake_centrifugo::FakeCentrifugo)'s server
//! API, for enforce.rs and enforce_ops.rs: its environment, CLI runs, users seeded in its store
//! and the kicks to expect.

use crate::fake_centrifugo::Kick;
use crate::process::BIN;

/// The Centrifugo server-API key the fake expects.
pub const KEY: &str = "centrifugo-api-key-for-the-tests-0123456789";

/// The sidecar's environment for a data dir and a Centrifugo API.
pub fn env_for(dir: &std::path::Path, api_url: &str) -> Vec<(String, String)> {
    vec![
        (
            "CHATSDK_AUTH_STORAGE__DATA_DIR".into(),
            dir.display().to_string(),
        ),
        ("CHATSDK_AUTH_CENTRIFUGO__API_URL".into(), api_url.into()),
        (
            "CHATSDK_AUTH_CENTRIFUGO__API_TIMEOUT_MS".into(),
            "300".into(),
        ),
        (
            "CHATSDK_AUTH_SECRETS__CENTRIFUGO_API_KEY".into(),
            KEY.into(),
        ),
    ]
}

/// Runs the CLI (off the async workers) and returns (exit code, stdout then stderr).
pub async fn cli(dir: &std::path::Path, api_url: &str, args: &[&str]) -> (i32, String) {
    let env = env_for(dir, api_url);
    let cwd = dir.parent().unwrap().to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .current_dir(cwd)
            .envs(env)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

/// Creates users directly in the store of `dir`.
pub async fn seed_users(dir: &std::path::Path, ids: &[&str]) {
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.storage.data_dir = dir.display().to_string();
    let config = raw.validate().unwrap();
    let store = chatsdk_auth::store::Store::open(&config.store)
        .await
        .unwrap();
    for id in ids {
        let patch = chatsdk_auth::store::UserPatch {
            id,
            name: chatsdk_auth::store::Field::Keep,
            image: chatsdk_auth::store::Field::Keep,
            custom: chatsdk_auth::store::Field::Keep,
        };
        store
            .upsert_user(&patch, crate::helpers::now())
            .await
            .unwrap();
    }
}

pub fn kick(user: &str, code: u64, reason: &str) -> Kick {
    Kick {
        user: user.into(),
        code,
        reason: reason.into(),
    }
}
