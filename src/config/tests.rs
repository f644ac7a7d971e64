//! Config loading and validation, through `figment::Jail` (never `std::env::set_var`).

use std::path::Path;

use super::*;

#[test]
fn defaults_validate() {
    let c = RawConfig::default()
        .validate()
        .expect("the defaults are valid");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.tokens.ttl_seconds, 86_400);
    assert_eq!(c.tokens.rest_audience, "chatsdk-api");
    assert!(c.tokens.ws_audience.is_none());
}

#[test]
fn every_problem_is_listed_by_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            "[server]\nlisten = \"nope\"\n[tokens]\nalgorithm = \"PS256\"\nttl_seconds = 1\n[log]\nformat = \"xml\"\n",
        )?;
        let err = Config::load(Some(Path::new("c.toml"))).unwrap_err();
        let text = err.to_string();
        for key in [
            "server.listen",
            "tokens.algorithm",
            "tokens.ttl_seconds",
            "log.format",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        Ok(())
    });
}

#[test]
fn a_type_error_does_not_hide_problems_in_other_sections() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            "[tokens]\nttl_seconds = \"a day\"\n[log]\nformat = \"xml\"\n",
        )?;
        jail.set_env("CHATSDK_AUTH_BOGUS", "1");
        let text = Config::load(Some(Path::new("c.toml")))
            .unwrap_err()
            .to_string();
        for key in ["tokens.ttl_seconds", "log.format", "bogus"] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        Ok(())
    });
}

#[test]
fn env_overrides_file_and_nests_with_double_underscore() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[server]\nlisten = \"127.0.0.1:9000\"\n")?;
        jail.set_env("CHATSDK_AUTH_SERVER__LISTEN", "127.0.0.1:9001");
        jail.set_env("CHATSDK_AUTH_TOKENS__TTL_SECONDS", "3600");
        let c = Config::load(Some(Path::new("c.toml"))).expect("c.toml is valid");
        assert_eq!(c.server.listen.port(), 9001);
        assert_eq!(c.tokens.ttl_seconds, 3600);
        Ok(())
    });
}

#[test]
fn secret_values_in_a_file_are_refused() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            "[secrets]\nrest_key = \"0123456789abcdef0123456789abcdef-from-file\"\n",
        )?;
        let text = Config::load(Some(Path::new("c.toml")))
            .unwrap_err()
            .to_string();
        assert!(text.contains("secrets.rest_key"), "{text}");
        assert!(!text.contains("from-file"), "secret value leaked: {text}");
        Ok(())
    });
}

#[test]
fn weak_initial_keys_and_reserved_proxy_headers_are_refused() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CHATSDK_AUTH_SECRETS__INITIAL_API_KEY", "chatsdk_short");
        jail.set_env(
            "CHATSDK_AUTH_CENTRIFUGO__PROXY_SECRET_HEADER",
            "Authorization",
        );
        let text = Config::load(None).unwrap_err().to_string();
        assert!(text.contains("secrets.initial_api_key"), "{text}");
        assert!(
            !text.contains("chatsdk_short"),
            "the value is never shown: {text}"
        );
        assert!(text.contains("centrifugo.proxy_secret_header"), "{text}");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_reported() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[server]\nlisten_addr = \"x\"\n")?;
        let text = Config::load(Some(Path::new("c.toml")))
            .unwrap_err()
            .to_string();
        assert!(text.contains("listen_addr"), "{text}");
        Ok(())
    });
}

#[test]
fn bad_channel_templates_are_named_by_key_with_the_reason() {
    let mut raw = RawConfig::default();
    raw.centrifugo.channel_rules = vec![
        "org:#{custom.organizationId}:*".into(),
        "room:#{room}".into(),
    ];
    raw.centrifugo.subscribe_patterns = vec!["*".into()];
    raw.centrifugo.user_channels = vec![
        "feed:#{custom.x}".into(),
        "personal:#{userId}".into(),
        "all:*".into(),
    ];
    let text = raw.validate().unwrap_err().to_string();
    for want in [
        r#"centrifugo.channel_rules[1]: "room:#{room}" has the unknown placeholder #{room}"#,
        r#"centrifugo.subscribe_patterns[0]: "*" fixes nothing before its trailing *"#,
        r#"centrifugo.user_channels[0]: "feed:#{custom.x}" must contain #{userId}"#,
        r#"centrifugo.user_channels[2]: "all:*" must contain #{userId}"#,
    ] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
    assert!(!text.contains("channel_rules[0]"), "{text}");
    assert!(!text.contains("user_channels[1]"), "{text}");
}

#[test]
fn short_secret_values_from_the_environment_are_refused() {
    // Walks the catalogue: every secret's value from the environment is refused below its
    // minimum, with its key, its variable and what to do, never the value.
    for spec in &SECRETS {
        let env = spec.env_name();
        let short = "s".repeat(spec.min_len - 1);
        for value in ["x", short.as_str()] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(&env, value);
                let text = match Config::load(None) {
                    Ok(_) => panic!("{env} of {} bytes was accepted", value.len()),
                    Err(e) => e.to_string(),
                };
                assert!(text.contains(spec.key), "{} missing from {text}", spec.key);
                assert!(text.contains(&env), "{env} missing from {text}");
                assert!(text.contains("openssl rand"), "says what to do: {text}");
                assert!(text.contains(spec.default_file), "{text}");
                if value.len() > 1 {
                    assert!(!text.contains(value), "the value leaked: {text}");
                }
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env(&env, "m".repeat(spec.min_len));
            let c = Config::load(None).expect("a value of the minimum length is accepted");
            assert!(
                matches!(c.secrets.get(spec.id), SecretSource::Env(v) if v.expose().len() == spec.min_len)
            );
            Ok(())
        });
    }
}

#[test]
fn the_catalogue_covers_every_field_of_secrets_and_nothing_else() {
    // Every `[secrets]` field is a row's value or file key (or the initial API key), and the
    // accessors map each row to its own fields.
    let mut raw = RawSecrets::default();
    let fields: std::collections::BTreeSet<String> = match serde_json::to_value(&raw).unwrap() {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        v => panic!("{v}"),
    };
    let mut expected: std::collections::BTreeSet<String> = SECRETS
        .iter()
        .flat_map(|s| [s.field().to_string(), format!("{}_file", s.field())])
        .collect();
    expected.insert(
        catalogue::INITIAL_API_KEY
            .trim_start_matches("secrets.")
            .into(),
    );
    assert_eq!(fields, expected);

    let mut named = serde_json::Map::new();
    for f in &fields {
        named.insert(f.clone(), serde_json::Value::String(f.clone()));
    }
    raw = serde_json::from_value(serde_json::Value::Object(named)).unwrap();
    for s in &SECRETS {
        assert_eq!(raw.value(s.id), s.field());
        assert_eq!(raw.file(s.id), format!("{}_file", s.field()));
        assert_eq!(catalogue::spec(s.id).key, s.key);
        assert_eq!(s.file_key(), format!("{}_file", s.key));
        assert_eq!(s.env_name(), env_name(s.key));
    }
    let debug = format!("{raw:?}");
    assert!(
        !debug.contains("\"rest_key\""),
        "Debug shows no value: {debug}"
    );
}

#[test]
fn secret_sources_follow_the_catalogue_defaults() {
    let dir = Path::new("data");
    let c = RawConfig::default().validate().unwrap();
    for (spec, source) in c.secrets.iter() {
        assert!(
            matches!(source, SecretSource::File(p) if p == &dir.join(spec.default_file)),
            "{}: {source:?}",
            spec.key
        );
    }
    let mut raw = RawConfig::default();
    raw.tokens.algorithm = "ES256".into();
    raw.tokens.ws_audience = "centrifugo".into();
    let c = raw.validate().unwrap();
    for (id, file) in [
        (SecretId::RestKey, "rest-signing-es256.pem"),
        (SecretId::CentrifugoKey, "ws-signing-es256.pem"),
        (SecretId::SubscriptionKey, "subscription-hmac.key"),
    ] {
        assert!(matches!(c.secrets.get(id), SecretSource::File(p) if p == &dir.join(file)));
    }
}

#[test]
fn equal_signing_keys_from_the_environment_are_refused_by_key() {
    let same = "k".repeat(40);
    let signing: Vec<_> = SECRETS.iter().filter(|s| s.signing).collect();
    assert_eq!(signing.len(), 3);
    for (i, a) in signing.iter().enumerate() {
        for b in &signing[i + 1..] {
            let mut raw = RawConfig::default();
            let set = |raw: &mut RawConfig, id: SecretId| match id {
                SecretId::RestKey => raw.secrets.rest_key = same.clone(),
                SecretId::CentrifugoKey => raw.secrets.centrifugo_key = same.clone(),
                SecretId::SubscriptionKey => raw.secrets.subscription_key = same.clone(),
                other => panic!("{other:?} is not a signing key"),
            };
            set(&mut raw, a.id);
            set(&mut raw, b.id);
            let text = raw.validate().unwrap_err().to_string();
            assert!(
                text.contains(&format!("{}: must differ from {}", b.key, a.key)),
                "{text}"
            );
            assert!(!text.contains(&same), "{text}");
        }
    }
}

/// Sets the raw value of secret `id`.
fn set_secret(raw: &mut RawConfig, id: SecretId, v: &str) {
    let s = &mut raw.secrets;
    let field = match id {
        SecretId::RestKey => &mut s.rest_key,
        SecretId::CentrifugoKey => &mut s.centrifugo_key,
        SecretId::ProxySecret => &mut s.proxy_secret,
        SecretId::MetricsToken => &mut s.metrics_token,
        SecretId::SubscriptionKey => &mut s.subscription_key,
        SecretId::CentrifugoApiKey => &mut s.centrifugo_api_key,
        SecretId::AdminToken => &mut s.admin_token,
        SecretId::KeyEncryptionKey => &mut s.key_encryption_key,
    };
    *field = v.to_string();
}

#[test]
fn secrets_of_different_holders_must_differ() {
    use SecretId::*;
    let same = "q".repeat(48);
    for (a, b) in [
        (MetricsToken, AdminToken),
        (ProxySecret, AdminToken),
        (CentrifugoApiKey, AdminToken),
        (RestKey, KeyEncryptionKey),
        (CentrifugoKey, KeyEncryptionKey),
        (ProxySecret, KeyEncryptionKey),
        (CentrifugoKey, ProxySecret),
    ] {
        let mut raw = RawConfig::default();
        set_secret(&mut raw, a, &same);
        set_secret(&mut raw, b, &same);
        let text = raw.validate().unwrap_err().to_string();
        let (sa, sb) = (catalogue::spec(a), catalogue::spec(b));
        assert!(
            text.contains(&format!("{}: must differ from {}", sb.key, sa.key)),
            "{a:?} = {b:?}: {text}"
        );
        assert!(!text.contains(&same), "{text}");
    }
    // Two values Centrifugo alone holds, neither signing, may be equal.
    let mut raw = RawConfig::default();
    set_secret(&mut raw, ProxySecret, &same);
    set_secret(&mut raw, CentrifugoApiKey, &same);
    raw.validate().unwrap();
    // Every pair of rows is decided by the catalogue's rule.
    for (i, a) in SECRETS.iter().enumerate() {
        for b in &SECRETS[i + 1..] {
            let shared = a.holder == b.holder && !a.signing && !b.signing;
            assert_eq!(catalogue::must_differ(a, b), !shared, "{} {}", a.key, b.key);
        }
    }
}

#[test]
fn the_readme_carries_the_catalogue_table() {
    let readme = include_str!("../../README.md");
    let table = catalogue::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's table of secrets differs from the catalogue; paste this:\n{table}"
    );
}

#[test]
fn the_shipped_config_lists_every_secret_file_with_its_default() {
    let text = include_str!("../../config/chatsdk-auth.toml");
    let doc: toml::Table = text.parse().unwrap();
    for s in &SECRETS {
        let key = format!("{}_file", s.field());
        assert_eq!(doc["secrets"][&key].as_str(), Some(""), "{key}");
        let line = text.lines().find(|l| l.starts_with(&key)).unwrap();
        assert!(
            line.contains(&format!("default {}", s.default_file)),
            "{line}"
        );
    }
}

#[test]
fn check_config_output_is_toml_with_every_secret_value_redacted() {
    figment::Jail::expect_with(|jail| {
        for s in &SECRETS {
            jail.set_env(
                s.env_name(),
                format!("{}-value-0123456789abcdef0123456789", s.field()),
            );
        }
        jail.set_env(
            "CHATSDK_AUTH_STORAGE__POSTGRES_URL",
            "postgres://u:hunter2@db/x",
        );
        jail.set_env("CHATSDK_AUTH_SECRETS__PROXY_SECRET_FILE", "/run/p.key");
        let text = redacted_toml(&figment(None).unwrap()).unwrap();
        assert!(!text.contains("-value-"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let doc: toml::Table = text.parse().expect("the output is TOML");
        for s in &SECRETS {
            assert_eq!(
                doc["secrets"][s.field()].as_str(),
                Some("<redacted>"),
                "{text}"
            );
        }
        assert_eq!(doc["secrets"]["initial_api_key"].as_str(), Some(""));
        assert_eq!(
            doc["secrets"]["proxy_secret_file"].as_str(),
            Some("/run/p.key")
        );
        assert_eq!(doc["storage"]["postgres_url"].as_str(), Some("<redacted>"));
        assert_eq!(doc["server"]["listen"].as_str(), Some("127.0.0.1:8081"));
        assert_eq!(
            doc["centrifugo"]["subscribe_patterns"][0].as_str(),
            Some("chat:*")
        );
        assert!(
            doc["metrics"].get("require_token").is_none(),
            "unset stays unset"
        );
        Ok(())
    });
}

#[test]
fn prune_before_never_wraps() {
    let now = 1_700_000_000;
    let keep = |secs| AuditConfig {
        retention: Some(std::time::Duration::from_secs(secs)),
    };
    assert_eq!(keep(86_400).prune_before(now), Some(now - 86_400));
    assert_eq!(AuditConfig { retention: None }.prune_before(now), None);
    // Past the epoch, and past i64: nothing is pruned (the old cast made `before` now + 1).
    assert_eq!(keep(now as u64 + 1).prune_before(now), None);
    assert_eq!(keep(u64::MAX).prune_before(now), None);
    assert_eq!(keep(i64::MAX as u64 + 1).prune_before(now), None);
}

#[test]
fn audit_retention_days_is_bounded() {
    for bad in ["36501", "18446744073709551615"] {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CHATSDK_AUTH_AUDIT__RETENTION_DAYS", bad);
            let text = match Config::load(None) {
                Ok(c) => panic!("retention_days = {bad} was accepted: {:?}", c.audit),
                Err(e) => e.to_string(),
            };
            assert!(text.contains("audit.retention_days"), "{text}");
            assert!(
                text.contains("36500"),
                "the message gives the range: {text}"
            );
            Ok(())
        });
    }
    for (good, days) in [("36500", Some(36_500u64)), ("1", Some(1)), ("0", None)] {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CHATSDK_AUTH_AUDIT__RETENTION_DAYS", good);
            let c = Config::load(None).expect("in range");
            assert_eq!(c.audit.retention.map(|d| d.as_secs() / 86_400), days);
            Ok(())
        });
    }
}

/// Every problem line names its key first and says what to do.
fn assert_actionable(problems: &[String]) {
    const ACTIONS: [&str; 11] = [
        "set ", "use ", "remove ", "leave ", "correct ", "add ", "raise ", "fix ", "write ",
        "give ", "unset ",
    ];
    let bad: Vec<&String> = problems
        .iter()
        .filter(|line| {
            let (key, rest) = line.split_once(": ").unwrap_or(("", line));
            let key_ok = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || "._[]0123456789-".contains(c));
            !key_ok || !ACTIONS.iter().any(|a| rest.contains(a))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "not led by their key, or not saying what to do:\n{bad:#?}"
    );
}

#[test]
fn every_validation_problem_names_its_key_and_says_what_to_do() {
    let mut a = RawConfig::default();
    a.server.listen = "nope".into();
    a.server.max_body_bytes = 1;
    a.server.drain_timeout_seconds = 0;
    a.server.header_read_timeout_seconds = 0;
    a.server.request_timeout_seconds = 0;
    a.server.max_connections = usize::MAX;
    a.storage.data_dir = String::new();
    a.storage.backend = "postgres".into();
    a.storage.postgres_pool_size = 0;
    a.storage.postgres_timeout_ms = 0;
    a.storage.postgres_lookup_connections = 65;
    a.tokens.ttl_seconds = 1;
    a.tokens.algorithm = "PS256".into();
    a.tokens.rest_algorithm = "XX".into();
    a.tokens.jwks_publish_delay_seconds = u64::MAX;
    a.tokens.rest_issuer = String::new();
    a.tokens.subscription_ttl_seconds = 1;
    a.tokens.subscription_expire_at_seconds = 1;
    a.tokens.ws_ttl_seconds = 1;
    a.centrifugo.proxy_secret_header = "no spaces".into();
    a.centrifugo.refresh_interval_seconds = 1;
    a.centrifugo.sidecar_url = "ftp://x".into();
    a.centrifugo.api_url = "ftp://x".into();
    a.centrifugo.api_timeout_ms = 1;
    a.centrifugo.kick_poll_interval_ms = 1;
    a.centrifugo.channel_rules = vec!["room:#{room}".into()];
    a.centrifugo.user_channels = vec!["all:*".into()];
    a.centrifugo.subscription_refresh_interval_seconds = 1;
    a.admin.listen = "nope".into();
    a.admin.max_connections = 0;
    a.metrics.listen = "nope".into();
    a.metrics.max_connections = usize::MAX;
    a.log.format = "xml".into();
    a.log.level = "a=b=c".into();
    a.secrets.rest_key = "x".into();
    a.secrets.centrifugo_key = "k".repeat(40);
    a.secrets.subscription_key = "k".repeat(40);
    a.secrets.initial_api_key = "chatsdk_short".into();
    a.limits.max_tracked_keys = 1;
    a.limits.trusted_proxy_header = "no spaces".into();
    a.audit.retention_days = u64::MAX;

    let mut b = RawConfig::default();
    b.storage.backend = "mysql".into();
    b.tokens.algorithm = "ES256".into();
    b.centrifugo.proxy_secret_header = "Authorization".into();
    b.secrets.initial_api_key = format!("chatsdk_{}", "a".repeat(40));

    let mut all = Vec::new();
    for raw in [a, b] {
        all.extend(raw.validate().unwrap_err().problems);
    }
    assert_actionable(&all);
    let keys: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|l| l.split_once(": ").map(|(k, _)| k))
        .collect();
    assert!(keys.len() >= 39, "{} keys: {keys:?}", keys.len());

    // And the problems found while layering: unknown keys and sections, wrong types, the
    // secret value in a file, a missing --config file.
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            "[server]\nlisten_addr = \"x\"\n[tokens]\nttl_seconds = \"a day\"\n[secrets]\nadmin_token = \"0123456789abcdef0123456789abcdef\"\n[bogus]\nx = 1\n",
        )?;
        let err = Config::load(Some(Path::new("c.toml"))).unwrap_err();
        assert!(err.problems.len() >= 4, "{err}");
        assert_actionable(&err.problems);
        let err = Config::load(Some(Path::new("missing.toml"))).unwrap_err();
        assert_actionable(&err.problems);
        Ok(())
    });
}

/// Each listener's connection budget: bounded, and together below the open-file limit; a
/// derived main budget leaves room for the others'.
#[test]
fn listener_budgets_are_bounded_and_fit_the_open_file_limit() {
    let mut raw = RawConfig::default();
    raw.admin.listen = "127.0.0.1:0".into();
    raw.metrics.listen = "127.0.0.1:0".into();
    let c = raw.validate().unwrap();
    assert_eq!(c.admin.max_connections, 64);
    assert_eq!(c.metrics.max_connections, 16);
    let alone = RawConfig::default()
        .validate()
        .unwrap()
        .server
        .max_connections;
    assert_eq!(c.server.max_connections, alone.saturating_sub(80).max(16));

    for (admin, metrics, bad) in [
        (0, 16, "admin.max_connections"),
        (64, 10_001, "metrics.max_connections"),
    ] {
        let mut raw = RawConfig::default();
        raw.admin.max_connections = admin;
        raw.metrics.max_connections = metrics;
        let problems = raw.validate().unwrap_err().problems;
        assert!(problems.iter().any(|p| p.starts_with(bad)), "{problems:?}");
    }

    if let Some(limit) = super::validate::open_file_limit().filter(|l| *l > 100) {
        let mut raw = RawConfig::default();
        raw.admin.listen = "127.0.0.1:0".into();
        raw.server.max_connections = (limit - 10) as usize;
        let problems = raw.validate().unwrap_err().problems;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("server.max_connections: ") && p.contains("admin.listen")),
            "{problems:?}"
        );
        // Without a listener of its own, the admin budget is not counted.
        raw.admin.listen = String::new();
        raw.validate().unwrap();
    }
}
