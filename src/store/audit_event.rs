//! The audit event names, one constant each.

pub const API_KEY_CREATED: &str = "api_key.created";
pub const API_KEY_REVOKED: &str = "api_key.revoked";
/// `secrets.initial_api_key` installed or replaced at startup (key rotation).
pub const API_KEY_ROTATED: &str = "api_key.rotated";
pub const USER_DISABLED: &str = "user.disabled";
pub const USER_ENABLED: &str = "user.enabled";
pub const USER_TOKENS_REVOKED: &str = "user.tokens_revoked";
pub const USER_DELETED: &str = "user.deleted";
pub const APP_TOKENS_REVOKED: &str = "app.tokens_revoked";
/// `keys rotate` / `POST /admin/keys/{kind}/rotate`: a new signing key of one token kind.
pub const SIGNING_KEY_ROTATED: &str = "signing_key.rotated";
/// A rate limit refused requests (sampled: at most one event a minute per limit and client
/// address).
pub const RATE_LIMIT_TRIPPED: &str = "rate_limit.tripped";
/// Bulk actions by segment (target kind `segment`, the `where` as target).
pub const SEGMENT_DISABLED: &str = "segment.disabled";
pub const SEGMENT_ENABLED: &str = "segment.enabled";
pub const SEGMENT_TOKENS_REVOKED: &str = "segment.tokens_revoked";
pub const SEGMENT_DELETED: &str = "segment.deleted";
