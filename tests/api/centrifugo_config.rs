//! The generated Centrifugo config (`chatsdk-auth centrifugo-config`, src/centrifugo_config.rs)
//! checked against Centrifugo's authentication rules
//! (https://centrifugal.dev/docs/server/authentication), and the configs shipped in
//! `centrifugo/` against the generator.

use serde_json::Value;

use crate::helpers::{now, try_verify_hs256, TestApp};

#[tokio::test]
async fn generated_centrifugo_config_verifies_a_fresh_ws_token_with_centrifugos_rules() {
    use chatsdk_auth::centrifugo::config::{generate, Mode, SecretValues, Version, WsKey};
    let t = TestApp::spawn_with(|c| {
        c.tokens.ws_audience = "centrifugo".into();
        c.tokens.ws_issuer = "chatsdk-auth".into();
        c.centrifugo.sidecar_url = "http://127.0.0.1:8081".into();
    })
    .await;
    let ws = t.mint("g").await["wsToken"].as_str().unwrap().to_string();
    let (hmac, proxy_secret) = (t.ws_key(), t.proxy_secret());
    let cfg = generate(
        &t.app.config,
        &SecretValues {
            ws_key: WsKey::Hmac {
                current: &hmac,
                previous: None,
            },
            proxy_secret: &proxy_secret,
            subscription_key: "unused-here",
            api_key: "k",
        },
        Mode::Jwt,
        Version::V6,
    );
    let tok = &cfg["client"]["token"];
    let key = tok["hmac_secret_key"].as_str().unwrap();
    // Centrifugo's checks (§1.3, §1.4): signature with the HMAC key as raw bytes, exact aud
    // and iss, exp strictly in the future with no leeway, nbf (absent here) in the past.
    let (h, c) = try_verify_hs256(&ws, key).expect("the config's HMAC key verifies the wsToken");
    assert_eq!(h["alg"], "HS256");
    assert_eq!(c["aud"], tok["audience"]);
    assert_eq!(c["iss"], tok["issuer"]);
    assert!(c["exp"].as_i64().unwrap() > now());
    assert!(c.get("nbf").is_none_or(|n| n.as_i64().unwrap() < now()));
    assert!(c.get("channel").is_none());
    // The proxy secret header is the one the sidecar checks.
    let refresh = &cfg["client"]["proxy"]["refresh"];
    assert_eq!(
        refresh["endpoint"],
        "http://127.0.0.1:8081/centrifugo/refresh"
    );
    assert_eq!(
        refresh["http"]["static_headers"]["x-chatsdk-proxy-secret"],
        proxy_secret.as_str()
    );
    assert_eq!(refresh["include_connection_meta"], true);
    for (path, v) in [
        ("refresh", &cfg["client"]["proxy"]["refresh"]["timeout"]),
        (
            "subscribe",
            &cfg["channel"]["proxy"]["subscribe"]["timeout"],
        ),
    ] {
        assert_eq!(v, "1s", "{path}: durations are strings");
    }
}

#[test]
fn shipped_centrifugo_configs_match_the_generator() {
    use chatsdk_auth::centrifugo::config::{generate, Mode, Version, PLACEHOLDERS};
    let config = chatsdk_auth::config::RawConfig::default()
        .validate()
        .unwrap();
    let s = PLACEHOLDERS;
    for (file, mode) in [
        ("config.json", Mode::Jwt),
        ("config.proxy-mode.json", Mode::Proxy),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("centrifugo")
            .join(file);
        let shipped: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            shipped,
            generate(&config, &s, mode, Version::V6),
            "{file} drifted from `chatsdk-auth centrifugo-config`"
        );
    }
}

/// `--output` (an init container's way to hand the config to Centrifugo): the same document
/// as standard output, in a file of mode 0600, replaced when it exists with wider modes.
#[test]
fn centrifugo_config_output_writes_an_owner_only_file() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let printed = crate::process::cli_ok(tmp.path(), &["centrifugo-config", "--placeholders"]);
    let out = tmp.path().join("centrifugo.json");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let arg = out.to_str().unwrap();
    let quiet = crate::process::cli_ok(
        tmp.path(),
        &["centrifugo-config", "--placeholders", "--output", arg],
    );
    assert_eq!(quiet, "", "nothing on standard output with --output");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), printed);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // --placeholders reads no secret and creates nothing: an init container needs no volume.
    assert!(!tmp.path().join("data").exists());
}
