//! The shipped config/chatsdk-auth.toml pins nothing: every value it sets is the built-in
//! default, so a setting derived from another one (the sidecar URL from `server.listen`,
//! whether `/metrics` needs its token from where it listens) still follows it.

use std::path::{Path, PathBuf};
use std::process::Command;

use chatsdk_auth::config::RawConfig;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde_json::Value;

use crate::process::{free_port, BIN};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/chatsdk-auth.toml")
}

#[test]
fn the_shipped_file_sets_only_the_defaults() {
    let defaults = RawConfig::default();
    let layered: RawConfig = Figment::from(Serialized::defaults(&defaults))
        .merge(Toml::file(shipped()))
        .extract()
        .unwrap();
    let (got, want) = (
        serde_json::to_value(&layered).unwrap(),
        serde_json::to_value(&defaults).unwrap(),
    );
    for (section, keys) in want.as_object().unwrap() {
        for (key, value) in keys.as_object().unwrap() {
            assert_eq!(
                &got[section][key], value,
                "config/chatsdk-auth.toml pins {section}.{key}; leave the default (comment it out)"
            );
        }
    }
}

/// With the shipped file and `CHATSDK_AUTH_SERVER__LISTEN` on another port, the generated
/// Centrifugo config points every proxy at that port.
#[test]
fn the_generated_centrifugo_config_follows_the_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(shipped())
        .args(["centrifugo-config", "--mode", "proxy", "--placeholders"])
        .current_dir(dir.path())
        .env("CHATSDK_AUTH_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut endpoints = Vec::new();
    collect_endpoints(&config, &mut endpoints);
    assert!(
        endpoints.len() >= 4,
        "connect, refresh, subscribe, sub_refresh: {config}"
    );
    for e in &endpoints {
        assert!(
            e.starts_with(&format!("http://127.0.0.1:{port}/centrifugo/")),
            "{e} does not follow server.listen 127.0.0.1:{port}"
        );
    }
}

fn collect_endpoints(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    ("endpoint", Some(url)) => out.push(url.to_string()),
                    _ => collect_endpoints(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_endpoints(v, out)),
        _ => {}
    }
}
