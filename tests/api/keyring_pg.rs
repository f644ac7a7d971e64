//! The signing keys in PostgreSQL (`storage.backend = "postgres"`): replicas with data
//! directories of their own (so nothing but the database and the key-encryption secret is
//! shared) agree on one key ring, follow a rotation made on any of them, keep every key when
//! two rotate at once, refuse to start on a key-encryption secret that cannot decrypt the ring,
//! never show key material to the database, and start again after `keys rewrap`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use chatsdk_auth::config::RawConfig;
use chatsdk_auth::keys::KeyRing;
use serde_json::Value;

use crate::helpers::{start_app, until, use_postgres, TestApp};
use crate::pg;
use crate::process::BIN;

const KEK: &str = "kek-one-kek-one-kek-one-kek-one-kek-one-kek";
const KEK2: &str = "kek-two-kek-two-kek-two-kek-two-kek-two-kek";

/// A replica on `url` with its own data directory (its own generated key files) and `kek`.
fn replica(url: &str, kek: &str) -> impl FnOnce(&mut RawConfig) {
    let (url, kek) = (url.to_string(), kek.to_string());
    move |c| {
        use_postgres(c, url);
        c.secrets.key_encryption_key = kek;
    }
}

/// Starts a replica in a directory of its own under `root`; the test API key of the first
/// replica (stored in the shared database) is handed to the others.
async fn start(root: &Path, name: &str, url: &str, kek: &str) -> TestApp {
    let dir = root.join(name);
    let first = root.join("a").join("test-key.txt");
    if first.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&first, dir.join("test-key.txt")).unwrap();
    }
    TestApp::start_in(&dir, replica(url, kek)).await
}

fn bearer(t: &TestApp) -> String {
    format!("Bearer {}", t.app.secrets.admin_token.expose())
}

/// The kids of `kind` that `GET /admin/keys` lists on `t`.
async fn listed(t: &TestApp, kind: &str) -> BTreeSet<String> {
    crate::key_rotation::listed_kids(&t.client, &t.url(""), &bearer(t), kind).await
}

/// `POST /admin/keys/rest/rotate` on `t`: the new kid.
async fn rotate_rest(t: &TestApp) -> String {
    let r = t
        .client
        .post(t.url("/admin/keys/rest/rotate"))
        .header("Authorization", bearer(t))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    b["new_kid"].as_str().unwrap().to_string()
}

/// The kid of a REST token `t` mints now.
async fn signing_kid(t: &TestApp) -> String {
    let token = t.mint("kid-probe").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()
}

async fn verify_status(t: &TestApp, token: &str) -> u16 {
    crate::verify::verify(t, Some(&format!("Bearer {token}")), &[])
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_ring_and_follow_a_rotation() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), "a", &url, KEK).await;
    let b = start(tmp.path(), "b", &url, KEK).await;
    let c = start(tmp.path(), "c", &url, KEK).await;
    // Each replica generated key files of its own; the ring is the first replica's.
    let own = |t: &TestApp| {
        let ring = KeyRing::configured(&t.app.config.tokens, &t.app.secrets).unwrap();
        (ring.rest.all()[0].kid.clone(), ring.ws.all()[0].kid.clone())
    };
    let (a_rest, a_ws) = own(&a);
    assert_ne!(own(&b).0, a_rest, "the replicas' local key files differ");
    for t in [&a, &b, &c] {
        assert_eq!(listed(t, "rest").await, BTreeSet::from([a_rest.clone()]));
        assert_eq!(listed(t, "ws").await, BTreeSet::from([a_ws.clone()]));
        assert_eq!(signing_kid(t).await, a_rest);
    }
    let old = a.mint("before").await["token"]
        .as_str()
        .unwrap()
        .to_string();

    let new_kid = rotate_rest(&a).await;
    assert_eq!(
        signing_kid(&a).await,
        new_kid,
        "the rotating replica at once"
    );
    // The others at their next look at the ring's version (no claim about how soon).
    for t in [&b, &c] {
        until(&format!("a replica signing with {new_kid}"), || async {
            match signing_kid(t).await {
                kid if kid == new_kid => Ok(()),
                kid => Err(kid),
            }
        })
        .await;
    }
    let both = BTreeSet::from([a_rest.clone(), new_kid.clone()]);
    for t in [&a, &b, &c] {
        assert_eq!(listed(t, "rest").await, both);
        assert_eq!(verify_status(t, &old).await, 200, "the old key's token");
        let fresh = t.mint("after").await["token"].as_str().unwrap().to_string();
        for u in [&a, &b, &c] {
            assert_eq!(verify_status(u, &fresh).await, 200, "the new key's token");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rotations_at_once_on_two_replicas_keep_every_key() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), "a", &url, KEK).await;
    let b = start(tmp.path(), "b", &url, KEK).await;
    let mut every = listed(&a, "rest").await;
    for _ in 0..3 {
        let (x, y) = tokio::join!(rotate_rest(&a), rotate_rest(&b));
        assert_ne!(x, y);
        every.extend([x, y]);
    }
    assert_eq!(every.len(), 7, "the first key and six new ones: {every:?}");
    // A key that signed and was lost would never be listed.
    for t in [&a, &b] {
        until(&format!("every key listed: {every:?}"), || async {
            match listed(t, "rest").await {
                got if got == every => Ok(()),
                got => Err(format!("{got:?}")),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_decrypt_the_ring_refuses_to_start_and_the_others_serve() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), "a", &url, KEK).await;
    let mut raw = RawConfig::default();
    raw.storage.data_dir = tmp.path().join("b").to_string_lossy().into_owned();
    replica(&url, KEK2)(&mut raw);
    let err = start_app(raw.validate().unwrap())
        .await
        .err()
        .expect("a replica with another key-encryption secret started");
    let text = chatsdk_auth::error_chain::Chain(&err).to_string();
    assert!(
        text.contains("cannot decrypt the signing keys in PostgreSQL"),
        "{text}"
    );
    // The id: HKDF-SHA-256 of the secret (src/keys/sealed.rs), never the secret's plain hash.
    let id = |s: &str| {
        let mut id = [0u8; 8];
        hkdf::Hkdf::<sha2::Sha256>::new(
            Some(b"chatsdk-auth key-encryption secret id"),
            s.as_bytes(),
        )
        .expand(b"kek-id v1", &mut id)
        .unwrap();
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(
        text.contains(&id(KEK)) && text.contains(&id(KEK2)),
        "{text}"
    );
    assert!(!text.contains(KEK) && !text.contains(KEK2), "{text}");
    // The replica that can decrypt keeps serving.
    assert_eq!(
        a.tokens(serde_json::json!({"userId": "still"})).await.0,
        200
    );
    rotate_rest(&a).await;
    assert_eq!(listed(&a, "rest").await.len(), 2);
}

/// A ring row altered in the database (one byte of its ciphertext) is reported as altered or
/// corrupted, naming the one secret that sealed it, never as a wrong secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ring_row_is_told_from_a_wrong_secret() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), "a", &url, KEK).await;
    drop(a);
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute(
        "UPDATE chatsdk_auth_signing_keys
         SET ciphertext = overlay(ciphertext placing '\\x00'::bytea from 5 for 1) || '\\x01'::bytea",
    )
    .await
    .unwrap();
    let mut raw = RawConfig::default();
    raw.storage.data_dir = tmp.path().join("b").to_string_lossy().into_owned();
    replica(&url, KEK)(&mut raw);
    let err = start_app(raw.validate().unwrap())
        .await
        .err()
        .expect("a replica started on an altered ring");
    let text = chatsdk_auth::error_chain::Chain(&err).to_string();
    assert!(text.contains("altered or corrupted"), "{text}");
    assert!(!text.contains("cannot decrypt"), "{text}");
}

/// A running replica that finds an altered ring row keeps its keys, and counts the refusal in
/// `chatsdk_auth_key_ring_loads_refused_total` (0 until then), so an alert can see it: once per
/// write of the row, not at every look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_row_a_running_replica_refuses_is_counted_in_the_metrics() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), "a", &url, KEK).await;
    const SERIES: &str = "chatsdk_auth_key_ring_loads_refused_total";
    assert!(a.metrics_text().await.contains(&format!("{SERIES} 0")));
    let before = signing_kid(&a).await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Another write of the row (a new version and nonce), whose ciphertext fails authentication.
    db.batch_execute(
        "UPDATE chatsdk_auth_signing_keys
         SET version = version + 1, nonce = overlay(nonce placing '\\xff'::bytea from 1 for 1),
             ciphertext = overlay(ciphertext placing '\\x00'::bytea from 5 for 1)",
    )
    .await
    .unwrap();
    crate::helpers::eventually("the refused ring counted", || async {
        a.metric(SERIES).await >= 1.0
    })
    .await;
    // Once per write of the row: later looks at the same write skip it.
    for _ in 0..3 {
        assert!(!a.app.keys.refresh(&a.app.store).await);
    }
    assert_eq!(a.metric(SERIES).await, 1.0);
    assert_eq!(a.app.keys.refused_loads(), 1);
    assert_eq!(signing_kid(&a).await, before, "the keys in effect stay");
    // Another bad write is another refusal.
    db.batch_execute("UPDATE chatsdk_auth_signing_keys SET version = version + 1")
        .await
        .unwrap();
    crate::helpers::eventually("the second refused ring counted", || async {
        a.metric(SERIES).await >= 2.0
    })
    .await;
    assert_eq!(signing_kid(&a).await, before, "the keys in effect stay");
}

/// A write of the ring row that took no lock (a restore, a manual `UPDATE`) between a change's
/// read and its write fails the change as a typed lost update, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_row_written_during_a_change_is_a_typed_lost_update() {
    crate::need::need!(Postgres);
    use chatsdk_auth::store::{LostUpdate, SealedRing, Store, StoreError};
    let url = pg::database().await;
    let mut raw = RawConfig::default();
    let tmp = tempfile::tempdir().unwrap();
    raw.storage.data_dir = tmp.path().to_string_lossy().into_owned();
    use_postgres(&mut raw, url.clone());
    let store = Store::open(&raw.validate().unwrap().store).await.unwrap();
    let row = |version: i64| SealedRing {
        version,
        kek_id: "0123456789abcdef".into(),
        nonce: vec![version as u8; 12],
        ciphertext: vec![7; 32],
    };
    store
        .change_key_ring(|_| async { Ok::<_, StoreError>((Some(row(1)), ())) })
        .await
        .unwrap();
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let db = &db;
    let out = store
        .change_key_ring(|current| async move {
            assert_eq!(current.unwrap().version, 1);
            // The restore: another connection, no lock.
            db.batch_execute(
                "UPDATE chatsdk_auth_signing_keys SET version = 2, nonce = '\\x02'::bytea",
            )
            .await
            .unwrap();
            Ok::<_, StoreError>((Some(row(2)), ()))
        })
        .await;
    assert!(
        matches!(out, Err(StoreError::LostUpdate(LostUpdate::KeyRing))),
        "{out:?}"
    );
    let stored = store.load_key_ring().await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.nonce),
        (2, vec![2]),
        "the restore stays, nothing written over it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_never_shows_the_key_material() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let ws_secret = "w".repeat(40);
    let a = TestApp::start_in(&tmp.path().join("a"), |c| {
        replica(&url, KEK)(c);
        c.tokens.rest_algorithm = "ES256".into();
        c.secrets.centrifugo_key = ws_secret.clone();
    })
    .await;
    rotate_rest(&a).await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = db
        .query_one(
            "SELECT kek_id, nonce, ciphertext, row_to_json(k)::text FROM chatsdk_auth_signing_keys k",
            &[],
        )
        .await
        .unwrap();
    let (kek_id, nonce, ciphertext, text): (String, Vec<u8>, Vec<u8>, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(kek_id.len(), 16);
    assert_eq!(nonce.len(), 12);
    let b64 = |s: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let pem = std::fs::read_to_string(a.dir.join("rest-signing-es256.pem")).unwrap();
    let der_line = pem.lines().nth(1).unwrap().to_string();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for needle in [
        "BEGIN",
        "PRIVATE",
        "material",
        &der_line,
        &ws_secret,
        &b64(ws_secret.as_bytes()),
        KEK,
        &b64(KEK.as_bytes()),
    ] {
        assert!(
            !contains(&ciphertext, needle.as_bytes()),
            "{needle} in the ciphertext"
        );
        assert!(!text.contains(needle), "{needle} in the row");
    }
}

/// `chatsdk-auth keys rewrap` in `dir`, on `url`, with `new` as the configured secret.
fn rewrap(dir: &Path, url: &str, new: &str, old_file: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["keys", "rewrap", "--old-key-file"])
        .arg(old_file)
        .current_dir(dir)
        .env("CHATSDK_AUTH_STORAGE__BACKEND", "postgres")
        .env("CHATSDK_AUTH_STORAGE__POSTGRES_URL", url)
        .env("CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY", new)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rewrap_reencrypts_and_replicas_with_the_new_secret_start() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut a = start(tmp.path(), "a", &url, KEK).await;
    rotate_rest(&a).await;
    let kids = listed(&a, "rest").await;
    let ws = listed(&a, "ws").await;
    let old_token = a.mint("old").await["token"].as_str().unwrap().to_string();
    a.stop().await;

    let ops = tmp.path().join("ops");
    std::fs::create_dir_all(&ops).unwrap();
    let old_file = ops.join("old-kek");
    chatsdk_auth::secrets::write_new(&old_file, KEK).unwrap();
    // The wrong old secret is named as such, and changes nothing.
    let wrong_file = ops.join("wrong-kek");
    chatsdk_auth::secrets::write_new(&wrong_file, &"x".repeat(43)).unwrap();
    let wrong = rewrap(&ops, &url, KEK2, &wrong_file);
    let stderr = String::from_utf8_lossy(&wrong.stderr).into_owned();
    assert!(!wrong.status.success());
    assert!(stderr.contains("--old-key-file holds"), "{stderr}");
    let out = rewrap(&ops, &url, KEK2, &old_file);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("re-encrypted"), "{stderr}");
    assert!(!stderr.contains(KEK) && !stderr.contains(KEK2), "{stderr}");
    // Run again: already done, nothing changes.
    let again = rewrap(&ops, &url, KEK2, &old_file);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already"));

    // A replica on the new secret starts with the same keys; one on the old secret does not.
    let b = start(tmp.path(), "b", &url, KEK2).await;
    assert_eq!(listed(&b, "rest").await, kids);
    assert_eq!(listed(&b, "ws").await, ws);
    assert_eq!(verify_status(&b, &old_token).await, 200);
    let mut raw = RawConfig::default();
    raw.storage.data_dir = tmp.path().join("c").to_string_lossy().into_owned();
    replica(&url, KEK)(&mut raw);
    let err = start_app(raw.validate().unwrap()).await.err().unwrap();
    assert!(chatsdk_auth::error_chain::Chain(&err)
        .to_string()
        .contains("cannot decrypt"));
    // Rotations go on under the new secret.
    rotate_rest(&b).await;
    assert_eq!(listed(&b, "rest").await.len(), kids.len() + 1);
}

const ADMIN: &str = "admin-token-of-the-restore-test-0123456789abcdef";
const API_KEY: &str = "chatsdk_Rk3xQ9vLm2Tp8WzN4bYc7HdJ5sFg6AeU1oKiVnXr";

/// `chatsdk-auth serve` on `url` in `dir`, as a replica of its own.
fn serve(dir: &Path, url: &str) -> crate::process::Server {
    std::fs::create_dir_all(dir).unwrap();
    crate::process::Server::start(
        dir,
        &[
            ("CHATSDK_AUTH_STORAGE__BACKEND", "postgres"),
            ("CHATSDK_AUTH_STORAGE__POSTGRES_URL", url),
            ("CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY", KEK),
            ("CHATSDK_AUTH_SECRETS__ADMIN_TOKEN", ADMIN),
            ("CHATSDK_AUTH_SECRETS__INITIAL_API_KEY", API_KEY),
            ("CHATSDK_AUTH_LOG__LEVEL", "info"),
            ("CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE", "100000"),
            ("CHATSDK_AUTH_LIMITS__MINT_PER_API_KEY_PER_SECOND", "100000"),
        ],
    )
}

/// A REST token minted by `s` and its kid.
async fn mint_on(c: &reqwest::Client, s: &crate::process::Server) -> (String, String) {
    let r = c
        .post(s.url("/tokens"))
        .header("X-API-Key", API_KEY)
        .json(&serde_json::json!({"userId": "restore-user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let token = b["token"].as_str().unwrap().to_string();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    (token, kid)
}

async fn rotate_on(c: &reqwest::Client, s: &crate::process::Server) -> String {
    let r = c
        .post(s.url("/admin/keys/rest/rotate"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    b["new_kid"].as_str().unwrap().to_string()
}

/// Three replicas (processes) and a ring row put back from a backup: save the row, rotate on
/// r1, put the saved row back, start r3, rotate on r2. The replicas converge: each signs with
/// the key r2's answer named, and every replica's tokens verify on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restored_ring_row_and_rotations_every_replica_signs_and_verifies_alike() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let r1 = serve(&tmp.path().join("r1"), &url);
    r1.wait_ready(&c).await;
    let r2 = serve(&tmp.path().join("r2"), &url);
    r2.wait_ready(&c).await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let saved = db
        .query_one(
            "SELECT version, kek_id, nonce, ciphertext FROM chatsdk_auth_signing_keys WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let (_, before) = mint_on(&c, &r1).await;
    let k2 = rotate_on(&c, &r1).await;
    assert_ne!(k2, before);
    // The backup goes back in place.
    let (v, kek, nonce, ct): (i64, String, Vec<u8>, Vec<u8>) =
        (saved.get(0), saved.get(1), saved.get(2), saved.get(3));
    db.execute(
        "UPDATE chatsdk_auth_signing_keys SET version = $1, kek_id = $2, nonce = $3, ciphertext = $4 WHERE id = 1",
        &[&v, &kek, &nonce, &ct],
    )
    .await
    .unwrap();
    let r3 = serve(&tmp.path().join("r3"), &url);
    r3.wait_ready(&c).await;
    let k3 = rotate_on(&c, &r2).await;
    let replicas = [&r1, &r2, &r3];
    // Converged: all three sign with r2's new key.
    let tokens = until(&format!("every replica signing with r2's {k3}"), || async {
        let mut minted = Vec::new();
        for r in replicas {
            minted.push(mint_on(&c, r).await);
        }
        if minted.iter().all(|(_, kid)| *kid == k3) {
            Ok(minted)
        } else {
            Err(format!(
                "{:?}",
                minted.iter().map(|m| &m.1).collect::<Vec<_>>()
            ))
        }
    })
    .await;
    // Every replica's token verifies on every replica, and so does r1's K2 key.
    for (token, _) in &tokens {
        for r in replicas {
            let st = c
                .get(r.url("/verify"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(st, 200);
        }
    }
    let listed =
        crate::key_rotation::listed_kids(&c, &r1.url(""), &format!("Bearer {ADMIN}"), "rest").await;
    assert!(
        listed.contains(&k2) && listed.contains(&k3) && listed.contains(&before),
        "{listed:?}"
    );
    let mut merged = false;
    for r in [r1, r2, r3] {
        let (_, logs) = r.terminate();
        merged |= logs.iter().any(|l| l.contains("merged them back"));
    }
    assert!(merged, "no replica said it merged the restored ring");
}
