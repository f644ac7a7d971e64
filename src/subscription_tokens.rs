//! `POST /tokens/subscription`: Centrifugo subscription JWTs for channels the channel rules
//! allow the user.
//!
//! The body names a user and one channel (`channel`) or up to [`MAX_CHANNELS`] (`channels`).
//! Everything about the body is checked before the store is read (every channel must be a
//! channel Centrifugo can have, see [`crate::channels::validate_channel`]); then the user must
//! exist (a user is created by `POST /tokens`) and be enabled, and every channel must be allowed
//! by the rules, or nothing is minted. The endpoint writes nothing but the API key's
//! `last_used_at`, and only after success.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::channels::validate_channel;
use crate::http::body;
use crate::http::fields::{field_err, present, user_id};
use crate::http::{no_store, ok_json, ApiError, Field, Resp};
use crate::jwt::Info;
use crate::router::context::Minting;
use crate::store::session::{self, Refused};

/// The most channels one request may ask tokens for.
pub const MAX_CHANNELS: usize = 100;

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(rename = "userId", borrow, default, deserialize_with = "present")]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    channels: Option<&'a RawValue>,
}

/// A validated request: the type is the proof.
#[derive(Debug)]
pub struct SubscriptionRequest {
    pub user_id: String,
    /// 1 to [`MAX_CHANNELS`] channels, each one Centrifugo can have, in the caller's order.
    pub channels: Vec<String>,
}

#[derive(Serialize)]
struct Issued<'a> {
    channel: &'a str,
    token: String,
}

#[derive(Serialize)]
struct Response<'a> {
    tokens: Vec<Issued<'a>>,
    #[serde(rename = "expiresIn")]
    expires_in: i64,
}

/// Handles one `POST /tokens/subscription` the router let through: the same key check and
/// limits as `POST /tokens` (per-user minting excepted: a subscription token writes nothing),
/// the body a JSON object of at most `server.max_body_bytes`.
pub(crate) async fn handle(ctx: &Minting<'_>, bytes: &[u8]) -> Result<Resp, ApiError> {
    let request = parse(bytes)?;
    Ok(no_store(issue(ctx, &request).await?))
}

/// Checks the user and the rules, then mints one token per channel.
async fn issue(ctx: &Minting<'_>, r: &SubscriptionRequest) -> Result<Resp, ApiError> {
    let now = ctx.now;
    // No token speaks for the user here, so there is no issue time to check.
    let user =
        session::verdict(ctx.store.get_session(&r.user_id).await?, None).map_err(|e| match e {
            Refused::UnknownUser => ApiError::UserUnknown(r.user_id.clone()),
            Refused::Disabled | Refused::Revoked => ApiError::UserDisabled,
        })?;
    let refused = ctx
        .channel_rules
        .first_refused(&r.user_id, user.custom.as_deref(), &r.channels);
    if let Some(refused) = refused {
        return Err(ApiError::ChannelForbidden(refused.to_string()));
    }
    let info = Info {
        name: user.name.as_deref(),
        image: user.image.as_deref(),
        custom: &[],
    };
    let mut tokens = Vec::with_capacity(r.channels.len());
    for channel in &r.channels {
        let token = ctx
            .signer
            .mint_subscription(&r.user_id, channel, info, now)
            .map_err(|e| ApiError::Internal(e.into()))?;
        tokens.push(Issued { channel, token });
    }
    ctx.counters.tokens_subscription.inc_by(tokens.len() as u64);
    ok_json(&Response {
        tokens,
        expires_in: ctx.signer.subscription_ttl_seconds(),
    })
}

/// Parses and validates a request body.
pub fn parse(bytes: &[u8]) -> Result<SubscriptionRequest, ApiError> {
    const SHAPE: &str = r#"a JSON object like {"userId": "user-123", "channel": "room:general"}"#;
    let raw: RawRequest<'_> = body::decode_object(bytes, SHAPE)?;
    let user_id = user_id(raw.user_id)?;
    let channels = channels(raw.channel, raw.channels)?;
    Ok(SubscriptionRequest { user_id, channels })
}

fn channels(one: Option<&RawValue>, many: Option<&RawValue>) -> Result<Vec<String>, ApiError> {
    const LIST: Field = Field::Channels;
    const ONE: Field = Field::Channel;
    let list = match (one, many) {
        (Some(_), Some(_)) => {
            return Err(field_err(
                LIST,
                "Send either channel or channels, not both",
            ))
        }
        (None, None) => {
            return Err(field_err(
                LIST,
                format!("channel (a string) or channels (an array of 1 to {MAX_CHANNELS} strings) is required"),
            ))
        }
        (Some(raw), None) => {
            let channel: String = serde_json::from_str(raw.get())
                .map_err(|_| field_err(ONE, "channel must be a string"))?;
            vec![channel]
        }
        (None, Some(raw)) => {
            let list: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| {
                field_err(
                    LIST,
                    format!("channels must be an array of 1 to {MAX_CHANNELS} strings"),
                )
            })?;
            if list.is_empty() || list.len() > MAX_CHANNELS {
                return Err(field_err(
                    LIST,
                    format!(
                        "channels must hold 1 to {MAX_CHANNELS} channels (got {})",
                        list.len()
                    ),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, v)| {
                    serde_json::from_str::<String>(v.get())
                        .map_err(|_| field_err(ONE, format!("channels[{i}] must be a string")))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let single = one.is_some();
    for (i, channel) in list.iter().enumerate() {
        if let Err(e) = validate_channel(channel) {
            let name = if single {
                "channel".to_string()
            } else {
                format!("channels[{i}]")
            };
            return Err(field_err(
                ONE,
                format!("{name} {e}; see Centrifugo's channel name rules"),
            ));
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        parse(body.as_bytes()).unwrap_err().code().as_str()
    }

    #[test]
    fn one_channel_or_a_list() {
        let r = parse(br#"{"userId":"u","channel":"room:a"}"#).unwrap();
        assert_eq!(r.channels, ["room:a"]);
        let r = parse(br#"{"userId":"u","channels":["room:a","$room:b"]}"#).unwrap();
        assert_eq!(r.channels, ["room:a", "$room:b"]);
        let hundred: Vec<String> = (0..100).map(|i| format!("room:{i}")).collect();
        let body = serde_json::json!({"userId": "u", "channels": hundred}).to_string();
        assert_eq!(parse(body.as_bytes()).unwrap().channels.len(), 100);
    }

    #[test]
    fn an_integer_user_id_is_its_decimal_text() {
        let r = parse(br#"{"userId":7,"channel":"room:a"}"#).unwrap();
        assert_eq!(r.user_id, "7");
        assert_eq!(
            code(r#"{"userId":1e3,"channel":"room:a"}"#),
            "invalid_user_id"
        );
    }

    #[test]
    fn each_mistake_has_its_code() {
        assert_eq!(code(r#"{"channel":"room:a"}"#), "invalid_user_id");
        assert_eq!(code(r#"{"userId":"u"}"#), "invalid_channels");
        assert_eq!(
            code(r#"{"userId":"u","channel":"room:a","channels":["room:b"]}"#),
            "invalid_channels"
        );
        assert_eq!(code(r#"{"userId":"u","channels":[]}"#), "invalid_channels");
        assert_eq!(
            code(r#"{"userId":"u","channels":"room:a"}"#),
            "invalid_channels"
        );
        let many: Vec<String> = (0..101).map(|i| format!("room:{i}")).collect();
        let body = serde_json::json!({"userId": "u", "channels": many}).to_string();
        assert_eq!(code(&body), "invalid_channels");
        assert_eq!(code(r#"{"userId":"u","channel":5}"#), "invalid_channel");
        assert_eq!(code(r#"{"userId":"u","channel":""}"#), "invalid_channel");
        assert_eq!(
            code(r#"{"userId":"u","channel":"a\u0007b"}"#),
            "invalid_channel"
        );
        assert_eq!(
            code(r#"{"userId":"u","channels":["ok:x",null]}"#),
            "invalid_channel"
        );
        let long = format!(r#"{{"userId":"u","channel":"room:{}"}}"#, "x".repeat(251));
        assert_eq!(code(&long), "invalid_channel");
        assert_eq!(
            code(r#"{"userId":"u","channel":"x y:z"}"#),
            "invalid_channel"
        );
        assert_eq!(code(r#"[1]"#), "invalid_json");
        assert_eq!(code(r#"{"userId":"#), "invalid_json");
    }

    #[test]
    fn messages_name_the_bad_channel_position() {
        let e = parse(br#"{"userId":"u","channels":["room:a","room:\n"]}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("channels[1] contains control characters"),
            "{e}"
        );
    }
}
