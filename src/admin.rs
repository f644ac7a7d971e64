//! The admin HTTP API (`/admin/...`): the operator actions of [`crate::actions`] over HTTP, for
//! operators and for the customer's backend, behind `Authorization: Bearer <admin token>`
//! (compared in constant time by the router's guard, `router/guard.rs`, behind
//! `limits.admin_per_ip_per_minute`; every refusal counted in
//! `chatsdk_auth_admin_unauthorized_total`).
//!
//! The user id and the API-key name are one percent-encoded path segment. Action routes take
//! an empty body or a JSON object (`{}` where they take no parameters); unknown fields are
//! refused. Errors use the service's `{error, code}` envelope; an unknown user or key is 404.
//! A change that queued a kick wakes the delivery loop at once. `GET /admin/keys` and
//! `POST /admin/keys/{rest|ws}/rotate` are `chatsdk-auth keys list` and `keys rotate`.
//! `GET /admin/audit` and `GET /admin/overview`, the operator console's reads, are [`audit`]
//! and [`overview`].

mod audit;
mod overview;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use crate::actions::{ActionError, Bulk, BulkKind};
use crate::http::body;
use crate::http::query::{self, PageLimit, Param};
use crate::http::{created_json, ok_json, ApiError, Field, Resp};
use crate::keys::{self, KeyError, Kind};
use crate::router::context::Admin;
use crate::router::table::AdminRoute;
use crate::store::{ApiKeyInfo, User};

/// Default page size of `GET /admin/users`.
const DEFAULT_LIMIT: PageLimit = PageLimit::clamped(100);

/// `POST /admin/users/{id}/revoke-tokens` and `POST /admin/revoke-tokens`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    before: Option<serde_json::Value>,
}

/// `POST /admin/bulk/{action}`: the field types are checked here, each refusal naming its
/// field (serde's own message would name none).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    #[serde(rename = "where", default)]
    conditions: Option<serde_json::Value>,
    #[serde(default)]
    dry_run: Option<serde_json::Value>,
    #[serde(default)]
    expected_count: Option<serde_json::Value>,
    #[serde(default)]
    before: Option<serde_json::Value>,
}

/// Routes that take no parameters accept `{}` only.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    name: String,
}

#[derive(Serialize)]
struct UserChanged {
    user: User,
    kick_queued: bool,
}

#[derive(Serialize)]
struct UserRevoked {
    user: User,
    revoked_before: i64,
    kick_queued: bool,
}

#[derive(Serialize)]
struct UserDeleted<'a> {
    id: &'a str,
    deleted: bool,
    kick_queued: bool,
}

#[derive(Serialize)]
struct AllRevoked {
    revoked_before: i64,
}

#[derive(Serialize)]
struct ApiKeys {
    api_keys: Vec<ApiKeyInfo>,
}

#[derive(Serialize)]
struct KeyCreated<'a> {
    name: &'a str,
    /// Shown once; only its hash is stored.
    key: &'a str,
}

#[derive(Serialize)]
struct SigningKeys {
    keys: Vec<keys::KeyInfo>,
}

#[derive(Serialize)]
struct KeyRevoked<'a> {
    name: &'a str,
    revoked: bool,
}

/// Answers one admin request the router let through (admin token checked, an action's body
/// read: empty, or JSON).
pub(crate) async fn handle(
    ctx: &Admin<'_>,
    route: AdminRoute,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let segment = |name: &str| -> Result<String, ApiError> {
        percent_decode(ctx.param(name)).ok_or_else(|| ApiError::InvalidField {
            field: Field::Path,
            message: "The path segment is not valid percent-encoded UTF-8".into(),
        })
    };
    let now = ctx.now;
    let actions = &ctx.actions;
    use AdminRoute as A;
    match route {
        A::GetUser => ok_json(&actions.show_user(&segment("id")?).await.map_err(api)?),
        A::ListUsers => {
            let q = query::parse(ctx.query, &[Param::Limit, Param::After, Param::Where])?;
            let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
            let after = q.after;
            let page = if q.conditions.is_empty() {
                actions.list_users(limit, after.as_deref()).await
            } else {
                let segment = actions.segment(&q.conditions).await.map_err(api)?;
                actions
                    .list_segment(&segment, limit, after.as_deref())
                    .await
            };
            ok_json(&page.map_err(api)?)
        }
        A::DisableUser | A::EnableUser => {
            let id = segment("id")?;
            params::<NoParams>(body)?;
            let changed = if route == A::DisableUser {
                actions.disable(&id, now).await
            } else {
                actions.enable(&id, now).await
            }
            .map_err(api)?;
            ctx.wake(changed);
            ok_json(&UserChanged {
                user: actions.show_user(&id).await.map_err(api)?,
                kick_queued: changed.kick_queued,
            })
        }
        A::RevokeUserTokens => {
            let id = segment("id")?;
            let b = params::<RevokeBody>(body)?;
            let before = before_of(b.before)?;
            let (t, changed) = actions
                .revoke_user_tokens(&id, before, now)
                .await
                .map_err(api)?;
            ctx.wake(changed);
            ok_json(&UserRevoked {
                user: actions.show_user(&id).await.map_err(api)?,
                revoked_before: t,
                kick_queued: changed.kick_queued,
            })
        }
        A::DeleteUser => {
            let id = segment("id")?;
            let changed = actions.delete_user(&id, now).await.map_err(api)?;
            ctx.wake(changed);
            ok_json(&UserDeleted {
                id: &id,
                deleted: true,
                kick_queued: changed.kick_queued,
            })
        }
        A::RevokeAllTokens => {
            let b = params::<RevokeBody>(body)?;
            let before = before_of(b.before)?;
            let t = actions.revoke_all_tokens(before, now).await.map_err(api)?;
            ok_json(&AllRevoked { revoked_before: t })
        }
        A::Bulk => {
            let kind = match segment("action")?.as_str() {
                "disable" => BulkKind::Disable,
                "enable" => BulkKind::Enable,
                "revoke-tokens" => BulkKind::RevokeTokens,
                "delete" => BulkKind::Delete,
                _ => {
                    return Err(ApiError::InvalidField {
                        field: Field::Path,
                        message: "The bulk action is disable, enable, revoke-tokens or delete"
                            .into(),
                    })
                }
            };
            let b = params::<BulkBody>(body)?;
            let conditions = conditions_of(b.conditions)?;
            let bulk = Bulk {
                segment: actions.segment(&conditions).await.map_err(api)?,
                kind,
                before: before_of(b.before)?,
                expected_count: expected_count_of(b.expected_count)?,
                dry_run: dry_run_of(b.dry_run)?,
            };
            let outcome = ctx
                .bulk(bulk)
                .await
                .map_err(|e| ApiError::Internal(Box::new(e)))?
                .map_err(api)?;
            ok_json(&outcome)
        }
        A::ListApiKeys => ok_json(&ApiKeys {
            api_keys: actions.list_api_keys().await.map_err(api)?,
        }),
        A::CreateApiKey => {
            let b: CreateKeyBody = if body.is_empty() {
                return Err(invalid_name(
                    "name is required: send {\"name\": \"backend\"}",
                ));
            } else {
                // A body of the wrong shape is a missing or malformed name.
                body::decode_object(body, r#"a JSON object like {"name": "backend"}"#).map_err(
                    |e| match e {
                        ApiError::InvalidJson(sentence) => invalid_name(&sentence),
                        other => other,
                    },
                )?
            };
            let key = actions
                .create_api_key(&b.name, ctx.app_id, now)
                .await
                .map_err(api)?;
            created_json(&KeyCreated {
                name: &b.name,
                key: &key,
            })
        }
        A::Audit => ok_json(&audit::page(&ctx.audit, ctx.query).await?),
        A::Overview => ok_json(&overview::build(ctx).await),
        A::ListKeys => ok_json(&SigningKeys {
            keys: ctx.keys.current().list(now),
        }),
        A::RotateKey => {
            let kind = match segment("kind")?.as_str() {
                "rest" => Kind::Rest,
                "ws" => Kind::Ws,
                _ => {
                    return Err(ApiError::InvalidField {
                        field: Field::Path,
                        message: "The key kind is rest (the token field) or ws (the wsToken)"
                            .into(),
                    })
                }
            };
            params::<NoParams>(body)?;
            let rotation = ctx.rotate(kind).await.map_err(|e| match e {
                KeyError::Refused(refusal) => ApiError::RotationRefused(refusal),
                other => ApiError::Internal(Box::new(other)),
            })?;
            ok_json(&rotation)
        }
        A::RevokeApiKey => {
            let name = segment("name")?;
            actions.revoke_api_key(&name, now).await.map_err(api)?;
            ok_json(&KeyRevoked {
                name: &name,
                revoked: true,
            })
        }
    }
}

/// The action's error on the wire.
fn api(e: ActionError) -> ApiError {
    match e {
        ActionError::UnknownUser(id) => ApiError::UserUnknown(id),
        ActionError::UnknownApiKey(name) => ApiError::UnknownApiKey(name),
        ActionError::Invalid { field, message } => ApiError::InvalidField { field, message },
        ActionError::Conflict(kind) => ApiError::ApiKeyExists(kind),
        e @ ActionError::SegmentChanged { .. } => ApiError::SegmentChanged(e.to_string()),
        ActionError::Store(e) => e.into(),
    }
}

fn invalid_name(message: &str) -> ApiError {
    ApiError::InvalidField {
        field: Field::Name,
        message: message.into(),
    }
}

/// The parameters of an action route: an empty body is the defaults; otherwise a JSON object
/// with known fields only.
fn params<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    body::decode_object(body, "empty or a JSON object of this action's fields")
}

/// `before` must be a whole number of Unix seconds (the action refuses a future one).
fn before_of(v: Option<serde_json::Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| ApiError::InvalidField {
            field: Field::Before,
            message: "before must be an integer: Unix seconds, not later than now".into(),
        }),
    }
}

/// `where`: an array of `field=value` strings (checked against the declared fields by the
/// action).
fn conditions_of(v: Option<serde_json::Value>) -> Result<Vec<String>, ApiError> {
    let refuse = || {
        ApiError::InvalidField {
        field: Field::Where,
        message: "where is required: an array of field=value conditions, ANDed (for example [\"tenantId=tenant-789\"])".into(),
    }
    };
    let Some(serde_json::Value::Array(items)) = v else {
        return Err(refuse());
    };
    items
        .into_iter()
        .map(|c| match c {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(refuse()),
        })
        .collect()
}

/// `expected_count`: a whole number of users (the dry run's `count`).
fn expected_count_of(v: Option<serde_json::Value>) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| ApiError::InvalidField {
            field: Field::ExpectedCount,
            message: "expected_count must be a whole number: the count the dry run answered".into(),
        }),
    }
}

/// `dry_run`: true or false (default false).
fn dry_run_of(v: Option<serde_json::Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(b),
        Some(_) => Err(ApiError::InvalidJson(
            "dry_run must be true or false".into(),
        )),
    }
}

/// Decodes `%XX` escapes with the `percent-encoding` crate (as `url` does); `None` for a
/// malformed escape (the crate would pass `%zz` through as it is; the path contract refuses it)
/// or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let escapes_ok = b
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| {
            b.get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        });
    if !escapes_ok {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded_strictly() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode("a%"), None);
        assert_eq!(percent_decode("100%25").as_deref(), Some("100%"));
    }

    #[test]
    fn before_must_be_an_integer() {
        assert_eq!(before_of(None).unwrap(), None);
        assert_eq!(before_of(Some(serde_json::json!(12))).unwrap(), Some(12));
        for bad in [serde_json::json!("12"), serde_json::json!(1.5)] {
            assert_eq!(before_of(Some(bad)).unwrap_err().code(), "invalid_before");
        }
    }
}
