//! The operator actions, one implementation each, shared by the command line (`cli.rs`) and
//! the admin API (`admin.rs`): show, list, disable, enable, revoke tokens (one user or the
//! whole app), delete, the API-key actions and the signing-key rotation.
//!
//! Bulk actions by segment are [`bulk`].
//!
//! A change the store makes writes its audit event in the change's transaction (no change
//! without its row, whether the event's write fails or the request is abandoned at its
//! deadline), as does a signing-key rotation in PostgreSQL (in the ring's transaction); a
//! rotation of the ring file, and a bulk action's summary, follow their change.
//!
//! An action that must end live connections (disable, revoke, delete) queues the kick in the
//! same transaction as the change, when active revocation is on (`centrifugo.api_url` set);
//! the caller then gets it delivered ([`crate::outbox`]): the server wakes its delivery loop,
//! the CLI delivers at once. An unknown user changes nothing and queues nothing.

mod bulk;
pub use bulk::{Bulk, BulkKind, BulkOutcome, BATCH};

use crate::api_key;
use crate::centrifugo::protocol::Reason;
use crate::config::Config;
use crate::http::query::PageLimit;
use crate::http::Field;
use crate::keys::{self, KeyError, Kind, Rotation};
use crate::secrets::Secrets;
use crate::store::{
    audit_event, ApiKeyInfo, AuditEvent, Conflict, Kick, Store, StoreError, User, UserChange,
    UserPage,
};

/// Why an action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no user with id \"{0}\"")]
    UnknownUser(String),
    #[error("no active API key named \"{0}\"")]
    UnknownApiKey(String),
    /// A parameter is wrong; `field` names it.
    #[error("{message}")]
    Invalid { field: Field, message: String },
    /// The name is taken, or another conflict the caller can act on (a fixed sentence; the
    /// driver's text is never in it).
    #[error("{0}")]
    Conflict(Conflict),
    /// A bulk action's segment holds another number of users than the dry run counted.
    #[error("the segment now holds {count} users, not the {expected} expected: nothing was changed; dry-run again and check the count")]
    SegmentChanged { expected: u64, count: u64 },
    #[error("the store failed")]
    Store(#[source] StoreError),
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { kind, .. } => ActionError::Conflict(kind),
            e => ActionError::Store(e),
        }
    }
}

/// What a user action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Changed {
    /// A kick was queued for delivery to Centrifugo.
    pub kick_queued: bool,
}

/// The actions, over one store; `kicks` is true when active revocation is on. Every change is
/// recorded in the audit trail with `actor` (`cli`, `admin`) and `source` (the admin client's
/// address). A change the store makes (a user's, the app-wide revocation, an API key's) writes
/// its audit event in its own transaction: a change whose request is abandoned at its deadline,
/// or whose event cannot be written, is either there with its event or not there at all.
pub struct Actions<'a> {
    store: &'a Store,
    kicks: bool,
    actor: &'a str,
    source: Option<String>,
}

impl<'a> Actions<'a> {
    /// The one constructor: the actions over `store`, queueing kicks when `kicks` (active
    /// revocation on), recorded with `actor`.
    pub fn new(store: &'a Store, kicks: bool, actor: &'a str) -> Actions<'a> {
        Actions {
            store,
            kicks,
            actor,
            source: None,
        }
    }

    /// The same, recording `source` (the admin client's address) with every change.
    pub fn from_source(self, source: String) -> Actions<'a> {
        Actions {
            source: Some(source),
            ..self
        }
    }

    /// The store the actions change.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// Whether changes queue kicks (active revocation).
    pub fn kicks(&self) -> bool {
        self.kicks
    }
}

impl Actions<'_> {
    /// The audit event of a change by this actor, from this source.
    fn event(&self, event: &str, kind: &str, target: &str, detail: Option<String>) -> AuditEvent {
        AuditEvent {
            source: self.source.clone(),
            detail,
            ..AuditEvent::new(crate::now_unix(), event, self.actor, kind, target)
        }
    }

    pub async fn show_user(&self, id: &str) -> Result<User, ActionError> {
        self.store
            .get_user(id)
            .await?
            .ok_or_else(|| ActionError::UnknownUser(id.to_string()))
    }

    /// One page of users ordered by id.
    pub async fn list_users(
        &self,
        limit: PageLimit,
        after: Option<&str>,
    ) -> Result<UserPage, ActionError> {
        Ok(self.store.list_users(limit.get(), after).await?)
    }

    /// Refuses new tokens and kicks the user's live connections (4503).
    pub async fn disable(&self, id: &str, now: i64) -> Result<Changed, ActionError> {
        self.change(id, UserChange::Disable, Reason::UserDisabled, now)
            .await
    }

    /// Allows the user again; a disable kick still waiting for Centrifugo is cancelled.
    pub async fn enable(&self, id: &str, now: i64) -> Result<Changed, ActionError> {
        self.change(id, UserChange::Enable, Reason::UserDisabled, now)
            .await?;
        Ok(Changed { kick_queued: false })
    }

    /// Revokes every token of the user issued up to and including `before` (default: now)
    /// and kicks the user's live connections (4504). Returns the instant used.
    pub async fn revoke_user_tokens(
        &self,
        id: &str,
        before: Option<i64>,
        now: i64,
    ) -> Result<(i64, Changed), ActionError> {
        let t = check_before(before, now)?;
        // Tokens carry whole seconds: "up to and including T" means valid-after T + 1.
        let changed = self
            .change(
                id,
                UserChange::RevokeTokens { valid_after: t + 1 },
                Reason::TokenRevoked,
                now,
            )
            .await?;
        Ok((t, changed))
    }

    /// Revokes every token of every user issued up to and including `before` (default: now).
    /// Nothing is kicked (Centrifugo OSS cannot disconnect everyone in one call): the proxies
    /// refuse those tokens at once, live connections end at their next refresh (README,
    /// "Revocation"). Returns the instant used.
    pub async fn revoke_all_tokens(
        &self,
        before: Option<i64>,
        now: i64,
    ) -> Result<i64, ActionError> {
        let t = check_before(before, now)?;
        let detail = format!("tokens issued at or before {t}");
        let e = self.event(audit_event::APP_TOKENS_REVOKED, "app", "all", Some(detail));
        self.store.revoke_all_tokens(t + 1, &e).await?;
        Ok(t)
    }

    /// Erases the user (its tokens are refused everywhere: an unknown user, and a user created
    /// again under the same id refuses tokens older than itself) and kicks its connections
    /// (4502, what the connect proxy answers for an unknown user).
    pub async fn delete_user(&self, id: &str, now: i64) -> Result<Changed, ActionError> {
        self.change(id, UserChange::Delete, Reason::UserUnknown, now)
            .await
    }

    async fn change(
        &self,
        id: &str,
        change: UserChange,
        reason: Reason,
        now: i64,
    ) -> Result<Changed, ActionError> {
        let d = reason.kick();
        let kick = d.filter(|_| self.kicks).map(|d| Kick {
            code: d.code,
            reason: d.reason,
        });
        let (event, detail) = match change {
            UserChange::Disable => (audit_event::USER_DISABLED, None),
            UserChange::Enable => (audit_event::USER_ENABLED, None),
            UserChange::RevokeTokens { valid_after } => (
                audit_event::USER_TOKENS_REVOKED,
                Some(format!("tokens issued at or before {}", valid_after - 1)),
            ),
            UserChange::Delete => (audit_event::USER_DELETED, None),
        };
        let e = self.event(event, "user", id, detail);
        if !self.store.change_user(id, change, now, kick, &e).await? {
            return Err(ActionError::UnknownUser(id.to_string()));
        }
        Ok(Changed {
            kick_queued: kick.is_some() && change != UserChange::Enable,
        })
    }

    /// Rotates the signing key of `kind` ([`keys::rotate`]: under the key ring's lock, off
    /// the async workers) and records it in the audit trail: the kind, and the key ids in the
    /// detail (never key material). In PostgreSQL the event is written in the ring's
    /// transaction; after the ring file, once the file is written. A refused rotation changes
    /// and records nothing.
    pub async fn rotate_signing_key(
        &self,
        config: &Config,
        secrets: &Secrets,
        kind: Kind,
        now: i64,
    ) -> Result<Rotation, KeyError> {
        let record = |r: &Rotation| {
            let detail = format!(
                "{} -> {}, signs from {}",
                r.old_kid, r.new_kid, r.signs_from
            );
            let target = kind.label();
            self.event(
                audit_event::SIGNING_KEY_ROTATED,
                "signing_key",
                target,
                Some(detail),
            )
        };
        keys::rotate(config, secrets, self.store, kind, now, &record).await
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, ActionError> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Creates a key of application `app_id` (`app.id`); the plaintext is returned once and
    /// never stored.
    pub async fn create_api_key(
        &self,
        name: &str,
        app_id: &str,
        now: i64,
    ) -> Result<String, ActionError> {
        api_key::check_name(name).map_err(|e| ActionError::Invalid {
            field: Field::Name,
            message: format!("name: {e}"),
        })?;
        let e = self.event(audit_event::API_KEY_CREATED, "api_key", name, None);
        Ok(self.store.create_api_key(name, app_id, now, &e).await?)
    }

    pub async fn revoke_api_key(&self, name: &str, now: i64) -> Result<(), ActionError> {
        let e = self.event(audit_event::API_KEY_REVOKED, "api_key", name, None);
        if !self.store.revoke_api_key(name, now, &e).await? {
            return Err(ActionError::UnknownApiKey(name.to_string()));
        }
        Ok(())
    }
}

/// `before` defaults to now; a future instant would make every later token "issued before"
/// the revocation, so it is refused.
fn check_before(before: Option<i64>, now: i64) -> Result<i64, ActionError> {
    let t = before.unwrap_or(now);
    if t > now {
        return Err(ActionError::Invalid {
            field: Field::Before,
            message: format!(
                "before {t} is in the future (now is {now}); give Unix seconds not later than now"
            ),
        });
    }
    Ok(t)
}
