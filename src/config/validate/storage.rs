//! `[storage]`, validated: the backend, its paths and, for PostgreSQL, the connection string
//! with its TLS parameters taken out and its protection decided (src/tls/params.rs).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::super::raw::RawStorage;
use super::super::StoreConfig;

/// `[storage]`: the data directory and the backend.
pub(super) fn storage(st: &RawStorage, p: &mut Vec<String>) -> (PathBuf, StoreConfig) {
    if st.data_dir.trim().is_empty() {
        p.push("storage.data_dir: must not be empty; set the directory for the database and generated secrets, such as \"data\"".into());
    }
    let data_dir = PathBuf::from(&st.data_dir);
    let store = match st.backend.as_str() {
        "sqlite" => StoreConfig::Sqlite {
            path: if st.sqlite_path.is_empty() {
                data_dir.join("chatsdk-auth.db")
            } else {
                PathBuf::from(&st.sqlite_path)
            },
            busy_timeout: Duration::from_millis(st.busy_timeout_ms),
        },
        "postgres" => {
            // The TLS parameters (libpq's sslmode, sslrootcert, sslcert, sslkey) are taken out
            // first: tokio-postgres knows only some of them, and a mode that authenticates nobody
            // starts only to local hosts unless given up explicitly (src/tls/params.rs).
            let (url, tls) = match crate::tls::split_postgres_url(
                &st.postgres_url,
                st.postgres_accept_unauthenticated_server,
            ) {
                Ok(split) => split,
                Err(e) => {
                    p.push(format!(
                        "storage.postgres_url: {e}; correct the connection string (the value is not shown)"
                    ));
                    (
                        String::new(),
                        crate::tls::PgTls {
                            mode: crate::tls::SslMode::VerifyFull,
                            protection: crate::tls::Protection::Authenticated,
                            root_cert: None,
                            client_cert: None,
                        },
                    )
                }
            };
            match tokio_postgres::Config::from_str(&url) {
                Ok(_) if !st.postgres_url.trim().is_empty() => {}
                _ => p.push("storage.postgres_url: must be a PostgreSQL connection string when storage.backend is \"postgres\"; set one such as postgres://chatsdk@127.0.0.1:5432/chatsdk?sslmode=verify-full (a password only through CHATSDK_AUTH_STORAGE__POSTGRES_URL; the value is not shown)".into()),
            }
            if st.postgres_pool_size == 0 || st.postgres_pool_size > 1024 {
                p.push(format!(
                    "storage.postgres_pool_size: {} is out of range; set a value from 1 to 1024",
                    st.postgres_pool_size
                ));
            }
            if st.postgres_timeout_ms < 10 || st.postgres_timeout_ms > 60_000 {
                p.push(format!(
                    "storage.postgres_timeout_ms: {} is out of range; set a value from 10 to 60000",
                    st.postgres_timeout_ms
                ));
            }
            if st.postgres_batch_max == 0 || st.postgres_batch_max > 1000 {
                p.push(format!(
                    "storage.postgres_batch_max: {} is out of range; set a value from 1 to 1000",
                    st.postgres_batch_max
                ));
            }
            if st.postgres_batch_window_us > 1000 {
                p.push(format!(
                    "storage.postgres_batch_window_us: {} is out of range; set a value from 0 to 1000",
                    st.postgres_batch_window_us
                ));
            }
            if st.postgres_lookup_connections > 64 {
                p.push(format!(
                    "storage.postgres_lookup_connections: {} is out of range; set a value from 0 to 64",
                    st.postgres_lookup_connections
                ));
            }
            StoreConfig::Postgres {
                url,
                tls,
                pool_size: st.postgres_pool_size,
                timeout: Duration::from_millis(st.postgres_timeout_ms),
                batch: super::super::PgBatch {
                    coalesce: st.postgres_coalesce,
                    max: st.postgres_batch_max,
                    window: Duration::from_micros(st.postgres_batch_window_us),
                    connections: st.postgres_lookup_connections,
                },
            }
        }
        other => {
            p.push(format!(
                "storage.backend: \"{other}\" is not supported; set \"sqlite\" or \"postgres\""
            ));
            StoreConfig::Sqlite {
                path: data_dir.join("chatsdk-auth.db"),
                busy_timeout: Duration::from_millis(st.busy_timeout_ms),
            }
        }
    };
    (data_dir, store)
}
