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
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
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
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn new(config: &TokenConfig, secrets: &Secrets) -> Verifier {
        let mut v = Validation::new(config.algorithm);
        v.leeway = 0;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        // Like Centrifugo: when an audience/issuer is configured, a token without one fails.
        match &config.ws_audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &config.ws_issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        Verifier {
            key: DecodingKey::from_secret(secrets.centrifugo_key.expose().as_bytes()),
            validation: v,
        }
    }

    /// Verifies signature and claims; `now` decides expiry (strictly `exp > now`).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedWs, TokenError> {
        let data = jsonwebtoken::decode::<VerifiedWs>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        let claims = data.claims;
        if claims.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
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

    #[test]
    fn channel_templates_fill_the_user() {
        assert_eq!(
            user_channels(&["personal:#{userId}".into()], "u-1"),
            vec!["personal:u-1".to_string()]
        );
    }
}
