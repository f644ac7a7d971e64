//! Reads the service's secrets from env or files, generating missing files on first start.
//!
//! Every generated secret is 32 random bytes from the OS generator, encoded base64url (43
//! characters); the *string* is the key, so the same text can be pasted into Centrifugo's
//! `client.token.hmac_secret_key`. Files are created with mode 0600 inside a 0700 data directory.
//! The log names the file, never the value.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::api_key;
use crate::config::{Config, SecretSource};

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The value, for the single place that needs it (signing, comparing, printing once).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// All secrets the running service needs.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Signs REST tokens.
    pub rest_key: Secret,
    /// Signs wsTokens; shared with Centrifugo as `client.token.hmac_secret_key`.
    pub centrifugo_key: Secret,
    /// Sent by Centrifugo in the proxy secret header on every proxy call.
    pub proxy_secret: Secret,
    /// Bearer token for `/metrics` when `metrics.require_token` is on.
    pub metrics_token: Secret,
    /// Signs subscription tokens; shared with Centrifugo as
    /// `client.subscription_token.hmac_secret_key`.
    pub subscription_key: Secret,
    /// Sent as `X-API-Key` on Centrifugo server-API calls; Centrifugo's `http_api.key`.
    pub centrifugo_api_key: Secret,
    /// Bearer token of the admin API.
    pub admin_token: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot create data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read secret file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write secret file {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {path} holds fewer than 32 bytes; replace it or delete it to generate a new one")]
    TooShort { path: PathBuf },
    #[error("secret file {path} is readable by other users (mode {mode:o}); run chmod 600 on it")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("the {0} and the {1} are identical; they must differ")]
    SameKeys(&'static str, &'static str),
}

impl Secrets {
    /// Loads every secret, generating missing files. Returns the secrets and the files created.
    pub fn load(config: &Config) -> Result<(Secrets, Vec<PathBuf>), SecretsError> {
        ensure_data_dir(&config.data_dir)?;
        let mut created = Vec::new();
        let s = &config.secrets;
        let secrets = Secrets {
            rest_key: load_one(&s.rest_key, &mut created)?,
            centrifugo_key: load_one(&s.centrifugo_key, &mut created)?,
            proxy_secret: load_one(&s.proxy_secret, &mut created)?,
            metrics_token: load_one(&s.metrics_token, &mut created)?,
            subscription_key: load_one(&s.subscription_key, &mut created)?,
            centrifugo_api_key: load_one(&s.centrifugo_api_key, &mut created)?,
            admin_token: load_one(&s.admin_token, &mut created)?,
        };
        let keys = [
            ("REST signing key", &secrets.rest_key),
            ("Centrifugo key", &secrets.centrifugo_key),
            ("subscription key", &secrets.subscription_key),
        ];
        for (i, (a, ka)) in keys.iter().enumerate() {
            if let Some((b, _)) = keys[i + 1..].iter().find(|(_, kb)| kb == ka) {
                return Err(SecretsError::SameKeys(a, b));
            }
        }
        Ok((secrets, created))
    }
}

impl Secrets {
    /// What [`Secrets::load`] checks, without creating anything: every secret file that exists
    /// is read and checked (mode, length), and the signing keys must differ. Returns the files
    /// `serve` would generate on its first start. `check-config` runs this.
    pub fn check(config: &Config) -> Result<Vec<PathBuf>, SecretsError> {
        let s = &config.secrets;
        let mut missing = Vec::new();
        let mut read = |source: &SecretSource| -> Result<Option<Secret>, SecretsError> {
            Ok(match source {
                SecretSource::Env(v) => Some(Secret(v.clone())),
                SecretSource::File(path) if !path.exists() => {
                    missing.push(path.clone());
                    None
                }
                SecretSource::File(path) => Some(read_file(path)?),
            })
        };
        let keys = [
            ("REST signing key", read(&s.rest_key)?),
            ("Centrifugo key", read(&s.centrifugo_key)?),
            ("subscription key", read(&s.subscription_key)?),
        ];
        read(&s.proxy_secret)?;
        read(&s.metrics_token)?;
        for (i, (a, ka)) in keys.iter().enumerate() {
            let found = keys[i + 1..]
                .iter()
                .find(|(_, kb)| ka.is_some() && kb == ka);
            if let Some((b, _)) = found {
                return Err(SecretsError::SameKeys(a, b));
            }
        }
        Ok(missing)
    }
}

/// Creates the data directory (mode 0700) if it is missing.
pub fn ensure_data_dir(dir: &Path) -> Result<(), SecretsError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|source| SecretsError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
        SecretsError::DataDir {
            path: dir.to_path_buf(),
            source,
        }
    })
}

fn load_one(source: &SecretSource, created: &mut Vec<PathBuf>) -> Result<Secret, SecretsError> {
    match source {
        SecretSource::Env(v) => Ok(Secret(v.clone())),
        SecretSource::File(path) => {
            if !path.exists() {
                write_new(path, &api_key::random_token())?;
                created.push(path.clone());
            }
            read_file(path)
        }
    }
}

/// Reads a secret file, refusing one that others can read or that is too short.
pub fn read_file(path: &Path) -> Result<Secret, SecretsError> {
    let meta = fs::metadata(path).map_err(|source| SecretsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(|source| SecretsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value = text.trim().to_string();
    if value.len() < 32 {
        return Err(SecretsError::TooShort {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(value))
}

/// Writes a new file with mode 0600; fails if it already exists.
pub fn write_new(path: &Path, value: &str) -> Result<(), SecretsError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_data_dir(parent)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| SecretsError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    f.write_all(format!("{value}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|source| SecretsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_long_and_url_safe() {
        let t = api_key::random_token();
        assert_eq!(t.len(), 43);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(t, api_key::random_token());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("super-secret-value".into());
        assert!(!format!("{s:?}").contains("super"));
    }

    #[test]
    fn files_are_created_0600_and_open_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/k.key");
        write_new(&p, &api_key::random_token()).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read_file(&p).is_ok());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_file(&p), Err(SecretsError::TooOpen { .. })));
    }
}
