//! The command line: `serve` plus the operator subcommands, each working on the same store
//! and secrets as the server when run from the same directory (even while it runs).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::access_log::AccessLog;
use crate::centrifugo_config::{self, Mode, SecretValues, Version};
use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::secrets::{self, Secrets};
use crate::store::Store;
use crate::{now_unix, App};

/// Name of the API key generated on first start when no key exists.
pub const FIRST_KEY_NAME: &str = "default";
/// File (in the data directory) holding the first generated key.
pub const FIRST_KEY_FILE: &str = "api-key.txt";
/// Name under which `secrets.initial_api_key` is stored.
pub const INITIAL_KEY_NAME: &str = "initial";

#[derive(Debug, Parser)]
#[command(
    name = "chatsdk-auth",
    version,
    about = "Token sidecar for ChatSDK on Centrifugo"
)]
pub struct Cli {
    /// Config file (default: config/chatsdk-auth.toml when present).
    #[arg(long, global = true, env = "CHATSDK_AUTH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve,
    /// Print the effective configuration (secrets redacted) and exit non-zero if invalid.
    CheckConfig,
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Inspect and manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Print a Centrifugo config matching this sidecar (contains the shared secrets).
    CentrifugoConfig {
        #[arg(long, value_enum, default_value = "jwt")]
        mode: Mode,
        /// Centrifugo major version: 6 (nested keys) or 5 (flat keys).
        #[arg(long = "centrifugo-version", default_value = "6", value_parser = ["5", "6"])]
        centrifugo_version: String,
        /// Print placeholders instead of the secrets (for configs committed to a repository).
        #[arg(long)]
        placeholders: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; the key is printed once, on the last line of standard output.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List keys: name, prefix, created, last used, revoked.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by name; takes effect on the running server at once.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Print the user as JSON; exits 1 for an unknown user.
    Show { id: String },
    /// Refuse new tokens and end the user's sessions at the next proxy decision.
    Disable { id: String },
    /// Allow the user again.
    Enable { id: String },
    /// Revoke every token issued up to and including T (Unix seconds; default: now).
    RevokeTokens {
        id: String,
        #[arg(long)]
        before: Option<i64>,
    },
}

/// Runs an operator command's storage work on a small single-threaded runtime.
fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store)
        .await
        .context("cannot open the store")
}

/// Runs a non-serve command.
pub fn run_command(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve => bail!("serve is handled by main"),
        Command::CheckConfig => {
            // Validate first so every problem is listed, then print what is in effect.
            load_config(cli)?;
            let fig = config::figment(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let text = config::redacted_toml(&fig).map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{text}");
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::ApiKey(cmd) => {
            let config = load_config(cli)?;
            block_on(async {
                let store = open_store(&config).await?;
                api_key(&store, cmd).await
            })
        }
        Command::User(cmd) => {
            let config = load_config(cli)?;
            block_on(async {
                let store = open_store(&config).await?;
                user(&store, cmd).await
            })
        }
        Command::CentrifugoConfig {
            mode,
            centrifugo_version,
            placeholders,
        } => {
            let config = load_config(cli)?;
            let version = if centrifugo_version == "5" {
                Version::V5
            } else {
                Version::V6
            };
            let doc = if *placeholders {
                centrifugo_config::generate(
                    &config,
                    &centrifugo_config::PLACEHOLDERS,
                    *mode,
                    version,
                )
            } else {
                let (secrets, _) = Secrets::load(&config)?;
                let values = SecretValues {
                    hmac_key: secrets.centrifugo_key.expose(),
                    proxy_secret: secrets.proxy_secret.expose(),
                };
                centrifugo_config::generate(&config, &values, *mode, version)
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
    }
}

async fn api_key(store: &Store, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create { name } => {
            validate_key_name(name)?;
            let key = store.create_api_key(name, now_unix()).await?;
            eprintln!("created API key \"{name}\"; it is shown once, store it now:");
            println!("{key}");
        }
        ApiKeyCommand::List { json } => {
            let keys = store.list_api_keys().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!(
                    "{:<24} {:<14} {:<12} {:<12} REVOKED",
                    "NAME", "PREFIX", "CREATED", "LAST_USED"
                );
                for k in keys {
                    let t = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                    println!(
                        "{:<24} {:<14} {:<12} {:<12} {}",
                        k.name,
                        format!("{}…", k.prefix),
                        k.created_at,
                        t(k.last_used_at),
                        t(k.revoked_at)
                    );
                }
            }
        }
        ApiKeyCommand::Revoke { name } => {
            if !store.revoke_api_key(name, now_unix()).await? {
                bail!("no active API key named \"{name}\" (see `chatsdk-auth api-key list`)");
            }
            eprintln!("revoked API key \"{name}\"");
        }
    }
    Ok(())
}

fn validate_key_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        bail!("--name must be 1 to 64 characters of letters, digits, '-', '_' or '.' (it becomes a metric label)");
    }
    Ok(())
}

async fn user(store: &Store, cmd: &UserCommand) -> anyhow::Result<()> {
    let now = now_unix();
    match cmd {
        UserCommand::Show { id } => match store.get_user(id).await? {
            Some(u) => println!("{}", serde_json::to_string_pretty(&u)?),
            None => bail!("no user with id \"{id}\""),
        },
        UserCommand::Disable { id } => {
            if !store.set_user_disabled(id, true, now).await? {
                bail!("no user with id \"{id}\"");
            }
            eprintln!("disabled user \"{id}\"");
        }
        UserCommand::Enable { id } => {
            if !store.set_user_disabled(id, false, now).await? {
                bail!("no user with id \"{id}\"");
            }
            eprintln!("enabled user \"{id}\"");
        }
        UserCommand::RevokeTokens { id, before } => {
            // Tokens carry whole seconds: "up to and including T" means valid-after T + 1.
            // A future T would make every later token "issued" in the future: refuse it.
            let t = before.unwrap_or(now);
            if t > now {
                bail!("--before {t} is in the future (now is {now}); give Unix seconds not later than now");
            }
            if !store.revoke_user_tokens(id, t + 1, now).await? {
                bail!("no user with id \"{id}\"");
            }
            eprintln!("revoked tokens of user \"{id}\" issued at or before {t}");
        }
    }
    Ok(())
}

/// Everything `serve` does before binding: secrets, store, the first API key, the app.
pub async fn prepare(config: Config, access_log: AccessLog) -> anyhow::Result<Arc<App>> {
    let (secrets, created) = Secrets::load(&config)?;
    for path in &created {
        tracing::info!(path = %path.display(), "generated a new secret (mode 0600)");
    }
    let metrics = Metrics::new().context("cannot register metrics")?;
    let store = open_store(&config).await?;
    let now = now_unix();
    if let Some(config::SecretSource::Env(key)) = &config.secrets.initial_api_key {
        if store.ensure_api_key(INITIAL_KEY_NAME, key, now).await? {
            tracing::info!(
                name = INITIAL_KEY_NAME,
                "installed the API key from CHATSDK_AUTH_SECRETS__INITIAL_API_KEY"
            );
        }
    } else if store.count_api_keys().await? == 0 {
        // File first (create_new refuses to overwrite), then the row: a crash in between leaves
        // a key file with no row, which the next start replaces, never a row nobody can read.
        let key = crate::store::generate_api_key();
        let path = config.data_dir.join(FIRST_KEY_FILE);
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot replace the stale key file {}", path.display()))?;
        }
        secrets::write_new(&path, &key)
            .with_context(|| format!("cannot save the first API key to {}", path.display()))?;
        if let Err(e) = store.insert_api_key(FIRST_KEY_NAME, &key, now).await {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        tracing::info!(path = %path.display(), name = FIRST_KEY_NAME, "created the first API key (mode 0600); read it from that file");
    }
    Ok(Arc::new(App::build(
        config, secrets, store, metrics, access_log,
    )))
}
