//! Token verification for others: `GET /verify` (forward auth for API gateways), `POST
//! /introspect` (RFC 7662) and `GET /.well-known/jwks.json` (the public keys).
//!
//! `/verify` reads only `Authorization: Bearer <token>`; the gateway's own headers
//! (`X-Original-URI`, `X-Forwarded-*`, ...) never take part in the decision. Every malformed
//! input is "not valid" (401, or `active: false`), never a 5xx; only an unreachable store is a
//! 503, so a gateway fails closed. The JWKS is served from the key ring in memory and never
//! touches the store: Centrifugo treats a failed JWKS fetch as a terminal 3500 for the client
//! (https://centrifugal.dev/docs/server/authentication#json-web-key-support).

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue};
use serde::Serialize;

use crate::http::auth::{self, Scheme};
use crate::http::{ok, ok_json, ApiError, Resp, TokenProblem, TokenRefusal};
use crate::jwt::{Audience, RestTokenError, TokenError};
use crate::metrics::{IntrospectResult, Verification as Verifications, VerifyResult};
use crate::router::context::Verification;
use crate::store::session::{self, Refused};
use crate::store::SessionUser;

const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const X_USER_NAME: HeaderName = HeaderName::from_static("x-user-name");

#[derive(Serialize)]
struct Verified<'a> {
    sub: &'a str,
    exp: i64,
}

/// Why a user may not use a token issued at `iat`, if so.
fn refusal(user: Option<SessionUser>, iat: i64) -> Result<SessionUser, ApiError> {
    session::verdict(user, Some(iat)).map_err(|r| match r {
        Refused::UnknownUser => ApiError::InvalidToken(TokenProblem::UnknownUser),
        Refused::Disabled => ApiError::TokenRefused(TokenRefusal::UserDisabled),
        Refused::Revoked => ApiError::TokenRefused(TokenRefusal::TokenRevoked),
    })
}

/// `GET /verify` (and the other methods gateways forward), counted by result.
pub(crate) async fn verify(ctx: &Verification<'_>) -> Result<Resp, ApiError> {
    let result = check(ctx).await;
    ctx.metrics
        .verification(Verifications::Verify(verify_result(&result)));
    result
}

/// The `result` a `/verify` answer is counted under: `valid`, or what refused it (the label
/// is the error's code, tests/api/verify.rs counts each). Anything else [`check`] could
/// answer with is counted as `internal_error`, never dropped.
fn verify_result(answer: &Result<Resp, ApiError>) -> VerifyResult {
    match answer {
        Ok(_) => VerifyResult::Valid,
        Err(ApiError::InvalidToken(p)) => match p {
            TokenProblem::Missing | TokenProblem::Invalid | TokenProblem::UnknownUser => {
                VerifyResult::InvalidToken
            }
            TokenProblem::Expired => VerifyResult::TokenExpired,
            TokenProblem::WrongType => VerifyResult::WrongTokenType,
            TokenProblem::WrongApplication => VerifyResult::WrongApplication,
        },
        Err(ApiError::TokenRefused(r)) => match r {
            TokenRefusal::UserDisabled => VerifyResult::UserDisabled,
            TokenRefusal::TokenRevoked => VerifyResult::TokenRevoked,
        },
        Err(ApiError::StoreUnavailable(_)) => VerifyResult::StoreUnavailable,
        Err(_) => VerifyResult::InternalError,
    }
}

async fn check(ctx: &Verification<'_>) -> Result<Resp, ApiError> {
    let now = ctx.now;
    let token = auth::bearer(ctx.headers, Scheme::AnyCase)
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or(ApiError::InvalidToken(TokenProblem::Missing))?;
    let claims = ctx.verifier.verify_rest(token, now).map_err(|e| match e {
        RestTokenError::Invalid => ApiError::InvalidToken(TokenProblem::Invalid),
        RestTokenError::Expired => ApiError::InvalidToken(TokenProblem::Expired),
        RestTokenError::WrongTokenType => ApiError::InvalidToken(TokenProblem::WrongType),
        RestTokenError::WrongApplication => ApiError::InvalidToken(TokenProblem::WrongApplication),
    })?;
    let user = refusal(ctx.store.get_session(&claims.sub).await?, claims.iat)?;
    let mut resp = ok(crate::http::to_json_vec(&Verified {
        sub: &claims.sub,
        exp: claims.exp,
    })
    .map_err(|e| ApiError::Internal(Box::new(e)))?);
    let h = resp.headers_mut();
    // User ids and names never hold control characters (POST /tokens refuses them), so they
    // are valid header bytes; UTF-8 passes through as the opaque bytes HTTP allows.
    h.insert(
        X_USER_ID,
        HeaderValue::from_bytes(claims.sub.as_bytes())
            .map_err(|e| ApiError::Internal(Box::new(e)))?,
    );
    if let Some(v) = user
        .name
        .as_deref()
        .and_then(|n| HeaderValue::from_bytes(n.as_bytes()).ok())
    {
        h.insert(X_USER_NAME, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// An active token, as RFC 7662 section 2.2 describes it.
#[derive(Serialize)]
struct Active<'a> {
    active: bool,
    sub: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    /// `rest` (the `token` field) or `ws` (the `wsToken` field).
    token_type: &'static str,
}

const INACTIVE: &[u8] = br#"{"active":false}"#;

/// What `/introspect` found (its metric's `result`).
#[derive(Clone, Copy)]
enum Found {
    Active,
    Inactive,
    /// Inactive: a token of another application.
    WrongApplication,
}

/// `POST /introspect`, once the router checked the caller's API key (with its limits) and read
/// the form.
pub(crate) async fn introspect(ctx: &Verification<'_>, bytes: &[u8]) -> Result<Resp, ApiError> {
    let token = url::form_urlencoded::parse(bytes)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let answer = match token {
        Some(t) => introspect_token(ctx, &t).await,
        None => inactive(Found::Inactive),
    };
    ctx.metrics
        .verification(Verifications::Introspect(match &answer {
            Ok((Found::Active, _)) => IntrospectResult::Active,
            Ok((Found::Inactive, _)) => IntrospectResult::Inactive,
            Ok((Found::WrongApplication, _)) => IntrospectResult::WrongApplication,
            Err(ApiError::StoreUnavailable(_)) => IntrospectResult::StoreUnavailable,
            Err(_) => IntrospectResult::InternalError,
        }));
    let mut resp = answer?.1;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `{"active":false}`, counted as `found`.
fn inactive(found: Found) -> Result<(Found, Resp), ApiError> {
    Ok((found, ok(Bytes::from_static(INACTIVE))))
}

/// Whether `token` is active, and the answer saying so. A token of another application is
/// inactive like any other refused token (RFC 7662 section 2.2 gives an inactive token no
/// reason); only the metric tells it apart.
async fn introspect_token(ctx: &Verification<'_>, token: &str) -> Result<(Found, Resp), ApiError> {
    let now = ctx.now;
    match ctx.verifier.verify_rest(token, now) {
        Ok(c) => {
            if refusal(ctx.store.get_session(&c.sub).await?, c.iat).is_err() {
                return inactive(Found::Inactive);
            }
            ok_json(&Active {
                active: true,
                sub: &c.sub,
                exp: c.exp,
                iat: c.iat,
                iss: Some(&c.iss),
                aud: Some(&c.aud),
                jti: Some(&c.jti),
                token_type: "rest",
            })
            .map(|r| (Found::Active, r))
        }
        Err(RestTokenError::WrongApplication) => inactive(Found::WrongApplication),
        Err(RestTokenError::WrongTokenType) => match ctx.verifier.verify(token, now) {
            Ok(c) => {
                if refusal(ctx.store.get_session(&c.sub).await?, c.iat).is_err() {
                    return inactive(Found::Inactive);
                }
                let aud = c.aud.clone().and_then(|a| serde_json::from_value(a).ok());
                ok_json(&Active {
                    active: true,
                    sub: &c.sub,
                    exp: c.exp,
                    iat: c.iat,
                    iss: c.iss.as_deref(),
                    aud: aud.as_ref(),
                    jti: c.jti.as_deref(),
                    token_type: "ws",
                })
                .map(|r| (Found::Active, r))
            }
            Err(TokenError::WrongApplication) => inactive(Found::WrongApplication),
            Err(_) => inactive(Found::Inactive),
        },
        Err(_) => inactive(Found::Inactive),
    }
}

/// `GET /.well-known/jwks.json`: the public keys of both kinds (current, next and previous)
/// from memory. Cached by clients for a tenth of `tokens.jwks_publish_delay_seconds` (at most
/// five minutes), so every cache has seen a new key long before it signs.
pub(crate) fn jwks(ctx: &Verification<'_>) -> Result<Resp, ApiError> {
    let ring = ctx.keys.current();
    let mut resp = ok_json(&ring.jwks(ctx.now))?;
    let max_age = (ctx.jwks_publish_delay / 10).clamp(0, 300);
    let cc = if max_age == 0 {
        HeaderValue::from_static("no-cache")
    } else {
        HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .unwrap_or(HeaderValue::from_static("no-cache"))
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, cc);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    /// A refusal of `/verify` is counted under its own code: the label and the code the
    /// caller reads are one string, for every refusal the handler can answer.
    #[test]
    fn each_refusal_is_counted_under_its_code() {
        let refusals = TokenProblem::iter()
            .map(ApiError::InvalidToken)
            .chain(TokenRefusal::iter().map(ApiError::TokenRefused))
            .chain([
                ApiError::StoreUnavailable(crate::store::StoreError::Unavailable("down".into())),
                ApiError::Internal("bug".into()),
            ]);
        for e in refusals {
            let code = e.code().as_str();
            let label: &str = verify_result(&Err(e)).label();
            assert_eq!(label, code);
        }
        assert_eq!(verify_result(&Ok(ok(Bytes::new()))).label(), "valid");
    }
}
