//! Signing keys: every algorithm generated at first start, published in the JWKS and verified
//! by an independent implementation (PyJWT's `PyJWKClient`, tests/jwks_verify.py); a key that
//! does not fit its algorithm stops startup; rotation end to end on a running server (the real
//! binary and the CLI for HMAC, the in-process server for asymmetric keys): tokens from before
//! and after both verify until the old ones expire, then only the new.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use chatsdk_auth::keys::{self, Kind};
use serde_json::{json, Value};

use crate::helpers::{connect_with, now, start_app, try_verify_hs256, until, TestApp};
use crate::process::{cli, cli_ok, stdout, Server};
use crate::verify::verify;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The header of a compact JWS.
fn header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&B64.decode(h).unwrap()).unwrap()
}

fn kid(token: &str) -> String {
    header(token)["kid"].as_str().unwrap().to_string()
}

/// The venv tests/venv.sh keeps (tests/run.sh runs it before `cargo test`).
fn python() -> PathBuf {
    crate::need::assert_present(crate::need::Component::PyJwt);
    crate::need::venv_python()
}

/// Verifies `tokens` (token, alg, aud) with PyJWT against `jwks_url`; one result each.
async fn pyjwt(jwks_url: String, tokens: Vec<(String, &'static str, &'static str)>) -> Vec<Value> {
    let input = json!({
        "jwks_url": jwks_url,
        "tokens": tokens.iter().map(|(t, alg, aud)| json!({"token": t, "alg": alg, "aud": aud})).collect::<Vec<_>>(),
    });
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jwks_verify.py");
        let mut child = std::process::Command::new(python())
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "tests/jwks_verify.py failed");
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    })
    .await
    .unwrap()
}

async fn jwks(t: &TestApp) -> Value {
    let r = t
        .client
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_is_generated_published_and_verified_by_pyjwt() {
    crate::need::need!(PyJwt);
    for (alg, kty) in [("RS256", "RSA"), ("ES256", "EC"), ("EdDSA", "OKP")] {
        let t = TestApp::spawn_with(|c| {
            c.tokens.algorithm = alg.into();
            c.tokens.ws_audience = "centrifugo".into();
        })
        .await;
        // Generated at first start: PKCS#8 PEM, owner-only, a file per kind and algorithm.
        for prefix in ["rest", "ws"] {
            let f = t
                .dir
                .join(format!("{prefix}-signing-{}.pem", alg.to_ascii_lowercase()));
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let minted = t.mint("user-j").await;
        let token = minted["token"].as_str().unwrap().to_string();
        let ws = minted["wsToken"].as_str().unwrap().to_string();
        assert_eq!(header(&token)["alg"], alg);
        assert_ne!(kid(&token), kid(&ws));

        // The JWKS: both kinds, with what Centrifugo needs (kid, use: sig) and the alg.
        let set = jwks(&t).await;
        let published = set["keys"].as_array().unwrap();
        assert_eq!(published.len(), 2, "{alg}: {set}");
        for k in published {
            assert_eq!(k["kty"], kty);
            assert_eq!(k["use"], "sig");
            assert_eq!(k["alg"], alg);
            assert!(k.get("d").is_none(), "no private part: {k}");
        }
        let kids: Vec<&str> = published
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(kids.contains(&kid(&token).as_str()) && kids.contains(&kid(&ws).as_str()));

        // PyJWT fetches the JWKS, picks the key by kid and verifies signature and claims.
        let mut tampered = token.clone();
        tampered.insert(tampered.rfind('.').unwrap() + 1, 'A');
        let results = pyjwt(
            t.url("/.well-known/jwks.json"),
            vec![
                (token.clone(), alg, "chatsdk-api"),
                (ws.clone(), alg, "centrifugo"),
                (tampered, alg, "chatsdk-api"),
                (ws.clone(), alg, "chatsdk-api"),
            ],
        )
        .await;
        assert_eq!(results[0]["ok"], true, "{alg}: {}", results[0]);
        assert_eq!(results[0]["sub"], "user-j");
        assert_eq!(results[0]["kid"], kid(&token));
        assert_eq!(results[1]["ok"], true, "{alg}: {}", results[1]);
        assert_eq!(
            results[2]["ok"], false,
            "a tampered signature fails: {}",
            results[2]
        );
        assert_eq!(
            results[3]["ok"], false,
            "the wsToken's audience is not the REST one"
        );

        // The service's own checks agree.
        assert_eq!(
            verify(&t, Some(&format!("Bearer {token}")), &[]).await.0,
            200
        );
        let (s, _, b) = verify(&t, Some(&format!("Bearer {ws}")), &[]).await;
        assert_eq!((s, b["code"].as_str()), (401, Some("wrong_token_type")));
        let (s, r) = t
            .proxy("/centrifugo/connect", &connect_with(&ws), &[])
            .await;
        assert_eq!(
            (s, r["result"]["user"].as_str()),
            (200, Some("user-j")),
            "{alg}: {r}"
        );
    }
}

#[tokio::test]
async fn a_key_that_does_not_fit_its_algorithm_stops_startup_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rsa = keys::generate(jsonwebtoken::Algorithm::RS256).unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.storage.data_dir = tmp.path().join("data").to_string_lossy().into_owned();
    raw.tokens.rest_algorithm = "ES256".into();
    raw.secrets.rest_key = rsa.expose().to_string();
    let err = match start_app(raw.validate().unwrap()).await {
        Ok(_) => panic!("an RSA key for ES256 must not start"),
        Err(e) => chatsdk_auth::error_chain::Chain(&e).to_string(),
    };
    assert!(err.contains("secrets.rest_key"), "{err}");
    assert!(err.contains("tokens.rest_algorithm = ES256"), "{err}");
    assert!(err.contains("an RSA key"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "never the key itself: {err}");

    // An HMAC secret where a PEM key belongs.
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.storage.data_dir = tmp.path().join("data2").to_string_lossy().into_owned();
    raw.tokens.ws_algorithm = "EdDSA".into();
    raw.secrets.centrifugo_key = "w".repeat(43);
    let err = match start_app(raw.validate().unwrap()).await {
        Ok(_) => panic!("an HMAC secret for EdDSA must not start"),
        Err(e) => chatsdk_auth::error_chain::Chain(&e).to_string(),
    };
    assert!(err.contains("secrets.centrifugo_key"), "{err}");
    assert!(err.contains("PKCS#8"), "{err}");
}

/// Ends the validity of every key of `kind` that no longer signs, as if its last token had
/// expired: the ring file's schedule, rewritten in place (the server re-reads it).
fn expire_previous(ring: &Path, kind: &str) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(ring).unwrap()).unwrap();
    for k in v[kind].as_array_mut().unwrap() {
        if !k["signs_until"].is_null() {
            k["expires_at"] = json!(now());
            k["signs_until"] = json!(now());
        }
    }
    std::fs::write(ring, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

async fn post_tokens(c: &reqwest::Client, s: &Server, key: &str, user: &str) -> (String, String) {
    let r = c
        .post(s.url("/tokens"))
        .header("X-API-Key", key)
        .json(&json!({"userId": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    (
        b["token"].as_str().unwrap().to_string(),
        b["wsToken"].as_str().unwrap().to_string(),
    )
}

async fn verify_status(c: &reqwest::Client, s: &Server, token: &str) -> u16 {
    c.get(s.url("/verify"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn connect(c: &reqwest::Client, s: &Server, secret: &str, ws: &str) -> Value {
    c.post(s.url("/centrifugo/connect"))
        .header("X-Chatsdk-Proxy-Secret", secret)
        .header("Content-Type", "application/json")
        .body(connect_with(ws))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_rotation_with_the_cli_reaches_the_running_binary_and_centrifugos_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(dir, &[]);
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;
    let data = dir.join("data");
    let read = |f: &str| {
        std::fs::read_to_string(data.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    let (key, secret) = (read("api-key.txt"), read("proxy-secret.key"));

    let (t1, w1) = post_tokens(&c, &server, &key, "rot").await;
    let out = cli_ok(dir, &["keys", "rotate", "rest"]);
    let rest_kid = out.trim().to_string();
    let out = cli(dir, &["keys", "rotate", "ws"]);
    assert!(out.status.success());
    let ws_kid = stdout(&out).trim().to_string();
    assert!(String::from_utf8_lossy(&out.stderr).contains("centrifugo-config"));
    assert_ne!(rest_kid, kid(&t1));
    assert_ne!(ws_kid, kid(&w1));
    // A second ws rotation while the previous key still verifies is refused: Centrifugo holds
    // one previous HMAC key.
    let again = cli(dir, &["keys", "rotate", "ws"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("hmac_previous_secret_key"));

    // The running server picks the ring up by itself: new tokens carry the new kids.
    let fresh = until("the server picks the rotation up", || async {
        let fresh = post_tokens(&c, &server, &key, "rot").await;
        match kid(&fresh.0) {
            k if k == rest_kid => Ok(fresh),
            k => Err(format!("kid {k}")),
        }
    })
    .await;
    let (t2, w2) = fresh;
    assert_eq!(kid(&w2), ws_kid);

    // Tokens from before and after both work.
    for t in [&t1, &t2] {
        assert_eq!(verify_status(&c, &server, t).await, 200);
    }
    for w in [&w1, &w2] {
        assert_eq!(
            connect(&c, &server, &secret, w).await["result"]["user"],
            "rot"
        );
    }

    // keys list: current and previous of both kinds.
    let list: Value = serde_json::from_str(&cli_ok(dir, &["keys", "list", "--json"])).unwrap();
    let states: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["kid"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (kind, k, state) in [
        ("rest", kid(&t1), "previous"),
        ("rest", rest_kid.clone(), "current"),
        ("ws", kid(&w1), "previous"),
        ("ws", ws_kid.clone(), "current"),
    ] {
        assert!(
            states.contains(&(kind.into(), k.clone(), state.into())),
            "{kind} {k} {state}: {states:?}"
        );
    }

    // Centrifugo's config: the new key, and the old one until its last token has expired.
    let cfg: Value = serde_json::from_str(&cli_ok(dir, &["centrifugo-config"])).unwrap();
    let tok = &cfg["client"]["token"];
    try_verify_hs256(&w2, tok["hmac_secret_key"].as_str().unwrap()).expect("current verifies new");
    try_verify_hs256(&w1, tok["hmac_previous_secret_key"].as_str().unwrap())
        .expect("previous verifies old");
    assert!(try_verify_hs256(&w1, tok["hmac_secret_key"].as_str().unwrap()).is_none());
    let (_, w1_claims) =
        try_verify_hs256(&w1, tok["hmac_previous_secret_key"].as_str().unwrap()).unwrap();
    let until = tok["hmac_previous_secret_key_valid_until"]
        .as_i64()
        .unwrap();
    assert!(
        until >= w1_claims["exp"].as_i64().unwrap(),
        "until every old token expired"
    );
    assert!(until <= now() + 86_400 + 5);

    // The old keys' tokens expire: then only the new ones verify.
    let ring = data.join(keys::RING_FILE);
    assert_eq!(
        std::fs::metadata(&ring).unwrap().permissions().mode() & 0o777,
        0o600
    );
    expire_previous(&ring, "rest");
    expire_previous(&ring, "ws");
    crate::helpers::eventually("the old REST key stops verifying", || {
        let (c, s, t) = (&c, &server, &t1);
        async move { verify_status(c, s, t).await == 401 }
    })
    .await;
    assert_eq!(verify_status(&c, &server, &t2).await, 200);
    assert_eq!(
        connect(&c, &server, &secret, &w1).await["disconnect"]["code"],
        4501
    );
    assert_eq!(
        connect(&c, &server, &secret, &w2).await["result"]["user"],
        "rot"
    );
    let cfg: Value = serde_json::from_str(&cli_ok(dir, &["centrifugo-config"])).unwrap();
    assert!(cfg["client"]["token"]
        .get("hmac_previous_secret_key")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_rotation_publishes_next_first_and_previous_until_expiry() {
    crate::need::need!(PyJwt);
    let t = TestApp::spawn_with(|c| {
        c.tokens.rest_algorithm = "ES256".into();
        c.tokens.ws_algorithm = "EdDSA".into();
        c.tokens.ws_audience = "centrifugo".into();
        c.tokens.jwks_publish_delay_seconds = 2;
    })
    .await;
    let ring_path = t.dir.join(keys::RING_FILE);
    let url = t.url("/.well-known/jwks.json");
    let old = t.mint("a").await["token"].as_str().unwrap().to_string();
    let old_kid = kid(&old);

    let rotation = chatsdk_auth::actions::Actions::new(&t.app.store, false, "test")
        .rotate_signing_key(&t.app.config, &t.app.secrets, Kind::Rest, now())
        .await
        .unwrap();
    assert_eq!(rotation.old_kid, old_kid);
    assert!(rotation.signs_from > now());
    // Published as "next" at once (after the server's next look at the file) ...
    crate::helpers::eventually("the next key is published", || {
        let t = &t;
        async move { jwks(t).await["keys"].as_array().unwrap().len() == 3 }
    })
    .await;
    // ... while the old key still signs.
    let during = t.mint("a").await["token"].as_str().unwrap().to_string();
    if now() < rotation.signs_from {
        assert_eq!(
            kid(&during),
            old_kid,
            "the new key does not sign before its time"
        );
    }
    // Then the new key signs.
    let new = until("the new key starts signing", || async {
        let new = t.mint("a").await["token"].as_str().unwrap().to_string();
        match kid(&new) {
            k if k == rotation.new_kid => Ok(new),
            k => Err(format!("kid {k}")),
        }
    })
    .await;
    let r = pyjwt(
        url.clone(),
        vec![
            (old.clone(), "ES256", "chatsdk-api"),
            (new.clone(), "ES256", "chatsdk-api"),
        ],
    )
    .await;
    assert!(
        r.iter().all(|v| v["ok"] == true),
        "before and after both verify: {r:?}"
    );
    assert_eq!(verify(&t, Some(&format!("Bearer {old}")), &[]).await.0, 200);

    // The old key's last token expires: it leaves the JWKS and stops verifying.
    expire_previous(&ring_path, "rest");
    crate::helpers::eventually("the old key leaves the JWKS", || {
        let t = &t;
        async move { jwks(t).await["keys"].as_array().unwrap().len() == 2 }
    })
    .await;
    let r = pyjwt(
        url,
        vec![
            (old.clone(), "ES256", "chatsdk-api"),
            (new.clone(), "ES256", "chatsdk-api"),
        ],
    )
    .await;
    assert_eq!(r[0]["ok"], false, "{}", r[0]);
    assert_eq!(r[1]["ok"], true, "{}", r[1]);
    assert_eq!(verify(&t, Some(&format!("Bearer {old}")), &[]).await.0, 401);
    assert_eq!(verify(&t, Some(&format!("Bearer {new}")), &[]).await.0, 200);
}

/// `GET /admin/keys` and `POST /admin/keys/{rest|ws}/rotate`: the CLI's `keys list` and
/// `keys rotate` over the admin API; the server that rotates applies it at once.
#[tokio::test]
async fn admin_api_lists_and_rotates_keys() {
    let t = TestApp::spawn().await;
    let bearer = format!("Bearer {}", t.app.secrets.admin_token.expose());
    let call = |method: reqwest::Method, path: &str| {
        t.client
            .request(method, t.url(path))
            .header("Authorization", bearer.clone())
    };
    let old = t.mint("adm").await["token"].as_str().unwrap().to_string();
    let r = call(reqwest::Method::GET, "/admin/keys")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{list}");
    assert!(keys
        .iter()
        .all(|k| k["state"] == "current" && k["alg"] == "HS256"));
    assert!(!list.to_string().contains(&t.rest_key()), "never a secret");

    let r = call(reqwest::Method::POST, "/admin/keys/rest/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rot: Value = r.json().await.unwrap();
    assert_eq!(rot["kind"], "rest");
    assert_eq!(rot["old_kid"], kid(&old));
    // Applied at once by this server: the next token carries the new kid, the old still verifies.
    let new = t.mint("adm").await["token"].as_str().unwrap().to_string();
    assert_eq!(kid(&new), rot["new_kid"].as_str().unwrap());
    assert_eq!(verify(&t, Some(&format!("Bearer {old}")), &[]).await.0, 200);
    assert_eq!(verify(&t, Some(&format!("Bearer {new}")), &[]).await.0, 200);

    // ws: the second rotation is refused while the previous HMAC key still verifies.
    let ok = call(reqwest::Method::POST, "/admin/keys/ws/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let again = call(reqwest::Method::POST, "/admin/keys/ws/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let b: Value = again.json().await.unwrap();
    assert_eq!(b["code"], "rotation_refused");
    // Both rotations are in the audit trail, with the key ids and never key material.
    let trail = t
        .app
        .store
        .list_audit(&chatsdk_auth::store::AuditFilter::default())
        .await
        .unwrap();
    let rotated: Vec<_> = trail
        .iter()
        .filter(|e| e.event == "signing_key.rotated")
        .collect();
    assert_eq!(rotated.len(), 2, "{trail:?}");
    assert!(rotated
        .iter()
        .all(|e| e.actor == "admin" && e.target_kind.as_deref() == Some("signing_key")));
    assert!(rotated.iter().any(|e| e
        .detail
        .as_deref()
        .is_some_and(|d| d.contains(rot["new_kid"].as_str().unwrap()))));
    let bad = call(reqwest::Method::POST, "/admin/keys/both/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let r = t.client.get(t.url("/admin/keys")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
