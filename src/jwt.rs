//! Claims, the [`Signer`] that mints both tokens and the [`Verifier`] for wsTokens.
//!
//! Keys, headers and the `Validation` are built once at startup: the signer keeps a keyed HMAC
//! state per key (the two key-pad blocks are hashed once, not per token) and the encoded
//! header, so minting is claims serialisation plus one HMAC pass. The verifier applies
//! Centrifugo's rules, not `jsonwebtoken`'s defaults: no leeway, `nbf` checked, `exp` strictly
//! in the future, `aud`/`iss` compared exactly only when configured, and a `channel` claim (a
//! subscription token) is never accepted as a connection token.
//!
//! Architecture invariant: this module knows nothing about HTTP or Centrifugo reply codes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use std::borrow::Cow;

use jsonwebtoken::{Algorithm, Header};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Sha256, Sha384, Sha512};

use crate::config::TokenConfig;
use crate::secrets::Secrets;

/// Claims of the ChatSDK REST token.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
}

/// Connection info carried in the wsToken: only the fields the user has.
#[derive(Debug, Serialize, Default, PartialEq, Eq)]
pub struct Info<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<&'a str>,
}

impl Info<'_> {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.image.is_none()
    }
}

/// Claims of the Centrifugo connection token (shared/centrifugo.md §1.2). Never `nbf`, never
/// `exp: 0`, never `channel`.
#[derive(Debug, Serialize)]
pub struct WsClaims<'a> {
    pub sub: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
    #[serde(skip_serializing_if = "Info::is_empty")]
    pub info: Info<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub channels: &'a [String],
    /// Server-side connection meta: the token's own `iat`, which the refresh and subscribe
    /// proxies receive back (`include_connection_meta`) to judge revocation.
    pub meta: WsMeta,
}

/// The `meta` claim of a wsToken.
#[derive(Debug, Serialize)]
pub struct WsMeta {
    pub iat: i64,
}

/// The claims the proxies need from a verified wsToken.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifiedWs {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub jti: Option<String>,
    /// Present only in subscription tokens; a connection token carrying it is invalid.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Two freshly signed tokens that expire at the same instant.
#[derive(Debug)]
pub struct Minted {
    pub token: String,
    pub ws_token: String,
    pub iat: i64,
    pub exp: i64,
}

/// Why a wsToken was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `exp` has passed or `nbf` is in the future: the client should fetch a fresh token.
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong key or algorithm, wrong audience/issuer, malformed claims.
    #[error("token invalid")]
    Invalid,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign token: {0}")]
pub struct SignError(String);

/// An HMAC key with its key-pad blocks already hashed; each signature clones this state.
#[derive(Clone)]
enum MacKey {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
}

impl MacKey {
    /// `algorithm` is one of the HMAC algorithms (the config admits nothing else).
    fn new(algorithm: Algorithm, secret: &[u8]) -> MacKey {
        // HMAC accepts keys of any length, so keying cannot fail.
        match algorithm {
            Algorithm::HS384 => MacKey::Hs384(
                Hmac::new_from_slice(secret).expect("HMAC accepts keys of any length"),
            ),
            Algorithm::HS512 => MacKey::Hs512(
                Hmac::new_from_slice(secret).expect("HMAC accepts keys of any length"),
            ),
            _ => MacKey::Hs256(
                Hmac::new_from_slice(secret).expect("HMAC accepts keys of any length"),
            ),
        }
    }

    /// Appends the base64url signature of `message` to `out`.
    fn sign_into(&self, message: &[u8], out: &mut String) {
        fn tag<M: Mac + Clone>(key: &M, message: &[u8], out: &mut String) {
            let mut mac = key.clone();
            mac.update(message);
            URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), out);
        }
        match self {
            MacKey::Hs256(k) => tag(k, message, out),
            MacKey::Hs384(k) => tag(k, message, out),
            MacKey::Hs512(k) => tag(k, message, out),
        }
    }

    /// True when `signature` is the HMAC of `message` (compared in constant time).
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        fn check<M: Mac + Clone>(key: &M, message: &[u8], signature: &[u8]) -> bool {
            let mut mac = key.clone();
            mac.update(message);
            mac.verify_slice(signature).is_ok()
        }
        match self {
            MacKey::Hs256(k) => check(k, message, signature),
            MacKey::Hs384(k) => check(k, message, signature),
            MacKey::Hs512(k) => check(k, message, signature),
        }
    }
}

/// Mints REST tokens and wsTokens with separate keys.
pub struct Signer {
    /// `base64url(header JSON)`, identical for every token.
    header_b64: String,
    rest_key: MacKey,
    ws_key: MacKey,
    config: TokenConfig,
    channels: Vec<String>,
}

impl Signer {
    pub fn new(config: &TokenConfig, secrets: &Secrets, user_channels: &[String]) -> Signer {
        // The same bytes `jsonwebtoken::encode` would produce for this header.
        let header = serde_json::to_vec(&Header::new(config.algorithm)).unwrap_or_default();
        Signer {
            header_b64: URL_SAFE_NO_PAD.encode(header),
            rest_key: MacKey::new(config.algorithm, secrets.rest_key.expose().as_bytes()),
            ws_key: MacKey::new(config.algorithm, secrets.centrifugo_key.expose().as_bytes()),
            config: config.clone(),
            channels: user_channels.to_vec(),
        }
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.config.ttl_seconds
    }

    /// Signs both tokens for `sub`, issued at `iat`.
    pub fn mint(&self, sub: &str, info: Info<'_>, iat: i64) -> Result<Minted, SignError> {
        let exp = iat + self.config.ttl_seconds;
        let mut jti_buf = [0u8; 2 * uuid::fmt::Simple::LENGTH];
        let (rest_jti, ws_jti) = jti_buf.split_at_mut(uuid::fmt::Simple::LENGTH);
        let rest_jti = encode_jti(rest_jti);
        let ws_jti = encode_jti(ws_jti);
        let rest = RestClaims {
            iss: &self.config.rest_issuer,
            sub,
            aud: &self.config.rest_audience,
            iat,
            exp,
            jti: rest_jti,
        };
        let channels = user_channels(&self.channels, sub);
        let ws = WsClaims {
            sub,
            iat,
            exp,
            jti: ws_jti,
            info,
            aud: self.config.ws_audience.as_deref(),
            iss: self.config.ws_issuer.as_deref(),
            channels: &channels,
            meta: WsMeta { iat },
        };
        let token = self.sign(&rest, &self.rest_key)?;
        let ws_token = self.sign(&ws, &self.ws_key)?;
        Ok(Minted {
            token,
            ws_token,
            iat,
            exp,
        })
    }

    /// `header.claims.signature`, each part base64url without padding (RFC 7515 compact form).
    fn sign<T: Serialize>(&self, claims: &T, key: &MacKey) -> Result<String, SignError> {
        let json = serde_json::to_vec(claims).map_err(|e| SignError(e.to_string()))?;
        // Header, payload (4/3 of the JSON) and a signature of up to 86 characters.
        let mut token = String::with_capacity(self.header_b64.len() + json.len() * 4 / 3 + 96);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let mut signature = String::with_capacity(88);
        key.sign_into(token.as_bytes(), &mut signature);
        token.push('.');
        token.push_str(&signature);
        Ok(token)
    }
}

/// The configured channel templates with `#{userId}` filled in.
pub fn user_channels(templates: &[String], user: &str) -> Vec<String> {
    templates
        .iter()
        .map(|t| t.replace("#{userId}", user))
        .collect()
}

/// A random, unique token id (128 bits, hex).
pub fn new_jti() -> String {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    encode_jti(&mut buf).to_string()
}

/// Writes a fresh random token id (a v4 UUID in simple form) into `buf`. The bytes come from the
/// thread-local CSPRNG (ChaCha, seeded from the OS), so minting makes no `getrandom` syscall.
fn encode_jti(buf: &mut [u8]) -> &str {
    let id = uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid();
    id.simple().encode_lower(buf)
}

/// Verifies wsTokens the way Centrifugo would.
///
/// The checks are exactly those `jsonwebtoken::decode` makes with Centrifugo's validation (no
/// leeway, `nbf` checked, `exp` and `sub` required, `aud`/`iss` required and compared only when
/// configured), in the same order, so the same tokens are expired or invalid. They are done in
/// one pass: the header and the claims are each parsed once, and the HMAC is keyed once at
/// startup instead of per token. A differential test holds this to `jsonwebtoken::decode`.
pub struct Verifier {
    algorithm: Algorithm,
    key: MacKey,
    audience: Option<String>,
    issuer: Option<String>,
}

/// A wsToken's claims as verification reads them: what the proxies use, plus the registered
/// claims that are validated, kept raw so that `null` stays distinct from absent.
#[derive(Deserialize)]
struct ClaimsIn<'a> {
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(borrow, default, deserialize_with = "present")]
    nbf: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    aud: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    iss: Option<&'a RawValue>,
}

/// `Some(raw)` for any present value, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

/// A NumericDate as jsonwebtoken reads one: a non-negative integer, or a finite non-negative
/// float below 2^64, rounded. `None` for anything else (`null`, strings, negative numbers).
fn numeric_date(raw: &RawValue) -> Option<u64> {
    let n = serde_json::from_str::<serde_json::Number>(raw.get()).ok()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    if n.is_i64() {
        return None;
    }
    let f = n.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

/// `aud`/`iss` as jsonwebtoken reads them: a string or an array of strings (`None` for `null`
/// or any other shape, which a required claim treats as missing).
#[derive(Deserialize)]
#[serde(untagged)]
enum Names<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Names<'_> {
    fn read(raw: Option<&RawValue>) -> Option<Names<'_>> {
        serde_json::from_str::<Option<Names<'_>>>(raw?.get())
            .ok()
            .flatten()
    }

    /// True when `expected` is among the names (jsonwebtoken: a non-empty intersection).
    fn contains(&self, expected: &str) -> bool {
        match self {
            Names::One(n) => n == expected,
            Names::Many(v) => v.iter().any(|n| n == expected),
        }
    }
}

impl Verifier {
    pub fn new(config: &TokenConfig, secrets: &Secrets) -> Verifier {
        Verifier {
            algorithm: config.algorithm,
            key: MacKey::new(config.algorithm, secrets.centrifugo_key.expose().as_bytes()),
            // Like Centrifugo: when an audience/issuer is configured, a token without one fails.
            audience: config.ws_audience.clone(),
            issuer: config.ws_issuer.clone(),
        }
    }

    /// Verifies signature and claims; `now` decides expiry (strictly `exp > now`).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedWs, TokenError> {
        use TokenError::{Expired, Invalid};
        // Compact form `header.payload.signature`; the signature covers `header.payload`.
        let (message, signature) = token.rsplit_once('.').ok_or(Invalid)?;
        let (header, payload) = message.rsplit_once('.').ok_or(Invalid)?;
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| Invalid)?;
        let header: Header = serde_json::from_slice(&header).map_err(|_| Invalid)?;
        if header.alg != self.algorithm {
            return Err(Invalid);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Invalid)?;
        if !self.key.verify(message.as_bytes(), &signature) {
            return Err(Invalid);
        }
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Invalid)?;
        let c: ClaimsIn<'_> = serde_json::from_slice(&payload).map_err(|_| Invalid)?;
        // Required claims: `sub` is a string by now; `exp` must be a NumericDate.
        let exp = u64::try_from(c.exp).map_err(|_| Invalid)?;
        let audience = match &self.audience {
            Some(_) => Some(Names::read(c.aud).ok_or(Invalid)?),
            None => None,
        };
        let issuer = match &self.issuer {
            Some(_) => Some(Names::read(c.iss).ok_or(Invalid)?),
            None => None,
        };
        let nbf = match c.nbf {
            Some(raw) => Some(numeric_date(raw).ok_or(Invalid)?),
            None => None,
        };
        let now_u = u64::try_from(now).unwrap_or(0);
        if exp < now_u || nbf.is_some_and(|nbf| nbf > now_u) {
            return Err(Expired);
        }
        if let (Some(iss), Some(expected)) = (&issuer, &self.issuer) {
            if !iss.contains(expected) {
                return Err(Invalid);
            }
        }
        if let (Some(aud), Some(expected)) = (&audience, &self.audience) {
            if !aud.contains(expected) {
                return Err(Invalid);
            }
        }
        if c.channel.as_deref().is_some_and(|ch| !ch.is_empty()) {
            return Err(Invalid);
        }
        if c.exp <= now {
            return Err(Expired);
        }
        Ok(VerifiedWs {
            sub: c.sub,
            iat: c.iat,
            exp: c.exp,
            jti: c.jti,
            channel: c.channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    fn fixtures() -> (TokenConfig, Secrets) {
        let cfg = crate::config::RawConfig::default()
            .validate()
            .unwrap()
            .tokens;
        let secrets = Secrets {
            rest_key: Secret::new("r".repeat(40)),
            centrifugo_key: Secret::new("w".repeat(40)),
            proxy_secret: Secret::new("p".repeat(40)),
            metrics_token: Secret::new("m".repeat(40)),
        };
        (cfg, secrets)
    }

    #[test]
    fn ws_token_round_trips_and_rest_token_does_not_verify_as_ws() {
        let (cfg, s) = fixtures();
        let signer = Signer::new(&cfg, &s, &[]);
        let now = crate::now_unix();
        let m = signer
            .mint(
                "u1",
                Info {
                    name: Some("A"),
                    image: None,
                },
                now,
            )
            .unwrap();
        let v = Verifier::new(&cfg, &s);
        assert_eq!(v.verify(&m.ws_token, now).unwrap().sub, "u1");
        assert_eq!(v.verify(&m.token, now).unwrap_err(), TokenError::Invalid);
        assert_eq!(m.exp - m.iat, 86_400);
    }

    #[test]
    fn expiry_is_strict_and_without_leeway() {
        let (cfg, s) = fixtures();
        let signer = Signer::new(&cfg, &s, &[]);
        let v = Verifier::new(&cfg, &s);
        let now = crate::now_unix();
        let m = signer.mint("u1", Info::default(), now - 86_400).unwrap();
        // exp == now: Centrifugo requires exp > now.
        assert_eq!(v.verify(&m.ws_token, now).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn signing_matches_jsonwebtoken_byte_for_byte() {
        let (mut cfg, s) = fixtures();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            cfg.algorithm = alg;
            let signer = Signer::new(&cfg, &s, &[]);
            let claims = RestClaims {
                iss: "i",
                sub: "u1",
                aud: "a",
                iat: 1,
                exp: 2,
                jti: "j",
            };
            let expected = jsonwebtoken::encode(
                &Header::new(alg),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(s.rest_key.expose().as_bytes()),
            )
            .unwrap();
            assert_eq!(signer.sign(&claims, &signer.rest_key).unwrap(), expected);
        }
    }

    #[test]
    fn jti_is_a_fresh_v4_uuid_in_simple_form() {
        let a = new_jti();
        assert_eq!(a.len(), 32);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(a, new_jti());
    }

    /// The verifier this module used to have: `jsonwebtoken::decode` with Centrifugo's rules.
    fn reference_verify(
        cfg: &TokenConfig,
        key: &str,
        token: &str,
        now: i64,
    ) -> Result<VerifiedWs, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        use jsonwebtoken::{DecodingKey, Validation};
        let mut v = Validation::new(cfg.algorithm);
        v.leeway = 0;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        match &cfg.ws_audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &cfg.ws_issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<VerifiedWs>(
            token,
            &DecodingKey::from_secret(key.as_bytes()),
            &v,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        let claims = data.claims;
        if claims.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// A compact JWS over raw header and claims text, HMAC-SHA256/384 by `alg_bits`.
    fn raw_token(header: &str, claims: &str, key: &str, alg_bits: u16) -> String {
        let mut t = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = match alg_bits {
            384 => {
                let mut m = Hmac::<Sha384>::new_from_slice(key.as_bytes()).unwrap();
                m.update(t.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
                m.update(t.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
        };
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(sig));
        t
    }

    #[test]
    fn verifier_agrees_with_jsonwebtoken_decode() {
        let (base_cfg, s) = fixtures();
        let key = s.centrifugo_key.expose().to_string();
        let now = crate::now_unix();
        let (past, future) = (now - 100, now + 100);
        let values = |name: &str| -> Vec<String> {
            let mut v: Vec<String> = vec![
                "null".into(),
                "\"x\"".into(),
                "5".into(),
                "-5".into(),
                "1.5".into(),
                "{\"a\":1}".into(),
                "[]".into(),
                "[5]".into(),
                format!("{past}"),
                format!("{future}"),
                format!("{now}"),
                format!("{now}.4"),
                "1e30".into(),
                "-0".into(),
            ];
            if name == "aud" || name == "iss" {
                for n in ["app", "me", "other"] {
                    v.push(format!("\"{n}\""));
                    v.push(format!("[\"{n}\",\"zzz\"]"));
                }
            }
            v
        };
        let base = [
            ("sub", "\"u\"".to_string()),
            ("iat", format!("{now}")),
            ("exp", format!("{future}")),
        ];
        // Claims texts: the base with one field replaced, removed or added, plus pairs that
        // pit expiry against another failure, plus duplicated keys.
        let mut claim_sets: Vec<String> = Vec::new();
        let render = |fields: &[(&str, String)]| {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        };
        let names = ["sub", "iat", "exp", "nbf", "aud", "iss", "jti", "channel"];
        for name in names {
            let mut without: Vec<(&str, String)> = base.to_vec();
            without.retain(|(k, _)| *k != name);
            claim_sets.push(render(&without));
            for v in values(name)
                .into_iter()
                .chain(["\"\"".to_string(), "\"c\"".to_string()])
            {
                let mut f = without.clone();
                f.push((name, v.clone()));
                claim_sets.push(render(&f));
                // The same with an expired token.
                let mut g = f.clone();
                g.retain(|(k, _)| *k != "exp" || name == "exp");
                if name != "exp" {
                    g.push(("exp", format!("{past}")));
                }
                claim_sets.push(render(&g));
                // And with a good audience and issuer, to reach the later checks.
                let mut h = f.clone();
                for (k, good) in [("aud", "\"app\""), ("iss", "\"me\"")] {
                    if name != k {
                        h.push((k, good.to_string()));
                    }
                }
                claim_sets.push(render(&h));
            }
        }
        for dup in ["sub", "nbf", "aud", "iss", "jti", "exp", "info"] {
            claim_sets.push(format!(
                "{{\"sub\":\"u\",\"iat\":{now},\"exp\":{future},\"{dup}\":{future},\"{dup}\":{future}}}"
            ));
        }
        claim_sets.push("[1,2]".into());
        claim_sets.push("not json".into());
        let headers = [
            (r#"{"typ":"JWT","alg":"HS256"}"#, 256),
            (r#"{"alg":"HS256"}"#, 256),
            (r#"{"alg":"HS384","typ":"JWT"}"#, 384),
            (r#"{"alg":"none"}"#, 256),
            (r#"{"alg":"HS256","kid":5}"#, 256),
            (r#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#, 256),
            (r#"{"typ":"JWT"}"#, 256),
            ("nope", 256),
        ];
        let mut configs = Vec::new();
        configs.push(base_cfg.clone());
        let mut with_aud = base_cfg.clone();
        with_aud.ws_audience = Some("app".into());
        with_aud.ws_issuer = Some("me".into());
        configs.push(with_aud);
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        for cfg in &configs {
            let verifier = Verifier::new(cfg, &s);
            for claims in &claim_sets {
                for (header, bits) in headers {
                    let good = raw_token(header, claims, &key, bits);
                    let mut tokens = vec![
                        good.clone(),
                        raw_token(header, claims, "another key entirely, 32 bytes+", bits),
                        format!("{good}="),
                        format!("x.{good}"),
                    ];
                    if header.starts_with(r#"{"typ":"JWT","alg":"HS256"}"#) {
                        tokens.push(good.replacen('.', "", 1));
                        tokens.push(format!("{good}.x"));
                    }
                    for token in tokens {
                        // jsonwebtoken reads the clock itself: if a second ticked between
                        // the two calls, compare again.
                        let run = || {
                            let now = crate::now_unix();
                            (
                                format!("{:?}", verifier.verify(&token, now)),
                                format!("{:?}", reference_verify(cfg, &key, &token, now)),
                            )
                        };
                        let (mut ours, mut theirs) = run();
                        if ours != theirs {
                            (ours, theirs) = run();
                        }
                        assert_eq!(
                            ours, theirs,
                            "claims {claims} header {header} token {token}"
                        );
                        let kind = ours.split(['(', ' ']).take(2).collect::<Vec<_>>().join(" ");
                        *outcomes.entry(kind).or_insert(0) += 1;
                    }
                }
            }
        }
        // Every outcome is exercised, valid tokens included.
        for kind in ["Ok VerifiedWs", "Err Expired)", "Err Invalid)"] {
            assert!(
                outcomes.get(kind).copied().unwrap_or(0) >= 20,
                "{outcomes:?}"
            );
        }
    }

    #[test]
    fn channel_templates_fill_the_user() {
        assert_eq!(
            user_channels(&["personal:#{userId}".into()], "u-1"),
            vec!["personal:u-1".to_string()]
        );
    }
}
