//! The command line: its definition, and the operator subcommands, each working on the same
//! store and secrets as the server when run from the same directory (even while it runs).
//! `main` dispatches every command; `serve` itself lives there, on [`crate::App::start`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::api_key;
use crate::centrifugo_config::{self, Mode, SecretValues, Version};
use crate::config::{self, Config};
use crate::now_unix;
use crate::secrets::Secrets;
use crate::store::Store;

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

/// Loads and validates the configuration named on the command line.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(cli.config.as_deref())?)
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store)
        .await
        .context("cannot open the store")
}

/// `check-config`: validates first so every problem is listed, then prints what is in effect.
pub fn check_config(cli: &Cli) -> anyhow::Result<()> {
    load_config(cli)?;
    let fig = config::figment(cli.config.as_deref())?;
    print!("{}", config::redacted_toml(&fig)?);
    eprintln!("configuration is valid");
    Ok(())
}

/// `api-key ...`.
pub fn api_key_command(cli: &Cli, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    block_on(async {
        let store = open_store(&config).await?;
        api_key(&store, cmd).await
    })
}

/// `user ...`.
pub fn user_command(cli: &Cli, cmd: &UserCommand) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    block_on(async {
        let store = open_store(&config).await?;
        user(&store, cmd).await
    })
}

/// `centrifugo-config`: prints a Centrifugo config matching this sidecar.
pub fn centrifugo_config_command(
    cli: &Cli,
    mode: Mode,
    centrifugo_version: &str,
    placeholders: bool,
) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let version = if centrifugo_version == "5" {
        Version::V5
    } else {
        Version::V6
    };
    let doc = if placeholders {
        centrifugo_config::generate(&config, &centrifugo_config::PLACEHOLDERS, mode, version)
    } else {
        let (secrets, _) = Secrets::load(&config)?;
        let values = SecretValues {
            hmac_key: secrets.centrifugo_key.expose(),
            proxy_secret: secrets.proxy_secret.expose(),
            subscription_key: secrets.subscription_key.expose(),
        };
        centrifugo_config::generate(&config, &values, mode, version)
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

async fn api_key(store: &Store, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create { name } => {
            api_key::check_name(name).context("--name")?;
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
