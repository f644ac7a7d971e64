//! `chatsdk-auth healthcheck`: asks the running server's `GET /readyz` over loopback and exits
//! 0 on 200, 1 otherwise, so a container needs no curl for its health check (Docker's
//! `HEALTHCHECK`, Kubernetes exec probes).
//!
//! It reads the configuration only (never the secrets, the store or the key ring), so it works
//! on a read-only root file system, beside a server holding the store, and costs a few
//! milliseconds.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::config::validate::local_address_of;
use crate::config::Config;

/// Why the health check failed (exit 1).
#[derive(Debug, Error)]
pub enum HealthError {
    #[error("cannot start the runtime of the health check")]
    Runtime(#[source] std::io::Error),
    #[error("cannot build the HTTP client of the health check")]
    Client(#[source] reqwest::Error),
    #[error("{url} did not answer within {timeout_ms} ms")]
    Request {
        url: String,
        timeout_ms: u64,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    NotReady {
        url: String,
        status: u16,
        body: String,
    },
}

/// The `/readyz` URL of the server this configuration describes: `server.listen`, a wildcard
/// address reached through loopback.
pub fn readyz_url(config: &Config) -> String {
    readyz_url_of(config.server.listen)
}

fn readyz_url_of(listen: SocketAddr) -> String {
    format!("http://{}/readyz", local_address_of(listen))
}

/// Asks `url` once, within `timeout`; `Ok` with the body on 200.
pub fn check(url: &str, timeout: Duration) -> Result<String, HealthError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HealthError::Runtime)?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Loopback only: an HTTP(S)_PROXY in the container's environment must not apply.
            .no_proxy()
            .build()
            .map_err(HealthError::Client)?;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request_error = |source| HealthError::Request {
            url: url.to_string(),
            timeout_ms,
            source,
        };
        let resp = client.get(url).send().await.map_err(request_error)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(request_error)?;
        if status == 200 {
            Ok(body)
        } else {
            // The readiness body names the reason (`draining`, `store_read_only`...); never a secret.
            Err(HealthError::NotReady {
                url: url.to_string(),
                status,
                body: body.chars().take(300).collect(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_asked_over_loopback() {
        let url = |a: &str| readyz_url_of(a.parse().unwrap());
        assert_eq!(url("0.0.0.0:8081"), "http://127.0.0.1:8081/readyz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/readyz");
        assert_eq!(url("10.1.2.3:8081"), "http://10.1.2.3:8081/readyz");
    }

    #[test]
    fn nothing_listening_is_a_failure_naming_the_url() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let url = readyz_url_of(addr);
        let err = check(&url, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(err, HealthError::Request { .. }), "{err:?}");
        assert!(err.to_string().contains(&url), "{err}");
    }
}
