//! Outbound TLS against real servers: PostgreSQL with `ssl = on` under each of libpq's
//! `sslmode`s (the certificate made here, by a CA of the test's own), on the loopback and at a
//! non-loopback address inside a network namespace of the test's own, and kicks delivered to
//! Centrifugo's server API over https.

use crate::certs::Ca;
use crate::fake_centrifugo::FakeCentrifugo;
use crate::helpers::{start_app, use_postgres, TestApp};
use crate::netns::Netns;
use crate::pg::{self, PgServer};
use crate::process::Server;

const KEY: &str = "centrifugo-api-key-for-the-tls-tests-0123456789";
const ADMIN: &str = "admin-token-for-the-tls-tests-0123456789abcdef";

fn url(pg: &PgServer, params: &str) -> String {
    format!(
        "postgres://chatsdk@127.0.0.1:{}/postgres{params}",
        pg.port()
    )
}

/// Starts the service on `url`; the startup error's whole chain when it refuses.
async fn start_on(url: String) -> Result<std::sync::Arc<chatsdk_auth::App>, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.storage.data_dir = dir.path().join("data").to_string_lossy().into_owned();
    use_postgres(&mut raw, url);
    let config = raw.validate().map_err(|e| format!("{e:#}"))?;
    start_app(config)
        .await
        .map_err(|e| chatsdk_auth::error_chain::Chain(&e).to_string())
}

/// Whether every connection the service holds (application_name `chatsdk-auth`) is encrypted,
/// from PostgreSQL's own view (`pg_stat_ssl`); `None` when it holds none.
async fn service_connections_use_tls(pg: &PgServer) -> Option<bool> {
    let (db, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = db
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.application_name = 'chatsdk-auth'",
            &[],
        )
        .await
        .unwrap();
    let flags: Vec<bool> = rows.iter().map(|r| r.get(0)).collect();
    (!flags.is_empty()).then(|| flags.iter().all(|f| *f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_over_tls_and_a_certificate_that_does_not_verify_stops_startup() {
    crate::need::need!(Postgres);
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("chatsdk test CA");
    let ca_file = ca.write(tmp.path(), "ca.pem");
    let other_ca = Ca::new("someone else's CA").write(tmp.path(), "other-ca.pem");
    let issued = ca.issue(&["127.0.0.1", "localhost"]);
    let pg = PgServer::start_tls(&issued.cert_pem, &issued.key_pem).await;

    // verify-full with the right CA: serves, and every connection is encrypted.
    let good = url(
        &pg,
        &format!("?sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    let t = TestApp::spawn_with(|c| use_postgres(c, good)).await;
    let (status, _) = t.tokens(serde_json::json!({"userId": "tls-user"})).await;
    assert_eq!(status, 200);
    assert_eq!(service_connections_use_tls(&pg).await, Some(true));
    drop(t);

    // Another CA: startup stops, naming the server, the mode and the reason.
    let e = start_on(url(
        &pg,
        &format!("?sslmode=verify-full&sslrootcert={}", other_ca.display()),
    ))
    .await
    .err()
    .expect("a certificate from an unknown CA must stop startup");
    let server = format!("127.0.0.1:{}", pg.port());
    assert!(
        e.contains(&format!(
            "cannot connect to PostgreSQL at {server} with sslmode=verify-full"
        )),
        "{e}"
    );
    assert!(e.contains("UnknownIssuer"), "{e}");

    // A missing CA file is named before anything connects.
    let e = start_on(url(
        &pg,
        "?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ))
    .await
    .err()
    .unwrap();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_name_counts_for_verify_full_only() {
    crate::need::need!(Postgres);
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("chatsdk test CA");
    let ca_file = ca.write(tmp.path(), "ca.pem");
    // A certificate for another host than the one the URL names.
    let issued = ca.issue(&["db.internal"]);
    let pg = PgServer::start_tls(&issued.cert_pem, &issued.key_pem).await;
    let root = format!("sslrootcert={}", ca_file.display());

    let e = start_on(url(&pg, &format!("?sslmode=verify-full&{root}")))
        .await
        .err()
        .expect("a certificate for another host must stop verify-full");
    assert!(e.contains("sslmode=verify-full"), "{e}");
    assert!(e.contains("not valid for name"), "{e}");

    // verify-ca checks the chain only (libpq's meaning), and so does `require` with a CA file.
    for mode in ["verify-ca", "require"] {
        let app = start_on(url(&pg, &format!("?sslmode={mode}&{root}")))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        app.store.get_user("tls-probe").await.unwrap();
        assert_eq!(service_connections_use_tls(&pg).await, Some(true), "{mode}");
        drop(app);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_uses_tls_when_the_server_offers_it_and_disable_never_does() {
    crate::need::need!(Postgres);
    let ca = Ca::new("chatsdk test CA");
    let issued = ca.issue(&["127.0.0.1"]);
    let pg = PgServer::start_tls(&issued.cert_pem, &issued.key_pem).await;
    // No sslmode at all is libpq's default, `prefer`.
    for params in ["", "?sslmode=prefer"] {
        let app = start_on(url(&pg, params)).await.unwrap();
        app.store.get_user("tls-probe").await.unwrap();
        assert_eq!(
            service_connections_use_tls(&pg).await,
            Some(true),
            "{params:?}"
        );
        drop(app);
        // Let the pool's connections end before the next look.
        wait_no_service_connections(&pg).await;
    }
    let app = start_on(url(&pg, "?sslmode=disable")).await.unwrap();
    app.store.get_user("tls-probe").await.unwrap();
    assert_eq!(service_connections_use_tls(&pg).await, Some(false));
}

async fn wait_no_service_connections(pg: &PgServer) {
    crate::helpers::eventually("connections linger", || async {
        service_connections_use_tls(pg).await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_tls_stops_startup() {
    crate::need::need!(Postgres);
    // The shared test cluster serves plaintext only.
    let plain = pg::database().await;
    let e = start_on(format!("{plain}?sslmode=require"))
        .await
        .err()
        .expect("require must not fall back to plaintext");
    assert!(e.contains("with sslmode=require"), "{e}");
    assert!(e.to_lowercase().contains("tls"), "{e}");
    // prefer does fall back, as libpq's does.
    start_on(format!("{plain}?sslmode=prefer")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_are_delivered_to_an_https_server_api_that_chains_to_the_configured_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("centrifugo test CA");
    let ca_file = ca.write(tmp.path(), "centrifugo-ca.pem");
    let issued = ca.issue(&["127.0.0.1"]);
    let f = FakeCentrifugo::start_tls(KEY, &issued.cert_pem, &issued.key_pem).await;
    assert!(f.api_url().starts_with("https://"));
    let (api, ca_path) = (f.api_url(), ca_file.to_string_lossy().into_owned());
    let t = TestApp::spawn_with(|c| {
        c.centrifugo.api_url = api;
        c.centrifugo.api_ca_file = ca_path;
        c.centrifugo.api_timeout_ms = 500;
        c.secrets.centrifugo_api_key = KEY.into();
        c.secrets.admin_token = ADMIN.into();
    })
    .await;
    t.mint("carol").await;
    let r = t
        .client
        .post(t.url("/admin/users/carol/disable"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (kick, _) = f.wait_kick("carol").await;
    assert_eq!(kick.code, 4503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_server_api_with_an_untrusted_certificate_gets_no_call() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("centrifugo test CA");
    let other = Ca::new("not the configured CA").write(tmp.path(), "other.pem");
    let issued = ca.issue(&["127.0.0.1"]);
    let f = FakeCentrifugo::start_tls(KEY, &issued.cert_pem, &issued.key_pem).await;
    let (api, ca_path) = (f.api_url(), other.to_string_lossy().into_owned());
    let t = TestApp::spawn_with(|c| {
        c.centrifugo.api_url = api;
        c.centrifugo.api_ca_file = ca_path;
        c.centrifugo.api_timeout_ms = 300;
        c.centrifugo.kick_poll_interval_ms = 100;
        c.secrets.centrifugo_api_key = KEY.into();
        c.secrets.admin_token = ADMIN.into();
    })
    .await;
    t.mint("dave").await;
    let r = t
        .client
        .post(t.url("/admin/users/dave/disable"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The delivery loop tries, is refused by its own TLS check, counts it and keeps the kick.
    let series =
        r#"chatsdk_auth_centrifugo_api_calls_total{method="disconnect",outcome="unreachable"}"#;
    crate::helpers::eventually("no failed attempt counted", || async {
        t.metric(series).await >= 1.0
    })
    .await;
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    assert_eq!(t.metric("chatsdk_auth_kicks_pending").await, 1.0);
}

#[test]
fn the_ca_file_needs_an_https_url_and_must_hold_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.centrifugo.api_url = "http://127.0.0.1:8000/api".into();
    raw.centrifugo.api_ca_file = "/etc/ssl/ca.pem".into();
    let e = format!("{:#}", raw.validate().unwrap_err());
    assert!(e.contains("centrifugo.api_ca_file"), "{e}");
    assert!(e.contains("not an https:// URL"), "{e}");

    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    raw.centrifugo.api_url = "https://centrifugo.internal:8000/api".into();
    raw.centrifugo.api_ca_file = empty.to_string_lossy().into_owned();
    let e = format!("{:#}", raw.validate().unwrap_err());
    assert!(e.contains(&empty.display().to_string()), "{e}");

    raw.centrifugo.api_ca_file = Ca::new("ok")
        .write(tmp.path(), "ca.pem")
        .to_string_lossy()
        .into_owned();
    raw.validate().unwrap();
}

/// Validation alone (nothing connects): a mode that authenticates nobody, to a host that is
/// not a loopback address, stops startup; a name never counts as the loopback.
#[test]
fn a_weak_sslmode_to_a_host_on_the_network_is_refused_before_connecting() {
    for host in [
        "10.213.7.2:5432",
        "db.internal",
        "localhost",
        "127.db.example.com",
    ] {
        for weak in ["disable", "prefer", "require"] {
            let mut raw = chatsdk_auth::config::RawConfig::default();
            use_postgres(
                &mut raw,
                format!("postgres://chatsdk@{host}/x?sslmode={weak}"),
            );
            let e = raw
                .validate()
                .err()
                .unwrap_or_else(|| panic!("sslmode={weak} to {host} was accepted"))
                .to_string();
            assert!(
                e.contains(&format!("sslmode={weak} does not authenticate the server"))
                    && e.contains("storage.postgres_accept_unauthenticated_server"),
                "{e}"
            );
        }
    }
    // The loopback by address, or a socket: libpq's modes as before.
    for url in [
        "postgres://chatsdk@127.0.0.1:5432/x?sslmode=prefer",
        "host=/run/postgresql sslmode=disable",
    ] {
        let mut raw = chatsdk_auth::config::RawConfig::default();
        use_postgres(&mut raw, url.into());
        raw.validate().unwrap();
    }
}

/// Explicitly given up: starts, and says so.
#[test]
fn the_opt_out_is_a_setting_that_names_what_it_gives_up() {
    let mut raw = chatsdk_auth::config::RawConfig::default();
    use_postgres(
        &mut raw,
        "postgres://chatsdk@db.internal/x?sslmode=require".into(),
    );
    raw.storage.postgres_accept_unauthenticated_server = true;
    let c = raw.validate().unwrap();
    let chatsdk_auth::config::StoreConfig::Postgres { tls, .. } = &c.store else {
        panic!("not postgres");
    };
    assert_eq!(
        tls.protection,
        chatsdk_auth::tls::Protection::Unauthenticated
    );
}

/// The accepted path at a non-loopback address: a PostgreSQL with `ssl = on` inside a network
/// namespace of the test's own, reached over a veth pair. Without `sslmode` the service uses
/// `verify-full`; weak modes do not start; and every new pooled connection is checked, so a
/// server that comes back with a certificate of another CA is refused (503), never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_the_network_is_authenticated_by_default_on_every_new_connection() {
    crate::need::need!(Postgres, Netns);
    let ns = Netns::create();
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("chatsdk test CA");
    let ca_file = ca.write(tmp.path(), "ca.pem");
    let addr = ns.inner_addr.to_string();
    let issued = ca.issue(&[&addr]);
    let mut pg = PgServer::start_tls_in(&issued.cert_pem, &issued.key_pem, &ns).await;
    let base = format!("postgres://chatsdk@{addr}:{}/postgres", pg.port());
    assert!(!ns.inner_addr.is_loopback());

    for weak in ["disable", "prefer", "require"] {
        let e = start_on(format!("{base}?sslmode={weak}"))
            .await
            .err()
            .unwrap_or_else(|| panic!("sslmode={weak} started to {addr}"));
        assert!(
            e.contains("storage.postgres_accept_unauthenticated_server"),
            "{e}"
        );
    }
    assert_eq!(service_connections_use_tls(&pg).await, None);

    // No sslmode: verify-full against the CA file.
    let good = format!("{base}?sslrootcert={}", ca_file.display());
    let t = TestApp::spawn_with(|c| use_postgres(c, good)).await;
    let (status, _) = t.tokens(serde_json::json!({"userId": "netns-user"})).await;
    assert_eq!(status, 200);
    assert_eq!(service_connections_use_tls(&pg).await, Some(true));

    // The server restarts with a certificate of another CA: the pool's connections are gone,
    // and each new one is refused by its handshake.
    let other = Ca::new("someone else's CA").issue(&[&addr]);
    pg.stop();
    pg.replace_cert(&other.cert_pem, &other.key_pem);
    pg.run().await;
    for _ in 0..3 {
        let (status, _) = t.tokens(serde_json::json!({"userId": "netns-user"})).await;
        assert_eq!(status, 503);
    }
    assert_eq!(service_connections_use_tls(&pg).await, None);

    // The right certificate back: served again, over TLS.
    pg.stop();
    pg.replace_cert(&issued.cert_pem, &issued.key_pem);
    pg.run().await;
    let (status, _) = t.tokens(serde_json::json!({"userId": "netns-user"})).await;
    assert_eq!(status, 200);
    assert_eq!(service_connections_use_tls(&pg).await, Some(true));
    drop(t);

    // Given up explicitly: starts with `require`, and the warning names the setting.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}?sslmode=require");
    let server = Server::start(
        dir.path(),
        &[
            ("CHATSDK_AUTH_STORAGE__BACKEND", "postgres"),
            ("CHATSDK_AUTH_STORAGE__POSTGRES_URL", &url),
            (
                "CHATSDK_AUTH_STORAGE__POSTGRES_ACCEPT_UNAUTHENTICATED_SERVER",
                "true",
            ),
            (
                "CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY",
                "key-encryption-secret-of-the-tests-0123456789",
            ),
        ],
    );
    let (_, logs) = server.terminate();
    let warning = logs
        .iter()
        .find(|l| l.contains("postgres_accept_unauthenticated_server is set"))
        .unwrap_or_else(|| panic!("no warning: {logs:#?}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
}
