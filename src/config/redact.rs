//! `check-config`'s output: the effective configuration as TOML, every secret value redacted.

use figment::Figment;

use super::catalogue;
use super::load::describe_figment_error;
use super::{ConfigError, RawConfig};

/// What a set secret value is printed as.
const REDACTED: &str = "<redacted>";

/// The effective configuration as TOML with every secret value redacted (`check-config`): the
/// values of the [`catalogue`]'s keys and `storage.postgres_url` (which may
/// carry a password). A key left unset (such as `metrics.require_token`) is absent, so its
/// default applies.
pub fn redacted_toml(fig: &Figment) -> Result<String, ConfigError> {
    let raw: RawConfig = fig.extract().map_err(|errors| ConfigError {
        problems: errors.into_iter().map(describe_figment_error).collect(),
    })?;
    let cannot = |e: &dyn std::fmt::Display| {
        ConfigError {
        problems: vec![format!(
            "(top level): cannot print the configuration as TOML ({e}); check the values `check-config` would print"
        )],
    }
    };
    let mut doc = toml::Table::try_from(&raw).map_err(|e| cannot(&e))?;
    for key in catalogue::value_keys().chain(["storage.postgres_url"]) {
        if let Some((section, name)) = key.split_once('.') {
            let value = doc
                .get_mut(section)
                .and_then(|s| s.get_mut(name))
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
            if let Some(v) = value {
                *v = toml::Value::String(REDACTED.into());
            }
        }
    }
    toml::to_string(&doc).map_err(|e| cannot(&e))
}
