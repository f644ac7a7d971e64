//! The differential tests of the prepared HMAC path (`prepared.rs`): it must sign the very bytes
//! `jsonwebtoken::encode` does and decide every token exactly as `jsonwebtoken::decode` with the
//! `Validation`s does.

use jsonwebtoken::{Algorithm, Header};

use super::claims::{Info, WsClaims, WsMeta};
use super::prepared::encode;
use super::tests::{fixtures, keys};
use super::{TokenError, Verifier};

/// The HMAC path of `encode` must produce the very bytes `jsonwebtoken::encode` does, for
/// each HMAC algorithm and for claims that need JSON escaping.
#[test]
fn prepared_hmac_signing_is_byte_identical_to_jsonwebtoken_encode() {
    let names = [
        "Alice",
        "Zoë \"Z\" \\ </script>\u{1F600}",
        "",
        "\u{0007}\n\t",
    ];
    let app = serde_json::value::to_raw_value("default").unwrap();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let (mut cfg, s) = fixtures();
        cfg.rest_algorithm = alg;
        cfg.ws_algorithm = alg;
        let ring = keys(&cfg, &s);
        let current = ring.current();
        for key in [current.rest.signing(1_000), current.ws.signing(1_000)] {
            assert!(key.hmac.is_some());
            for (i, name) in names.iter().enumerate() {
                let claims = WsClaims {
                    sub: name,
                    iat: 1_000 + i as i64,
                    exp: 2_000,
                    jti: "0123456789abcdef0123456789abcdef",
                    info: Info {
                        name: Some(name),
                        image: (i % 2 == 0).then_some("https://example.com/a.png?x=1&y=\"2\""),
                        custom: &[],
                    },
                    aud: None,
                    iss: Some("chatsdk"),
                    channels: &[name.to_string()],
                    meta: WsMeta {
                        iat: 1_000,
                        app: &app,
                    },
                };
                let ours = encode(key, &claims).unwrap();
                let theirs = jsonwebtoken::encode(&key.header, &claims, &key.encoding).unwrap();
                assert_eq!(ours, theirs, "{alg:?} {name:?}");
            }
        }
    }
}

/// The prepared-key path (`decode_hmac` + the `aud`/`iss` checks) must decide exactly as
/// `jsonwebtoken::decode` with the `Validation`s does, for every claim shape, header and
/// mangling below, under each `aud`/`iss` configuration.
#[test]
fn prepared_hmac_path_decides_exactly_as_jsonwebtoken_decode() {
    use serde_json::{json, Value};
    let now = crate::now_unix();
    let auds = [
        None,
        Some(json!("centrifugo")),
        Some(json!("other")),
        Some(json!(["centrifugo"])),
        Some(json!(["other", "centrifugo"])),
        Some(json!(["centrifugo", 5])),
        Some(json!([])),
        Some(Value::Null),
        Some(json!(5)),
    ];
    let isss = [
        None,
        Some(json!("chatsdk")),
        Some(json!("x")),
        Some(json!(["chatsdk"])),
        Some(Value::Null),
    ];
    let subs = [Some(json!("u")), None, Some(json!(5)), Some(Value::Null)];
    let exps = [
        Some(json!(now + 60)),
        Some(json!(now - 5)),
        None,
        Some(json!(1.5e9)),
    ];
    let channels = [None, Some(json!("")), Some(json!("room"))];
    let mut claims_sets = Vec::new();
    for aud in &auds {
        for iss in &isss {
            for sub in &subs {
                for exp in &exps {
                    for ch in &channels {
                        let mut c = json!({"iat": now, "jti": "j", "info": {"name": "A"}, "meta": {"iat": now}});
                        for (k, v) in [
                            ("aud", aud),
                            ("iss", iss),
                            ("sub", sub),
                            ("exp", exp),
                            ("channel", ch),
                        ] {
                            if let Some(v) = v {
                                c[k] = v.clone();
                            }
                        }
                        claims_sets.push(c);
                    }
                }
            }
        }
    }
    let mut checked = 0;
    for (aud_cfg, iss_cfg) in [
        (None, None),
        (Some("centrifugo"), None),
        (None, Some("chatsdk")),
        (Some("centrifugo"), Some("chatsdk")),
    ] {
        let (mut cfg, s) = fixtures();
        cfg.ws_audience = aud_cfg.map(String::from);
        cfg.ws_issuer = iss_cfg.map(String::from);
        let ring = keys(&cfg, &s);
        let v = Verifier::new(&cfg, ring.clone());
        let current = ring.current();
        let key = current.ws.signing(now);
        let secret = s.centrifugo_key.expose().as_bytes();
        let no_kid = Header::new(Algorithm::HS256);
        let mut hs384 = key.header.clone();
        hs384.alg = Algorithm::HS384;
        let mut unknown_kid = key.header.clone();
        unknown_kid.kid = Some("hs-unknown".into());
        let sign = |h: &Header, c: &Value, secret: &[u8]| {
            jsonwebtoken::encode(h, c, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
        };
        let mut tokens = Vec::new();
        for (i, c) in claims_sets.iter().enumerate() {
            tokens.push(sign(&key.header, c, secret));
            if i % 7 == 0 {
                tokens.push(sign(&no_kid, c, secret));
                tokens.push(sign(&hs384, c, secret));
                tokens.push(sign(&unknown_kid, c, secret));
                tokens.push(sign(
                    &key.header,
                    c,
                    b"another secret of forty bytes or so.....",
                ));
            }
        }
        let base = sign(&key.header, &claims_sets[0], secret);
        // A header that names HS384 over an HS256 signature made with the right secret:
        // only the algorithm check refuses it.
        let forged = {
            use base64::engine::general_purpose::URL_SAFE_NO_PAD;
            use base64::Engine;
            let msg = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&hs384).unwrap()),
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_sets[0]).unwrap())
            );
            let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            let tag = aws_lc_rs::hmac::sign(&hmac, msg.as_bytes());
            format!("{msg}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
        };
        assert_eq!(
            v.verify_ws(&forged, now, true).unwrap_err(),
            TokenError::Invalid
        );
        tokens.push(forged);
        let (msg, sig) = base.rsplit_once('.').unwrap();
        tokens.extend([
            format!("{base}.x"),
            msg.to_string(),
            format!("{msg}."),
            format!("{base}="),
            format!("{msg}.{}", sig.replace('-', "+").replace('_', "/")),
            format!("{msg}X.{sig}"),
            format!(".{base}"),
            format!("{msg}.{}", &sig[1..]),
            "not-a-token".into(),
            String::new(),
        ]);
        for t in &tokens {
            let fast = format!("{:?}", v.verify_ws(t, now, true));
            let slow = format!("{:?}", v.verify_ws(t, now, false));
            assert_eq!(
                fast, slow,
                "wsToken {t} under aud={aud_cfg:?} iss={iss_cfg:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 10_000, "only {checked} tokens compared");

    // REST tokens: required iss, aud (exact strings), sub and exp.
    let (cfg, s) = fixtures();
    let ring = keys(&cfg, &s);
    let v = Verifier::new(&cfg, ring.clone());
    let current = ring.current();
    let key = current.rest.signing(now);
    let rest_auds = [
        None,
        Some(json!(cfg.rest_audience)),
        Some(json!("x")),
        Some(json!([cfg.rest_audience])),
    ];
    let rest_isss = [
        None,
        Some(json!(cfg.rest_issuer)),
        Some(json!("x")),
        Some(json!([cfg.rest_issuer])),
    ];
    for aud in &rest_auds {
        for iss in &rest_isss {
            for sub in &subs {
                for exp in &exps {
                    let mut c = json!({"iat": now, "jti": "j"});
                    for (k, val) in [("aud", aud), ("iss", iss), ("sub", sub), ("exp", exp)] {
                        if let Some(val) = val {
                            c[k] = val.clone();
                        }
                    }
                    let t = jsonwebtoken::encode(
                        &key.header,
                        &c,
                        &jsonwebtoken::EncodingKey::from_secret(s.rest_key.expose().as_bytes()),
                    )
                    .unwrap();
                    assert_eq!(
                        format!("{:?}", v.verify_rest_with(&t, now, true)),
                        format!("{:?}", v.verify_rest_with(&t, now, false)),
                        "REST token {c}"
                    );
                }
            }
        }
    }
}
