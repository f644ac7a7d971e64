//! Integration tests, one binary: the real server over loopback HTTP, real SQLite files in
//! temp dirs, a private PostgreSQL, the built binary as a process and a real Prometheus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The admin API, route by route.
mod admin;
/// `app.id`: another application's key or token is refused as such.
mod application;
/// An admin change and its audit row commit together, or neither does.
mod audit_tx;
/// The built binary: first start, CLI against a running server, SIGTERM, log hygiene.
mod binary;
/// A real Caddy with `forward_auth` to /verify in front of an upstream.
mod caddy;
/// Centrifugo: proxy contract tests, field by field from Centrifugo's docs.
mod centrifugo;
/// The generated Centrifugo config against Centrifugo's rules and the shipped configs.
mod centrifugo_config;
/// Test CAs and server certificates (rcgen), as PEM files.
mod certs;
/// Channel rules: POST /tokens/subscription, the rules in both channel proxies, subscription
/// tokens against the generated Centrifugo config.
mod channels;
/// Coalesced PostgreSQL lookups: same answers as single lookups, fresh, 503 in an outage.
mod coalesce;
/// The operator console: its files and headers, `GET /admin/audit` on both backends and
/// `GET /admin/overview`.
mod console;
/// The operator console in a real headless Chromium through WebDriver (ChromeDriver).
mod console_browser;
/// The console's segment search, dry run and bulk revoke in headless Chromium.
mod console_segments;
/// The HTTP edge: connection cap, unread bodies, half-close, key headers, cache, /metrics.
mod edge;
/// Active revocation: the server-API client, kicks from every action and entry point.
mod enforce;
/// The sidecar's environment, CLI and store pointed at a fake Centrifugo (enforce tests).
mod enforce_env;
/// Enforcement for operators: app-wide revocation, doctor, no secret in any log.
mod enforce_ops;
/// A real HTTP server speaking Centrifugo's server API, recording calls, failing on demand.
mod fake_centrifugo;
/// First contact on both backends: integer user ids, blank fields, PHP's empty `custom`, a
/// revoked API key that says so.
mod first_contact;
/// The route table's guards: the failed-auth limit on every API-key route, `Allow` from the table.
mod guards;
/// `chatsdk-auth healthcheck` against the real server: 0 while ready, 1 otherwise.
mod healthcheck;
/// TestApp (in-process server on port 0, on either backend), independent JWT verification,
/// HTTP and metrics helpers.
mod helpers;
/// `segments.info_fields` in the wsToken and the connect/refresh answers; none by default.
mod info_fields;
/// Concurrent key rotations (admin API, CLI beside the server): no key is ever lost.
mod key_rotation;
/// A key ring row named by the key-encryption secret's former id opens, and is sealed again.
mod keyring_legacy;
/// Signing keys in PostgreSQL: replicas share one encrypted ring, rotations, rewrap.
mod keyring_pg;
/// Signing keys: every algorithm through PyJWT, startup refusal, rotation end to end.
mod keys;
/// `keys list` only reads: nothing created on an empty data directory or database.
mod keys_list;
/// Rate limits on POST /tokens (never on the proxies).
mod limits;
/// Each listener's own accept task and connection budget, under a real connection flood.
mod listeners;
/// A write lock held by another process stalls nothing; readiness follows writes.
mod locked;
/// A stalled log reader stalls no request; the lines it could not take are counted.
mod log_stall;
/// SQLite's schema migrations: old databases migrated in place, unsafe or newer ones refused.
mod migrations;
/// What a test needs beyond the toolchain, SQLite and loopback: `need!`, one line and a skip
/// when run alone, a failure under the full test command.
mod need;
/// A network namespace of the test's own, reached over a veth pair.
mod netns;
/// A real nginx with `auth_request /verify` in front of an upstream.
mod nginx;
/// The committed OpenAPI document against the router and the running server.
mod openapi;
/// Reading src/openapi.json: operations, responses, the error codes each allows.
mod openapi_doc;
/// The running server's refusals, each documented for its operation.
mod openapi_live;
/// Health, readiness, metrics endpoints and routing errors.
mod ops;
/// A private PostgreSQL server for the tests.
mod pg;
/// The PostgreSQL backend beyond the token contract: shared replicas, outage and recovery.
mod postgres;
/// The built binary and other programs as child processes; free ports for programs that
/// need one.
mod process;
/// Observability end to end: the built binary scraped by a real Prometheus, the dashboard's
/// queries and the alert rules evaluated against what the traffic produced.
mod prometheus;
/// proptest: parsers, verifier and HTTP never panic or 5xx; accepted bodies round-trip.
mod props;
/// Every secret refused alike by `serve` and `check-config`: short env values, open files.
mod secrets;
/// Segments over `custom` on both backends: queries, the CLI and the admin API over them.
mod segments;
/// Bulk actions by segment on both backends: dry run, expected count, a re-run after a crash.
mod segments_bulk;
/// The overview's users per value of each declared segment field, on both backends.
mod segments_counts;
/// Bulk actions by segment over the admin API, on both backends: dry run, 409, refusals.
mod segments_http;
/// `segments.metrics_label`: the POST /tokens series by a bounded segment label.
mod segments_metrics;
/// A bulk disable of 10,000 users: each kicked once, refused at connect, /tokens answering.
mod segments_scale;
/// PostgreSQL's segments upgraded to compact keys: every old entry found after the start.
mod segments_upgrade;
/// Abuse limits the replicas share through PostgreSQL: one budget for N replicas.
mod shared_limits;
/// The shipped config file pins no default; the generated Centrifugo config follows the
/// listen address.
mod shipped_config;
/// The token guide's Node, Python, Ruby and PHP backends, unchanged, against the built binary.
mod stacks;
/// Store failures on the wire and in the log: fixed conflict sentences, no panic on a bad
/// row, the whole cause chain logged.
mod store_errors;
/// Outbound TLS: PostgreSQL's sslmode against a TLS server, kicks over https.
mod tls;
/// POST /tokens: the contract on SQLite and PostgreSQL (shape, claims, upsert, persistence).
mod tokens;
/// POST /tokens refusals on both backends: validation, API keys, media type and size,
/// disabled and revoked users; nothing written.
mod tokens_refusals;
/// Server-side channels: a user id never moves a channel into another namespace.
mod user_channels;
/// GET /verify, POST /introspect and the JWKS: contracts on both backends.
mod verify;
/// The SQLite WAL stays bounded under load; unchanged profiles are not rewritten.
mod wal;
