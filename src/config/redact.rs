//! `check-config`'s output: the effective configuration as TOML, every secret value redacted.

use figment::Figment;

use super::load::describe_figment_error;
use super::{ConfigError, RawConfig};

/// The effective configuration as TOML with every secret value redacted (`check-config`).
pub fn redacted_toml(fig: &Figment) -> Result<String, ConfigError> {
    let mut raw: RawConfig = fig.extract().map_err(|errors| ConfigError {
        problems: errors.into_iter().map(describe_figment_error).collect(),
    })?;
    for v in [
        &mut raw.secrets.rest_key,
        &mut raw.secrets.centrifugo_key,
        &mut raw.secrets.proxy_secret,
        &mut raw.secrets.metrics_token,
        &mut raw.secrets.centrifugo_api_key,
        &mut raw.secrets.admin_token,
        &mut raw.secrets.initial_api_key,
        &mut raw.secrets.subscription_key,
        &mut raw.storage.postgres_url,
    ] {
        if !v.is_empty() {
            *v = "<redacted>".into();
        }
    }
    toml_string(&raw)
}

fn toml_string(raw: &RawConfig) -> Result<String, ConfigError> {
    // figment re-exports no serializer; serde_json -> a hand-rolled TOML writer would be more
    // code than it is worth, so the effective config is printed as TOML via figment's own value.
    let value = serde_json::to_value(raw).map_err(|e| ConfigError {
        problems: vec![format!("cannot render configuration: {e}")],
    })?;
    let mut out = String::new();
    if let serde_json::Value::Object(sections) = value {
        for (section, body) in sections {
            out.push_str(&format!("[{section}]\n"));
            if let serde_json::Value::Object(fields) = body {
                for (k, v) in fields {
                    if v.is_null() {
                        // Unset (TOML has no null): the default described in the README applies.
                        out.push_str(&format!("# {k} unset: default\n"));
                    } else {
                        out.push_str(&format!("{k} = {v}\n"));
                    }
                }
            }
            out.push('\n');
        }
    }
    Ok(out)
}
