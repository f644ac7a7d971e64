//! Outbound TLS: PostgreSQL's `sslmode` with libpq's meanings, and the https client of
//! Centrifugo's server API, both on rustls with the aws-lc-rs provider.
//!
//! libpq's modes (<https://www.postgresql.org/docs/current/libpq-ssl.html>, table 34.1):
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (libpq's default, and ours) | when the server offers TLS | no |
//! | `require` | always | no; as `verify-ca` when `sslrootcert` is given (libpq does the same) |
//! | `verify-ca` | always | chain to a trusted CA |
//! | `verify-full` | always | chain to a trusted CA and the host name (or IP) of the URL |
//!
//! `sslrootcert` names a PEM file of CA certificates; without it (or with `system`) the
//! operating system's roots are trusted. `sslcert` and `sslkey` give a client certificate.
//! tokio-postgres understands only `disable`, `prefer` and `require`: [`split_postgres_url`]
//! takes these parameters out of the connection string, and the verification is done by the
//! rustls configuration [`postgres_connector`] builds. Without certificate checks the
//! handshake's signatures are still verified (only the chain and name checks are skipped).
//!
//! A leaf: imports nothing of this crate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, TlsError> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries plaintext first: never a choice worth offering. The value
            // is named only when it looks like a mode: never echo what could be a password.
            other => {
                let looks_like_a_mode =
                    other.len() <= 16 && other.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
                let shown = if looks_like_a_mode {
                    other.to_string()
                } else {
                    "(not shown)".into()
                };
                return Err(TlsError::BadMode(shown));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings of a PostgreSQL connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// The mode in force: as given, `prefer` when absent, and `require` with a root
    /// certificate file counts as `verify-ca` (libpq's rule).
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of CA certificates; `None` for the system roots.
    pub root_cert: Option<PathBuf>,
    /// `sslcert` and `sslkey`: a client certificate chain and its private key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Why outbound TLS cannot be configured. Messages name the parameter and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "sslmode={0} is not supported (use disable, prefer, require, verify-ca or verify-full)"
    )]
    BadMode(String),
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

/// The TLS parameters this module handles; tokio-postgres sees none of them except a
/// rewritten `sslmode`.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];
/// libpq TLS parameters that are not implemented: refused rather than silently ignored.
const UNSUPPORTED_KEYS: [&str; 4] = ["sslcrl", "sslcrldir", "sslpassword", "sslsni"];

/// Splits the TLS parameters out of `url` (`postgres://…?sslmode=…` or libpq's `key=value`
/// form). Returns the connection string for tokio-postgres, whose `sslmode` is `disable`,
/// `prefer` or `require` (the verifying modes become `require`: TLS is mandatory, and the
/// checks are rustls'), and the TLS settings.
pub fn split_postgres_url(url: &str) -> Result<(String, PgTls), TlsError> {
    let trimmed = url.trim();
    let is_uri = trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://");
    let (rest, params) = if is_uri {
        split_uri(trimmed)?
    } else {
        split_key_values(trimmed)?
    };
    if let Some((k, _)) = params
        .iter()
        .find(|(k, _)| UNSUPPORTED_KEYS.contains(&k.as_str()))
    {
        return Err(TlsError::Unsupported(k.clone()));
    }
    let get = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let system_roots = get("sslrootcert").as_deref() == Some("system");
    let mut mode = match get("sslmode") {
        Some(m) => SslMode::parse(&m)?,
        // libpq 16: `sslrootcert=system` makes verify-full the default.
        None if system_roots => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if system_roots && mode != SslMode::VerifyFull {
        return Err(TlsError::SystemRootsNeedVerifyFull);
    }
    let root_cert = get("sslrootcert")
        .filter(|v| v != "system")
        .map(PathBuf::from);
    if mode == SslMode::Require && root_cert.is_some() {
        mode = SslMode::VerifyCa;
    }
    let client_cert = match (get("sslcert"), get("sslkey")) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        _ => return Err(TlsError::HalfClientCert),
    };
    let pg_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    let out = if is_uri {
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!("{rest}{sep}sslmode={pg_mode}")
    } else if rest.is_empty() {
        format!("sslmode={pg_mode}")
    } else {
        format!("{rest} sslmode={pg_mode}")
    };
    Ok((
        out,
        PgTls {
            mode,
            root_cert,
            client_cert,
        },
    ))
}

type Params = Vec<(String, String)>;

fn split_uri(uri: &str) -> Result<(String, Params), TlsError> {
    let mut parsed = url::Url::parse(uri).map_err(TlsError::Unparseable)?;
    let mut keep: Vec<&str> = Vec::new();
    let mut tls: Params = Vec::new();
    let query = parsed.query().map(str::to_string).unwrap_or_default();
    // Pair by pair on the raw query, so what is kept goes back exactly as written (decoding and
    // re-encoding would turn a `%20` into a `+`, which tokio-postgres keeps as a plus).
    for raw in query.split('&').filter(|p| !p.is_empty()) {
        let Some((k, v)) = url::form_urlencoded::parse(raw.as_bytes()).next() else {
            continue;
        };
        if TLS_KEYS.contains(&k.as_ref()) || UNSUPPORTED_KEYS.contains(&k.as_ref()) {
            tls.push((k.into_owned(), v.into_owned()));
        } else {
            keep.push(raw);
        }
    }
    parsed.set_query((!keep.is_empty()).then(|| keep.join("&")).as_deref());
    Ok((parsed.to_string(), tls))
}

/// libpq's `key=value` form: whitespace-separated pairs, a value optionally in single quotes
/// with `\'` and `\\` escapes. The pairs that are not TLS parameters are written back quoted.
fn split_key_values(s: &str) -> Result<(String, Params), TlsError> {
    let mut keep = Vec::new();
    let mut tls = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            if chars.peek().is_some() {
                return Err(TlsError::Malformed("a value without a key"));
            }
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=');
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(TlsError::Malformed("a quoted value is not closed"));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if TLS_KEYS.contains(&key.as_str()) || UNSUPPORTED_KEYS.contains(&key.as_str()) {
            tls.push((key, value));
        } else {
            keep.push((key, value));
        }
    }
    let rest = keep
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((rest, tls))
}

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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
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

/// `prefer` and `require`: encrypted, the certificate not checked (libpq's meaning), the
/// handshake's signatures verified with the provider's algorithms.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki's full verification, except that a certificate valid for another name
/// is accepted (libpq checks the chain only).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, PgTls) {
        split_postgres_url(url).unwrap()
    }

    #[test]
    fn uri_parameters_are_taken_out_and_the_mode_rewritten() {
        let (rest, tls) = split(
            "postgres://u@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=/etc/ca.pem",
        );
        assert_eq!(
            rest,
            "postgres://u@db:5432/x?application_name=a&sslmode=require"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(tls.client_cert, None);
        rest.parse::<tokio_postgres::Config>().unwrap();
    }

    #[test]
    fn libpq_defaults_and_rules() {
        assert_eq!(split("postgres://u@db/x").1.mode, SslMode::Prefer);
        assert_eq!(
            split("postgres://u@db/x").0,
            "postgres://u@db/x?sslmode=prefer"
        );
        assert_eq!(
            split("postgres://u@db/x?sslmode=disable").0,
            "postgres://u@db/x?sslmode=disable"
        );
        // `require` with a CA file is `verify-ca`, as in libpq.
        let t = split("postgres://u@db/x?sslmode=require&sslrootcert=/ca.pem").1;
        assert_eq!(t.mode, SslMode::VerifyCa);
        // `system` is the system roots.
        let t = split("postgres://u@db/x?sslmode=verify-full&sslrootcert=system").1;
        assert_eq!(t.root_cert, None);
        let t = split("postgres://u@db/x?sslcert=/c.pem&sslkey=/k.pem").1;
        assert_eq!(
            t.client_cert,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
    }

    #[test]
    fn key_value_form() {
        let (rest, tls) =
            split("host=db user=u password='a b\\'c' sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(
            rest,
            "host='db' user='u' password='a b\\'c' sslmode=require"
        );
        assert_eq!(tls.mode, SslMode::VerifyCa);
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(split("host = db").0, "host='db' sslmode=prefer");
    }

    #[test]
    fn kept_query_values_go_back_as_written() {
        let (rest, _) =
            split("postgres://u@db/x?options=-c%20a%3Db&sslmode=require&password=a%20b");
        let c: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(c.get_options(), Some("-c a=b"));
        assert_eq!(c.get_password(), Some(&b"a b"[..]));
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let t = split("postgres://u@db/x?sslrootcert=system").1;
        assert_eq!((t.mode, t.root_cert), (SslMode::VerifyFull, None));
        for weak in ["disable", "prefer", "require", "verify-ca"] {
            let e = split_postgres_url(&format!(
                "postgres://db/x?sslrootcert=system&sslmode={weak}"
            ));
            assert!(
                matches!(e, Err(TlsError::SystemRootsNeedVerifyFull)),
                "{weak}"
            );
        }
    }

    #[test]
    fn malformed_key_values_are_refused_without_echoing_them() {
        let e = |u: &str| split_postgres_url(u).unwrap_err().to_string();
        let unclosed = e("host=db sslmode='require password=hunter2");
        assert!(unclosed.contains("not closed"), "{unclosed}");
        assert!(!unclosed.contains("hunter2"), "{unclosed}");
        assert!(e("host=db =x password=p").contains("without a key"));
        let long = e("host=db sslmode=hunter2-hunter2-hunter2");
        assert!(!long.contains("hunter2"), "{long}");
    }

    #[test]
    fn refusals_say_what_to_do() {
        let e = |u: &str| split_postgres_url(u).unwrap_err().to_string();
        assert!(e("postgres://db/x?sslmode=allow").contains("verify-full"));
        assert!(e("postgres://db/x?sslmode=bogus").contains("sslmode=bogus"));
        assert!(e("postgres://db/x?sslcert=/c.pem").contains("sslkey"));
        assert!(e("postgres://db/x?sslcrl=/crl.pem").contains("sslcrl"));
        assert!(e("host=db sslpassword=x").contains("sslpassword"));
    }

    #[test]
    fn missing_files_are_named() {
        let tls = PgTls {
            mode: SslMode::VerifyFull,
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
