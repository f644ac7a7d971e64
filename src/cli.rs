//! The command line: its definition, and the operator subcommands, each working on the same
//! store and secrets as the server when run from the same directory (even while it runs).
//! `main` dispatches every command; `serve` itself lives there, on [`crate::App::start`].

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

use crate::actions::{ActionError, Actions};
use crate::centrifugo::config::{self as centrifugo_config, Mode, SecretValues, Version, WsKey};
use crate::config::{self, Config};
use crate::healthcheck;
use crate::keys::{is_asymmetric, Kind};
use crate::now_unix;
use crate::secrets::Secrets;
use crate::store::{AuditFilter, Store};
pub use keys::keys_command;

mod keys;
mod users;
pub use users::{user_command, BulkArg};

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
    /// Revoke every token of every user issued up to and including T (Unix seconds; default:
    /// now). Proxies refuse them at once; `POST /tokens` keeps minting fresh ones.
    RevokeTokens {
        /// Required: this revokes the tokens of every user.
        #[arg(long, required = true)]
        all: bool,
        #[arg(long)]
        before: Option<i64>,
    },
    /// Check that revocation is enforced end to end: Centrifugo's server API (version, API
    /// key), the kick outbox, and, given Centrifugo's config file, the settings enforcement
    /// depends on. Exits 1 on any problem.
    Doctor {
        /// Centrifugo's config file (v6 JSON) to check against this sidecar.
        #[arg(long)]
        centrifugo_config: Option<PathBuf>,
    },
    /// Print the audit trail of security events (oldest first).
    Audit {
        /// Only events at or after T (Unix seconds).
        #[arg(long)]
        since: Option<i64>,
        /// Only events about this user.
        #[arg(long)]
        user: Option<String>,
        /// At most this many, the most recent (0: all).
        #[arg(long, default_value = "0")]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
        /// With an RS256 or ES256 wsToken key: give Centrifugo the static public key
        /// (`rsa_public_key`/`ecdsa_public_key`) instead of the sidecar's JWKS URL. A static key
        /// cannot rotate without downtime; EdDSA needs the JWKS.
        #[arg(long)]
        no_jwks: bool,
        /// Write the config to this file (mode 0600, replaced) instead of standard output:
        /// an init container's way to hand it to Centrifugo through a shared volume.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List and rotate the signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Ask the running server's `GET /readyz` (over loopback when `server.listen` is a
    /// wildcard); exit 0 on 200, else 1. A container health check that needs no curl.
    Healthcheck {
        /// The URL to ask instead of `server.listen`'s `/readyz`.
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value = "2000", value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the keys of both kinds: kid, algorithm, state and schedule.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rotate the signing key of one kind without downtime: HMAC keys switch at once and the
    /// old one verifies until its tokens expire; asymmetric keys are published first and sign
    /// after `tokens.jwks_publish_delay_seconds`. Running servers pick it up within a second.
    Rotate {
        #[arg(value_enum)]
        kind: KeyKind,
    },
    /// PostgreSQL only: re-encrypt the stored signing keys under the configured
    /// key-encryption secret (`secrets.key_encryption_key`), from the old one.
    Rewrap {
        /// A file (mode 0600) holding the old key-encryption secret.
        #[arg(long)]
        old_key_file: PathBuf,
    },
}

/// Which signing key `keys rotate` rotates ([`Kind`], as the command line spells it).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyKind {
    /// The ChatSDK REST token (`token`).
    Rest,
    /// The Centrifugo connection token (`wsToken`).
    Ws,
}

impl From<KeyKind> for Kind {
    fn from(k: KeyKind) -> Kind {
        match k {
            KeyKind::Rest => Kind::Rest,
            KeyKind::Ws => Kind::Ws,
        }
    }
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
    /// Print users as JSON, ordered by id, one page at a time.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this id (the `next_after` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Only the users of a segment: `field=value` on a declared field (segments.fields),
        /// repeated to AND; `plan=7` is the number, `plan='"7"'` the string.
        #[arg(long = "where", value_name = "FIELD=VALUE")]
        segment: Vec<String>,
    },
    /// Disable, enable, revoke the tokens of, or delete every user of a segment, in batches,
    /// kicking live connections as the single-user actions do. Dry-run first: the action
    /// needs the count the dry run printed (--expected-count) and refuses when it changed.
    Bulk {
        #[arg(value_enum)]
        action: BulkArg,
        /// `field=value` on a declared field, repeated to AND (as `user list --where`).
        #[arg(long = "where", value_name = "FIELD=VALUE", required = true)]
        segment: Vec<String>,
        /// Print the segment's size and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The count the dry run printed.
        #[arg(long)]
        expected_count: Option<u64>,
        /// revoke-tokens: tokens issued up to and including T (Unix seconds; default: now;
        /// give the dry run's `revoked_before` to re-run the same revocation).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Refuse new tokens and disconnect the user's live connections (4503) through
    /// Centrifugo's server API when `centrifugo.api_url` is set.
    Disable { id: String },
    /// Allow the user again.
    Enable { id: String },
    /// Revoke every token issued up to and including T (Unix seconds; default: now) and
    /// disconnect the user's live connections (4504).
    RevokeTokens {
        id: String,
        #[arg(long)]
        before: Option<i64>,
    },
    /// Erase the user: its tokens are refused everywhere, its connections are disconnected
    /// (4502).
    Delete { id: String },
}

/// Runs an operator command's storage work on a small single-threaded runtime.
pub(crate) fn block_on<T>(
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
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

pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store)
        .await
        .context("cannot open the store")
}

/// `healthcheck`: succeeds when the server answers `/readyz` with 200 (its body is printed).
pub fn healthcheck_command(cli: &Cli, url: Option<&str>, timeout_ms: u64) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u.to_string(),
        None => healthcheck::readyz_url(&load_config(cli)?),
    };
    let body = healthcheck::check(&url, std::time::Duration::from_millis(timeout_ms))?;
    println!("{}", body.trim_end());
    Ok(())
}

/// `check-config`: validates first so every problem is listed, then runs the checks `serve`
/// runs before it binds (secret files: present ones readable, owner-only, long enough; the
/// signing keys distinct; the initial API key's shape and entropy, in validation), without
/// creating anything, then prints what is in effect.
pub fn check_config(cli: &Cli) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let missing = Secrets::check(&config)?;
    let fig = config::figment(cli.config.as_deref())?;
    print!("{}", config::redacted_toml(&fig)?);
    for path in missing {
        eprintln!(
            "note: {} does not exist yet; `serve` generates it (mode 0600) on its first start",
            path.display()
        );
    }
    eprintln!("configuration is valid");
    Ok(())
}

/// `api-key ...`.
pub fn api_key_command(cli: &Cli, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    block_on(async {
        let store = open_store(&config).await?;
        api_key(&Actions::new(&store, false, "cli"), &config.app.id, cmd).await
    })
}

/// `doctor`: prints one line per finding; fails when any is a problem.
pub fn doctor_command(
    cli: &Cli,
    centrifugo_config: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let (secrets, _) = Secrets::load(&config)?;
    block_on(async {
        let store = open_store(&config).await?;
        let report = crate::doctor::run(&config, &secrets, &store, centrifugo_config).await;
        print!("{}", report.render());
        if !report.healthy() {
            anyhow::bail!("doctor found problems (see above)");
        }
        Ok(())
    })
}

/// `revoke-tokens --all`: app-wide revocation.
pub fn revoke_all_command(cli: &Cli, before: Option<i64>) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    block_on(async {
        let store = open_store(&config).await?;
        let actions = Actions::new(&store, false, "cli");
        let t = actions.revoke_all_tokens(before, now_unix()).await?;
        eprintln!(
            "revoked every token issued at or before {t}; live connections end at their next refresh (at most centrifugo.refresh_interval_seconds = {} s in proxy mode; see the README's revocation table)",
            config.centrifugo.refresh_interval_seconds
        );
        Ok(())
    })
}

/// `audit`: prints the audit trail.
pub fn audit_command(cli: &Cli, filter: AuditFilter, json: bool) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    block_on(async {
        let store = open_store(&config).await?;
        let events = store.list_audit(&filter).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&events)?);
            return Ok(());
        }
        println!(
            "{:<12} {:<20} {:<16} {:<28} {:<16} DETAIL",
            "AT", "EVENT", "ACTOR", "TARGET", "SOURCE"
        );
        for e in events {
            let target = match (&e.target_kind, &e.target) {
                (Some(k), Some(t)) => format!("{k}:{t}"),
                (Some(k), None) => k.clone(),
                _ => "-".into(),
            };
            println!(
                "{:<12} {:<20} {:<16} {:<28} {:<16} {}",
                e.at,
                e.event,
                e.actor,
                target,
                e.source.as_deref().unwrap_or("-"),
                e.detail.as_deref().unwrap_or("")
            );
        }
        Ok(())
    })
}

/// `centrifugo-config`: prints a Centrifugo config matching this sidecar.
pub fn centrifugo_config_command(
    cli: &Cli,
    mode: Mode,
    centrifugo_version: &str,
    placeholders: bool,
    no_jwks: bool,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let version = if centrifugo_version == "5" {
        Version::V5
    } else {
        Version::V6
    };
    let ws_alg = config.tokens.ws_algorithm;
    if no_jwks && ws_alg == jsonwebtoken::Algorithm::EdDSA {
        anyhow::bail!("--no-jwks: Centrifugo takes EdDSA keys only from a JWKS endpoint (client.token.jwks_public_endpoint); drop --no-jwks");
    }
    let doc = if placeholders {
        let mut values = centrifugo_config::PLACEHOLDERS;
        if is_asymmetric(ws_alg) {
            values.ws_key = match (no_jwks, ws_alg) {
                (false, _) => WsKey::Jwks,
                (true, jsonwebtoken::Algorithm::RS256) => {
                    WsKey::RsaPublic("REPLACE_WITH_the ws public key (chatsdk-auth keys list)")
                }
                (true, _) => {
                    WsKey::EcdsaPublic("REPLACE_WITH_the ws public key (chatsdk-auth keys list)")
                }
            };
        }
        centrifugo_config::generate(&config, &values, mode, version)
    } else {
        let (secrets, _) = Secrets::load(&config)?;
        let ring = keys::ring(&config, &secrets)?;
        let now = now_unix();
        let current = ring.ws.signing(now);
        let ws_key = if !is_asymmetric(current.alg) {
            let previous = ring
                .ws
                .previous_hmac(now)
                .map(|(k, until)| (k.material().expose(), until));
            if previous.is_some() && version == Version::V5 {
                eprintln!("warning: Centrifugo v5 has no previous HMAC key; wsTokens signed by the previous key stop connecting once Centrifugo runs this config");
            }
            WsKey::Hmac {
                current: current.material().expose(),
                previous,
            }
        } else if !no_jwks {
            WsKey::Jwks
        } else {
            let pem = current.public_pem.as_deref().unwrap_or_default();
            if ring.ws.all().len() > 1 {
                eprintln!("warning: a static public key is one key: during a rotation, wsTokens of the other key do not connect (use the JWKS instead)");
            }
            match current.alg {
                jsonwebtoken::Algorithm::RS256 => WsKey::RsaPublic(pem),
                _ => WsKey::EcdsaPublic(pem),
            }
        };
        let values = SecretValues {
            ws_key,
            proxy_secret: secrets.proxy_secret.expose(),
            subscription_key: secrets.subscription_key.expose(),
            api_key: secrets.centrifugo_api_key.expose(),
        };
        centrifugo_config::generate(&config, &values, mode, version)
    };
    let text = serde_json::to_string_pretty(&doc)?;
    match output {
        None => println!("{text}"),
        Some(path) => write_private(path, &text)
            .with_context(|| format!("--output: cannot write {}", path.display()))?,
    }
    Ok(())
}

/// Writes `text` and a newline to `path`, owner-only (0600) whether or not it existed.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(format!("{text}\n").as_bytes())?;
    f.sync_all()
}

async fn api_key(actions: &Actions<'_>, app_id: &str, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create { name } => {
            crate::api_key::check_name(name).context("--name")?;
            let key = actions.create_api_key(name, app_id, now_unix()).await?;
            eprintln!("created API key \"{name}\"; it is shown once, store it now:");
            println!("{key}");
        }
        ApiKeyCommand::List { json } => {
            let keys = actions.list_api_keys().await?;
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
            actions
                .revoke_api_key(name, now_unix())
                .await
                .map_err(|e| match e {
                    ActionError::UnknownApiKey(_) => {
                        anyhow!("{e} (see `chatsdk-auth api-key list`)")
                    }
                    e => e.into(),
                })?;
            eprintln!("revoked API key \"{name}\"");
        }
    }
    Ok(())
}
