//! The SQLite statements of operator changes (per user and app-wide) and of the kick outbox: a
//! change, the kick it calls for and its audit event commit in one transaction; claims take the
//! write lock, so the server and a CLI process never claim the same row.

use rusqlite::{params, Connection, TransactionBehavior};

use super::queries::{insert_audit, user_from_row};
use super::{map_err, SqliteStore};
use crate::store::{AuditEvent, Kick, PendingKick, StoreError, User, UserChange};

impl SqliteStore {
    pub async fn change_user(
        &self,
        id: &str,
        change: UserChange,
        now: i64,
        kick: Option<Kick<'_>>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        let kick = kick.map(|k| (k.code, k.reason.to_string()));
        let audit = audit.clone();
        self.writer
            .run(move |c| {
                let kick = kick.as_ref().map(|(code, reason)| Kick {
                    code: *code,
                    reason,
                });
                change_user(c, &id, change, now, kick, &audit)
            })
            .await
    }

    pub fn list_users(&self, limit: usize, after: Option<&str>) -> Result<Vec<User>, StoreError> {
        let c = self.reader();
        let mut st = c
            .prepare_cached(
                "SELECT id, name, image, custom, disabled, tokens_valid_after, created_at, updated_at
                 FROM users WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(params![after, limit as i64], user_from_row)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    pub async fn claim_kicks(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingKick>, StoreError> {
        self.writer
            .run(move |c| claim_kicks(c, now_ms, lease_ms, limit))
            .await
    }

    pub async fn finish_kick(&self, id: i64) -> Result<(), StoreError> {
        self.writer
            .run(move |c| {
                c.prepare_cached("DELETE FROM kicks WHERE id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
    }

    pub async fn retry_kick(&self, id: i64, not_before_ms: i64) -> Result<(), StoreError> {
        self.writer
            .run(move |c| {
                c.prepare_cached("UPDATE kicks SET not_before_ms = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute([id, not_before_ms]))
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
    }

    pub fn count_kicks(&self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let c = self.reader();
        c.prepare_cached("SELECT count(*), coalesce(sum(not_before_ms <= ?1), 0) FROM kicks")
            .and_then(|mut s| {
                s.query_row([now_ms], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })
            })
            .map_err(map_err)
    }

    pub async fn revoke_all_tokens(
        &self,
        valid_after: i64,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let audit = audit.clone();
        self.writer
            .run(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_err)?;
                let in_force = tx
                    .query_row(
                        "INSERT INTO settings (key, value) VALUES ('tokens_valid_after', ?1)
                         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)
                         RETURNING value",
                        [valid_after],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                insert_audit(&tx, &audit)?;
                tx.commit().map_err(map_err)?;
                Ok(in_force)
            })
            .await
    }
}

/// The change, its kick and its audit event, in one `IMMEDIATE` transaction on the writer
/// connection.
fn change_user(
    c: &mut Connection,
    id: &str,
    change: UserChange,
    now: i64,
    kick: Option<Kick<'_>>,
    audit: &AuditEvent,
) -> Result<bool, StoreError> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    if !apply_change(&tx, id, change, now, kick)? {
        return Ok(false);
    }
    insert_audit(&tx, audit)?;
    tx.commit().map_err(map_err)?;
    Ok(true)
}

/// One user's change and its kick inside the caller's transaction; false when no such user.
pub(super) fn apply_change(
    tx: &Connection,
    id: &str,
    change: UserChange,
    now: i64,
    kick: Option<Kick<'_>>,
) -> Result<bool, StoreError> {
    let n = match change {
        UserChange::Disable | UserChange::Enable => tx.execute(
            "UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, change == UserChange::Disable, now],
        ),
        UserChange::RevokeTokens { valid_after } => tx.execute(
            "UPDATE users SET tokens_valid_after = max(tokens_valid_after, ?2), updated_at = ?3 WHERE id = ?1",
            params![id, valid_after, now],
        ),
        UserChange::Delete => tx.execute("DELETE FROM users WHERE id = ?1", params![id]),
    }
    .map_err(map_err)?;
    if n == 0 {
        return Ok(false);
    }
    match (change, kick) {
        (UserChange::Enable, Some(k)) => tx.execute(
            "DELETE FROM kicks WHERE user_id = ?1 AND code = ?2",
            params![id, k.code],
        ),
        (_, Some(k)) => tx.execute(
            "INSERT INTO kicks (user_id, code, reason, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, k.code, k.reason, now],
        ),
        (_, None) => Ok(0),
    }
    .map_err(map_err)?;
    Ok(true)
}

/// Claims due kicks (the lease is the write).
fn claim_kicks(
    c: &mut Connection,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<PendingKick>, StoreError> {
    let mut st = c
        .prepare_cached(
            "UPDATE kicks SET not_before_ms = ?1 + ?2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM kicks WHERE not_before_ms <= ?1 ORDER BY id LIMIT ?3)
             RETURNING id, user_id, code, reason, attempts",
        )
        .map_err(map_err)?;
    // Collecting drains the statement, so it completes (and the WAL can checkpoint).
    let rows = st
        .query_map(params![now_ms, lease_ms, limit as i64], |r| {
            Ok(PendingKick {
                id: r.get(0)?,
                user_id: r.get(1)?,
                code: r.get(2)?,
                reason: r.get(3)?,
                attempts: r.get(4)?,
            })
        })
        .map_err(map_err)?;
    let mut out: Vec<PendingKick> = rows.collect::<Result<_, _>>().map_err(map_err)?;
    out.sort_by_key(|k| k.id);
    Ok(out)
}
