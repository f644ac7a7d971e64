//! [`Signer`]: mints REST tokens and wsTokens with the keys of the live ring that sign at the
//! instant of issue, subscription tokens with their own key, and fresh token ids.

use std::sync::Arc;

use jsonwebtoken::{EncodingKey, Header};
use rand::Rng;
use serde_json::value::RawValue;

use super::claims::{Info, RestClaims, SubscriptionClaims, WsClaims, WsMeta};
use super::prepared::encode;
use super::SignError;
use crate::channels::ChannelRules;
use crate::config::TokenConfig;
use crate::keys::LiveKeys;
use crate::secrets::Secret;

/// Two freshly signed tokens, issued at the same instant.
#[derive(Debug)]
pub struct Minted {
    pub token: String,
    pub ws_token: String,
}

/// Mints REST tokens and wsTokens, each with the key of its kind that signs at `iat`, and
/// subscription tokens with their own HMAC key.
pub struct Signer {
    keys: Arc<LiveKeys>,
    sub_header: Header,
    sub_key: EncodingKey,
    config: TokenConfig,
    /// The server-side channel rules (`centrifugo.user_channels`), for the wsToken's `channels`.
    channels: ChannelRules,
    /// The JSON text of the claims every token carries alike, serialised once: the REST
    /// token's `iss` and `aud` (`[tokens.rest_audience, "app:<app.id>"]`) and the wsToken's
    /// `meta.app`, so a mint escapes only what changes.
    rest_iss: Box<RawValue>,
    rest_aud: Box<RawValue>,
    app_id: Box<RawValue>,
}

/// `value`'s JSON text (a string or strings, which always serialise).
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_default()
}

impl Signer {
    pub fn new(
        config: &TokenConfig,
        keys: Arc<LiveKeys>,
        subscription_key: &Secret,
        channel_rules: &ChannelRules,
    ) -> Signer {
        Signer {
            keys,
            sub_header: Header::new(config.subscription_algorithm),
            sub_key: EncodingKey::from_secret(subscription_key.expose().as_bytes()),
            config: config.clone(),
            channels: channel_rules.server_side(),
            rest_iss: json_text(&config.rest_issuer),
            rest_aud: json_text(&[
                config.rest_audience.clone(),
                format!("{}{}", super::APP_AUDIENCE_PREFIX, config.app_id),
            ]),
            app_id: json_text(&config.app_id),
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
            iss: &self.rest_iss,
            sub,
            aud: &self.rest_aud,
            iat,
            exp,
            jti: rest_jti,
        };
        let channels = self.channels.server_side_channels(sub);
        let ws = WsClaims {
            sub,
            iat,
            exp: ws_exp,
            jti: ws_jti,
            info,
            aud: self.config.ws_audience.as_deref(),
            iss: self.config.ws_issuer.as_deref(),
            channels: &channels,
            meta: WsMeta {
                iat,
                app: &self.app_id,
            },
        };
        let ring = self.keys.current();
        let (rk, wk) = (ring.rest.signing(iat), ring.ws.signing(iat));
        let token = encode(rk, &rest)?;
        let ws_token = encode(wk, &ws)?;
        Ok(Minted { token, ws_token })
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

/// Writes a fresh random token id (a v4 UUID in simple form) into `buf`. The bytes come from the
/// thread-local CSPRNG (ChaCha, seeded from the OS), so minting makes no `getrandom` syscall.
pub(super) fn encode_jti(buf: &mut [u8]) -> &str {
    let id = uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid();
    id.simple().encode_lower(buf)
}
