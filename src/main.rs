//! The binary edge: parse the CLI, dispatch every command, print a failure's whole cause chain.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use chatsdk_auth::cli::{self, Cli, Command};
use chatsdk_auth::{telemetry, App};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve => serve(&cli),
        Command::CheckConfig => cli::check_config(&cli),
        Command::ApiKey(cmd) => cli::api_key_command(&cli, cmd),
        Command::User(cmd) => cli::user_command(&cli, cmd),
        Command::RevokeTokens { all: _, before } => cli::revoke_all_command(&cli, *before),
        Command::Doctor { centrifugo_config } => {
            cli::doctor_command(&cli, centrifugo_config.as_deref())
        }
        Command::Audit {
            since,
            user,
            limit,
            json,
        } => cli::audit_command(
            &cli,
            chatsdk_auth::store::AuditFilter {
                since: *since,
                user: user.clone(),
                limit: *limit,
            },
            *json,
        ),
        Command::CentrifugoConfig {
            mode,
            centrifugo_version,
            placeholders,
            no_jwks,
            output,
        } => cli::centrifugo_config_command(
            &cli,
            *mode,
            centrifugo_version,
            *placeholders,
            *no_jwks,
            output.as_deref(),
        ),
        Command::Keys(cmd) => cli::keys_command(&cli, cmd),
        Command::Healthcheck { url, timeout_ms } => {
            cli::healthcheck_command(&cli, url.as_deref(), *timeout_ms)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    let config = cli::load_config(cli)?;
    let log = telemetry::init(&config.log);
    let access_log = log.access_log();
    // One worker (a single usable CPU, or `server.worker_threads = 1`) runs on the
    // current-thread scheduler: the same behaviour without work-stealing bookkeeping.
    let workers = config.server.worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.spawn(log.periodic_flush());
    rt.block_on(async move {
        let listen = config.server.listen;
        let metrics_listen = config.metrics.listen;
        let admin_listen = config.admin.listen;
        let app = App::start(config, access_log).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
        let metrics_listener = match metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?,
            ),
            None => None,
        };
        let admin_listener = match admin_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (admin.listen)"))?,
            ),
            None => None,
        };
        tracing::info!(
            addr = %listener.local_addr()?,
            metrics_addr = ?metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
            admin_addr = ?admin_listener.as_ref().and_then(|l| l.local_addr().ok()),
            revocation = if app.centrifugo_api.is_some() { "active (centrifugo.api_url)" } else { "off (set centrifugo.api_url)" },
            version = env!("CARGO_PKG_VERSION"),
            workers,
            "listening"
        );
        let drained = chatsdk_auth::serve_on(
            chatsdk_auth::Listeners {
                main: listener,
                metrics: metrics_listener,
                admin: admin_listener,
            },
            app,
            chatsdk_auth::shutdown::signal_received(),
        )
        .await;
        tracing::info!(drained, "stopped");
        Ok(())
    })
}
