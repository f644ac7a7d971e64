//! Bulk actions by segment: disable, enable, revoke tokens or delete every user of a `where`.
//!
//! - A dry run answers the segment's size (and, for a revocation, the instant it would use).
//! - The action takes the size the operator saw (`expected_count`) and refuses, changing
//!   nothing, when the segment holds another number of users now; it never changes more users
//!   than that.
//! - It runs in batches of [`BATCH`] users, each one transaction with its kicks (queued in the
//!   outbox exactly as a single-user action queues them), so the SQLite writer is never held for
//!   long: writes of `POST /tokens` queued meanwhile run between two batches.
//! - It skips users already in the target state (a disable skips disabled users, a revocation
//!   users already revoked at that instant), so a re-run after a crash half-way, with the same
//!   parameters, finishes the job and changes, kicks and counts nobody twice.
//! - It leaves one audit event: the `where`, the counts and the actor.

use crate::centrifugo::protocol::Reason;
use crate::error_chain::Chain;
use crate::http::query::PageLimit;
use crate::http::Field;
use crate::segments::Where;
use crate::store::{audit_event, AuditEvent, Kick, UserChange};

use super::{check_before, ActionError, Actions};

/// Users changed per transaction.
pub const BATCH: usize = 500;

/// What a bulk action does to each user of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BulkKind {
    Disable,
    Enable,
    RevokeTokens,
    Delete,
}

impl BulkKind {
    /// The wire name (`disable`, `enable`, `revoke-tokens`, `delete`).
    pub fn name(self) -> &'static str {
        match self {
            BulkKind::Disable => "disable",
            BulkKind::Enable => "enable",
            BulkKind::RevokeTokens => "revoke-tokens",
            BulkKind::Delete => "delete",
        }
    }
}

/// One bulk request.
#[derive(Debug, Clone)]
pub struct Bulk {
    pub segment: Where,
    pub kind: BulkKind,
    /// Revoke-tokens: tokens issued up to and including this instant (default: now).
    pub before: Option<i64>,
    /// Required unless `dry_run`: the segment size the operator saw.
    pub expected_count: Option<u64>,
    pub dry_run: bool,
}

/// What a bulk action did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BulkOutcome {
    pub action: BulkKind,
    /// The `where`, canonical (`organizationId="org-456" AND plan=7`).
    #[serde(rename = "where")]
    pub segment: String,
    pub dry_run: bool,
    /// Users in the segment when the action started.
    pub count: u64,
    /// Users this run changed (0 for a dry run; fewer than `count` when some were already in
    /// the target state).
    pub changed: u64,
    /// Kicks queued for delivery to Centrifugo.
    pub kicks_queued: u64,
    /// Revoke-tokens: the instant used (pass it as `before` to re-run the same revocation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_before: Option<i64>,
}

impl Actions<'_> {
    /// Lists one page of the segment `w`, ordered by id.
    pub async fn list_segment(
        &self,
        w: &Where,
        limit: PageLimit,
        after: Option<&str>,
    ) -> Result<crate::store::UserPage, ActionError> {
        Ok(self.store.list_segment(w, limit.get(), after).await?)
    }

    /// Parses `where` conditions against the declared fields (those the store indexes).
    pub async fn segment<S: AsRef<str>>(&self, conditions: &[S]) -> Result<Where, ActionError> {
        let declared = self.store.segment_fields().await?;
        Where::parse(conditions, &declared).map_err(|e| ActionError::Invalid {
            field: Field::Where,
            message: e.0,
        })
    }

    /// Runs (or dry-runs) a bulk action; `on_batch` is called after each batch that queued
    /// kicks (the server wakes its delivery loop, so kicks flow while the action runs).
    pub async fn bulk(
        &self,
        b: &Bulk,
        now: i64,
        on_batch: &(dyn Fn() + Sync),
    ) -> Result<BulkOutcome, ActionError> {
        let (change, reason, revoked_before) = match b.kind {
            BulkKind::Disable => (UserChange::Disable, Reason::UserDisabled, None),
            BulkKind::Enable => (UserChange::Enable, Reason::UserDisabled, None),
            BulkKind::RevokeTokens => {
                let t = check_before(b.before, now)?;
                (
                    UserChange::RevokeTokens { valid_after: t + 1 },
                    Reason::TokenRevoked,
                    Some(t),
                )
            }
            BulkKind::Delete => (UserChange::Delete, Reason::UserUnknown, None),
        };
        let count = self.store.count_segment(&b.segment).await?;
        let mut out = BulkOutcome {
            action: b.kind,
            segment: b.segment.to_string(),
            dry_run: b.dry_run,
            count,
            changed: 0,
            kicks_queued: 0,
            revoked_before,
        };
        if b.dry_run {
            return Ok(out);
        }
        let Some(expected) = b.expected_count else {
            return Err(ActionError::Invalid {
                field: Field::ExpectedCount,
                message: "expected_count is required: dry-run first and pass the count it answered, so the action never changes more users than you saw".into(),
            });
        };
        if expected != count {
            return Err(ActionError::SegmentChanged { expected, count });
        }
        let kick = reason.kick().filter(|_| self.kicks).map(|d| Kick {
            code: d.code,
            reason: d.reason,
        });
        let queues_kicks = kick.is_some() && change != UserChange::Enable;
        let mut after: Option<String> = None;
        let mut failure = None;
        while out.changed < expected {
            let limit = BATCH.min((expected - out.changed) as usize);
            let ids = match self
                .store
                .change_segment_batch(&b.segment, change, now, kick, after.as_deref(), limit)
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            out.changed += ids.len() as u64;
            if queues_kicks {
                out.kicks_queued += ids.len() as u64;
                if !ids.is_empty() {
                    on_batch();
                }
            }
            if ids.len() < limit {
                break;
            }
            after = ids.last().cloned();
            // Let the requests that queued behind this batch run before the next one.
            tokio::task::yield_now().await;
        }
        self.audit_bulk(&out, failure.is_some()).await;
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    async fn audit_bulk(&self, out: &BulkOutcome, failed: bool) {
        let event = match out.action {
            BulkKind::Disable => audit_event::SEGMENT_DISABLED,
            BulkKind::Enable => audit_event::SEGMENT_ENABLED,
            BulkKind::RevokeTokens => audit_event::SEGMENT_TOKENS_REVOKED,
            BulkKind::Delete => audit_event::SEGMENT_DELETED,
        };
        let mut detail = format!("{} of {} users changed", out.changed, out.count);
        if let Some(t) = out.revoked_before {
            detail.push_str(&format!(", tokens issued at or before {t}"));
        }
        if failed {
            detail.push_str(", stopped by a store failure (re-run to finish)");
        }
        let e = AuditEvent {
            at: crate::now_unix(),
            event: event.into(),
            actor: self.actor.into(),
            target_kind: Some("segment".into()),
            target: Some(out.segment.clone()),
            source: self.source.clone(),
            detail: Some(detail),
        };
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::warn!(error = %Chain(&err), event, segment = %out.segment, "the bulk action ran but its audit event could not be written");
        }
    }
}
