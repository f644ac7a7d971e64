//! What a PostgreSQL connection's TLS turned out to be, said once at startup: under libpq's
//! default `sslmode=prefer` a server that offers no TLS is used in plaintext, and an encrypted
//! connection is not authenticated; neither should go unnoticed.

use super::postgres::PgStore;
use crate::tls::{PgTls, SslMode};

/// `host:port` of each server the connection string names (no user, password or database).
pub(super) fn describe_server(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = pg.get_ports();
    pg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Logs how the pool's connections to `server` are protected, from PostgreSQL's own view
/// (`pg_stat_ssl`): a warning for plaintext to a host that is not the loopback or a socket, a
/// note for `prefer`/`require` (encrypted, server not authenticated). One query, at startup.
pub(super) async fn say_how_encrypted(store: &PgStore, server: &str, tls: &PgTls) {
    let Ok(client) = store.client().await else {
        return;
    };
    let ssl: bool = match client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
    {
        Ok(ssl) => ssl,
        Err(_) => return,
    };
    let local = server.split(", ").all(|s| {
        s.starts_with('/')
            || s.starts_with("127.")
            || s.starts_with("localhost:")
            || s.starts_with("[::1]:")
            || s.starts_with("::1:")
    });
    match (ssl, tls.mode) {
        (false, _) if !local => tracing::warn!(
            server,
            sslmode = %tls.mode,
            "the PostgreSQL connection is not encrypted: add sslmode=verify-full and sslrootcert to storage.postgres_url"
        ),
        (true, SslMode::Prefer | SslMode::Require) => tracing::info!(
            server,
            sslmode = %tls.mode,
            "the PostgreSQL connection is encrypted but the server is not authenticated: sslmode=verify-full checks its certificate"
        ),
        _ => {}
    }
}
