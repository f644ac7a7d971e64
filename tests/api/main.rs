//! Integration tests, one binary: the real server over loopback HTTP, real SQLite files in
//! temp dirs, a private PostgreSQL, the built binary as a process and a real Prometheus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The admin API, route by route.
mod admin;
/// The built binary: first start, CLI against a running server, SIGTERM, log hygiene.
mod binary;
/// Centrifugo: proxy contract tests and the generated Centrifugo config.
mod centrifugo;
/// Channel rules: POST /tokens/subscription, the rules in both channel proxies, subscription
/// tokens against the generated Centrifugo config.
mod channels;
/// The operator console: its files and headers, `GET /admin/audit` on both backends and
/// `GET /admin/overview`.
mod console;
/// The operator console in a real headless Chromium through WebDriver (ChromeDriver).
mod console_browser;
/// The HTTP edge: connection cap, unread bodies, half-close, key headers, cache, /metrics.
mod edge;
/// Active revocation: the server-API client, kicks from every action and entry point.
mod enforce;
/// A real HTTP server speaking Centrifugo's server API, recording calls, failing on demand.
mod fake_centrifugo;
/// TestApp (in-process server on port 0, on either backend), independent JWT verification,
/// HTTP and metrics helpers.
mod helpers;
/// Signing keys: every algorithm through PyJWT, startup refusal, rotation end to end.
mod keys;
/// Rate limits on POST /tokens (never on the proxies).
mod limits;
/// A write lock held by another process stalls nothing; readiness follows writes.
mod locked;
/// A real nginx with `auth_request /verify` in front of an upstream.
mod nginx;
/// The committed OpenAPI document against the router and the running server.
mod openapi;
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
/// POST /tokens: the contract on SQLite and PostgreSQL (claims, upsert, validation, keys,
/// persistence), and SQLite's migrations.
mod tokens;
/// GET /verify, POST /introspect and the JWKS: contracts on both backends.
mod verify;
/// The SQLite WAL stays bounded under load; unchanged profiles are not rewritten.
mod wal;
