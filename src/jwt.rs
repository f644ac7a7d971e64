//! Claims, the [`Signer`] that mints REST, connection and subscription tokens, and the
//! [`Verifier`] for REST tokens and wsTokens.
//!
//! Signing is `jsonwebtoken`'s, and so is verification with asymmetric keys. Verification with
//! an HMAC key uses jsonwebtoken's header decoding and aws-lc-rs's constant-time `hmac::verify`
//! with the key prepared once ([`decode_hmac`]), deciding exactly as `jsonwebtoken::decode`
//! does (a test compares the two on thousands of tokens); no hand-written crypto. Keys and
//! headers come from the live key ring ([`crate::keys`]), `Validation`s are built once at
//! startup with the algorithm pinned to the key the `kid` names (so an HMAC header on an RSA or
//! EC key, `alg: none` or an unknown `kid` never verifies). The wsToken verifier applies
//! Centrifugo's rules,
//! not `jsonwebtoken`'s defaults, in Centrifugo's order
//! (https://centrifugal.dev/docs/server/authentication):
//! signature, then `aud`/`iss` (exact, required only when configured), then the `channel`
//! claim (a subscription token is never a connection token), and only then expiry: `exp`
//! strictly in the future and `nbf` strictly in the past, with no leeway. So a token that is
//! both expired and wrongly addressed is *invalid*, as Centrifugo reports it.
//!
//! Architecture invariant: this module knows nothing about HTTP or Centrifugo reply codes.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::TokenConfig;
use crate::keys::{is_asymmetric, Key, KeySet, LiveKeys};
use crate::secrets::Secret;

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

/// The claims the proxies and `/introspect` need from a verified wsToken.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifiedWs {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub jti: Option<String>,
    /// A string or an array of strings (Centrifugo accepts both).
    #[serde(default)]
    pub aud: Option<serde_json::Value>,
    #[serde(default)]
    pub iss: Option<String>,
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

/// Mints REST tokens and wsTokens, each with the key of its kind that signs at `iat`, and
/// subscription tokens with their own HMAC key.
pub struct Signer {
    keys: Arc<LiveKeys>,
    sub_header: Header,
    sub_key: EncodingKey,
    config: TokenConfig,
    channels: Vec<String>,
}

impl Signer {
    pub fn new(
        config: &TokenConfig,
        keys: Arc<LiveKeys>,
        subscription_key: &Secret,
        user_channels: &[String],
    ) -> Signer {
        Signer {
            keys,
            sub_header: Header::new(config.subscription_algorithm),
            sub_key: EncodingKey::from_secret(subscription_key.expose().as_bytes()),
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
        let ring = self.keys.current();
        let (rk, wk) = (ring.rest.signing(iat), ring.ws.signing(iat));
        let token = encode(rk, &rest)?;
        let ws_token = encode(wk, &ws)?;
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
        jsonwebtoken::encode(&self.sub_header, &claims, &self.sub_key).map_err(SignError)
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

/// The claims `/verify` and `/introspect` read from a verified REST token.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifiedRest {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
    #[serde(default)]
    pub nbf: Option<f64>,
}

/// Why a REST token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RestTokenError {
    /// `exp` has passed (or `nbf` is in the future).
    #[error("token expired")]
    Expired,
    /// Malformed, badly signed, unknown key, wrong algorithm, issuer or audience.
    #[error("token invalid")]
    Invalid,
    /// A correctly signed wsToken: the caller sent `wsToken` where `token` belongs.
    #[error("wsToken used as a REST token")]
    WrongTokenType,
}

/// One `Validation` per supported algorithm (the algorithm is pinned to the key's).
struct Validations {
    by_alg: Vec<(Algorithm, Validation)>,
}

impl Validations {
    fn new(make: impl Fn(Algorithm) -> Validation) -> Validations {
        let algs = [
            Algorithm::HS256,
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ];
        Validations {
            by_alg: algs.iter().map(|a| (*a, make(*a))).collect(),
        }
    }

    fn get(&self, alg: Algorithm) -> Option<&Validation> {
        self.by_alg.iter().find(|(a, _)| *a == alg).map(|(_, v)| v)
    }
}

/// The key the header names, when the header is acceptable at all: no `jku`, `jwk`, `x5u`,
/// `x5c` or `crit` (keys come from this service's ring, never from the token), and a known `kid`.
/// A header without `kid` may only match an HMAC key when `hmac_without_kid` (Centrifugo ignores
/// `kid` outside JWKS mode, so the connect proxy does too).
fn candidate_keys<'a>(
    header: &Header,
    set: &'a KeySet,
    now: i64,
    hmac_without_kid: bool,
) -> Vec<&'a Arc<Key>> {
    if header.jku.is_some()
        || header.jwk.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
        || header.crit.is_some()
    {
        return Vec::new();
    }
    match &header.kid {
        Some(kid) => set.find(kid, now).into_iter().collect(),
        None if hmac_without_kid => set
            .verifying(now)
            .filter(|k| !is_asymmetric(k.alg) && k.alg == header.alg)
            .collect(),
        None => Vec::new(),
    }
}

/// Signs `claims` with `key`: `jsonwebtoken::encode` for asymmetric keys; for an HMAC key, the
/// same bytes `jsonwebtoken::encode` produces (base64url, no padding, of the header JSON, of
/// the claims JSON, and of the HMAC over both; a test compares them byte for byte), from the
/// header serialised once and aws-lc-rs's HMAC with the key prepared once.
fn encode<T: Serialize>(key: &Key, claims: &T) -> Result<String, SignError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let Some(hmac) = &key.hmac else {
        return jsonwebtoken::encode(&key.header, claims, &key.encoding).map_err(SignError);
    };
    let json = serde_json::to_vec(claims).map_err(|e| SignError(e.into()))?;
    let mut token = String::with_capacity(hmac.header_b64.len() + json.len() * 4 / 3 + 90);
    token.push_str(&hmac.header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(json, &mut token);
    let tag = aws_lc_rs::hmac::sign(&hmac.key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
    Ok(token)
}

/// What `jsonwebtoken::decode` does for an HMAC key, with the key prepared once: the header's
/// `alg` must be the key's, the signature (base64url, no padding, as jsonwebtoken reads it) is
/// checked by aws-lc-rs's constant-time `hmac::verify`, and only then are the claims decoded,
/// once. `header` is the token's own header, already decoded by `jsonwebtoken::decode_header`
/// (which also proves the token has exactly three parts). The `aud`/`iss` checks are the
/// caller's. `jsonwebtoken::decode` builds the HMAC key, parses the header twice and the claims
/// twice on every call: a quarter of a connect's instructions (92,500 -> 69,300, callgrind).
fn decode_hmac<T: serde::de::DeserializeOwned>(
    token: &str,
    header: &Header,
    alg: Algorithm,
    key: &aws_lc_rs::hmac::Key,
) -> Option<T> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    if header.alg != alg {
        return None;
    }
    let (message, signature) = token.rsplit_once('.')?;
    let (_, payload) = message.rsplit_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(signature).ok()?;
    aws_lc_rs::hmac::verify(key, message.as_bytes(), &tag).ok()?;
    let claims = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&claims).ok()
}

/// Verifies REST tokens (for `/verify` and `/introspect`) and wsTokens the way Centrifugo
/// would (for the proxies and `/introspect`), with the keys of the live ring.
pub struct Verifier {
    keys: Arc<LiveKeys>,
    ws: Validations,
    rest: Validations,
    signature_only: Validations,
    /// What the prepared-key path ([`decode_hmac`]) checks after the signature, as the
    /// `Validation`s above do.
    ws_audience: Option<String>,
    ws_issuer: Option<String>,
    rest_audience: String,
    rest_issuer: String,
}

impl Verifier {
    pub fn new(config: &TokenConfig, keys: Arc<LiveKeys>) -> Verifier {
        let ws = Validations::new(|alg| {
            let mut v = Validation::new(alg);
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
            v
        });
        let rest = Validations::new(|alg| {
            let mut v = Validation::new(alg);
            v.leeway = 0;
            v.validate_exp = false;
            v.validate_nbf = false;
            v.set_required_spec_claims(&["sub", "exp", "iss", "aud"]);
            v.set_audience(&[&config.rest_audience]);
            v.set_issuer(&[&config.rest_issuer]);
            v
        });
        let signature_only = Validations::new(|alg| {
            let mut v = Validation::new(alg);
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = false;
            v.required_spec_claims.clear();
            v
        });
        Verifier {
            keys,
            ws,
            rest,
            signature_only,
            ws_audience: config.ws_audience.clone(),
            ws_issuer: config.ws_issuer.clone(),
            rest_audience: config.rest_audience.clone(),
            rest_issuer: config.rest_issuer.clone(),
        }
    }

    /// Verifies a wsToken's signature and claims; `now` decides expiry (`exp > now`,
    /// `nbf < now`).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedWs, TokenError> {
        self.verify_ws(token, now, true)
    }

    /// [`Verifier::verify`]; `prepared` picks [`decode_hmac`] for HMAC keys (always, outside
    /// the tests that compare it with `jsonwebtoken::decode`).
    fn verify_ws(&self, token: &str, now: i64, prepared: bool) -> Result<VerifiedWs, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let ring = self.keys.current();
        let mut claims = None;
        for key in candidate_keys(&header, &ring.ws, now, true) {
            let decoded = match (&key.hmac, prepared) {
                (Some(hmac), true) => decode_hmac::<VerifiedWs>(token, &header, key.alg, &hmac.key)
                    .filter(|c| self.ws_addressed(c)),
                _ => self.ws.get(key.alg).and_then(|v| {
                    jsonwebtoken::decode::<VerifiedWs>(token, &key.decoding, v)
                        .ok()
                        .map(|d| d.claims)
                }),
            };
            if decoded.is_some() {
                claims = decoded;
                break;
            }
        }
        let claims = claims.ok_or(TokenError::Invalid)?;
        if claims.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now || claims.nbf.is_some_and(|nbf| nbf >= now as f64) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// The `aud`/`iss` checks of the wsToken `Validation`, for claims [`decode_hmac`] returned:
    /// when configured, each must be present and match (`aud` may be an array of strings that
    /// contains it); when not configured, either is ignored.
    fn ws_addressed(&self, c: &VerifiedWs) -> bool {
        let aud_ok = match (&self.ws_audience, &c.aud) {
            (None, _) => true,
            (Some(want), Some(serde_json::Value::String(aud))) => aud == want,
            (Some(want), Some(serde_json::Value::Array(auds))) => {
                auds.iter().all(|a| a.is_string()) && auds.iter().any(|a| a.as_str() == Some(want))
            }
            (Some(_), _) => false,
        };
        let iss_ok = match &self.ws_issuer {
            None => true,
            Some(want) => c.iss.as_deref() == Some(want.as_str()),
        };
        aud_ok && iss_ok
    }

    /// Verifies a REST token: a `kid` of a REST key that still verifies, the algorithm of that
    /// key, signature, `iss` and `aud` exactly as configured, then `exp > now` (no leeway). A
    /// correctly signed wsToken is [`RestTokenError::WrongTokenType`].
    pub fn verify_rest(&self, token: &str, now: i64) -> Result<VerifiedRest, RestTokenError> {
        self.verify_rest_with(token, now, true)
    }

    fn verify_rest_with(
        &self,
        token: &str,
        now: i64,
        prepared: bool,
    ) -> Result<VerifiedRest, RestTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| RestTokenError::Invalid)?;
        let ring = self.keys.current();
        let Some(key) = candidate_keys(&header, &ring.rest, now, false).pop() else {
            return Err(if self.signed_as_ws(&header, &ring.ws, token, now) {
                RestTokenError::WrongTokenType
            } else {
                RestTokenError::Invalid
            });
        };
        let claims = match (&key.hmac, prepared) {
            (Some(hmac), true) => decode_hmac::<VerifiedRest>(token, &header, key.alg, &hmac.key)
                .filter(|c| c.iss == self.rest_issuer && c.aud == self.rest_audience)
                .ok_or(RestTokenError::Invalid)?,
            _ => {
                let v = self.rest.get(key.alg).ok_or(RestTokenError::Invalid)?;
                jsonwebtoken::decode::<VerifiedRest>(token, &key.decoding, v)
                    .map_err(|_| RestTokenError::Invalid)?
                    .claims
            }
        };
        if claims.exp <= now || claims.nbf.is_some_and(|nbf| nbf >= now as f64) {
            return Err(RestTokenError::Expired);
        }
        Ok(claims)
    }

    /// True when `token` carries a valid signature of a wsToken key (claims unchecked).
    fn signed_as_ws(&self, header: &Header, ws: &KeySet, token: &str, now: i64) -> bool {
        candidate_keys(header, ws, now, true)
            .into_iter()
            .any(|key| {
                self.signature_only.get(key.alg).is_some_and(|v| {
                    jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, v).is_ok()
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;
    use crate::secrets::{Secret, Secrets};

    fn keys(cfg: &TokenConfig, s: &Secrets) -> Arc<LiveKeys> {
        Arc::new(LiveKeys::fixed(KeyRing::configured(cfg, s).unwrap()))
    }

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
        let signer = Signer::new(&cfg, keys(&cfg, &s), &s.subscription_key, &[]);
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
        let v = Verifier::new(&cfg, keys(&cfg, &s));
        assert_eq!(v.verify(&m.ws_token, now).unwrap().sub, "u1");
        assert_eq!(v.verify(&m.token, now).unwrap_err(), TokenError::Invalid);
        assert_eq!(m.exp - m.iat, 86_400);
    }

    #[test]
    fn expiry_is_strict_and_without_leeway() {
        let (cfg, s) = fixtures();
        let signer = Signer::new(&cfg, keys(&cfg, &s), &s.subscription_key, &[]);
        let v = Verifier::new(&cfg, keys(&cfg, &s));
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
                        },
                        aud: None,
                        iss: Some("chatsdk"),
                        channels: &[name.to_string()],
                        meta: WsMeta { iat: 1_000 },
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

    #[test]
    fn subscription_tokens_use_their_own_key_and_carry_the_channel() {
        let (mut cfg, s) = fixtures();
        cfg.subscription_expire_at_seconds = Some(600);
        let signer = Signer::new(&cfg, keys(&cfg, &s), &s.subscription_key, &[]);
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
        let signer = Signer::new(&cfg, k.clone(), &s.subscription_key, &[]);
        let v = Verifier::new(&cfg, k);
        let now = crate::now_unix();
        let m = signer.mint("u1", Info::default(), now).unwrap();
        let c = v.verify_rest(&m.token, now).unwrap();
        assert_eq!((c.sub.as_str(), c.aud.as_str()), ("u1", "chatsdk-api"));
        assert_eq!(
            v.verify_rest(&m.ws_token, now).unwrap_err(),
            RestTokenError::WrongTokenType
        );
        assert_eq!(
            v.verify_rest(&m.token, m.exp).unwrap_err(),
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
            centrifugo_key: Secret::new("w".repeat(40)),
            proxy_secret: Secret::new("p".repeat(40)),
            metrics_token: Secret::new("m".repeat(40)),
            subscription_key: Secret::new("s".repeat(40)),
            centrifugo_api_key: Secret::new("c".repeat(40)),
            admin_token: Secret::new("a".repeat(40)),
        };
        let k = keys(&cfg, &s);
        let ring = k.current();
        let rest = ring.rest.signing(0).clone();
        let v = Verifier::new(&cfg, k.clone());
        let now = crate::now_unix();
        let m = Signer::new(&cfg, k, &s.subscription_key, &[])
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
}
