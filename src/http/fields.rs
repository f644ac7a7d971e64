//! The request fields more than one route reads: `userId` (`POST /tokens` and
//! `POST /tokens/subscription`), and [`present`], which keeps an explicit `null` apart from an
//! absent field.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ApiError, Field};

pub const MAX_USER_ID_BYTES: usize = 255;

/// `Some(raw)` for any present value, `null` included.
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

/// A 400 naming `field` (its code is `invalid_<field>`).
pub fn field_err(field: Field, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field,
        message: message.into(),
    }
}

/// Validates `userId` (shared with `POST /tokens/subscription`): a string, or a JSON integer
/// standing for its decimal text, digit for digit (so ids beyond 2^53 lose nothing).
pub fn user_id(raw: Option<&RawValue>) -> Result<String, ApiError> {
    const CODE: Field = Field::UserId;
    const ACCEPTED: &str = "userId must be a string such as \"user-123\" or an integer such as 7 (digits only: no fraction, exponent or -0); null and booleans are not accepted";
    let Some(raw) = raw else {
        return Err(field_err(
            CODE,
            "userId is required: send your user's id as a string or an integer",
        ));
    };
    let id: String = match integer_text(raw.get()) {
        Some(digits) => digits.to_string(),
        None => serde_json::from_str(raw.get()).map_err(|_| field_err(CODE, ACCEPTED))?,
    };
    if id.trim().is_empty() {
        return Err(field_err(CODE, "userId must not be empty"));
    }
    if id.len() > MAX_USER_ID_BYTES {
        return Err(field_err(
            CODE,
            format!("userId must be a string of at most {MAX_USER_ID_BYTES} bytes or an integer of at most {MAX_USER_ID_BYTES} characters with its sign"),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(field_err(
            CODE,
            "userId must not contain control characters",
        ));
    }
    Ok(id)
}

/// The text of a JSON integer exactly as sent: an optional `-` then digits (JSON itself has no
/// `+` and no leading zeros). `-0` is not one: it would be a second spelling of `0`. A
/// fraction or an exponent (`1.5`, `7.0`, `1e3`) is not an integer's text either.
fn integer_text(raw: &str) -> Option<&str> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    (plain && raw != "-0").then_some(raw)
}
