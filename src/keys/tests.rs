//! Unit tests of the key layer: every algorithm, refusals naming the key, the schedule, and
//! rotations that run at once.

use std::sync::Arc;

use jsonwebtoken::jwk::{PublicKeyUse, ThumbprintHash};
use jsonwebtoken::Algorithm;

use super::*;
use crate::secrets::{Secret, Secrets};

/// The audit event of a test's rotation.
fn recorded(r: &Rotation) -> crate::store::AuditEvent {
    let e = crate::store::audit_event::SIGNING_KEY_ROTATED;
    crate::store::AuditEvent::new(crate::now_unix(), e, "test", "signing_key", r.kind.label())
}

fn key(alg: Algorithm) -> Key {
    Key::parse("test", alg, &generate(alg).unwrap(), Schedule::CONFIGURED).unwrap()
}

#[test]
fn every_algorithm_generates_parses_and_has_a_stable_kid() {
    for alg in [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let material = generate(alg).unwrap();
        let a = Key::parse("k", alg, &material, Schedule::CONFIGURED).unwrap();
        let b = Key::parse("k", alg, &material, Schedule::CONFIGURED).unwrap();
        assert_eq!(a.kid, b.kid, "{alg:?}");
        assert_eq!(a.header.kid.as_deref(), Some(a.kid.as_str()));
        assert_eq!(a.jwk.is_some(), is_asymmetric(alg));
        if let Some(jwk) = &a.jwk {
            // RFC 7638: the kid is the thumbprint of the public key alone.
            assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256), a.kid);
            assert_eq!(jwk.common.public_key_use, Some(PublicKeyUse::Signature));
            assert!(material
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert!(!material.expose().contains('\r'), "LF line endings");
            let public = a.public_pem.as_deref().unwrap();
            assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n") && !public.contains('\r'));
        }
        let token =
            jsonwebtoken::encode(&a.header, &serde_json::json!({"sub": "u"}), &a.encoding).unwrap();
        let mut v = jsonwebtoken::Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &a.decoding, &v).unwrap();
    }
}

#[test]
fn a_key_that_does_not_fit_its_algorithm_is_named() {
    let rsa = generate(Algorithm::RS256).unwrap();
    let err = Key::parse(
        "secrets.ws_key",
        Algorithm::ES256,
        &rsa,
        Schedule::CONFIGURED,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("secrets.ws_key"), "{err}");
    assert!(err.contains("an RSA key") && err.contains("ES256"), "{err}");
    let hmac = generate(Algorithm::HS256).unwrap();
    let err = Key::parse("x", Algorithm::EdDSA, &hmac, Schedule::CONFIGURED)
        .unwrap_err()
        .to_string();
    assert!(err.contains("PKCS#8"), "{err}");
}

#[test]
fn schedule_decides_signing_verifying_and_publication() {
    let mut old = key(Algorithm::ES256);
    old.schedule = Schedule {
        created_at: 0,
        signs_from: 0,
        signs_until: Some(100),
        expires_at: Some(200),
    };
    let mut new = key(Algorithm::ES256);
    new.schedule = Schedule {
        created_at: 50,
        signs_from: 100,
        signs_until: None,
        expires_at: None,
    };
    let (old_kid, new_kid) = (old.kid.clone(), new.kid.clone());
    let set = KeySet::new(Kind::Ws, Arc::new(new), vec![Arc::new(old)]);
    assert_eq!(set.signing(99).kid, old_kid);
    assert_eq!(set.signing(100).kid, new_kid);
    assert_eq!(set.published(60).count(), 2, "next is published early");
    assert!(set.find(&old_kid, 199).is_some());
    assert!(set.find(&old_kid, 200).is_none());
    assert_eq!(set.published(200).count(), 1);
    assert_eq!(set.verifying(150).count(), 2);
}

fn secrets() -> Secrets {
    crate::secrets::fixture()
}

/// A SQLite store outside the data directory (the ring stays the file there).
async fn sqlite_store(dir: &std::path::Path) -> crate::store::Store {
    let mut raw = crate::config::RawConfig::default();
    raw.storage.data_dir = dir.to_string_lossy().into_owned();
    crate::store::Store::open(&raw.validate().unwrap().store)
        .await
        .unwrap()
}

/// Rotations at once (each on the blocking pool, as the admin API runs them) take turns on the
/// ring file: every one succeeds and every new key is in the ring afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_take_turns_and_keep_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = crate::config::RawConfig::default();
    raw.storage.data_dir = tmp.path().to_string_lossy().into_owned();
    let config = Arc::new(raw.validate().unwrap());
    let secrets = Arc::new(secrets());
    let db = tempfile::tempdir().unwrap();
    let store = Arc::new(sqlite_store(db.path()).await);
    let now = crate::now_unix();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (config, secrets, store) = (config.clone(), secrets.clone(), store.clone());
            tokio::spawn(async move {
                rotate(&config, &secrets, &store, Kind::Rest, now, &recorded).await
            })
        })
        .collect();
    let mut new_kids = Vec::new();
    for t in tasks {
        new_kids.push(t.await.unwrap().unwrap().new_kid);
    }
    let ring = KeyRing::load(&config, &secrets).unwrap();
    let kids: Vec<&str> = ring.rest.all().iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(
        kids.len(),
        9,
        "the configured key and eight new ones: {kids:?}"
    );
    for kid in &new_kids {
        assert!(kids.contains(&kid.as_str()), "{kid} lost: {kids:?}");
    }
    // Only the ring and its lock file are left in the directory.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["keyring.json", "keyring.lock"]);
}

#[tokio::test]
async fn a_refused_rotation_names_why_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = crate::config::RawConfig::default();
    raw.storage.data_dir = tmp.path().to_string_lossy().into_owned();
    let config = raw.validate().unwrap();
    let s = secrets();
    let db = tempfile::tempdir().unwrap();
    let store = sqlite_store(db.path()).await;
    let now = crate::now_unix();
    rotate(&config, &s, &store, Kind::Ws, now, &recorded)
        .await
        .unwrap();
    let before = std::fs::read_to_string(ring_path(&config)).unwrap();
    let err = rotate(&config, &s, &store, Kind::Ws, now, &recorded)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyError::Refused(Refusal::PreviousHmac { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("hmac_previous_secret_key"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(ring_path(&config)).unwrap(), before);
}

/// The sealed ring opens with its secret only, at its own version only, and shows no key
/// material.
#[test]
fn a_sealed_ring_opens_with_its_secret_at_its_version_only() {
    use super::ring::StoredKey;
    use super::sealed::Kek;
    let s = secrets();
    let ring = KeyRing::configured(
        &crate::config::RawConfig::default()
            .validate()
            .unwrap()
            .tokens,
        &s,
    )
    .unwrap();
    let file = super::ring::RingFile {
        version: super::ring::RING_VERSION,
        rest: vec![StoredKey::of(&ring.rest.all()[0])],
        ws: vec![StoredKey::of(&ring.ws.all()[0])],
    };
    let kek = Kek::new(&Secret::new("k".repeat(43))).unwrap();
    let other = Kek::new(&Secret::new("o".repeat(43))).unwrap();
    assert_eq!(kek.id().len(), 16);
    assert_ne!(kek.id(), other.id());
    let a = kek.seal(&file, 3).unwrap();
    let b = kek.seal(&file, 3).unwrap();
    assert_ne!(a.nonce, b.nonce, "a fresh nonce per write");
    assert_eq!(a.nonce.len(), 12);
    let plain = String::from_utf8_lossy(&a.ciphertext).into_owned();
    assert!(!plain.contains(&"r".repeat(20)) && !plain.contains("material"));
    let opened = kek.open(&a).unwrap();
    assert_eq!(opened.rest[0].schedule, file.rest[0].schedule);
    let Err(err) = other.open(&a) else {
        panic!("another secret opened the ring")
    };
    assert!(
        matches!(&err, KeyError::RingDecrypt { stored, ours } if stored == kek.id() && ours == other.id()),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot decrypt"), "{err}");
    // Sealed with this secret, then altered: told from a wrong secret, which would name
    // another id and send the operator after the wrong fix.
    let mut moved = a.clone();
    moved.version = 4;
    let mut flipped = a.clone();
    flipped.ciphertext[0] ^= 1;
    let mut short_nonce = a.clone();
    short_nonce.nonce.pop();
    for altered in [moved, flipped, short_nonce] {
        let Err(err) = kek.open(&altered) else {
            panic!("an altered row opened")
        };
        assert!(
            matches!(&err, KeyError::RingTampered { kek: k, .. } if k == kek.id()),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("altered or corrupted") && !text.contains("cannot decrypt"),
            "{text}"
        );
        assert_eq!(text.matches(kek.id()).count(), 1, "{text}");
    }
    // Another secret's row: the wrong-secret sentence, naming both ids once each.
    let theirs = other.seal(&file, 3).unwrap();
    let Err(err) = kek.open(&theirs) else {
        panic!("another secret's row opened")
    };
    assert!(matches!(err, KeyError::RingDecrypt { .. }), "{err:?}");
}

/// The secret's id is derived with HKDF-SHA-256 (the value `openssl kdf` gives, as README
/// shows), not its plain SHA-256 prefix; a row named by that former id still opens, and is
/// recognised as such so the next write names the derived id.
#[test]
fn the_kek_id_is_derived_and_rows_named_by_the_former_id_still_open() {
    use super::sealed::Kek;
    let secret = Secret::new("k".repeat(43));
    let kek = Kek::new(&secret).unwrap();
    // openssl kdf -keylen 8 -kdfopt digest:SHA256 -kdfopt key:kkk... \
    //   -kdfopt salt:"chatsdk-auth key-encryption secret id" -kdfopt info:"kek-id v1" HKDF
    assert_eq!(kek.id(), "5b5f325cc258f272");
    // printf %s kkk... | sha256sum | cut -c1-16: the former id, never the id any more.
    assert_ne!(kek.id(), "a0484a6185b324e2");
    assert!(kek.names("a0484a6185b324e2") && kek.names(kek.id()));
    let s = secrets();
    let ring = KeyRing::configured(
        &crate::config::RawConfig::default()
            .validate()
            .unwrap()
            .tokens,
        &s,
    )
    .unwrap();
    let file = super::ring::RingFile {
        version: super::ring::RING_VERSION,
        rest: vec![super::ring::StoredKey::of(&ring.rest.all()[0])],
        ws: vec![super::ring::StoredKey::of(&ring.ws.all()[0])],
    };
    let before = kek.seal_as_before(&file, 2);
    assert_eq!(before.kek_id, "a0484a6185b324e2");
    assert!(kek.is_legacy(&before));
    let opened = kek.open(&before).unwrap();
    assert_eq!(opened.rest[0].schedule, file.rest[0].schedule);
    let now = kek.seal(&opened, 3).unwrap();
    assert_eq!(now.kek_id, kek.id());
    assert!(!kek.is_legacy(&now));
    kek.open(&now).unwrap();
    // Another secret's former id is still another secret.
    let other = Kek::new(&Secret::new("o".repeat(43))).unwrap();
    assert!(matches!(
        other.open(&before),
        Err(KeyError::RingDecrypt { .. })
    ));
}
