//! [`App`]: application-wide state, built once at startup and shared by every request, and
//! [`App::start`], the composition root that loads secrets, opens the store and installs the
//! first API key.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api_key;
use crate::centrifugo::api::{CentrifugoApi, CentrifugoApiError};
use crate::config::{Config, SecretSource};
use crate::http::auth::TouchThrottle;
use crate::jwt::{Signer, Verifier};
use crate::keys::{KeyError, LiveKeys};
use crate::limits::{self, Limited, Limits, Marks};
use crate::metrics::Metrics;
use crate::router::table::ROUTE_LABELS;
use crate::secrets::{self, Secrets, SecretsError};
use crate::store::{audit_event, AuditEvent, Store, StoreError};
use crate::telemetry::AccessLog;

/// Name of the API key generated on first start when no key exists.
pub const FIRST_KEY_NAME: &str = "default";
/// File (in the data directory) holding the first generated key.
pub const FIRST_KEY_FILE: &str = "api-key.txt";
/// Name under which `secrets.initial_api_key` is stored.
pub const INITIAL_KEY_NAME: &str = "initial";
/// Audit events waiting for the store; beyond this, trips are dropped (they are sampled).
const AUDIT_QUEUE: usize = 1024;

/// How often housekeeping folds the logged segment changes into the counts (PostgreSQL), and
/// how many batches one fold moves at most.
const SEGMENT_FOLD_EVERY: Duration = Duration::from_secs(30);
const SEGMENT_FOLD_ROUNDS: u32 = 100;

pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Mints REST tokens and wsTokens (keys built once).
    pub signer: Signer,
    /// Verifies wsTokens for the proxy callbacks (Centrifugo's rules) and REST tokens for
    /// `/verify` and `/introspect`.
    pub verifier: Verifier,
    /// The signing keys of both kinds, re-read when the key ring file changes.
    pub keys: Arc<LiveKeys>,
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
    /// The last minutes of the token counters, for `GET /admin/overview`.
    pub recent: crate::metrics::recent::Recent,
    /// Rate-limit refusals noted for the audit trail (sampled).
    pub trips: TripLog,
    /// False once shutdown starts, so `/readyz` sends load balancers elsewhere while draining.
    ready: AtomicBool,
}

/// Rate-limit refusals raised on the request path, queued as audit events that
/// [`App::housekeeping`] writes, so that a 429 never waits for the store.
pub struct TripLog {
    queue: tokio::sync::mpsc::Sender<AuditEvent>,
    pending: Mutex<Option<tokio::sync::mpsc::Receiver<AuditEvent>>>,
    /// Per limit and client address, until when its last trip stands for the next ones (a
    /// minute): every address that trips gets its row, once a minute, in a bounded table.
    audited: Marks,
    hasher: RandomState,
}

impl TripLog {
    fn new(max_addresses: usize) -> TripLog {
        let (queue, pending) = tokio::sync::mpsc::channel(AUDIT_QUEUE);
        TripLog {
            queue,
            pending: Mutex::new(Some(pending)),
            audited: Marks::new(max_addresses),
            hasher: RandomState::new(),
        }
    }

    /// Notes a rate-limit refusal: the first of each minute per limit and client address
    /// becomes an audit event (so a flood of 429s from one address costs one write a minute,
    /// and every address that trips is on the trail); every one is counted by its handler.
    pub fn note(&self, l: Limited, client: IpAddr, key_name: Option<&str>) {
        let key = self
            .hasher
            .hash_one((l.limit.label(), limits::client_key(client)));
        if self.audited.remaining(key).is_some() {
            return;
        }
        self.audited
            .mark(key, std::time::Instant::now() + Duration::from_secs(60));
        let now = crate::now_unix();
        let event = AuditEvent {
            at: now,
            event: audit_event::RATE_LIMIT_TRIPPED.into(),
            actor: key_name.unwrap_or("anonymous").into(),
            target_kind: None,
            target: None,
            source: Some(client.to_string()),
            detail: Some(format!(
                "{} (first refusal this minute from this address; later ones are counted in chatsdk_auth_token_requests_rejected_total)",
                l.limit.label()
            )),
        };
        if self.queue.try_send(event).is_err() {
            tracing::debug!("audit queue full; a rate-limit trip was not recorded");
        }
    }
}

/// Why the service could not start; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load the secrets")]
    Secrets(#[from] SecretsError),
    #[error("cannot use the signing keys")]
    Keys(#[from] KeyError),
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
        let metrics = Metrics::new(ROUTE_LABELS, access_log.dropped_lines())?;
        let metrics = match &config.segments.metrics_label {
            Some(l) => metrics.with_segment_label(&l.field, &l.values)?,
            None => metrics,
        };
        let store = Store::open(&config.store).await?;
        store.declare_segments(&config.segments.fields).await?;
        let keys = Arc::new(LiveKeys::open(&config, &secrets, &store).await?);
        install_first_key(&config, &store).await?;
        let api = CentrifugoApi::from_config(
            &config,
            &secrets.centrifugo_api_key,
            Some(metrics.centrifugo_api.clone()),
        )
        .map_err(StartError::CentrifugoApi)?;
        Ok(Arc::new(App::build(
            config, secrets, keys, store, metrics, access_log, api,
        )))
    }

    /// Builds the application from parts that have already been loaded and checked.
    pub fn build(
        config: Config,
        secrets: Secrets,
        keys: Arc<LiveKeys>,
        store: Store,
        metrics: Metrics,
        access_log: AccessLog,
        centrifugo_api: Option<CentrifugoApi>,
    ) -> App {
        let signer = Signer::new(
            &config.tokens,
            keys.clone(),
            &secrets.subscription_key,
            &config.centrifugo.channel_rules,
        );
        let verifier = Verifier::new(&config.tokens, keys.clone());
        let store = store.with_timings(metrics.store_timings());
        keys.export_refused_loads(metrics.key_ring_loads_refused.clone());
        let trips = TripLog::new(config.limits.max_tracked_keys);
        let limits = Limits::exported(&config.limits, |l| {
            Some(metrics.rate_limit_untracked.with_label_values(&[l.label()]))
        });
        App {
            config,
            signer,
            verifier,
            keys,
            store,
            metrics,
            touch_throttle: TouchThrottle::default(),
            secrets,
            access_log,
            centrifugo_api,
            kick_wake: tokio::sync::Notify::new(),
            limits,
            recent: crate::metrics::recent::Recent::new(crate::now_unix()),
            trips,
            ready: AtomicBool::new(true),
        }
    }

    /// Background work for a serving process: writes queued audit events, prunes the audit
    /// trail to `audit.retention_days` at start and then hourly, samples the token counters
    /// for the admin overview and folds its segment counts. Runs until dropped.
    pub async fn housekeeping(self: Arc<App>) {
        let pending = self
            .trips
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut pending) = pending else {
            return;
        };
        let mut prune = tokio::time::interval(Duration::from_secs(3600));
        let mut sample = tokio::time::interval(crate::metrics::recent::SAMPLE_EVERY);
        let mut fold = tokio::time::interval(SEGMENT_FOLD_EVERY);
        loop {
            tokio::select! {
                event = pending.recv() => match event {
                    Some(e) => {
                        if let Err(err) = self.store.append_audit(&e).await {
                            tracing::warn!(error = %crate::error_chain::Chain(&err), event = %e.event, "cannot write an audit event");
                        }
                    }
                    None => return,
                },
                _ = prune.tick() => {
                    self.prune_audit().await;
                    self.prune_shared_limits().await;
                }
                _ = sample.tick() => self.recent.sample(&self.metrics, crate::now_unix()),
                _ = fold.tick() => self.fold_segment_counts().await,
            }
        }
    }

    /// Moves the logged segment changes into the overview's counts (PostgreSQL; nothing on
    /// SQLite).
    async fn fold_segment_counts(&self) {
        if let Err(e) = self.store.fold_segment_counts(SEGMENT_FOLD_ROUNDS).await {
            tracing::warn!(error = %crate::error_chain::Chain(&e), "cannot fold the segment counts");
        }
    }

    /// Forgets the shared limit buckets that are full again (PostgreSQL; nothing on SQLite).
    async fn prune_shared_limits(&self) {
        if let Err(e) = self.store.prune_shared_limits().await {
            tracing::warn!(error = %crate::error_chain::Chain(&e), "cannot prune the shared limit buckets");
        }
    }

    async fn prune_audit(&self) {
        let Some(before) = self.config.audit.prune_before(crate::now_unix()) else {
            return;
        };
        match self.store.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned audit events past audit.retention_days"),
            Err(e) => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), "cannot prune the audit trail")
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The operator actions over this app's store, kicks queued when revocation is active.
    pub fn actions(&self) -> crate::actions::Actions<'_> {
        crate::actions::Actions::new(&self.store, self.centrifugo_api.is_some(), "admin")
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
        let event = startup_event(audit_event::API_KEY_ROTATED, INITIAL_KEY_NAME, now);
        if store
            .ensure_api_key(INITIAL_KEY_NAME, key.expose(), now, &event)
            .await?
        {
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
    let key = api_key::generate(&config.app.id);
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
    // Under the key ring's lock on PostgreSQL: of replicas starting together on an empty
    // database, one creates the key and the others find it and go on.
    let event = startup_event(audit_event::API_KEY_CREATED, FIRST_KEY_NAME, now);
    match store
        .insert_first_api_key(FIRST_KEY_NAME, &key, now, &event)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            let _ = std::fs::remove_file(&path);
            tracing::info!("another replica created the first API key; none created here");
            return Ok(());
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
    }
    tracing::info!(path = %path.display(), name = FIRST_KEY_NAME, "created the first API key (mode 0600); read it from that file");
    Ok(())
}

/// An API-key event done by the service itself at startup.
fn startup_event(event: &str, key_name: &str, now: i64) -> AuditEvent {
    AuditEvent::new(now, event, "startup", "api_key", key_name)
}
