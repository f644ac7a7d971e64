//! The rustls client configurations: a PostgreSQL connection's for its [`PgTls`] settings
//! (its verifier chosen by the mode), and the https client's of Centrifugo's server API; the
//! CA, certificate and key files they read.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::verify::{ChainOnly, EncryptOnly};
use super::{provider, PgTls, SslMode, TlsError};

/// The rustls configuration of a PostgreSQL connection with these settings. Reads the CA and
/// client-certificate files (so a missing file stops startup, not the first query).
pub fn postgres_client_config(tls: &PgTls) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.mode {
        // Never used for `disable` (tokio-postgres does not start TLS); any verifier will do.
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(EncryptOnly(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(tls.root_cert.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(TlsError::Verifier)?;
            if tls.mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match &tls.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(certs(cert)?, private_key(key)?)
            .map_err(TlsError::Rustls),
    }
}

/// The tokio-postgres connector for these settings.
pub fn postgres_connector(
    tls: &PgTls,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, TlsError> {
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
        postgres_client_config(tls)?,
    ))
}

/// The rustls configuration of the https client of Centrifugo's server API: the certificate
/// must chain to `ca_file`'s CAs (or the system's) and name the URL's host.
pub fn https_client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth();
    Ok(config)
}

/// The CAs of `file`, or the system's when `None`.
fn roots(file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            for cert in certs(path)? {
                store.add(cert).map_err(TlsError::Rustls)?;
            }
        }
        None => {
            // Unreadable entries in the system store are skipped, as every TLS client does.
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        what: "certificates",
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what: "PEM certificate",
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "PEM private key",
            path: path.to_path_buf(),
        },
        source => TlsError::Read {
            what: "the private key",
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::tls::SslMode;

    #[test]
    fn missing_files_are_named() {
        let tls = PgTls {
            mode: SslMode::VerifyFull,
            protection: crate::tls::Protection::Authenticated,
            root_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
            client_cert: None,
        };
        let e = postgres_client_config(&tls).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = https_client_config(Some(&empty)).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
