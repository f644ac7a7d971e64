//! Unit tests of signing and verification: round trips, expiry, Centrifugo's order, token ids,
//! server-side channels, subscription tokens, hostile headers and key confusion.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Header, Validation};

use super::signer::encode_jti;
use super::*;
use crate::channels::{ChannelRules, Rule, RuleKind};
use crate::config::TokenConfig;
use crate::keys::{KeyRing, LiveKeys};
use crate::secrets::Secrets;

pub(super) fn keys(cfg: &TokenConfig, s: &Secrets) -> Arc<LiveKeys> {
    Arc::new(LiveKeys::fixed(KeyRing::configured(cfg, s).unwrap()))
}

pub(super) fn fixtures() -> (TokenConfig, Secrets) {
    let cfg = crate::config::RawConfig::default()
        .validate()
        .unwrap()
        .tokens;
    let secrets = crate::secrets::fixture();
    (cfg, secrets)
}

#[test]
fn ws_token_round_trips_and_rest_token_does_not_verify_as_ws() {
    let (cfg, s) = fixtures();
    let signer = Signer::new(
        &cfg,
        keys(&cfg, &s),
        &s.subscription_key,
        &ChannelRules::default(),
    );
    let now = crate::now_unix();
    let m = signer
        .mint(
            "u1",
            Info {
                name: Some("A"),
                image: None,
                custom: &[],
            },
            now,
        )
        .unwrap();
    let v = Verifier::new(&cfg, keys(&cfg, &s));
    assert_eq!(v.verify(&m.ws_token, now).unwrap().sub, "u1");
    assert_eq!(v.verify(&m.token, now).unwrap_err(), TokenError::Invalid);
    let rest = v.verify_rest(&m.token, now).unwrap();
    assert_eq!((rest.iat, rest.exp - rest.iat), (now, 86_400));
}

#[test]
fn expiry_is_strict_and_without_leeway() {
    let (cfg, s) = fixtures();
    let signer = Signer::new(
        &cfg,
        keys(&cfg, &s),
        &s.subscription_key,
        &ChannelRules::default(),
    );
    let v = Verifier::new(&cfg, keys(&cfg, &s));
    let now = crate::now_unix();
    let m = signer.mint("u1", Info::default(), now - 86_400).unwrap();
    // exp == now: Centrifugo requires exp > now.
    assert_eq!(v.verify(&m.ws_token, now).unwrap_err(), TokenError::Expired);
}

#[test]
fn jti_is_a_fresh_v4_uuid_in_simple_form() {
    let new_jti = || {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        encode_jti(&mut buf).to_string()
    };
    let a = new_jti();
    assert_eq!(a.len(), 32);
    let parsed = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_ne!(a, new_jti());
}

#[test]
fn the_ws_token_lists_the_server_side_channels_of_the_user() {
    let (cfg, s) = fixtures();
    let rules = ChannelRules::new(vec![
        Rule::parse("personal:#{userId}", RuleKind::ServerSide).unwrap(),
        Rule::parse("#{userId}", RuleKind::ServerSide).unwrap(),
    ]);
    let signer = Signer::new(&cfg, keys(&cfg, &s), &s.subscription_key, &rules);
    let now = crate::now_unix();
    let claims = |user: &str| {
        let m = signer.mint(user, Info::default(), now).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        let key = jsonwebtoken::DecodingKey::from_secret(s.centrifugo_key.expose().as_bytes());
        jsonwebtoken::decode::<serde_json::Value>(&m.ws_token, &key, &v)
            .unwrap()
            .claims
    };
    assert_eq!(
        claims("u-1")["channels"],
        serde_json::json!(["personal:u-1", "u-1"])
    );
    assert_eq!(
        claims("personal:bob")["channels"],
        serde_json::json!(["personal:personal:bob"])
    );
}

fn hand_signed(claims: serde_json::Value, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[test]
fn centrifugo_order_invalid_wins_over_expired_and_nbf_is_strict() {
    let (mut cfg, s) = fixtures();
    cfg.ws_audience = Some("centrifugo".into());
    let v = Verifier::new(&cfg, keys(&cfg, &s));
    let now = crate::now_unix();
    let key = s.centrifugo_key.expose();
    let expired_wrong_aud = hand_signed(
        serde_json::json!({"sub": "u", "iat": now - 99, "exp": now - 9, "aud": "other"}),
        key,
    );
    assert_eq!(
        v.verify(&expired_wrong_aud, now).unwrap_err(),
        TokenError::Invalid
    );
    let nbf_now = hand_signed(
        serde_json::json!({"sub": "u", "iat": now, "exp": now + 60, "nbf": now, "aud": "centrifugo"}),
        key,
    );
    assert_eq!(v.verify(&nbf_now, now).unwrap_err(), TokenError::Expired);
    let nbf_past = hand_signed(
        serde_json::json!({"sub": "u", "iat": now, "exp": now + 60, "nbf": now - 1, "aud": "centrifugo"}),
        key,
    );
    assert_eq!(v.verify(&nbf_past, now).unwrap().sub, "u");
    let negative_exp = hand_signed(
        serde_json::json!({"sub": "u", "iat": 0, "exp": -5, "aud": "centrifugo"}),
        key,
    );
    assert_eq!(
        v.verify(&negative_exp, now).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn subscription_tokens_use_their_own_key_and_carry_the_channel() {
    let (mut cfg, s) = fixtures();
    cfg.subscription_expire_at_seconds = Some(600);
    let signer = Signer::new(
        &cfg,
        keys(&cfg, &s),
        &s.subscription_key,
        &ChannelRules::default(),
    );
    let token = signer
        .mint_subscription("u1", "$room:a", Info::default(), 1_000)
        .unwrap();
    let mut v = Validation::new(cfg.subscription_algorithm);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    let key = jsonwebtoken::DecodingKey::from_secret(s.subscription_key.expose().as_bytes());
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["channel"], "$room:a");
    assert_eq!(claims["exp"], 1_000 + 3600);
    assert_eq!(claims["expire_at"], 1_600);
    assert!(claims.get("info").is_none());
    // The wsToken key does not verify it.
    let ws = jsonwebtoken::DecodingKey::from_secret(s.centrifugo_key.expose().as_bytes());
    assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &ws, &v).is_err());
}

fn b64(v: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn rest_tokens_verify_and_ws_tokens_are_the_wrong_type() {
    let (cfg, s) = fixtures();
    let k = keys(&cfg, &s);
    let signer = Signer::new(
        &cfg,
        k.clone(),
        &s.subscription_key,
        &ChannelRules::default(),
    );
    let v = Verifier::new(&cfg, k);
    let now = crate::now_unix();
    let m = signer.mint("u1", Info::default(), now).unwrap();
    let c = v.verify_rest(&m.token, now).unwrap();
    assert_eq!(c.sub, "u1");
    assert!(c.aud.contains("chatsdk-api"));
    assert_eq!(c.aud.application(), Some("default"));
    assert_eq!(
        v.verify_rest(&m.ws_token, now).unwrap_err(),
        RestTokenError::WrongTokenType
    );
    assert_eq!(
        v.verify_rest(&m.token, now + cfg.ttl_seconds).unwrap_err(),
        RestTokenError::Expired
    );
    // Tampered claims: the signature no longer matches.
    let mut parts: Vec<String> = m.token.split('.').map(str::to_string).collect();
    parts[1] = b64(
        &serde_json::json!({"sub": "admin", "iss": "chatsdk-auth", "aud": "chatsdk-api", "iat": now, "exp": now + 60, "jti": "x"}),
    );
    assert_eq!(
        v.verify_rest(&parts.join("."), now).unwrap_err(),
        RestTokenError::Invalid
    );
    for bad in [
        "",
        "abc",
        "a.b.c",
        "eyJ.eyJ.",
        &m.token[..m.token.len() - 2],
    ] {
        assert_eq!(
            v.verify_rest(bad, now).unwrap_err(),
            RestTokenError::Invalid,
            "{bad}"
        );
    }
}

#[test]
fn hostile_headers_are_refused() {
    let (cfg, s) = fixtures();
    let k = keys(&cfg, &s);
    let ring = k.current();
    let rest = ring.rest.signing(0).clone();
    let v = Verifier::new(&cfg, k);
    let now = crate::now_unix();
    let claims = serde_json::json!({"sub": "u", "iss": "chatsdk-auth", "aud": "chatsdk-api", "iat": now, "exp": now + 60, "jti": "j"});
    let sign = |h: &Header| jsonwebtoken::encode(h, &claims, &rest.encoding).unwrap();
    assert!(v.verify_rest(&sign(&rest.header), now).is_ok());
    // No kid, an unknown kid, and keys or key URLs offered by the token itself.
    let mut h = rest.header.clone();
    h.kid = None;
    assert_eq!(
        v.verify_rest(&sign(&h), now).unwrap_err(),
        RestTokenError::Invalid
    );
    h.kid = Some("nope".into());
    assert_eq!(
        v.verify_rest(&sign(&h), now).unwrap_err(),
        RestTokenError::Invalid
    );
    for f in [
        |h: &mut Header| h.jku = Some("https://evil.example/jwks".into()),
        |h: &mut Header| h.x5u = Some("https://evil.example/cert".into()),
        |h: &mut Header| h.crit = Some(vec!["exp".into()]),
    ] {
        let mut h = rest.header.clone();
        f(&mut h);
        assert_eq!(
            v.verify_rest(&sign(&h), now).unwrap_err(),
            RestTokenError::Invalid
        );
    }
    // alg: none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "kid": rest.kid})),
        b64(&claims)
    );
    assert_eq!(
        v.verify_rest(&none, now).unwrap_err(),
        RestTokenError::Invalid
    );
    // Another HMAC algorithm than the key's: the algorithm is pinned to the key.
    let mut h = rest.header.clone();
    h.alg = Algorithm::HS512;
    assert_eq!(
        v.verify_rest(&sign(&h), now).unwrap_err(),
        RestTokenError::Invalid
    );
}

#[test]
fn key_confusion_an_hmac_token_keyed_with_the_public_key_is_refused() {
    let mut raw = crate::config::RawConfig::default();
    raw.tokens.rest_algorithm = "RS256".into();
    let cfg = raw.validate().unwrap().tokens;
    let s = Secrets {
        rest_key: crate::keys::generate(Algorithm::RS256).unwrap(),
        ..crate::secrets::fixture()
    };
    let k = keys(&cfg, &s);
    let ring = k.current();
    let rest = ring.rest.signing(0).clone();
    let v = Verifier::new(&cfg, k.clone());
    let now = crate::now_unix();
    let m = Signer::new(&cfg, k, &s.subscription_key, &ChannelRules::default())
        .mint("u", Info::default(), now)
        .unwrap();
    assert_eq!(v.verify_rest(&m.token, now).unwrap().sub, "u");
    let claims = serde_json::json!({"sub": "u", "iss": "chatsdk-auth", "aud": "chatsdk-api", "iat": now, "exp": now + 60, "jti": "j"});
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(rest.kid.clone());
    let public = rest.public_pem.clone().unwrap();
    let forged = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        v.verify_rest(&forged, now).unwrap_err(),
        RestTokenError::Invalid
    );
}

#[test]
fn tokens_of_another_application_are_refused_as_such() {
    let (default_cfg, s) = fixtures();
    let app = |id: &str| TokenConfig {
        app_id: id.into(),
        ..default_cfg.clone()
    };
    // Staging and production share signing keys here (the case where only the application
    // tells them apart).
    let k = keys(&default_cfg, &s);
    let mint = |cfg: &TokenConfig, now| {
        Signer::new(
            cfg,
            k.clone(),
            &s.subscription_key,
            &ChannelRules::default(),
        )
        .mint("u1", Info::default(), now)
        .unwrap()
    };
    let now = crate::now_unix();
    let staging = mint(&app("staging"), now);
    let production = Verifier::new(&app("production"), k.clone());
    assert_eq!(
        production.verify_rest(&staging.token, now).unwrap_err(),
        RestTokenError::WrongApplication
    );
    assert_eq!(
        production.verify(&staging.ws_token, now).unwrap_err(),
        TokenError::WrongApplication
    );
    let own = mint(&app("production"), now);
    assert_eq!(production.verify_rest(&own.token, now).unwrap().sub, "u1");
    assert_eq!(production.verify(&own.ws_token, now).unwrap().sub, "u1");
    // Wrong application is told before expiry, like aud/iss.
    assert_eq!(
        production
            .verify_rest(&staging.token, now + 86_400)
            .unwrap_err(),
        RestTokenError::WrongApplication
    );

    // Tokens from before app.id name no application: accepted only while app.id is the
    // default.
    let current = k.current();
    let rest_key = current.rest.signing(now);
    let ws_key = current.ws.signing(now);
    let secret =
        |v: &crate::secrets::Secret| jsonwebtoken::EncodingKey::from_secret(v.expose().as_bytes());
    let old_rest = jsonwebtoken::encode(
        &rest_key.header,
        &serde_json::json!({"iss": "chatsdk-auth", "aud": "chatsdk-api", "sub": "u1",
            "iat": now, "exp": now + 60, "jti": "j"}),
        &secret(&s.rest_key),
    )
    .unwrap();
    let old_ws = jsonwebtoken::encode(
        &ws_key.header,
        &serde_json::json!({"sub": "u1", "iat": now, "exp": now + 60, "meta": {"iat": now}}),
        &secret(&s.centrifugo_key),
    )
    .unwrap();
    let default = Verifier::new(&default_cfg, k.clone());
    assert!(default.verify_rest(&old_rest, now).is_ok());
    assert!(default.verify(&old_ws, now).is_ok());
    assert_eq!(
        production.verify_rest(&old_rest, now).unwrap_err(),
        RestTokenError::WrongApplication
    );
    assert_eq!(
        production.verify(&old_ws, now).unwrap_err(),
        TokenError::WrongApplication
    );
}
