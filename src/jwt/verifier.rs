//! [`Verifier`]: REST tokens (for `/verify` and `/introspect`) and wsTokens (for the proxies and
//! `/introspect`), with the keys of the live ring, `Validation`s built once, and the prepared
//! HMAC path for HMAC keys.

use std::borrow::Cow;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Header, Validation};

use super::claims::{VerifiedRest, VerifiedWs};
use super::prepared::{decode_hmac, Parts};
use super::{RestTokenError, TokenError};
use crate::config::TokenConfig;
use crate::keys::{is_asymmetric, Key, KeySet, LiveKeys};

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

/// The header of `token`, as `jsonwebtoken::decode_header` reads it (`parts.head`), when
/// `prepared`: a header part that is, byte for byte, the one an HMAC key of `set` signs with
/// is that key's own header (decoding it would give the same), so the tokens this service
/// minted skip the base64 and JSON decode of a header it already knows (about 3,700
/// instructions of a connect). Any other header is decoded.
fn header_of<'k>(
    token: &str,
    parts: Option<Parts<'_>>,
    set: &'k KeySet,
    prepared: bool,
) -> Option<Cow<'k, Header>> {
    if let (Some(parts), true) = (parts, prepared) {
        let known = set
            .all()
            .iter()
            .find(|k| k.hmac.as_ref().is_some_and(|h| h.header_b64 == parts.head));
        if let Some(k) = known {
            return Some(Cow::Borrowed(&k.header));
        }
    }
    jsonwebtoken::decode_header(token).ok().map(Cow::Owned)
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
    /// `app.id`: the application a token must name.
    app_id: String,
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
            app_id: config.app_id.clone(),
        }
    }

    /// Verifies a wsToken's signature and claims; `now` decides expiry (`exp > now`,
    /// `nbf < now`).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedWs, TokenError> {
        self.verify_ws(token, now, true)
    }

    /// [`Verifier::verify`]; `prepared` picks [`decode_hmac`] for HMAC keys (always, outside
    /// the tests that compare it with `jsonwebtoken::decode`).
    pub(super) fn verify_ws(
        &self,
        token: &str,
        now: i64,
        prepared: bool,
    ) -> Result<VerifiedWs, TokenError> {
        let ring = self.keys.current();
        let parts = Parts::of(token);
        let header = header_of(token, parts, &ring.ws, prepared).ok_or(TokenError::Invalid)?;
        let mut claims = None;
        for key in candidate_keys(&header, &ring.ws, now, true) {
            let decoded = match (&key.hmac, prepared) {
                (Some(hmac), true) => decode_hmac::<VerifiedWs>(parts, &header, key.alg, &hmac.key)
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
        let app = claims.meta.as_ref().and_then(|m| m.app.as_deref());
        if !self.is_this_application(app) {
            return Err(TokenError::WrongApplication);
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

    pub(super) fn verify_rest_with(
        &self,
        token: &str,
        now: i64,
        prepared: bool,
    ) -> Result<VerifiedRest, RestTokenError> {
        let ring = self.keys.current();
        let parts = Parts::of(token);
        let header =
            header_of(token, parts, &ring.rest, prepared).ok_or(RestTokenError::Invalid)?;
        let Some(key) = candidate_keys(&header, &ring.rest, now, false).pop() else {
            return Err(if self.signed_as_ws(&header, &ring.ws, token, now) {
                RestTokenError::WrongTokenType
            } else {
                RestTokenError::Invalid
            });
        };
        let claims = match (&key.hmac, prepared) {
            (Some(hmac), true) => decode_hmac::<VerifiedRest>(parts, &header, key.alg, &hmac.key)
                .filter(|c| c.iss == self.rest_issuer && c.aud.contains(&self.rest_audience))
                .ok_or(RestTokenError::Invalid)?,
            _ => {
                let v = self.rest.get(key.alg).ok_or(RestTokenError::Invalid)?;
                jsonwebtoken::decode::<VerifiedRest>(token, &key.decoding, v)
                    .map_err(|_| RestTokenError::Invalid)?
                    .claims
            }
        };
        if !self.is_this_application(claims.aud.application()) {
            return Err(RestTokenError::WrongApplication);
        }
        if claims.exp <= now || claims.nbf.is_some_and(|nbf| nbf >= now as f64) {
            return Err(RestTokenError::Expired);
        }
        Ok(claims)
    }

    /// True when a token naming application `app` (`None`: it names none) is this service's:
    /// the same `app.id`, or none while `app.id` is the default. A token from before `app.id`
    /// names none: accepted by an install that kept the default (its tokens are this
    /// install's), refused by one with its own `app.id`, which cannot tell whose it is.
    fn is_this_application(&self, app: Option<&str>) -> bool {
        match app {
            Some(a) => a == self.app_id,
            None => self.app_id == crate::api_key::DEFAULT_APP_ID,
        }
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
