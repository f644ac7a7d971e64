//! The request fields more than one route reads: `userId` (`POST /tokens` and
//! `POST /tokens/subscription`), and [`present`], which keeps an explicit `null` apart from an
//! absent field.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::ApiError;

pub const MAX_USER_ID_BYTES: usize = 255;

/// `Some(raw)` for any present value, `null` included.
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

/// A 400 naming the field by `code` (`invalid_user_id`, ...).
pub fn field_err(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        code,
        message: message.into(),
    }
}

/// Validates `userId`.
pub fn user_id(raw: Option<&RawValue>) -> Result<String, ApiError> {
    const CODE: &str = "invalid_user_id";
    let Some(raw) = raw else {
        return Err(field_err(
            CODE,
            "userId is required: send your user's id as a string",
        ));
    };
    let id: String = serde_json::from_str(raw.get()).map_err(|_| {
        field_err(
            CODE,
            "userId must be a string (numbers and null are not accepted)",
        )
    })?;
    if id.trim().is_empty() {
        return Err(field_err(CODE, "userId must not be empty"));
    }
    if id.len() > MAX_USER_ID_BYTES {
        return Err(field_err(
            CODE,
            format!("userId must be at most {MAX_USER_ID_BYTES} bytes"),
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
