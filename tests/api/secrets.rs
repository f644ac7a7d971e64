//! The catalogue of secrets (`src/config/catalogue.rs`) walked through the built binary: a
//! value from the environment shorter than its minimum, or a group-readable file, is refused by
//! `serve` and by `check-config` alike; and each secret shared with Centrifugo lands where the
//! catalogue says in the generated Centrifugo config.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chatsdk_auth::centrifugo::config::{generate, Mode, SecretValues, Version, WsKey};
use chatsdk_auth::config::catalogue::Needed;
use chatsdk_auth::config::{RawConfig, SecretId, SECRETS};
use serde_json::Value;

use crate::helpers::until_blocking;
use crate::process::{KillOnDrop, BIN};

fn check_config(dir: &Path, envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("check-config").current_dir(dir);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Runs `serve` and waits (bounded) for it to exit; a server that starts instead is killed
/// and reported. Returns stderr.
fn serve_refuses(dir: &Path, envs: &[(&str, &str)], what: &str) -> String {
    let mut c = Command::new(BIN);
    c.arg("serve")
        .current_dir(dir)
        .env("CHATSDK_AUTH_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = KillOnDrop(c.spawn().unwrap());
    let status = until_blocking(&format!("serve refusing {what}"), || {
        child.0.try_wait().unwrap().ok_or("still running")
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "serve exited 0 with {what}: {err}");
    err
}

#[test]
fn a_short_value_from_the_environment_is_refused_for_every_secret() {
    let tmp = tempfile::tempdir().unwrap();
    for spec in &SECRETS {
        let (key, env) = (spec.key, spec.env_name());
        let short = "s".repeat(spec.min_len - 1);
        for value in ["x", short.as_str()] {
            let envs = [(env.as_str(), value)];
            let out = check_config(tmp.path(), &envs);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "check-config accepted {env}={value}");
            assert!(err.contains(key), "{key} not named: {err}");
            assert!(!err.contains(&short), "the value leaked: {err}");
            let err = serve_refuses(tmp.path(), &envs, &format!("{env}={value}"));
            assert!(err.contains(key), "{key} not named: {err}");
            assert!(!err.contains(&short), "the value leaked: {err}");
        }
    }
}

#[test]
fn a_group_readable_file_is_refused_for_every_secret() {
    // On SQLite (this config) the key-encryption secret is never read; its file on PostgreSQL
    // is checked like the others (src/secrets.rs's unit tests).
    for spec in SECRETS.iter().filter(|s| s.needed == Needed::Always) {
        let (key, file) = (spec.key, spec.default_file);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = data.join(file);
        std::fs::write(&path, chatsdk_auth::api_key::random_token()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

        let out = check_config(tmp.path(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "check-config accepted a 0640 {file} ({key})"
        );
        assert!(err.contains(file) && err.contains("chmod 600"), "{err}");
        let err = serve_refuses(tmp.path(), &[], &format!("a 0640 {file}"));
        assert!(err.contains(file) && err.contains("chmod 600"), "{err}");
    }
}

#[test]
fn each_secret_shared_with_centrifugo_is_where_the_catalogue_says() {
    let config = RawConfig::default().validate().unwrap();
    let value = |id: SecretId| format!("value-of-{id:?}");
    let (ws, proxy, sub, api) = (
        value(SecretId::CentrifugoKey),
        value(SecretId::ProxySecret),
        value(SecretId::SubscriptionKey),
        value(SecretId::CentrifugoApiKey),
    );
    let values = SecretValues {
        ws_key: WsKey::Hmac {
            current: &ws,
            previous: None,
        },
        proxy_secret: &proxy,
        subscription_key: &sub,
        api_key: &api,
    };
    let doc = generate(&config, &values, Mode::Jwt, Version::V6);
    let mut shared = 0;
    for spec in &SECRETS {
        let want = Value::String(value(spec.id));
        let Some(path) = spec.centrifugo else {
            continue;
        };
        let at = path.split('.').fold(&doc, |v, k| &v[k]);
        // A header map (the proxy secret) holds the value under the configured header name.
        let found = match at {
            Value::Object(m) => m.values().any(|v| v == &want),
            v => v == &want,
        };
        assert!(found, "{}: {path} holds {at}, not its value", spec.key);
        shared += 1;
    }
    assert_eq!(shared, 4, "the four secrets Centrifugo's config carries");
}
