//! How a PostgreSQL pool's connections are protected, said where it matters. The protection
//! itself is the connector's, on every new pooled connection: each one is made with the
//! configured mode (the verifying modes make TLS mandatory and check the certificate in each
//! handshake), and a mode that authenticates nobody was admitted before connecting only for
//! loopback addresses and sockets, or because the configuration gave it up (src/tls/params.rs).

use crate::tls::{PgTls, Protection};

/// `host:port` of each server the connection string names (no user, password or database).
pub(super) fn describe_server(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = pg.get_ports();
    let addrs = pg.get_hostaddrs();
    pg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match addrs.get(i) {
                Some(addr) => format!("{host} ({addr}):{port}"),
                None => format!("{host}:{port}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// At every start: a warning when server authentication was given up for a host on the
/// network, naming the setting that gave it up.
pub(super) fn warn_at_start(server: &str, tls: &PgTls) {
    if tls.protection == Protection::Unauthenticated {
        tracing::warn!(
            server,
            sslmode = %tls.mode,
            "storage.postgres_accept_unauthenticated_server is set: the PostgreSQL server is not authenticated, so whoever is on the network path can answer as the database (accept any API key, undo revocations); use sslmode=verify-full with sslrootcert"
        );
    }
}
