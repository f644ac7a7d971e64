//! `chatsdk-auth keys list` is a read: on an empty data directory it creates no file and no
//! directory and says which secret files are missing; with the secrets in the environment it
//! lists the configured keys and still writes nothing; on PostgreSQL it neither migrates the
//! schema nor seeds the ring row, and says there is no ring there yet.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::TestApp;
use crate::pg;
use crate::process::BIN;

const KEK: &str = "kek-of-the-keys-list-tests-0123456789abcdef";

/// Every secret in the environment, distinct and long enough.
const SECRETS: [(&str, &str); 7] = [
    ("REST_KEY", "rest-key-of-the-keys-list-test-0123456789ab"),
    (
        "CENTRIFUGO_KEY",
        "ws-key-of-the-keys-list-test-0123456789abcd",
    ),
    (
        "PROXY_SECRET",
        "proxy-secret-of-the-keys-list-test-01234567",
    ),
    (
        "METRICS_TOKEN",
        "metrics-token-of-the-keys-list-test-0123456",
    ),
    (
        "SUBSCRIPTION_KEY",
        "subscription-key-of-the-keys-list-test-0123",
    ),
    (
        "CENTRIFUGO_API_KEY",
        "centrifugo-api-key-of-the-keys-list-test-01",
    ),
    (
        "ADMIN_TOKEN",
        "admin-token-of-the-keys-list-test-0123456789",
    ),
];

fn keys_list(dir: &Path, envs: &[(String, String)]) -> Output {
    Command::new(BIN)
        .args(["keys", "list", "--json"])
        .current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn secret_envs() -> Vec<(String, String)> {
    SECRETS
        .iter()
        .map(|(k, v)| (format!("CHATSDK_AUTH_SECRETS__{k}"), v.to_string()))
        .collect()
}

/// Every path under `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(entries(&p));
        }
    }
    out
}

#[test]
fn keys_list_on_an_empty_data_dir_writes_nothing_and_names_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = keys_list(tmp.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no secret file"), "{stderr}");
    for file in ["data/rest-signing.key", "data/admin-token.key"] {
        assert!(stderr.contains(file), "{file} not named: {stderr}");
    }
    assert!(stderr.contains("created nothing"), "{stderr}");
    assert_eq!(entries(tmp.path()), Vec::<String>::new(), "{stderr}");

    // With every secret in the environment: the configured keys, and still nothing written.
    let out = keys_list(tmp.path(), &secret_envs());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rest", "ws"]);
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_list_on_postgres_neither_migrates_nor_seeds_the_ring() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut envs = secret_envs();
    envs.extend([
        ("CHATSDK_AUTH_STORAGE__BACKEND".into(), "postgres".into()),
        ("CHATSDK_AUTH_STORAGE__POSTGRES_URL".into(), url.clone()),
        (
            "CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY".into(),
            KEK.into(),
        ),
    ]);
    let out = keys_list(tmp.path(), &envs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no key ring in PostgreSQL yet"), "{stderr}");
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tables: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'chatsdk_auth%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "keys list created the schema");

    // Once a server has written the ring, keys list shows it and leaves the row as it is.
    let server = TestApp::start_in(&tmp.path().join("server"), |c| {
        crate::helpers::use_postgres(c, url.clone());
        c.secrets.key_encryption_key = KEK.into();
    })
    .await;
    let row = "SELECT version, nonce FROM chatsdk_auth_signing_keys";
    let before = db.query_one(row, &[]).await.unwrap();
    let out = keys_list(&tmp.path().join("server"), &envs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("no key ring"), "{stderr}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let served = server.app.keys.current();
    let kid = rows[0]["kid"].as_str().unwrap();
    assert_eq!(kid, served.rest.signing(chatsdk_auth::now_unix()).kid);
    let after = db.query_one(row, &[]).await.unwrap();
    assert_eq!(
        (before.get::<_, i64>(0), before.get::<_, Vec<u8>>(1)),
        (after.get::<_, i64>(0), after.get::<_, Vec<u8>>(1))
    );
}
