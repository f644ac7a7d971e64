//! Layers the sources (defaults, then the TOML file, then `CHATSDK_AUTH_*` variables) and
//! extracts them section by section, so that one bad section does not hide the others.

use std::path::Path;
use std::str::FromStr;

use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

use super::{catalogue, env_name, Config, ConfigError, RawConfig, ENV_PREFIX};

/// The config file read when `--config` is not given (relative to the working directory).
pub const DEFAULT_CONFIG_PATH: &str = "config/chatsdk-auth.toml";

impl Config {
    /// Layers defaults, the config file and the environment, then validates.
    ///
    /// `path` is the file given with `--config`; `None` reads [`DEFAULT_CONFIG_PATH`] if present.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(figment(path)?)
    }

    /// Extracts and validates an already-layered figment (tests use this with `Jail`).
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        for key in catalogue::value_keys() {
            if let Some(meta) = fig.find_metadata(key) {
                let from_env = meta.name.to_lowercase().contains("environment");
                if !from_env
                    && fig
                        .find_value(key)
                        .is_ok_and(|v| !v.as_str().unwrap_or("").is_empty())
                {
                    let or_file = if key == catalogue::INITIAL_API_KEY {
                        String::new()
                    } else {
                        format!(", or name a file holding it with {key}_file")
                    };
                    problems.push(format!(
                        "{key}: secret values are not accepted from {}; remove it there and set {} instead{or_file} (the value is not shown)",
                        meta.name,
                        env_name(key)
                    ));
                }
            }
        }
        // Sections are extracted one by one so that a type error in one section does not hide
        // the problems of the others (figment stops at the first error of an extraction).
        let raw = extract_sections(&fig, &mut problems);
        if let Some(meta) = fig.find_metadata("storage.postgres_url") {
            let has_password = tokio_postgres::Config::from_str(&raw.storage.postgres_url)
                .is_ok_and(|c| c.get_password().is_some());
            if has_password && !meta.name.to_lowercase().contains("environment") {
                problems.push(format!(
                    "storage.postgres_url: a password is not accepted from {}; set {} or use PGPASSFILE (the value is not shown)",
                    meta.name,
                    env_name("storage.postgres_url")
                ));
            }
        }
        match raw.validate() {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(e) => {
                problems.extend(e.problems);
                Err(ConfigError { problems })
            }
        }
    }
}

fn extract_sections(fig: &Figment, problems: &mut Vec<String>) -> RawConfig {
    const SECTIONS: [&str; 12] = [
        "app",
        "server",
        "storage",
        "tokens",
        "centrifugo",
        "admin",
        "metrics",
        "log",
        "secrets",
        "limits",
        "audit",
        "segments",
    ];
    if let Ok(top) = fig.extract::<std::collections::BTreeMap<String, figment::value::Value>>() {
        for key in top.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            let source = fig
                .find_metadata(key)
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            problems.push(format!(
                "{key}: unknown section{source}; remove it or use one of {}",
                SECTIONS.join(", ")
            ));
        }
    }
    fn section<T: serde::de::DeserializeOwned + Default>(
        fig: &Figment,
        name: &str,
        problems: &mut Vec<String>,
    ) -> T {
        fig.extract_inner::<T>(name).unwrap_or_else(|errors| {
            problems.extend(errors.into_iter().map(|mut e| {
                // extract_inner reports paths relative to the section, in varying order.
                e.path.retain(|p| p != name);
                e.path.insert(0, name.to_string());
                describe_figment_error(e)
            }));
            T::default()
        })
    }
    RawConfig {
        app: section(fig, "app", problems),
        server: section(fig, "server", problems),
        storage: section(fig, "storage", problems),
        tokens: section(fig, "tokens", problems),
        centrifugo: section(fig, "centrifugo", problems),
        admin: section(fig, "admin", problems),
        metrics: section(fig, "metrics", problems),
        log: section(fig, "log", problems),
        secrets: section(fig, "secrets", problems),
        limits: section(fig, "limits", problems),
        audit: section(fig, "audit", problems),
        segments: section(fig, "segments", problems),
    }
}

/// The layered sources, in priority order (later wins).
pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    match path {
        Some(p) => {
            if !p.is_file() {
                return Err(ConfigError {
                    problems: vec![format!(
                        "--config: file {} does not exist; give the path of an existing file, or leave --config out to read {DEFAULT_CONFIG_PATH} when present",
                        p.display()
                    )],
                });
            }
            fig = fig.merge(Toml::file(p));
        }
        None => fig = fig.merge(Toml::file(DEFAULT_CONFIG_PATH)),
    }
    Ok(fig.merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__")))
}

pub(super) fn describe_figment_error(e: figment::Error) -> String {
    let key = if e.path.is_empty() {
        "(top level)".to_string()
    } else {
        e.path.join(".")
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(s) => format!(" (from {} {s})", m.name),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    let action = match &e.kind {
        Kind::UnknownField(..) => "remove it or correct its name",
        Kind::MissingField(..) => "add it",
        _ => "correct the value",
    };
    format!("{key}: {}{source}; {action}", e.kind)
}
