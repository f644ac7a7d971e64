//! A key ring row sealed before the key-encryption secret's id was derived (named by the first
//! 16 hex digits of the secret's SHA-256, bound so in the associated data) still opens: a
//! replica starts on it with the same keys, and seals it again under the derived id, so the
//! plain hash of the secret leaves the database.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM};
use aws_lc_rs::{digest, hkdf};
use chatsdk_auth::config::RawConfig;

use crate::helpers::{use_postgres, TestApp};
use crate::pg;

const KEK: &str = "kek-of-the-former-id-test-0123456789abcdefg";

/// The ring's AES-256-GCM key, derived as the sealing code derives it.
fn ring_key() -> RandomizedNonceKey {
    let mut key = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"chatsdk-auth key ring")
        .extract(KEK.as_bytes())
        .expand(&[b"aes-256-gcm"], &AES_256_GCM)
        .unwrap()
        .fill(&mut key)
        .unwrap();
    RandomizedNonceKey::new(&AES_256_GCM, &key).unwrap()
}

fn aad(version: i64, kek_id: &str) -> String {
    format!("chatsdk_auth_signing_keys id=1 format=1 version={version} kek={kek_id}")
}

fn replica(url: &str) -> impl FnOnce(&mut RawConfig) {
    let url = url.to_string();
    move |c| {
        use_postgres(c, url);
        c.secrets.key_encryption_key = KEK.into();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_row_named_by_the_former_id_opens_and_is_sealed_again_under_the_derived_id() {
    crate::need::need!(Postgres);
    let url = pg::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut a = TestApp::start_in(&tmp.path().join("a"), replica(&url)).await;
    let kids = a.app.keys.current().list(chatsdk_auth::now_unix());
    let kids: Vec<String> = kids.into_iter().map(|k| k.kid).collect();
    a.stop().await;

    // The row as the former version wrote it: opened with the derived id, sealed again under
    // the SHA-256 prefix.
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = db
        .query_one(
            "SELECT version, kek_id, nonce, ciphertext FROM chatsdk_auth_signing_keys",
            &[],
        )
        .await
        .unwrap();
    let (version, derived): (i64, String) = (row.get(0), row.get(1));
    let (nonce, mut data): (Vec<u8>, Vec<u8>) = (row.get(2), row.get(3));
    let former: String = digest::digest(&digest::SHA256, KEK.as_bytes()).as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(derived, former, "the id written is the derived one");
    let key = ring_key();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(&nonce).unwrap(),
            Aad::from(aad(version, &derived)),
            &mut data,
        )
        .unwrap()
        .to_vec();
    let mut data = plain;
    let nonce = key
        .seal_in_place_append_tag(Aad::from(aad(version, &former)), &mut data)
        .unwrap();
    db.execute(
        "UPDATE chatsdk_auth_signing_keys SET kek_id = $1, nonce = $2, ciphertext = $3",
        &[&former, &nonce.as_ref().to_vec(), &data],
    )
    .await
    .unwrap();

    // A replica starts on it, with the same keys, and the row now names the derived id.
    std::fs::create_dir_all(tmp.path().join("b")).unwrap();
    std::fs::copy(
        tmp.path().join("a").join("test-key.txt"),
        tmp.path().join("b").join("test-key.txt"),
    )
    .unwrap();
    let b = TestApp::start_in(&tmp.path().join("b"), replica(&url)).await;
    let listed: Vec<String> = b
        .app
        .keys
        .current()
        .list(chatsdk_auth::now_unix())
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(listed, kids);
    let row = db
        .query_one("SELECT version, kek_id FROM chatsdk_auth_signing_keys", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, String>(1)),
        (version + 1, derived)
    );
    let (s, body) = b.tokens(serde_json::json!({"userId": "u"})).await;
    assert_eq!(s, 200, "{body}");
}
