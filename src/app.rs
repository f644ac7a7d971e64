//! [`App`]: application-wide state, built once at startup and shared by every request, and
//! [`App::start`], the composition root that loads secrets, opens the store and installs the
//! first API key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::api_key;
use crate::centrifugo_api::{CentrifugoApi, CentrifugoApiError};
use crate::config::{Config, SecretSource};
use crate::http::auth::TouchThrottle;
use crate::jwt::{Signer, Verifier};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::router::table::ROUTE_LABELS;
use crate::secrets::{self, Secrets, SecretsError};
use crate::store::{Store, StoreError};
use crate::telemetry::AccessLog;

/// Name of the API key generated on first start when no key exists.
pub const FIRST_KEY_NAME: &str = "default";
/// File (in the data directory) holding the first generated key.
pub const FIRST_KEY_FILE: &str = "api-key.txt";
/// Name under which `secrets.initial_api_key` is stored.
pub const INITIAL_KEY_NAME: &str = "initial";
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Mints REST tokens and wsTokens (keys built once).
    pub signer: Signer,
    /// Verifies wsTokens for the proxy callbacks, with Centrifugo's rules.
    pub verifier: Verifier,
    /// Users and API keys.
    pub store: Store,
    /// The owned Prometheus registry and every metric.
    pub metrics: Metrics,
    /// Limits `last_used_at` writes to one a minute per API key.
    pub touch_throttle: TouchThrottle,
    /// Shared secrets compared on proxy and metrics calls.
    pub secrets: Secrets,
    /// One line per request (disabled unless `serve` wires it to the log output).
    pub access_log: AccessLog,
    /// Centrifugo's server API, when `centrifugo.api_url` is set (active revocation).
    pub centrifugo_api: Option<CentrifugoApi>,
    /// Wakes the kick delivery loop when an action of this process queued a kick.
    pub kick_wake: tokio::sync::Notify,
    /// The rate limits (`[limits]`).
    pub limits: Limits,
    /// False once shutdown starts, so `/readyz` sends load balancers elsewhere while draining.
    ready: AtomicBool,
}

/// Why the service could not start; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load the secrets")]
    Secrets(#[from] SecretsError),
    #[error("cannot register the metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot save the first API key")]
    FirstKey(#[source] SecretsError),
    #[error("cannot build the Centrifugo server-API client")]
    CentrifugoApi(#[source] CentrifugoApiError),
}

impl App {
    /// Everything `serve` does before binding: secrets (generated on first start), metrics,
    /// the store (created and migrated), the first API key, then the app itself.
    pub async fn start(config: Config, access_log: AccessLog) -> Result<Arc<App>, StartError> {
        let (secrets, created) = Secrets::load(&config)?;
        for path in &created {
            tracing::info!(path = %path.display(), "generated a new secret (mode 0600)");
        }
        let metrics = Metrics::new(&ROUTE_LABELS)?;
        let store = Store::open(&config.store).await?;
        install_first_key(&config, &store).await?;
        let api = CentrifugoApi::from_config(
            &config,
            &secrets.centrifugo_api_key,
            Some(metrics.centrifugo_api.clone()),
        )
        .map_err(StartError::CentrifugoApi)?;
        Ok(Arc::new(App::build(
            config, secrets, store, metrics, access_log, api,
        )))
    }

    /// Builds the application from parts that have already been loaded and checked.
    pub fn build(
        config: Config,
        secrets: Secrets,
        store: Store,
        metrics: Metrics,
        access_log: AccessLog,
        centrifugo_api: Option<CentrifugoApi>,
    ) -> App {
        let signer = Signer::new(&config.tokens, &secrets, &config.centrifugo.user_channels);
        let verifier = Verifier::new(&config.tokens, &secrets);
        let store = store.with_timings(metrics.store_timings());
        let limits = Limits::new(&config.limits);
        App {
            config,
            signer,
            verifier,
            store,
            metrics,
            touch_throttle: TouchThrottle::default(),
            secrets,
            access_log,
            centrifugo_api,
            kick_wake: tokio::sync::Notify::new(),
            limits,
            ready: AtomicBool::new(true),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The operator actions over this app's store, kicks queued when revocation is active.
    pub fn actions(&self) -> crate::actions::Actions<'_> {
        crate::actions::Actions {
            store: &self.store,
            kicks: self.centrifugo_api.is_some(),
        }
    }

    /// Marks the service as draining.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}

/// Installs `secrets.initial_api_key` when given, else generates a first key into
/// [`FIRST_KEY_FILE`] when the store has none.
async fn install_first_key(config: &Config, store: &Store) -> Result<(), StartError> {
    let now = crate::now_unix();
    if let Some(SecretSource::Env(key)) = &config.secrets.initial_api_key {
        if store.ensure_api_key(INITIAL_KEY_NAME, key, now).await? {
            tracing::info!(
                name = INITIAL_KEY_NAME,
                "installed the API key from CHATSDK_AUTH_SECRETS__INITIAL_API_KEY"
            );
        }
        return Ok(());
    }
    if store.count_api_keys().await? > 0 {
        return Ok(());
    }
    // File first (create_new refuses to overwrite), then the row: a crash in between leaves
    // a key file with no row, which the next start replaces, never a row nobody can read.
    let key = api_key::generate();
    let path = config.data_dir.join(FIRST_KEY_FILE);
    if path.exists() {
        std::fs::remove_file(&path).map_err(|source| {
            StartError::FirstKey(SecretsError::Write {
                path: path.clone(),
                source,
            })
        })?;
    }
    secrets::write_new(&path, &key).map_err(StartError::FirstKey)?;
    if let Err(e) = store.insert_api_key(FIRST_KEY_NAME, &key, now).await {
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    tracing::info!(path = %path.display(), name = FIRST_KEY_NAME, "created the first API key (mode 0600); read it from that file");
    Ok(())
}
