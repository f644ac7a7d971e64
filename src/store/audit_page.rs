//! One page of the audit trail for the admin API (`GET /admin/audit`): newest first, filtered
//! by action, actor and subject, paged by event id, on both backends.
//!
//! The same rows `chatsdk-auth audit --json` prints ([`Store::list_audit`]), plus each row's
//! id: event times repeat within a second, so the cursor is the id, not the time.

use super::{AuditEvent, Backend, Store, StoreError};

/// What `GET /admin/audit` asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// At most this many events (1 or more; the caller bounds it).
    pub limit: usize,
    /// Only events older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Only this event name (`user.disabled`, ...).
    pub action: Option<String>,
    /// Only events done by this actor (`admin`, `cli`, an API key's name, ...).
    pub actor: Option<String>,
    /// Only events whose target is this (a user id, an API-key name, a key kind).
    pub subject: Option<String>,
}

/// One audit event and its id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// A page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditPage {
    pub events: Vec<AuditRow>,
    /// The `before` of the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

impl Store {
    /// The newest events matching `q`, at most `q.limit` of them.
    pub async fn audit_page(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = q.limit.max(1);
        // One more than asked: whether it exists says whether there is a next page.
        let mut rows = match &self.backend {
            Backend::Sqlite(s) => sqlite_page(s, q, limit as i64 + 1)?,
            Backend::Postgres(s) => Box::pin(postgres_page(s, q, limit as i64 + 1)).await?,
        };
        let next_before = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(AuditPage {
            events: rows,
            next_before,
        })
    }
}

fn sqlite_page(
    s: &super::sqlite::SqliteStore,
    q: &AuditQuery,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    use super::sqlite::map_err;
    let c = s.reader();
    let mut st = c
        .prepare_cached(
            "SELECT id, at, event, actor, target_kind, target, source, detail FROM audit_events
             WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR event = ?2)
               AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR target = ?4)
             ORDER BY id DESC LIMIT ?5",
        )
        .map_err(map_err)?;
    let rows = st
        .query_map(
            rusqlite::params![q.before, q.action, q.actor, q.subject, limit],
            |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    event: super::sqlite::audit_event_from_row(r, 1)?,
                })
            },
        )
        .map_err(map_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
}

async fn postgres_page(
    s: &super::postgres::PgStore,
    q: &AuditQuery,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    use super::postgres_rows::map_err;
    let c = s.client().await?;
    let rows = c
        .query(
            "SELECT id, at, event, actor, target_kind, target, source, detail
             FROM chatsdk_auth_audit_events
             WHERE ($1::BIGINT IS NULL OR id < $1) AND ($2::TEXT IS NULL OR event = $2)
               AND ($3::TEXT IS NULL OR actor = $3) AND ($4::TEXT IS NULL OR target = $4)
             ORDER BY id DESC LIMIT $5",
            &[&q.before, &q.action, &q.actor, &q.subject, &limit],
        )
        .await
        .map_err(map_err)?;
    // `try_get` through the backend's own helpers: a column of another type is a 500, never
    // a panic.
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                id: super::postgres_rows::col(r, 0)?,
                event: super::postgres_rows::audit_event_from_row(r, 1)?,
            })
        })
        .collect()
}
