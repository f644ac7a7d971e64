//! Claims, the [`Signer`] that mints REST, connection and subscription tokens, and the
//! [`Verifier`] for wsTokens.
//!
//! Signing and verification are `jsonwebtoken`'s (no hand-written JWT or HMAC code); keys,
//! header and `Validation` are built once at startup. The verifier applies Centrifugo's rules,
//! not `jsonwebtoken`'s defaults, in Centrifugo's order
//! (https://centrifugal.dev/docs/server/authentication):
//! signature, then `aud`/`iss` (exact, required only when configured), then the `channel`
//! claim (a subscription token is never a connection token), and only then expiry: `exp`
//! strictly in the future and `nbf` strictly in the past, with no leeway. So a token that is
//! both expired and wrongly addressed is *invalid*, as Centrifugo reports it.
//!
//! Architecture invariant: this module knows nothing about HTTP or Centrifugo reply codes.

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};

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

/// Connection info carried in the wsToken (and subscription tokens): only the fields the user has.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
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

/// Claims of the Centrifugo connection token
/// (https://centrifugal.dev/docs/server/authentication#connection-jwt-claims). Never `nbf`, never
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

/// Claims of a Centrifugo subscription token (https://centrifugal.dev/docs/server/channel_token_auth):
/// `sub` is the connection's user, `channel` the one channel it opens. Never `nbf`, never
/// `exp: 0`.
#[derive(Debug, Serialize)]
pub struct SubscriptionClaims<'a> {
    pub sub: &'a str,
    pub channel: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
    #[serde(skip_serializing_if = "Info::is_empty")]
    pub info: Info<'a>,
    /// When the subscription ends (only when `tokens.subscription_expire_at_seconds` is set;
    /// without it the subscription ends with `exp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
}

/// The claims the proxies need from a verified wsToken.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifiedWs {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// Not-before, when present (the sidecar never mints it).
    #[serde(default)]
    pub nbf: Option<f64>,
    /// Present only in subscription tokens; a connection token carrying it is invalid.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Two freshly signed tokens, issued at the same instant.
#[derive(Debug)]
pub struct Minted {
    pub token: String,
    pub ws_token: String,
    pub iat: i64,
    /// The REST token's expiry.
    pub exp: i64,
    /// The wsToken's expiry.
    pub ws_exp: i64,
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

/// `jsonwebtoken` refused to sign (a key that does not fit the algorithm); kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign token")]
pub struct SignError(#[source] jsonwebtoken::errors::Error);

/// Mints REST tokens, wsTokens and subscription tokens, each kind with its own key.
pub struct Signer {
    header: Header,
    rest_key: EncodingKey,
    ws_key: EncodingKey,
    sub_key: EncodingKey,
    config: TokenConfig,
    channels: Vec<String>,
}

impl Signer {
    pub fn new(config: &TokenConfig, secrets: &Secrets, user_channels: &[String]) -> Signer {
        Signer {
            header: Header::new(config.algorithm),
            rest_key: EncodingKey::from_secret(secrets.rest_key.expose().as_bytes()),
            ws_key: EncodingKey::from_secret(secrets.centrifugo_key.expose().as_bytes()),
            sub_key: EncodingKey::from_secret(secrets.subscription_key.expose().as_bytes()),
            config: config.clone(),
            channels: user_channels.to_vec(),
        }
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.config.ttl_seconds
    }

    /// Lifetime of the wsToken (`tokens.ws_ttl_seconds`).
    pub fn ws_ttl_seconds(&self) -> i64 {
        self.config.ws_ttl_seconds
    }

    /// Signs both tokens for `sub`, issued at `iat`.
    pub fn mint(&self, sub: &str, info: Info<'_>, iat: i64) -> Result<Minted, SignError> {
        let exp = iat + self.config.ttl_seconds;
        // The wsToken lives `tokens.ws_ttl_seconds`: with the refresh proxy on, Centrifugo extends
        // live connections server-side, so a short lifetime only bounds how long a revoked or
        // stolen wsToken can open a new JWT-mode connection.
        let ws_exp = iat + self.config.ws_ttl_seconds;
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
            exp: ws_exp,
            jti: ws_jti,
            info,
            aud: self.config.ws_audience.as_deref(),
            iss: self.config.ws_issuer.as_deref(),
            channels: &channels,
            meta: WsMeta { iat },
        };
        let token = jsonwebtoken::encode(&self.header, &rest, &self.rest_key).map_err(SignError)?;
        let ws_token = jsonwebtoken::encode(&self.header, &ws, &self.ws_key).map_err(SignError)?;
        Ok(Minted {
            token,
            ws_token,
            iat,
            exp,
            ws_exp,
        })
    }
}

impl Signer {
    /// Lifetime of subscription tokens (`expiresIn` of `POST /tokens/subscription`).
    pub fn subscription_ttl_seconds(&self) -> i64 {
        self.config.subscription_ttl_seconds
    }

    /// Signs a subscription token for `sub` on `channel`, issued at `iat`.
    pub fn mint_subscription(
        &self,
        sub: &str,
        channel: &str,
        info: Info<'_>,
        iat: i64,
    ) -> Result<String, SignError> {
        let mut jti = [0u8; uuid::fmt::Simple::LENGTH];
        let claims = SubscriptionClaims {
            sub,
            channel,
            iat,
            exp: iat + self.config.subscription_ttl_seconds,
            jti: encode_jti(&mut jti),
            info,
            expire_at: self.config.subscription_expire_at_seconds.map(|s| iat + s),
            aud: self.config.ws_audience.as_deref(),
            iss: self.config.ws_issuer.as_deref(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.sub_key).map_err(SignError)
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
        // Expiry is checked below, after aud/iss and the channel claim, in Centrifugo's order.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims = ["sub"].iter().map(|s| s.to_string()).collect();
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

    /// Verifies signature and claims; `now` decides expiry (`exp > now`, `nbf < now`).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedWs, TokenError> {
        let claims = jsonwebtoken::decode::<VerifiedWs>(token, &self.key, &self.validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now || claims.nbf.is_some_and(|nbf| nbf >= now as f64) {
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
            subscription_key: Secret::new("s".repeat(40)),
            centrifugo_api_key: Secret::new("c".repeat(40)),
            admin_token: Secret::new("a".repeat(40)),
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

    fn hand_signed(claims: serde_json::Value, key: &str) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn centrifugo_order_invalid_wins_over_expired_and_nbf_is_strict() {
        let (mut cfg, s) = fixtures();
        cfg.ws_audience = Some("centrifugo".into());
        let v = Verifier::new(&cfg, &s);
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
        let signer = Signer::new(&cfg, &s, &[]);
        let token = signer
            .mint_subscription("u1", "$room:a", Info::default(), 1_000)
            .unwrap();
        let mut v = Validation::new(cfg.algorithm);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let key = DecodingKey::from_secret(s.subscription_key.expose().as_bytes());
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["channel"], "$room:a");
        assert_eq!(claims["exp"], 1_000 + 3600);
        assert_eq!(claims["expire_at"], 1_600);
        assert!(claims.get("info").is_none());
        // The wsToken key does not verify it.
        let ws = DecodingKey::from_secret(s.centrifugo_key.expose().as_bytes());
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &ws, &v).is_err());
    }
}
