//! chatsdk-auth: the token sidecar that turns chat identities into ChatSDK and Centrifugo tokens.
//!
//! # Layout
//! The lower layers come first, from [`error_chain`] to [`jwt`], each importing only lower
//! layers listed above it; from [`http`] on the order is one of reading, and what may import
//! what is the invariants below. tests/layering/ checks both.
//! - [`error_chain`]: error causes kept as values, and the one way a cause chain is printed.
//! - [`api_key`]: the API-key format, generation, hashing, display prefix and name rules.
//! - [`channels`]: channel rules (templates over the user's id and `custom`), compiled once and
//!   matched without allocating; Centrifugo's channel-name rules. A leaf: imports nothing of ours.
//! - [`segments`]: segments over `custom`: the declared field names' rule and the `where`
//!   conditions (`field=value`, values compared as JSON values). A leaf.
//! - [`centrifugo::protocol`]: Centrifugo's vocabulary: the proxy callbacks, the refusal
//!   reasons with their error and terminal disconnect codes, the server-API methods. A leaf.
//! - [`tls`]: outbound TLS on rustls: PostgreSQL's `sslmode` as libpq means it and whom it
//!   authenticates (`params`), the rustls configurations (`config`) and verifiers (`verify`),
//!   the https client of Centrifugo's server API. A leaf.
//! - [`config`]: figment layering (defaults < `config/chatsdk-auth.toml` < `CHATSDK_AUTH_*`
//!   env) into a validated [`Config`]; split into `raw`, `load`, `validate`, `redact` and
//!   `catalogue` (the one table of secrets, and the zeroised [`config::Secret`]).
//! - [`limits`]: the rate limits (`governor` keyed limiters) and the marked addresses, in the
//!   sharded bounded tables of `limits/store.rs` that never admit blindly when full.
//! - [`secrets`]: the catalogue's secrets (signing keys, proxy secret, tokens, API keys): read
//!   from env or files, generated (mode 0600) on first start; `check-config` runs the same walk.
//! - [`telemetry`]: tracing initialisation, the non-blocking log writer (lines are dropped,
//!   never waited for, when stderr stalls) and the access log.
//! - [`metrics`]: the owned Prometheus registry, every metric the service exports and their
//!   closed label sets (`metrics/labels.rs`, one strum-derived enum each).
//! - [`centrifugo::api`]: the client of Centrifugo's server API (`disconnect`, `batch`,
//!   `info`): timeouts, bounded retries, metrics; the key never logged.
//! - [`store`]: persistence behind one type ([`store::Store`]): SQLite (`store/sqlite/`:
//!   connections, queries, migrations) by default, PostgreSQL for several replicas (its
//!   concurrent profile and API-key reads coalesced into shared statements, `postgres_batch`);
//!   the segment index over the declared `custom` fields (`store/segments.rs`); the one session verdict (`store/session.rs`).
//! - [`keys`]: signing keys of both token kinds (HMAC secrets, RS256/ES256/EdDSA key pairs):
//!   `material`, `schedule`, the `ring` file (locked, replaced atomically), the ring `shared`
//!   in PostgreSQL (`sealed` with AES-256-GCM under the key-encryption secret, seeded by the
//!   first replica, [`keys::rewrap`]), where it lives ([`keys::RingStore`]), the one `rotation`
//!   and the `live` ring a server re-reads ([`keys::LiveKeys`]).
//! - [`jwt`]: `claims`, [`jwt::Signer`], [`jwt::Verifier`] (REST tokens and wsTokens), and the
//!   `prepared` HMAC path beside its differential test.
//! - [`http`]: request body reading, the JSON error envelope, API-key authentication, the one
//!   bearer parser and shared-secret comparison, the request fields several routes read.
//! - [`tokens`]: `POST /tokens`: request validation, user upsert, minting of both tokens.
//! - [`subscription_tokens`]: `POST /tokens/subscription`: subscription JWTs for the channels
//!   the channel rules allow.
//! - [`proxy`]: Centrifugo's HTTP proxy callbacks (connect, refresh, subscribe, sub_refresh);
//!   `proxy/wire.rs` the wire types (a call's outcome is [`metrics::ProxyOutcome`]).
//! - [`verify`]: `GET /verify` (forward auth), `POST /introspect` (RFC 7662) and
//!   `GET /.well-known/jwks.json` (served from the key ring in memory).
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/openapi.json` (the committed `src/openapi.json`).
//! - [`actions`]: the operator actions (disable, revoke, delete, API keys), one implementation
//!   shared by the CLI and the admin API; kicks are queued with the change; `actions/bulk.rs`
//!   the bulk actions by segment, in bounded batches.
//! - [`outbox`]: delivery of queued kicks through [`centrifugo::api`] (the server's loop, and
//!   the CLI's direct attempt).
//! - [`admin`]: the admin HTTP API (`/admin/...`, bearer token) over [`actions`].
//! - [`console`]: the operator console (`GET /admin/`), a static page, stylesheet, script and
//!   icon embedded in the binary, client of the admin API; the strict headers of `/admin/` answers.
//! - [`router`]: the single route table (each route's `route` label, path and policy: guard,
//!   body, rejection counter), the guards enforced before every handler (`router/guard.rs`,
//!   with its glue to the limits the replicas share in `router/shared.rs`), the rejection
//!   accounting (`router/rejections.rs`), the typed context each route family's handler gets (`router/context.rs`: only the
//!   services its routes need, the checked caller, never the [`App`]); per-request timing, the
//!   request deadline, access log and metrics. Handlers import `router::context`, never each
//!   other, never `app` (tests/layering/).
//! - [`server`]: the accept loop over already-bound listeners (main, metrics, admin), with
//!   graceful drain, and the kick delivery loop beside it.
//! - [`shutdown`]: the SIGTERM/SIGINT future.
//! - [`app`]: [`App`], the only shared state, and [`App::start`], the composition root.
//! - [`centrifugo::config`]: the Centrifugo config generated from this sidecar's settings.
//! - [`doctor`]: `chatsdk-auth doctor`, the end-to-end check of revocation.
//! - [`healthcheck`]: `chatsdk-auth healthcheck`, `GET /readyz` over loopback for container
//!   health checks and exec probes (exit 0/1); reads the configuration only.
//! - [`cli`]: the command-line definition and the operator subcommands (`cli/users.rs`: `user
//!   ...`, by segment and in bulk too; `cli/keys.rs`: `keys list|rotate|rewrap`, on the ring
//!   where it lives); `main.rs` dispatches.
//!
//! # Architecture invariants
//! - The lower layers (`error_chain`, `api_key`, `channels`, `segments`, `centrifugo::protocol`, `config`,
//!   `limits`, `secrets`, `tls`, `telemetry`, `metrics`, `centrifugo::api`, `store`, `keys`, `jwt`)
//!   never import handlers (`tokens`, `subscription_tokens`, `proxy`, `verify`, `ops`, `admin`,
//!   `console`),
//!   `router`, `app` or `cli`. Every closed label set is one enum whose values are derived, and
//!   the metrics registry creates every value at startup: its own sets are in `metrics/labels.rs`,
//!   Centrifugo's in the leaf `centrifugo/protocol.rs` (which metrics, `actions`,
//!   `centrifugo::config` and the proxy handlers import), and the router hands it the `route`
//!   labels. Metrics never imports a handler family.
//! - No import cycles between files, beyond a module and its own children.
//! - Only `http/`, `router` and `ops` name HTTP status codes; only `centrifugo/protocol.rs`
//!   knows Centrifugo's proxy codes. Rejections are counted where each route's policy says
//!   (`router/rejections.rs`; proxy decisions by `proxy`); `http::ApiError` maps errors to the wire,
//!   once.
//! - `jwt` and `store` know nothing about HTTP.
//! - Nothing reads environment variables or configuration files after [`Config::load`] and
//!   [`secrets::Secrets::load`] return, except the key ring (its file, or its row on
//!   PostgreSQL), which [`keys::LiveKeys`] re-reads when it changes (that is how a rotation
//!   reaches a running server).
//! - No global statics: state hangs off [`App`] or its owner (the log's count of dropped
//!   lines is the sink's, `telemetry/sink.rs`, handed to the metrics registry). The one
//!   `static` is the access log's per-thread cache of the formatted current second.
//! - No API key, secret or full token is ever logged, returned in an error or used as a label.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod actions;
pub mod admin;
pub mod api_key;
pub mod app;
pub mod centrifugo;
pub mod channels;
pub mod cli;
pub mod config;
pub mod console;
pub mod doctor;
pub mod error_chain;
pub mod healthcheck;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod metrics;
pub(crate) mod ops;
pub mod outbox;
pub mod proxy;
pub mod router;
pub mod secrets;
pub mod segments;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod subscription_tokens;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub(crate) mod verify;

pub use app::App;
pub use config::Config;
pub use server::{serve_on, Listeners};

/// Milliseconds since the Unix epoch: the clock of the outbox's claims and the shared limit
/// buckets. [`now_unix`] is the same clock in seconds.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch, the unit of every timestamp the service stores or signs:
/// [`now_unix_ms`] in whole seconds, so the two never disagree on which second it is.
pub fn now_unix() -> i64 {
    now_unix_ms().div_euclid(1000)
}
