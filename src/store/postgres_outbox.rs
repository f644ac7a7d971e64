//! The PostgreSQL statements of operator changes (per user and app-wide) and of the kick
//! outbox. A change, the kick it calls for and its audit event commit in one transaction. Claims use `FOR UPDATE SKIP LOCKED` and a lease
//! (`not_before_ms`), so with several replicas each due row is claimed by exactly one of them:
//! a row another replica is claiming is skipped, and a row it has claimed is not due again
//! until its lease passes (delivered rows are deleted before that).

use super::postgres::{insert_audit, PgStore};
use super::postgres_rows::{col, map_err, user_from_row};
use super::{AuditEvent, Kick, PendingKick, StoreError, User, UserChange};

impl PgStore {
    pub async fn change_user(
        &self,
        id: &str,
        change: UserChange,
        now: i64,
        kick: Option<Kick<'_>>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = match change {
            UserChange::Disable | UserChange::Enable => {
                tx.execute(
                    "UPDATE chatsdk_auth_users SET disabled = $2, updated_at = $3 WHERE id = $1",
                    &[&id, &(change == UserChange::Disable), &now],
                )
                .await
            }
            UserChange::RevokeTokens { valid_after } => {
                tx.execute(
                    "UPDATE chatsdk_auth_users SET tokens_valid_after = GREATEST(tokens_valid_after, $2), updated_at = $3 WHERE id = $1",
                    &[&id, &valid_after, &now],
                )
                .await
            }
            UserChange::Delete => {
                tx.execute("DELETE FROM chatsdk_auth_users WHERE id = $1", &[&id])
                    .await
            }
        }
        .map_err(map_err)?;
        if n == 0 {
            return Ok(false);
        }
        match (change, kick) {
            (UserChange::Enable, Some(k)) => {
                tx.execute(
                    "DELETE FROM chatsdk_auth_kicks WHERE user_id = $1 AND code = $2",
                    &[&id, &(k.code as i32)],
                )
                .await
            }
            (_, Some(k)) => {
                tx.execute(
                    "INSERT INTO chatsdk_auth_kicks (user_id, code, reason, created_at) VALUES ($1, $2, $3, $4)",
                    &[&id, &(k.code as i32), &k.reason, &now],
                )
                .await
            }
            (_, None) => Ok(0),
        }
        .map_err(map_err)?;
        insert_audit(&tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    pub async fn list_users(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, name, image, custom, disabled, tokens_valid_after, created_at, updated_at
                 FROM chatsdk_auth_users WHERE $1::TEXT IS NULL OR id COLLATE \"C\" > $1 ORDER BY id COLLATE \"C\" LIMIT $2",
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn claim_kicks(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingKick>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE chatsdk_auth_kicks SET not_before_ms = $1 + $2, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM chatsdk_auth_kicks WHERE not_before_ms <= $1
                              ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, user_id, code, reason, attempts",
                &[&now_ms, &lease_ms, &(limit as i64)],
            )
            .await
            .map_err(map_err)?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(PendingKick {
                    id: col(r, 0)?,
                    user_id: col(r, 1)?,
                    code: col::<i32>(r, 2)? as u32,
                    reason: col(r, 3)?,
                    attempts: i64::from(col::<i32>(r, 4)?),
                })
            })
            .collect::<Result<Vec<PendingKick>, StoreError>>()?;
        out.sort_by_key(|k| k.id);
        Ok(out)
    }

    pub async fn finish_kick(&self, id: i64) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute("DELETE FROM chatsdk_auth_kicks WHERE id = $1", &[&id])
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    pub async fn retry_kick(&self, id: i64, not_before_ms: i64) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE chatsdk_auth_kicks SET not_before_ms = $2 WHERE id = $1",
            &[&id, &not_before_ms],
        )
        .await
        .map(|_| ())
        .map_err(map_err)
    }

    pub async fn count_kicks(&self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE not_before_ms <= $1) FROM chatsdk_auth_kicks",
                &[&now_ms],
            )
            .await
            .map_err(map_err)?;
        Ok((col::<i64>(&row, 0)? as u64, col::<i64>(&row, 1)? as u64))
    }

    pub async fn revoke_all_tokens(
        &self,
        valid_after: i64,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let row = tx
            .query_one(
                "INSERT INTO chatsdk_auth_settings AS s (key, value) VALUES ('tokens_valid_after', $1)
                 ON CONFLICT (key) DO UPDATE SET value = GREATEST(s.value, EXCLUDED.value)
                 RETURNING value",
                &[&valid_after],
            )
            .await
            .map_err(map_err)?;
        let in_force = col(&row, 0)?;
        insert_audit(&tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(in_force)
    }
}
