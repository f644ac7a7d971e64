//! `chatsdk-auth user ...`: show, list (by segment too), the single-user actions and the bulk
//! actions by segment, with their kicks delivered at once when active revocation is on.

use anyhow::Context;

use super::{block_on, load_config, open_store, Cli, UserCommand};
use crate::actions::{Actions, Bulk, BulkKind, Changed};
use crate::centrifugo::api::CentrifugoApi;
use crate::config::Config;
use crate::error_chain::Chain;
use crate::http::query::PageLimit;
use crate::now_unix;
use crate::outbox;
use crate::secrets::Secrets;
use crate::store::Store;

/// `user bulk`'s action.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BulkArg {
    Disable,
    Enable,
    RevokeTokens,
    Delete,
}

/// `user ...`.
pub fn user_command(cli: &Cli, cmd: &UserCommand) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    // With active revocation on, the CLI delivers its own kicks at once (no server needed).
    let api = match &config.centrifugo.api_url {
        Some(_) => {
            let (secrets, _) = Secrets::load(&config)?;
            CentrifugoApi::from_config(&config, &secrets.centrifugo_api_key, None)
                .context("cannot build the Centrifugo server-API client")?
        }
        None => None,
    };
    block_on(async {
        let store = open_store(&config).await?;
        let actions = Actions::new(&store, api.is_some(), "cli");
        let changed = user(&actions, cmd).await?;
        if let (Some(api), Some(Changed { kick_queued: true })) = (&api, changed) {
            deliver_now(&config, &store, api).await;
        }
        Ok(())
    })
}

/// Delivers the kick just queued (and any other due one), and says what happened. A kick that
/// cannot be delivered now stays queued for a running server: the change itself is done.
async fn deliver_now(config: &Config, store: &Store, api: &CentrifugoApi) {
    let lease = outbox::lease(config.centrifugo.api_timeout);
    let mut delivered = 0;
    // A bulk action queues many: round after round while rounds come back full.
    let result = loop {
        match outbox::deliver_due(store, api, lease, None).await {
            Ok(round) if round.error.is_none() && round.claimed == outbox::BATCH => {
                delivered += round.delivered;
            }
            Ok(mut round) => {
                round.delivered += delivered;
                break Ok(round);
            }
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(round) if round.error.is_none() && round.delivered > 0 => {
            eprintln!("disconnected the user's live connections through Centrifugo's server API");
        }
        Ok(round) if round.error.is_none() => {
            eprintln!("kick queued; a running `chatsdk-auth serve` is delivering it");
        }
        Ok(round) => eprintln!(
            "kick queued but not delivered yet: {}; a running `chatsdk-auth serve` retries until Centrifugo answers",
            round.error.as_ref().map(|e| Chain(e).to_string()).unwrap_or_default()
        ),
        Err(e) => eprintln!(
            "kick queued but not delivered yet: {}; a running `chatsdk-auth serve` delivers it",
            Chain(&e)
        ),
    }
}

/// Runs one user action; `Some` when it changed a user (and may have queued a kick).
async fn user(actions: &Actions<'_>, cmd: &UserCommand) -> anyhow::Result<Option<Changed>> {
    let now = now_unix();
    Ok(match cmd {
        UserCommand::Show { id } => {
            let u = actions.show_user(id).await?;
            println!("{}", serde_json::to_string_pretty(&u)?);
            None
        }
        UserCommand::List {
            limit,
            after,
            segment,
        } => {
            let limit = PageLimit::new(*limit).map_err(anyhow::Error::msg)?;
            let page = if segment.is_empty() {
                actions.list_users(limit, after.as_deref()).await?
            } else {
                let w = actions.segment(segment).await?;
                actions.list_segment(&w, limit, after.as_deref()).await?
            };
            println!("{}", serde_json::to_string_pretty(&page)?);
            None
        }
        UserCommand::Bulk {
            action,
            segment,
            dry_run,
            expected_count,
            before,
        } => {
            let kind = match action {
                BulkArg::Disable => BulkKind::Disable,
                BulkArg::Enable => BulkKind::Enable,
                BulkArg::RevokeTokens => BulkKind::RevokeTokens,
                BulkArg::Delete => BulkKind::Delete,
            };
            let b = Bulk {
                segment: actions.segment(segment).await?,
                kind,
                before: *before,
                expected_count: *expected_count,
                dry_run: *dry_run,
            };
            let out = actions.bulk(&b, now, &|| {}).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            if out.dry_run {
                eprintln!(
                    "{} users match; run again with --expected-count {}{} to {} them",
                    out.count,
                    out.count,
                    out.revoked_before
                        .map(|t| format!(" --before {t}"))
                        .unwrap_or_default(),
                    kind.name()
                );
            } else {
                eprintln!(
                    "{}: {} of {} users changed",
                    kind.name(),
                    out.changed,
                    out.count
                );
            }
            Some(Changed {
                kick_queued: out.kicks_queued > 0,
            })
        }
        UserCommand::Disable { id } => {
            let c = actions.disable(id, now).await?;
            eprintln!("disabled user \"{id}\"");
            Some(c)
        }
        UserCommand::Enable { id } => {
            let c = actions.enable(id, now).await?;
            eprintln!("enabled user \"{id}\"");
            Some(c)
        }
        UserCommand::RevokeTokens { id, before } => {
            let (t, c) = actions.revoke_user_tokens(id, *before, now).await?;
            eprintln!("revoked tokens of user \"{id}\" issued at or before {t}");
            Some(c)
        }
        UserCommand::Delete { id } => {
            let c = actions.delete_user(id, now).await?;
            eprintln!("deleted user \"{id}\"");
            Some(c)
        }
    })
}
