//! Integration tests: the real server over loopback HTTP, real SQLite files in temp dirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The built binary: first start, CLI against a running server, SIGTERM, log hygiene.
mod binary;
/// Centrifugo: proxy contract tests and the generated Centrifugo config.
mod centrifugo;
/// TestApp (in-process server on port 0), independent JWT verification, HTTP helpers.
mod helpers;
/// Health, readiness, metrics endpoints and routing errors.
mod ops;
/// A private PostgreSQL server for the tests.
mod pg;
/// The PostgreSQL backend: contract, shared replicas, outage and recovery.
mod postgres;
/// POST /tokens: contract, claims, upsert, validation, keys, persistence.
mod tokens;
/// The SQLite WAL stays bounded under load; unchanged profiles are not rewritten.
mod wal;
