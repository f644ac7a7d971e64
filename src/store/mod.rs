//! Persistence of users and API keys behind one type, [`Store`], whatever the backend.
//!
//! Handlers and the CLI only see [`Store`] and the plain data types below. Backends: embedded
//! SQLite ([`sqlite`], the default, one instance) and PostgreSQL ([`postgres`], several replicas
//! sharing one store). The API is async so that neither backend blocks a worker: PostgreSQL
//! awaits its pool, SQLite reads complete in place (they never wait for a lock) and SQLite
//! writes await the writer thread (see [`sqlite`]). Every operation is timed into the
//! `chatsdk_auth_store_operation_duration_seconds` histogram when one is attached.
//!
//! Architecture invariant: this module knows nothing about HTTP.

mod audit_page;
mod error;
mod postgres;
mod postgres_batch;
mod postgres_keyring;
mod postgres_outbox;
mod postgres_rows;
mod postgres_schema;
mod postgres_segments;
mod postgres_tls;
mod segments;
pub mod session;
mod shared_limits;
mod sqlite;

pub use error::{Conflict, LostUpdate, StoreError};
pub use postgres_keyring::SealedRing;
#[doc(hidden)]
pub use postgres_schema::postgres_migrations;
pub use segments::{FieldCounts, SegmentCounts, ValueCount};
pub use shared_limits::SharedVerdict;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

pub use audit_page::{AuditPage, AuditQuery, AuditRow};

use crate::api_key;
use crate::metrics::StoreTimings;

use crate::config::StoreConfig;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    /// The `custom` object exactly as the caller sent it (JSON text).
    #[serde(serialize_with = "raw_json")]
    pub custom: Option<String>,
    pub disabled: bool,
    /// Tokens whose `iat` is before this instant (Unix seconds) are revoked.
    pub tokens_valid_after: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a proxy decision needs of a user: the profile it reports and the two fields that can
/// end a session. No id (the caller looked it up by id) and no timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub name: Option<String>,
    pub image: Option<String>,
    /// The `custom` object exactly as the caller sent it (JSON text).
    pub custom: Option<String>,
    pub disabled: bool,
    /// Tokens whose `iat` is before this instant (Unix seconds) are revoked: the user's own
    /// instant or the app-wide one, whichever is later.
    pub tokens_valid_after: i64,
}

fn raw_json<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    match v {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => value.serialize(s),
            Err(_) => s.serialize_str(text),
        },
        None => s.serialize_none(),
    }
}

/// What an upsert does with one optional field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<T> {
    /// The request omitted it: keep the stored value.
    Keep,
    /// The request sent `null`: clear it.
    Clear,
    /// The request sent a value: store it.
    Set(T),
}

impl<T> Field<T> {
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Set(v) => Some(v),
            _ => None,
        }
    }
    pub fn is_given(&self) -> bool {
        !matches!(self, Field::Keep)
    }
}

/// The profile fields a `POST /tokens` carries.
#[derive(Debug, Clone)]
pub struct UserPatch<'a> {
    pub id: &'a str,
    pub name: Field<&'a str>,
    pub image: Field<&'a str>,
    pub custom: Field<&'a str>,
}

/// What the upsert returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    /// The user is active; `created` is true when this call inserted the row.
    Active {
        id: String,
        name: Option<String>,
        image: Option<String>,
        tokens_valid_after: i64,
        created: bool,
    },
    /// The user exists and is disabled; nothing was written.
    Disabled,
}

/// An API key row as the authenticator needs it.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub name: String,
    pub hash: [u8; 32],
    /// When the key was revoked (Unix seconds), if it was.
    pub revoked_at: Option<i64>,
}

/// An API key row as `api-key list` shows it (never the key or its hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiKeyInfo {
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A change an operator makes to one user (CLI or admin API), applied by [`Store::change_user`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    Disable,
    Enable,
    /// Tokens issued before `valid_after` (Unix seconds) are refused from now on.
    RevokeTokens {
        valid_after: i64,
    },
    /// The row is erased.
    Delete,
}

/// A terminal disconnect queued in the outbox with the change that calls for it. The store
/// keeps the code and reason as given; `centrifugo/protocol.rs` chooses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick<'a> {
    pub code: u32,
    pub reason: &'a str,
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingKick {
    pub id: i64,
    pub user_id: String,
    pub code: u32,
    pub reason: String,
    /// Delivery attempts so far, this one included.
    pub attempts: i64,
}

/// One page of `GET /admin/users` / `user list`, ordered by id.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserPage {
    pub users: Vec<User>,
    /// The `after` of the next page; `None` on the last page.
    pub next_after: Option<String>,
}

/// One security event for the audit trail. Never a secret or a token: the actor is an API
/// key's *name*, `cli`, `admin` or `startup`; the target a user id or key name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    /// Unix seconds.
    pub at: i64,
    /// What happened: one of [`audit_event`]'s constants.
    pub event: String,
    /// Who did it.
    pub actor: String,
    /// `user`, `api_key`, `app`, `signing_key` or `segment`.
    pub target_kind: Option<String>,
    /// The user id, API key name, signing-key kind (`rest`, `ws`) or `where` acted on.
    pub target: Option<String>,
    /// The client address of the request, when there was one.
    pub source: Option<String>,
    /// A short detail (which limit tripped, up to which instant tokens were revoked).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The event `event` by `actor` at `at` on the target `kind` `target`.
    pub fn new(at: i64, event: &str, actor: &str, kind: &str, target: &str) -> AuditEvent {
        AuditEvent {
            at,
            event: event.into(),
            actor: actor.into(),
            target_kind: Some(kind.into()),
            target: Some(target.into()),
            source: None,
            detail: None,
        }
    }
}

/// The audit event names.
pub mod audit_event;

/// Which audit events `chatsdk-auth audit` reads.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only events at or after this instant (Unix seconds).
    pub since: Option<i64>,
    /// Only events whose target is this user.
    pub user: Option<String>,
    /// At most this many, the most recent (0: no limit).
    pub limit: usize,
}

/// The store the service runs on.
pub struct Store {
    backend: Backend,
    timings: Option<StoreTimings>,
    /// Set when a write failed because the store was unavailable (locked past the busy timeout,
    /// disk full, read-only, unreachable); cleared by the next write or probe that succeeds.
    /// `/readyz` reads it (see [`Store::writes_work`]).
    write_failed: AtomicBool,
    /// Unix seconds of the last warning that the shared limits cannot be asked (at most one
    /// a minute, see `store/shared_limits.rs`).
    shared_warned_at: AtomicI64,
}

/// The backend a [`Store`] runs on; every method reaches it through [`dispatch!`].
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// The one backend dispatch: `dispatch!(self.method(args))` calls `method` on whichever backend
/// the store runs on; `dispatch!(self.method(args).await)` when SQLite's method is async too (a
/// write, through the writer thread; SQLite's reads complete in place).
///
/// The PostgreSQL arm is `Box::pin`ned: an async method's future is as large as its largest
/// arm (a pooled PostgreSQL query is about 2 KB), and that size is carried, and copied, through
/// every handler future that awaits it, on SQLite too. One allocation next to a network round
/// trip keeps the SQLite path at a few dozen bytes.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? ) . await) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(s) => Box::pin(s.$method($($arg),*)).await,
        }
    };
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*),
            Backend::Postgres(s) => Box::pin(s.$method($($arg),*)).await,
        }
    };
}
use dispatch;

macro_rules! timed {
    ($self:ident, $op:ident, $call:expr) => {{
        let start = Instant::now();
        let out = $call;
        if let Some(t) = &$self.timings {
            t.$op.observe(start.elapsed().as_secs_f64());
        }
        out
    }};
}

impl Store {
    /// Opens (creating and migrating) the configured store.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let backend = match config {
            StoreConfig::Sqlite { path, busy_timeout } => {
                Backend::Sqlite(sqlite::SqliteStore::open(path, *busy_timeout)?)
            }
            StoreConfig::Postgres {
                url,
                tls,
                pool_size,
                timeout,
                batch,
            } => Backend::Postgres(
                postgres::PgStore::open(url, tls, *pool_size, *timeout, batch, true).await?,
            ),
        };
        Ok(Store {
            backend,
            timings: None,
            write_failed: AtomicBool::new(false),
            shared_warned_at: AtomicI64::new(i64::MIN),
        })
    }

    /// Attaches the operation-duration histograms.
    pub(crate) fn with_timings(mut self, h: StoreTimings) -> Store {
        if let Backend::Postgres(postgres::PgStore {
            lookups: Some(l), ..
        }) = &self.backend
        {
            l.observe_sizes(&h);
        }
        self.timings = Some(h);
        self
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        timed!(self, ping, dispatch!(self.ping()))
    }

    /// Notes whether a write reached a working store, for [`Store::writes_work`].
    /// Only a success clears the flag and only `Unavailable` sets it: any other error (a
    /// conflict, a bad row, a bug) says nothing about whether the store takes writes.
    fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let failed = match &result {
            Ok(_) => false,
            Err(StoreError::Unavailable(_)) => true,
            Err(_) => return result,
        };
        if failed != self.write_failed.load(Ordering::Relaxed) {
            self.write_failed.store(failed, Ordering::Relaxed);
        }
        result
    }

    /// Whether writes work: true while the last write succeeded; after a write failed for an
    /// unavailable store, a probe write (it changes nothing but commits) decides, so readiness
    /// recovers by itself once the disk, the lock or the server does.
    pub(crate) async fn writes_work(&self) -> bool {
        if !self.write_failed.load(Ordering::Relaxed) {
            return true;
        }
        let probe = dispatch!(self.probe_write().await);
        if let Err(e) = &probe {
            tracing::debug!(error = %crate::error_chain::Chain(e), "write probe failed");
        }
        self.noted(probe).is_ok()
    }

    pub async fn upsert_user(
        &self,
        patch: &UserPatch<'_>,
        now: i64,
    ) -> Result<Upserted, StoreError> {
        let result = timed!(
            self,
            upsert_user,
            dispatch!(self.upsert_user(patch, now).await)
        );
        self.noted(result)
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        timed!(self, get_user, dispatch!(self.get_user(id)))
    }

    /// The user as a proxy decision sees it (timed as `get_user`).
    pub async fn get_session(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        timed!(self, get_user, dispatch!(self.get_session(id)))
    }

    pub(crate) async fn find_api_key(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        timed!(
            self,
            authenticate_api_key,
            dispatch!(self.find_api_key(hash))
        )
    }

    pub(crate) async fn touch_api_key(&self, name: &str, now: i64) -> Result<(), StoreError> {
        let result = timed!(
            self,
            touch_api_key,
            dispatch!(self.touch_api_key(name, now).await)
        );
        self.noted(result)
    }

    /// Creates a named key of application `app_id` and returns the plaintext (shown once,
    /// never stored); `audit` is written in the same transaction.
    pub async fn create_api_key(
        &self,
        name: &str,
        app_id: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<String, StoreError> {
        let key = api_key::generate(app_id);
        let (prefix, hash) = (api_key::display_prefix(&key), api_key::hash(&key));
        dispatch!(self.insert_api_key(name, &prefix, &hash, now, audit).await)?;
        Ok(key)
    }

    /// Makes the key named `name` equal `key` unless it already does (automated deployments),
    /// writing `audit` in the same transaction when it writes. Returns true when something was
    /// written.
    pub(crate) async fn ensure_api_key(
        &self,
        name: &str,
        key: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (prefix, hash) = (api_key::display_prefix(key), api_key::hash(key));
        dispatch!(self.ensure_api_key(name, &prefix, &hash, now, audit).await)
    }

    pub(crate) async fn count_api_keys(&self) -> Result<u64, StoreError> {
        dispatch!(self.count_api_keys())
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        dispatch!(self.list_api_keys())
    }

    /// Revokes the named key and writes `audit` in the same transaction; false, and nothing
    /// written, when no active key has that name.
    pub async fn revoke_api_key(
        &self,
        name: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        dispatch!(self.revoke_api_key(name, now, audit).await)
    }

    /// Applies an operator's change to a user and, in the same transaction, writes `audit`
    /// and queues `kick` for delivery (or, for [`UserChange::Enable`], cancels the user's
    /// pending kicks with `kick.code`, which the re-enabled user must no longer receive).
    /// False, and nothing written, when the user does not exist.
    pub(crate) async fn change_user(
        &self,
        id: &str,
        change: UserChange,
        now: i64,
        kick: Option<Kick<'_>>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        dispatch!(self.change_user(id, change, now, kick, audit).await)
    }

    /// Revokes every token of every user issued before `valid_after` (app-wide) and writes
    /// `audit` in the same transaction; an earlier instant than the one in force changes
    /// nothing. Returns the instant in force.
    pub async fn revoke_all_tokens(
        &self,
        valid_after: i64,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        dispatch!(self.revoke_all_tokens(valid_after, audit).await)
    }

    /// Users ordered by id, at most `limit`, starting after the id `after`.
    pub(crate) async fn list_users(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<UserPage, StoreError> {
        let mut users = dispatch!(self.list_users(limit + 1, after))?;
        let next_after = if users.len() > limit {
            users.truncate(limit);
            users.last().map(|u| u.id.clone())
        } else {
            None
        };
        Ok(UserPage { users, next_after })
    }

    /// Claims up to `limit` due kicks (`not_before_ms <= now_ms`) for `lease_ms`: no other
    /// process or replica claims them until the lease passes or the kick is finished.
    pub(crate) async fn claim_kicks(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingKick>, StoreError> {
        dispatch!(self.claim_kicks(now_ms, lease_ms, limit).await)
    }

    /// Removes a delivered kick.
    pub(crate) async fn finish_kick(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self.finish_kick(id).await)
    }

    /// Puts a kick back for another attempt at `not_before_ms`.
    pub(crate) async fn retry_kick(&self, id: i64, not_before_ms: i64) -> Result<(), StoreError> {
        dispatch!(self.retry_kick(id, not_before_ms).await)
    }

    /// Kicks in the outbox: all of them, and those due at `now_ms`.
    pub async fn count_kicks(&self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        dispatch!(self.count_kicks(now_ms))
    }

    /// Appends one event to the audit trail (append-only: the table refuses updates), for an
    /// event that records no change of its own (a rate-limit trip) or one made outside the
    /// store (a rotation of the ring file, a bulk action's summary). A change the store makes
    /// takes its event and writes it in the change's transaction.
    pub(crate) async fn append_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let result = dispatch!(self.append_audit(e).await);
        self.noted(result)
    }

    /// The audit events matching `f`, oldest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        dispatch!(self.list_audit(f))
    }

    /// Deletes the audit events older than `before` (retention); returns how many.
    pub async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        dispatch!(self.prune_audit(before).await)
    }
}

#[cfg(test)]
mod tests;
