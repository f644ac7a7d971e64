//! Outbound TLS, on rustls with the aws-lc-rs provider: PostgreSQL's `sslmode` with libpq's
//! meanings and who it authenticates, and the https client of Centrifugo's server API. One job
//! per file: [`params`] reads libpq's TLS parameters out of a connection string and decides
//! whether the mode may be used for its hosts, [`config`] builds the rustls client
//! configurations, [`verify`] holds the certificate verifiers of the modes that check less
//! than webpki.
//!
//! libpq's modes (<https://www.postgresql.org/docs/current/libpq-ssl.html>, table 34.1):
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` | when the server offers TLS | no |
//! | `require` | always | no; as `verify-ca` when `sslrootcert` is given (libpq does the same) |
//! | `verify-ca` | always | chain to a trusted CA |
//! | `verify-full` (our default to a host on the network) | always | chain to a trusted CA and the host name (or IP) of the URL |
//!
//! `disable`, `prefer` and `require` authenticate nobody: they start only when every host is a
//! loopback address or a Unix socket, unless the configuration gives that up explicitly
//! ([`Protection::Unauthenticated`]). Without certificate checks the handshake's signatures are
//! still verified (only the chain and name checks are skipped).
//!
//! A leaf: imports nothing of this crate.

mod config;
mod params;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use config::{https_client_config, postgres_client_config, postgres_connector};
pub use params::{split_postgres_url, PgTls, Protection, SslMode};

/// Why outbound TLS cannot be configured. Messages name the parameter and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "sslmode={0} is not supported (use disable, prefer, require, verify-ca or verify-full)"
    )]
    BadMode(String),
    #[error("sslmode={0} does not authenticate the server, and storage.postgres_url names a host that is not a loopback address (127.0.0.0/8, ::1) or a Unix socket: use sslmode=verify-full with sslrootcert=<the server's CA file> (a host name, localhost included, is never taken for the loopback), or set storage.postgres_accept_unauthenticated_server = true to let whoever is on the network path answer as the database")]
    Unauthenticated(SslMode),
    #[error("{0} is not supported by chatsdk-auth (supported TLS parameters: sslmode, sslrootcert, sslcert, sslkey)")]
    Unsupported(String),
    #[error("sslcert and sslkey go together: give both or neither")]
    HalfClientCert,
    #[error("sslrootcert=system needs sslmode=verify-full (as in libpq): with the system's CAs only the host name says whose certificate it is")]
    SystemRootsNeedVerifyFull,
    #[error("the key=value connection string is malformed: {0}")]
    Malformed(&'static str),
    #[error("the connection string cannot be parsed")]
    Unparseable(#[source] url::ParseError),
    #[error("cannot read {what} from {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error(
        "no trusted root certificates: the system store is empty or unreadable; name a CA file"
    )]
    NoSystemRoots,
    #[error("the TLS configuration is refused")]
    Rustls(#[source] rustls::Error),
    #[error("cannot build the certificate verifier")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
