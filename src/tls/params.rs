//! libpq's TLS parameters in a connection string (`sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey`), taken out of it for tokio-postgres (which understands only `disable`, `prefer`
//! and `require`), and the [`Protection`] the mode gives the hosts the string names.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use super::TlsError;

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
    /// The mode in force: as given; when absent `verify-full`, or libpq's `prefer` when every
    /// host is local ([`Protection::Local`]); `require` with a root certificate file counts as
    /// `verify-ca` (libpq's rule).
    pub mode: SslMode,
    /// Who the mode authenticates, for the hosts of the connection string.
    pub protection: Protection,
    /// `sslrootcert`: a PEM file of CA certificates; `None` for the system roots.
    pub root_cert: Option<PathBuf>,
    /// `sslcert` and `sslkey`: a client certificate chain and its private key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// What a connection's TLS proves, decided from the connection string before connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// `verify-full` or `verify-ca`: every connection's server certificate is checked.
    Authenticated,
    /// `disable`, `prefer` or `require`, and every host is a loopback address or a Unix socket:
    /// no network between the service and the database to trust.
    Local,
    /// `disable`, `prefer` or `require` to a host on the network, accepted only because the
    /// configuration gives server authentication up (`storage.postgres_accept_unauthenticated_server`):
    /// whoever is on the path can answer as the database.
    Unauthenticated,
}

impl SslMode {
    /// Whether every connection in this mode checks the server's certificate.
    pub fn authenticates(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Whether every server `pg` names is reached without a network: a Unix socket, or an address
/// (`hostaddr` when given, else the host) that parses as a loopback IP. Decided on the parsed
/// address, never on a name: `localhost` or `127.db.example.com` may resolve anywhere.
pub fn is_local(pg: &tokio_postgres::Config) -> bool {
    use tokio_postgres::config::Host;
    let (hosts, addrs) = (pg.get_hosts(), pg.get_hostaddrs());
    let n = hosts.len().max(addrs.len());
    n > 0
        && (0..n).all(|i| match (addrs.get(i), hosts.get(i)) {
            (Some(addr), _) => addr.is_loopback(),
            (None, Some(Host::Unix(_))) => true,
            (None, Some(Host::Tcp(name))) => name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            (None, None) => false,
        })
}

/// The TLS parameters this module handles; tokio-postgres sees none of them except a
/// rewritten `sslmode`.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];
/// libpq TLS parameters that are not implemented: refused rather than silently ignored.
const UNSUPPORTED_KEYS: [&str; 4] = ["sslcrl", "sslcrldir", "sslpassword", "sslsni"];

/// Splits the TLS parameters out of `url` (`postgres://…?sslmode=…` or libpq's `key=value`
/// form). Returns the connection string for tokio-postgres, whose `sslmode` is `disable`,
/// `prefer` or `require` (the verifying modes become `require`: TLS is mandatory, and the
/// checks are rustls'), and the TLS settings. A mode that authenticates nobody to a host on
/// the network is refused unless `accept_unauthenticated` (decided here, before connecting).
pub fn split_postgres_url(
    url: &str,
    accept_unauthenticated: bool,
) -> Result<(String, PgTls), TlsError> {
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
    // The hosts, from what tokio-postgres will be given (a string it cannot parse is refused
    // by the caller; here it counts as not local, the strict answer).
    let local = tokio_postgres::Config::from_str(&rest).is_ok_and(|pg| is_local(&pg));
    let mut mode = match get("sslmode") {
        Some(m) => SslMode::parse(&m)?,
        // libpq 16: `sslrootcert=system` makes verify-full the default.
        None if system_roots => SslMode::VerifyFull,
        // Nothing on a network to authenticate: libpq's default.
        None if local => SslMode::Prefer,
        None => SslMode::VerifyFull,
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
    let protection = if mode.authenticates() {
        Protection::Authenticated
    } else if local {
        Protection::Local
    } else if accept_unauthenticated {
        Protection::Unauthenticated
    } else {
        return Err(TlsError::Unauthenticated(mode));
    };
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
            protection,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Split with server authentication given up, so libpq's own rules can be checked on
    /// any host.
    fn split(url: &str) -> (String, PgTls) {
        split_postgres_url(url, true).unwrap()
    }

    fn strict(url: &str) -> Result<PgTls, TlsError> {
        split_postgres_url(url, false).map(|(_, tls)| tls)
    }

    #[test]
    fn a_host_on_the_network_gets_verify_full_by_default_and_weak_modes_are_refused() {
        // No sslmode: verify-full (the system roots unless sslrootcert says otherwise).
        for url in [
            "postgres://u@db.internal/x",
            "postgres://u@10.213.0.1:5432/x",
            "host=db.internal user=u",
            "postgres://u@localhost/x",
            "postgres://u@127.db.example.com/x",
        ] {
            let t = strict(url).unwrap();
            assert_eq!(
                (t.mode, t.protection),
                (SslMode::VerifyFull, Protection::Authenticated),
                "{url}"
            );
        }
        for weak in ["disable", "prefer", "require"] {
            for host in [
                "db.internal",
                "10.213.0.1",
                "localhost",
                "127.db.example.com",
                "[::ffff:127.0.0.1]",
            ] {
                let url = format!("postgres://u@{host}/x?sslmode={weak}");
                let e = strict(&url).unwrap_err();
                assert!(
                    matches!(e, TlsError::Unauthenticated(m) if m.as_str() == weak),
                    "{url}"
                );
                let text = e.to_string();
                assert!(
                    text.contains("verify-full")
                        && text.contains("storage.postgres_accept_unauthenticated_server"),
                    "{text}"
                );
                // Given up explicitly: accepted, and said so.
                let (_, t) = split_postgres_url(&url, true).unwrap();
                assert_eq!(t.protection, Protection::Unauthenticated, "{url}");
            }
            // A loopback hostaddr is what is connected to, whatever the host's name.
            let kv = format!("host=db.internal hostaddr=10.213.0.1 sslmode={weak}");
            assert!(strict(&kv).is_err(), "{kv}");
        }
        // Several hosts: all of them must be local.
        assert!(strict("host=127.0.0.1,db.internal sslmode=prefer").is_err());
        // `require` with a CA file is verify-ca: authenticated anywhere.
        let t = strict("postgres://u@db/x?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(t.protection, Protection::Authenticated);
    }

    #[test]
    fn loopback_addresses_and_sockets_keep_libpq_defaults() {
        for url in [
            "postgres://u@127.0.0.1:5432/x",
            "postgres://u@127.10.20.30/x",
            "postgres://u@[::1]:5432/x",
            "host=/var/run/postgresql user=u",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/x",
            "host=db.internal hostaddr=127.0.0.1 user=u",
            "host=127.0.0.1,::1 user=u",
        ] {
            let t = strict(url).unwrap();
            assert_eq!(
                (t.mode, t.protection),
                (SslMode::Prefer, Protection::Local),
                "{url}"
            );
            for weak in ["disable", "require"] {
                let sep = if url.starts_with("postgres") {
                    "?"
                } else {
                    " "
                };
                let t = strict(&format!("{url}{sep}sslmode={weak}")).unwrap();
                assert_eq!(t.protection, Protection::Local, "{url} {weak}");
            }
        }
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
        assert_eq!(split("postgres://u@127.0.0.1/x").1.mode, SslMode::Prefer);
        assert_eq!(
            split("postgres://u@127.0.0.1/x").0,
            "postgres://u@127.0.0.1/x?sslmode=prefer"
        );
        assert_eq!(
            split("postgres://u@db/x").0,
            "postgres://u@db/x?sslmode=require"
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
        assert_eq!(split("host = db").0, "host='db' sslmode=require");
        assert_eq!(split("host = ::1").0, "host='::1' sslmode=prefer");
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
            let e = split_postgres_url(
                &format!("postgres://db/x?sslrootcert=system&sslmode={weak}"),
                true,
            );
            assert!(
                matches!(e, Err(TlsError::SystemRootsNeedVerifyFull)),
                "{weak}"
            );
        }
    }

    #[test]
    fn malformed_key_values_are_refused_without_echoing_them() {
        let e = |u: &str| split_postgres_url(u, true).unwrap_err().to_string();
        let unclosed = e("host=db sslmode='require password=hunter2");
        assert!(unclosed.contains("not closed"), "{unclosed}");
        assert!(!unclosed.contains("hunter2"), "{unclosed}");
        assert!(e("host=db =x password=p").contains("without a key"));
        let long = e("host=db sslmode=hunter2-hunter2-hunter2");
        assert!(!long.contains("hunter2"), "{long}");
    }

    #[test]
    fn refusals_say_what_to_do() {
        let e = |u: &str| split_postgres_url(u, true).unwrap_err().to_string();
        assert!(e("postgres://db/x?sslmode=allow").contains("verify-full"));
        assert!(e("postgres://db/x?sslmode=bogus").contains("sslmode=bogus"));
        assert!(e("postgres://db/x?sslcert=/c.pem").contains("sslkey"));
        assert!(e("postgres://db/x?sslcrl=/crl.pem").contains("sslcrl"));
        assert!(e("host=db sslpassword=x").contains("sslpassword"));
    }
}
