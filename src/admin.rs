//! The admin HTTP API (`/admin/...`): the operator actions of [`crate::actions`] over HTTP, for
//! operators and for the customer's backend, behind `Authorization: Bearer <admin token>`
//! (compared in constant time; every refusal counted in `chatsdk_auth_admin_unauthorized_total`).
//!
//! The user id and the API-key name are one percent-encoded path segment. Action routes take
//! an empty body or a JSON object (`{}` where they take no parameters); unknown fields are
//! refused. Errors use the service's `{error, code}` envelope; an unknown user or key is 404.
//! A change that queued a kick wakes the delivery loop at once. `GET /admin/keys` and
//! `POST /admin/keys/{rest|ws}/rotate` are `chatsdk-auth keys list` and `keys rotate`.

use http::{header, HeaderMap, Request};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::actions::{ActionError, Changed};
use crate::app::App;
use crate::http::body::{self, BodyProgress};
use crate::http::{created_json, ok_json, ApiError, Resp};
use crate::keys::{self, KeyError, Kind};
use crate::router::table::AdminRoute;
use crate::store::{ApiKeyInfo, Conflict, User};

/// The `code` of a 400 for each parameter an action can refuse (and the path segment); the
/// contract (src/openapi.json, README.md) lists these.
pub const FIELD_CODES: [(&str, &str); 4] = [
    ("before", "invalid_before"),
    ("limit", "invalid_limit"),
    ("name", "invalid_name"),
    ("path", "invalid_path"),
];

/// Default page size of `GET /admin/users`.
const DEFAULT_LIMIT: usize = 100;

/// `POST /admin/users/{id}/revoke-tokens` and `POST /admin/revoke-tokens`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
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

/// Answers one admin request.
pub async fn handle(
    app: &App,
    route: AdminRoute,
    req: Request<Incoming>,
    peer: std::net::IpAddr,
    progress: &BodyProgress,
) -> Result<Resp, ApiError> {
    let (parts, body) = req.into_parts();
    // `limits.admin_per_ip_per_minute`, before the token is even compared.
    let client = crate::http::client_addr(
        &parts.headers,
        peer,
        app.config.limits.trusted_proxy_header.as_ref(),
    );
    app.limits
        .admin_call(client)
        .map_err(|l| crate::tokens::rate_limited(app, l, client, None))?;
    if !authorized(app, &parts.headers) {
        app.metrics.admin_unauthorized.inc();
        return Err(ApiError::AdminUnauthorized);
    }
    let segment = |i: usize| -> Result<String, ApiError> {
        let raw = parts.uri.path().split('/').nth(i).unwrap_or_default();
        percent_decode(raw).ok_or_else(|| ApiError::InvalidField {
            code: "invalid_path",
            message: "The path segment is not valid percent-encoded UTF-8".into(),
        })
    };
    let now = crate::now_unix();
    let mut actions = app.actions();
    actions.source = Some(client.to_string());
    use AdminRoute as A;
    match route {
        A::GetUser => ok_json(&actions.show_user(&segment(3)?).await.map_err(api)?),
        A::ListUsers => {
            let (limit, after) = list_query(parts.uri.query())?;
            ok_json(
                &actions
                    .list_users(limit, after.as_deref())
                    .await
                    .map_err(api)?,
            )
        }
        A::DisableUser | A::EnableUser => {
            let id = segment(3)?;
            params::<NoParams>(&parts.headers, body, app, progress).await?;
            let changed = if route == A::DisableUser {
                actions.disable(&id, now).await
            } else {
                actions.enable(&id, now).await
            }
            .map_err(api)?;
            wake(app, changed);
            ok_json(&UserChanged {
                user: actions.show_user(&id).await.map_err(api)?,
                kick_queued: changed.kick_queued,
            })
        }
        A::RevokeUserTokens => {
            let id = segment(3)?;
            let b = params::<RevokeBody>(&parts.headers, body, app, progress).await?;
            let before = before_of(b.before)?;
            let (t, changed) = actions
                .revoke_user_tokens(&id, before, now)
                .await
                .map_err(api)?;
            wake(app, changed);
            ok_json(&UserRevoked {
                user: actions.show_user(&id).await.map_err(api)?,
                revoked_before: t,
                kick_queued: changed.kick_queued,
            })
        }
        A::DeleteUser => {
            let id = segment(3)?;
            let changed = actions.delete_user(&id, now).await.map_err(api)?;
            wake(app, changed);
            ok_json(&UserDeleted {
                id: &id,
                deleted: true,
                kick_queued: changed.kick_queued,
            })
        }
        A::RevokeAllTokens => {
            let b = params::<RevokeBody>(&parts.headers, body, app, progress).await?;
            let before = before_of(b.before)?;
            let t = actions.revoke_all_tokens(before, now).await.map_err(api)?;
            ok_json(&AllRevoked { revoked_before: t })
        }
        A::ListApiKeys => ok_json(&ApiKeys {
            api_keys: actions.list_api_keys().await.map_err(api)?,
        }),
        A::CreateApiKey => {
            let bytes = read(&parts.headers, body, app, progress).await?;
            let b: CreateKeyBody = if bytes.is_empty() {
                return Err(invalid_name(
                    "name is required: send {\"name\": \"backend\"}",
                ));
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    invalid_name(&format!("send {{\"name\": \"backend\"}} ({})", short(&e)))
                })?
            };
            let key = actions.create_api_key(&b.name, now).await.map_err(api)?;
            created_json(&KeyCreated {
                name: &b.name,
                key: &key,
            })
        }
        A::ListKeys => ok_json(&SigningKeys {
            keys: app.keys.current().list(now),
        }),
        A::RotateKey => {
            let kind = match segment(3)?.as_str() {
                "rest" => Kind::Rest,
                "ws" => Kind::Ws,
                _ => {
                    return Err(ApiError::InvalidField {
                        code: "invalid_path",
                        message: "The key kind is rest (the token field) or ws (the wsToken)"
                            .into(),
                    })
                }
            };
            params::<NoParams>(&parts.headers, body, app, progress).await?;
            let rotation = actions
                .rotate_signing_key(&app.config, &app.secrets, kind, now)
                .await
                .map_err(|e| match e {
                    KeyError::Refused(refusal) => ApiError::Conflict {
                        code: "rotation_refused",
                        message: refusal.to_string(),
                    },
                    other => ApiError::Internal(Box::new(other)),
                })?;
            // This server follows at once; the others within a second (they watch the ring).
            app.keys.refresh(&app.store).await;
            ok_json(&rotation)
        }
        A::RevokeApiKey => {
            let name = segment(3)?;
            actions.revoke_api_key(&name, now).await.map_err(api)?;
            ok_json(&KeyRevoked {
                name: &name,
                revoked: true,
            })
        }
    }
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", app.secrets.admin_token.expose());
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    bool::from(given.ct_eq(expected.as_bytes()))
}

fn wake(app: &App, changed: Changed) {
    if changed.kick_queued {
        app.kick_wake.notify_one();
    }
}

/// The action's error on the wire.
fn api(e: ActionError) -> ApiError {
    match e {
        ActionError::UnknownUser(id) => ApiError::UnknownUser(id),
        ActionError::UnknownApiKey(name) => ApiError::UnknownApiKey(name),
        ActionError::Invalid { field, message } => ApiError::InvalidField {
            code: FIELD_CODES
                .iter()
                .find(|(f, _)| *f == field)
                .map_or("invalid_json", |(_, code)| code),
            message,
        },
        ActionError::Conflict(kind) => ApiError::Conflict {
            code: match kind {
                Conflict::ApiKeyName(_) | Conflict::ApiKeyInUse => "api_key_exists",
            },
            message: kind.to_string(),
        },
        ActionError::Store(e) => e.into(),
    }
}

fn invalid_name(message: &str) -> ApiError {
    ApiError::InvalidField {
        code: "invalid_name",
        message: message.into(),
    }
}

fn short(e: &serde_json::Error) -> String {
    e.to_string()
        .split(" at line")
        .next()
        .unwrap_or("invalid JSON")
        .to_string()
}

/// The body, at most `server.max_body_bytes`; a non-empty one must be JSON.
async fn read(
    headers: &HeaderMap,
    body: Incoming,
    app: &App,
    progress: &BodyProgress,
) -> Result<bytes::Bytes, ApiError> {
    let limit = app.config.server.max_body_bytes;
    let bytes = body::read_limited(headers, body, limit, progress).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) && !body::is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(bytes::Bytes::new());
    }
    Ok(bytes)
}

/// The parameters of an action route: an empty body is the defaults; otherwise a JSON object
/// with known fields only.
async fn params<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Incoming,
    app: &App,
    progress: &BodyProgress,
) -> Result<T, ApiError> {
    let bytes = read(headers, body, app, progress).await?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidJson(
            "The body must be empty or a JSON object".into(),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidJson(format!("Invalid request body: {}", short(&e))))
}

/// `before` must be a whole number of Unix seconds (the action refuses a future one).
fn before_of(v: Option<serde_json::Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| ApiError::InvalidField {
            code: "invalid_before",
            message: "before must be an integer: Unix seconds, not later than now".into(),
        }),
    }
}

/// `?limit=&after=` of `GET /admin/users`.
fn list_query(query: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" => {
                limit = v.parse().map_err(|_| ApiError::InvalidField {
                    code: "invalid_limit",
                    message: format!(
                        "limit must be a whole number from 1 to {}",
                        crate::actions::MAX_PAGE
                    ),
                })?
            }
            "after" => after = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok((limit, after))
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
