//! `chatsdk-auth keys ...`: list, rotate and (PostgreSQL) rewrap the signing keys, on the
//! same key ring as the servers ([`crate::keys::RingStore`]: the ring file, or PostgreSQL).

use anyhow::Context;

use super::{block_on, load_config, open_store, Cli, KeysCommand};
use crate::actions::Actions;
use crate::config::{Config, StoreConfig};
use crate::keys::{self, algorithm_name, is_asymmetric, KeyRing, Kind};
use crate::now_unix;
use crate::secrets::Secrets;

/// `keys ...`.
pub fn keys_command(cli: &Cli, cmd: &KeysCommand) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let now = now_unix();
    // The commands that change the ring load the secrets as `serve` does (generating missing
    // files); `list` only reads.
    let load = || -> anyhow::Result<Secrets> {
        let (secrets, created) = Secrets::load(&config)?;
        for path in &created {
            eprintln!("generated a new secret: {} (mode 0600)", path.display());
        }
        Ok(secrets)
    };
    match cmd {
        KeysCommand::List { json } => list(&config, *json, now)?,
        KeysCommand::Rotate { kind } => {
            let secrets = load()?;
            let kind = Kind::from(*kind);
            let r = block_on(async {
                let store = open_store(&config).await?;
                let actions = Actions::new(&store, false, "cli");
                Ok(actions
                    .rotate_signing_key(&config, &secrets, kind, now)
                    .await?)
            })?;
            eprintln!(
                "rotated the {} key: {} ({}) replaces {}",
                kind.label(),
                r.new_kid,
                algorithm_name(r.alg),
                r.old_kid
            );
            if r.signs_from > now {
                eprintln!(
                    "the new key is published in /.well-known/jwks.json now and signs from {} (in {} s); the old key stays published until {}",
                    r.signs_from,
                    r.signs_from - now,
                    r.old_expires_at
                );
            } else {
                eprintln!(
                    "the new key signs now; the old key verifies until {} (when its last token expires)",
                    r.old_expires_at
                );
            }
            if kind == Kind::Ws && !is_asymmetric(r.alg) {
                eprintln!("give Centrifugo the new key now: `chatsdk-auth centrifugo-config` writes it with hmac_previous_secret_key (Centrifugo >= 6.6.1), so existing wsTokens keep connecting");
            }
            println!("{}", r.new_kid);
        }
        KeysCommand::Rewrap { old_key_file } => {
            let secrets = load()?;
            let old = crate::secrets::read_file(old_key_file)
                .with_context(|| format!("--old-key-file {}", old_key_file.display()))?;
            let r = block_on(async {
                let store = open_store(&config).await?;
                Ok(keys::rewrap(&config, &secrets, &store, &old).await?)
            })?;
            if r.from == r.to {
                eprintln!(
                    "the key ring (version {}) is already encrypted with the key-encryption secret {}; nothing to do",
                    r.version, r.to
                );
            } else {
                eprintln!(
                    "re-encrypted the key ring (now version {}) from the key-encryption secret {} to {}; restart every replica with the new secret",
                    r.version, r.from, r.to
                );
            }
            println!("{}", r.to);
        }
    }
    Ok(())
}

/// The key ring the servers run on: the ring file, or on PostgreSQL the stored ring (the store
/// is opened only then).
pub fn ring(config: &Config, secrets: &Secrets) -> anyhow::Result<KeyRing> {
    if !matches!(config.store, StoreConfig::Postgres { .. }) {
        return Ok(KeyRing::load(config, secrets)?);
    }
    block_on(async {
        let store = open_store(config).await?;
        Ok(keys::load_ring(config, secrets, &store).await?)
    })
}

/// `keys list`: only reads (no secret file generated, no directory created, no schema or ring
/// written in PostgreSQL); says what is missing when there is nothing to read yet.
fn list(config: &Config, json: bool, now: i64) -> anyhow::Result<()> {
    let secrets = Secrets::read(config)?;
    let (ring, stored) = block_on(async { Ok(keys::read_ring(config, &secrets).await?) })?;
    if !stored {
        eprintln!("no key ring in PostgreSQL yet: these are the configured keys, which the first `chatsdk-auth serve` writes there");
    }
    let rows = ring.list(now);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<5} {:<44} {:<6} {:<9} {:<11} {:<11} EXPIRES_AT",
            "KIND", "KID", "ALG", "STATE", "SIGNS_FROM", "SIGNS_UNTIL"
        );
        let t = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        for r in rows {
            println!(
                "{:<5} {:<44} {:<6} {:<9} {:<11} {:<11} {}",
                r.kind,
                r.kid,
                r.alg,
                r.state,
                r.signs_from,
                t(r.signs_until),
                t(r.expires_at)
            );
        }
    }
    Ok(())
}
