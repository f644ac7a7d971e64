//! `POST /tokens`: validates the request, upserts the user, mints `token` and `wsToken`.
//!
//! Field semantics of the upsert: an omitted field keeps its stored value, an explicit `null`
//! clears it, a value replaces it. Blank is absent: an empty `name` or `image` clears like
//! `null`. `custom` is stored byte for byte as the caller sent it (an empty array, which is how
//! PHP encodes an empty associative array, as `{}`). `userId` is a string or a JSON integer,
//! which means the user whose id is its decimal text (`7` and `"7"` are one user).
//! Validation happens entirely before the write, and a disabled user's row is never touched,
//! so a rejected request writes nothing.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::http::body;
use crate::http::fields::{field_err, present, user_id};
use http::StatusCode;

use crate::error_chain::Context;
use crate::http::{json, no_store, ApiError, Field as Invalid, Resp};
use crate::jwt::Info;
use crate::router::context::Minting;
use crate::store::{Field, Upserted, UserPatch};

const MAX_NAME_CHARS: usize = 255;
const MAX_IMAGE_BYTES: usize = 2048;
const MAX_CUSTOM_BYTES: usize = 16 * 1024;

/// The request as parsed: every field raw, so `null` and "absent" stay distinct and each
/// field's type error can name the field.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(rename = "userId", borrow, default, deserialize_with = "present")]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    image: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    custom: Option<&'a RawValue>,
}

/// A validated request: the type is the proof.
#[derive(Debug)]
pub struct TokenRequest {
    pub user_id: String,
    pub name: Field<String>,
    pub image: Field<String>,
    pub custom: Field<String>,
}

#[derive(Serialize)]
struct UserOut<'a> {
    id: &'a str,
    name: Option<&'a str>,
    image: Option<&'a str>,
}

#[derive(Serialize)]
struct TokenResponse<'a> {
    token: &'a str,
    #[serde(rename = "wsToken")]
    ws_token: &'a str,
    user: UserOut<'a>,
    /// The REST token's lifetime in seconds (the seed contract's `expiresIn`).
    #[serde(rename = "expiresIn")]
    expires_in: i64,
    /// The wsToken's lifetime in seconds (`tokens.ws_ttl_seconds`).
    #[serde(rename = "wsExpiresIn")]
    ws_expires_in: i64,
}

/// Handles one `POST /tokens` the router let through: the caller's key is checked (and
/// limited), the body is a JSON object of at most `server.max_body_bytes`.
/// A refusal of the request once read is also counted by segment (`segments.metrics_label`,
/// from the request's `custom`).
pub(crate) async fn handle(ctx: &Minting<'_>, bytes: &[u8]) -> Result<Resp, ApiError> {
    let request = parse(bytes)?;
    let answer = limit_and_issue(ctx, &request).await;
    if let Err(e) = &answer {
        let custom = match &request.custom {
            Field::Set(text) => Some(text.as_str()),
            Field::Keep | Field::Clear => None,
        };
        ctx.count_refusal_by_segment(e, custom);
    }
    Ok(no_store(answer?))
}

async fn limit_and_issue(ctx: &Minting<'_>, r: &TokenRequest) -> Result<Resp, ApiError> {
    ctx.limits
        .mint_for_user(&r.user_id)
        .map_err(|l| ctx.rate_limited(l))?;
    issue(ctx, r).await
}

/// Upserts the user and mints both tokens.
async fn issue(ctx: &Minting<'_>, r: &TokenRequest) -> Result<Resp, ApiError> {
    let now = ctx.now;
    let patch = UserPatch {
        id: &r.user_id,
        name: as_str(&r.name),
        image: as_str(&r.image),
        custom: as_str(&r.custom),
    };
    let (id, name, image, valid_after, created) = match ctx.store.upsert_user(&patch, now).await? {
        Upserted::Active {
            id,
            name,
            image,
            tokens_valid_after,
            created,
        } => (id, name, image, tokens_valid_after, created),
        Upserted::Disabled => return Err(ApiError::UserDisabled),
    };
    let hot = ctx.counters;
    if created {
        hot.users_created.inc();
    } else {
        hot.users_updated.inc();
    }
    // Tokens are never issued "before" a revocation instant, so a token minted right after
    // `user revoke-tokens` in the same second is not caught by its own revocation.
    // A revocation instant more than a second ahead cannot come from `revoke-tokens` (which
    // refuses future instants); never mint into the future for it, the proxies then refuse.
    let iat = if valid_after > now && valid_after - now <= 1 {
        valid_after
    } else {
        now
    };
    // `segments.info_fields` and `segments.metrics_label`: the declared keys of the user's
    // `custom` (the one just sent, or the stored one when the request left it out), read only
    // when some are declared.
    let stored;
    let unread = ctx.info_fields.is_empty() && ctx.segment_series.is_none();
    let custom = match (&patch.custom, unread) {
        (_, true) | (Field::Clear, _) => None,
        (Field::Set(text), _) => Some(*text),
        (Field::Keep, _) => {
            stored = ctx.store.get_session(&id).await?.and_then(|u| u.custom);
            stored.as_deref()
        }
    };
    let extra = crate::segments::info_values(custom, ctx.info_fields);
    let info = Info {
        name: name.as_deref(),
        image: image.as_deref(),
        custom: &extra,
    };
    let minted = ctx
        .signer
        .mint(&id, info, iat)
        .map_err(|e| ApiError::Internal(e.into()))?;
    hot.tokens_rest.inc();
    hot.tokens_ws.inc();
    if let Some(s) = ctx.segment_series {
        s.issued(s.index(custom));
    }
    let reply = TokenResponse {
        token: &minted.token,
        ws_token: &minted.ws_token,
        user: UserOut {
            id: &id,
            name: name.as_deref(),
            image: image.as_deref(),
        },
        expires_in: ctx.signer.ttl_seconds(),
        ws_expires_in: ctx.signer.ws_ttl_seconds(),
    };
    reply
        .to_json()
        .map(|b| json(StatusCode::OK, b))
        .map_err(|e| ApiError::Internal(Context::new("cannot serialise response", e).into()))
}

impl TokenResponse<'_> {
    /// The bytes `serde_json` writes for the response (a unit test compares them), with the
    /// two tokens copied as they are: a compact JWS is base64url parts joined by `.`
    /// (RFC 7515 section 7.1), which JSON never escapes, so the two longest strings of the
    /// answer skip serde_json's byte-by-byte escape scan. The user's fields go through serde.
    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        debug_assert!(is_compact_jws(self.token) && is_compact_jws(self.ws_token));
        let mut out = Vec::with_capacity(self.token.len() + self.ws_token.len() + 256);
        out.extend_from_slice(br#"{"token":""#);
        out.extend_from_slice(self.token.as_bytes());
        out.extend_from_slice(br#"","wsToken":""#);
        out.extend_from_slice(self.ws_token.as_bytes());
        out.extend_from_slice(br#"","user":"#);
        serde_json::to_writer(&mut out, &self.user)?;
        out.extend_from_slice(br#","expiresIn":"#);
        serde_json::to_writer(&mut out, &self.expires_in)?;
        out.extend_from_slice(br#","wsExpiresIn":"#);
        serde_json::to_writer(&mut out, &self.ws_expires_in)?;
        out.push(b'}');
        Ok(out)
    }
}

/// True when `t` has only the bytes of a compact JWS: base64url and `.`.
fn is_compact_jws(t: &str) -> bool {
    t.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn as_str(f: &Field<String>) -> Field<&str> {
    match f {
        Field::Keep => Field::Keep,
        Field::Clear => Field::Clear,
        Field::Set(s) => Field::Set(s.as_str()),
    }
}

/// Parses and validates a request body.
pub fn parse(bytes: &[u8]) -> Result<TokenRequest, ApiError> {
    let raw: RawRequest<'_> =
        body::decode_object(bytes, r#"a JSON object like {"userId": "user-123"}"#)?;
    Ok(TokenRequest {
        user_id: user_id(raw.user_id)?,
        name: name(raw.name)?,
        image: image(raw.image)?,
        custom: custom(raw.custom)?,
    })
}

/// `None` -> Keep, `null` or `""` -> Clear (blank is absent), another string -> Set.
fn optional_string(
    raw: Option<&RawValue>,
    code: Invalid,
    field: &str,
) -> Result<Field<String>, ApiError> {
    match raw {
        None => Ok(Field::Keep),
        Some(r) if r.get() == "null" => Ok(Field::Clear),
        Some(r) => match serde_json::from_str::<String>(r.get()) {
            Ok(s) if s.is_empty() => Ok(Field::Clear),
            Ok(s) => Ok(Field::Set(s)),
            Err(_) => Err(field_err(
                code,
                format!("{field} must be a string or null (an empty string clears it like null)"),
            )),
        },
    }
}

fn name(raw: Option<&RawValue>) -> Result<Field<String>, ApiError> {
    const CODE: Invalid = Invalid::Name;
    let f = optional_string(raw, CODE, "name")?;
    if let Field::Set(n) = &f {
        if n.chars().count() > MAX_NAME_CHARS {
            return Err(field_err(
                CODE,
                format!("name must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if n.chars().any(char::is_control) {
            return Err(field_err(CODE, "name must not contain control characters"));
        }
    }
    Ok(f)
}

fn image(raw: Option<&RawValue>) -> Result<Field<String>, ApiError> {
    const CODE: Invalid = Invalid::Image;
    let f = optional_string(raw, CODE, "image")?;
    if let Field::Set(u) = &f {
        // The URL parser silently strips surrounding whitespace and control characters, but
        // the stored string is the raw one: refuse them instead of storing them.
        if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(field_err(
                CODE,
                "image must be a URL without spaces or control characters",
            ));
        }
        if u.len() > MAX_IMAGE_BYTES {
            return Err(field_err(
                CODE,
                format!("image must be at most {MAX_IMAGE_BYTES} bytes"),
            ));
        }
        let ok = url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
        if !ok {
            return Err(field_err(
                CODE,
                "image must be an absolute http:// or https:// URL",
            ));
        }
    }
    Ok(f)
}

fn custom(raw: Option<&RawValue>) -> Result<Field<String>, ApiError> {
    const CODE: Invalid = Invalid::Custom;
    match raw {
        None => Ok(Field::Keep),
        Some(r) if r.get() == "null" => Ok(Field::Clear),
        // PHP encodes an empty associative array as `[]`: that is the empty object.
        Some(r) if is_empty_array(r.get()) => Ok(Field::Set("{}".to_string())),
        Some(r) => {
            if !r.get().starts_with('{') {
                return Err(field_err(
                    CODE,
                    "custom must be a JSON object, null or an empty array (stored as {})",
                ));
            }
            if r.get().len() > MAX_CUSTOM_BYTES {
                return Err(field_err(
                    CODE,
                    format!("custom must be at most {MAX_CUSTOM_BYTES} bytes of JSON"),
                ));
            }
            Ok(Field::Set(r.get().to_string()))
        }
    }
}

/// `[]`, with any JSON whitespace inside.
fn is_empty_array(raw: &str) -> bool {
    raw.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| inner.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fields::MAX_USER_ID_BYTES;

    fn code(body: &str) -> &'static str {
        parse(body.as_bytes()).unwrap_err().code().as_str()
    }

    #[test]
    fn the_response_is_the_bytes_serde_writes() {
        let tokens = ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln-_x", "a.b.c"];
        for (name, image) in [
            (
                Some("Zoë \"Z\" \\ </script>\u{7}"),
                Some("https://example.com/a.png?x=\"1\""),
            ),
            (None, None),
        ] {
            let r = TokenResponse {
                token: tokens[0],
                ws_token: tokens[1],
                user: UserOut {
                    id: "user-\"1\"",
                    name,
                    image,
                },
                expires_in: 900,
                ws_expires_in: -1,
            };
            assert_eq!(
                String::from_utf8(r.to_json().unwrap()).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }
        assert!(is_compact_jws(tokens[0]));
        for bad in ["a\"b", "a\\b", "a b", "é"] {
            assert!(!is_compact_jws(bad), "{bad}");
        }
    }

    #[test]
    fn absent_null_and_value_are_distinct() {
        let r = parse(br#"{"userId":"u","name":null,"custom":{"a":1}}"#).unwrap();
        assert_eq!(r.name, Field::Clear);
        assert_eq!(r.image, Field::Keep);
        assert_eq!(r.custom, Field::Set(r#"{"a":1}"#.to_string()));
    }

    #[test]
    fn each_field_error_names_its_field() {
        assert_eq!(code(r#"{}"#), "invalid_user_id");
        assert_eq!(code(r#"{"userId":""}"#), "invalid_user_id");
        assert_eq!(code(r#"{"userId":12.5}"#), "invalid_user_id");
        assert_eq!(code(r#"{"userId":"a\u0001"}"#), "invalid_user_id");
        assert_eq!(
            code(&format!(r#"{{"userId":"{}"}}"#, "x".repeat(256))),
            "invalid_user_id"
        );
        assert_eq!(code(r#"{"userId":"u","name":5}"#), "invalid_name");
        assert_eq!(
            code(r#"{"userId":"u","image":"ftp://x/y.png"}"#),
            "invalid_image"
        );
        assert_eq!(
            code(r#"{"userId":"u","image":"not a url"}"#),
            "invalid_image"
        );
        assert_eq!(code(r#"{"userId":"u","custom":[1]}"#), "invalid_custom");
        assert_eq!(code(r#"{"userId":"u","custom":"x"}"#), "invalid_custom");
        assert_eq!(code(r#"{"userId": "#), "invalid_json");
        assert_eq!(code(r#"[1,2]"#), "invalid_json");
    }

    fn id_of(body: &str) -> String {
        parse(body.as_bytes()).unwrap().user_id
    }

    #[test]
    fn an_integer_user_id_is_its_decimal_text() {
        assert_eq!(id_of(r#"{"userId":7}"#), "7");
        assert_eq!(id_of(r#"{"userId":"7"}"#), "7");
        assert_eq!(id_of(r#"{"userId":-7}"#), "-7");
        assert_eq!(id_of(r#"{"userId":0}"#), "0");
        // Beyond 2^53 (where a float would round) every digit is kept.
        assert_eq!(
            id_of(r#"{"userId":12345678901234567890123456789}"#),
            "12345678901234567890123456789"
        );
        let longest = "9".repeat(MAX_USER_ID_BYTES);
        assert_eq!(id_of(&format!(r#"{{"userId":{longest}}}"#)), longest);
    }

    #[test]
    fn only_plain_integers_are_accepted() {
        for bad in [
            "1.5", "7.0", "1e3", "1E3", "-0", "true", "null", "[7]", "{}",
        ] {
            let e = parse(format!(r#"{{"userId":{bad}}}"#).as_bytes()).unwrap_err();
            assert_eq!(e.code(), "invalid_user_id", "{bad}");
            assert!(e.to_string().contains("integer"), "{bad}: {e}");
        }
        let e = parse(format!(r#"{{"userId":{}}}"#, "9".repeat(300)).as_bytes()).unwrap_err();
        assert_eq!(e.code(), "invalid_user_id");
        assert!(e.to_string().contains("255"), "{e}");
        // Not JSON at all.
        assert_eq!(code(r#"{"userId":+7}"#), "invalid_json");
    }

    #[test]
    fn blank_name_and_image_clear_like_null() {
        let r = parse(br#"{"userId":7,"name":"","image":""}"#).unwrap();
        assert_eq!(r.name, Field::Clear);
        assert_eq!(r.image, Field::Clear);
        // Only the empty string is blank: a space is not a URL.
        assert_eq!(code(r#"{"userId":"u","image":" "}"#), "invalid_image");
    }

    #[test]
    fn an_empty_custom_array_is_an_empty_object() {
        let r = parse(br#"{"userId":"u","custom":[]}"#).unwrap();
        assert_eq!(r.custom, Field::Set("{}".to_string()));
        let r = parse(br#"{"userId":"u","custom":[ ]}"#).unwrap();
        assert_eq!(r.custom, Field::Set("{}".to_string()));
        assert_eq!(code(r#"{"userId":"u","custom":[{}]}"#), "invalid_custom");
        assert_eq!(code(r#"{"userId":"u","custom":[null]}"#), "invalid_custom");
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(parse(format!(r#"{{"userId":"{}"}}"#, "x".repeat(255)).as_bytes()).is_ok());
        assert!(
            parse(format!(r#"{{"userId":"u","name":"{}"}}"#, "é".repeat(255)).as_bytes()).is_ok()
        );
        let big = format!(
            r#"{{"userId":"u","custom":{{"k":"{}"}}}}"#,
            "x".repeat(MAX_CUSTOM_BYTES)
        );
        assert_eq!(code(&big), "invalid_custom");
    }
}
