//! The PostgreSQL statements of segments: declaring the fields (and rebuilding
//! `chatsdk_auth_user_segments` under the migration lock), segment pages and counts, and one
//! batch of a bulk change, set-based, in one transaction; each field's most common values,
//! after folding the logged changes into the counts. The tables, functions and triggers are
//! schema steps in `postgres_schema.rs`.

use tokio_postgres::types::ToSql;

use super::postgres::PgStore;
use super::postgres_rows::{col, map_err, user_from_row};
use super::postgres_schema::MIGRATION_LOCK;
use super::segments::{still_to_change, RawCounts, FOLD_BATCH};
use super::{Kick, StoreError, User, UserChange};
use crate::segments::Where;

/// Every declared field's scalar values (and array elements) of every user: their keys, then
/// the entries.
const BACKFILL: &str = "INSERT INTO chatsdk_auth_segment_keys (field, value)
    SELECT DISTINCT f.name, e.v::text FROM chatsdk_auth_users u
    CROSS JOIN chatsdk_auth_segment_fields f
    CROSS JOIN LATERAL chatsdk_auth_segment_values(u.custom::jsonb -> f.name) AS e(v)
    WHERE u.custom IS NOT NULL
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    INSERT INTO chatsdk_auth_user_segments (key, user_id)
    SELECT k.key, u.id FROM chatsdk_auth_users u
    CROSS JOIN chatsdk_auth_segment_fields f
    CROSS JOIN LATERAL chatsdk_auth_segment_values(u.custom::jsonb -> f.name) AS e(v)
    JOIN chatsdk_auth_segment_keys k ON k.field = f.name AND k.value = e.v::text
    WHERE u.custom IS NOT NULL
    ON CONFLICT DO NOTHING;";

/// After a rebuild of the segments: the counts again from them, the log emptied (under the
/// fold's lock, so no fold runs in between).
const RECOUNT: &str = "SELECT pg_advisory_xact_lock(7163082360112835331);
    DELETE FROM chatsdk_auth_segment_deltas;
    DELETE FROM chatsdk_auth_segment_counts;
    INSERT INTO chatsdk_auth_segment_counts (field, value, users)
        SELECT k.field, k.value, count(*) FROM chatsdk_auth_user_segments s
        JOIN chatsdk_auth_segment_keys k ON k.key = s.key GROUP BY k.field, k.value
        UNION ALL SELECT k.field, '', count(*) FROM chatsdk_auth_user_segments s
        JOIN chatsdk_auth_segment_keys k ON k.key = s.key GROUP BY k.field;";

/// Each condition's key and its users by the folded counts (a statistic to order the
/// conditions by, never the answer), by the condition's position; a condition whose value is
/// nowhere in the store has no row.
const KEYS: &str = "SELECT w.i, k.key, coalesce(c.users, 0) FROM unnest($1::text[], $2::text[])
        WITH ORDINALITY AS w(field, value, i)
    JOIN chatsdk_auth_segment_keys k ON k.field = w.field AND k.value = (w.value::jsonb)::text
    LEFT JOIN chatsdk_auth_segment_counts c ON c.field = k.field AND c.value = k.value";

const USER_COLUMNS: &str =
    "u.id, u.name, u.image, u.custom, u.disabled, u.tokens_valid_after, u.created_at, u.updated_at";

impl PgStore {
    pub async fn declare_segments(&self, fields: &[String]) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(map_err)?;
        let stored: Vec<String> = tx
            .query(
                "SELECT name FROM chatsdk_auth_segment_fields ORDER BY position",
                &[],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| col::<String>(r, 0))
            .collect::<Result<_, _>>()?;
        if stored == fields {
            return Ok(false);
        }
        tx.batch_execute(
            "DELETE FROM chatsdk_auth_segment_fields; DELETE FROM chatsdk_auth_user_segments;
             DELETE FROM chatsdk_auth_segment_keys;",
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "INSERT INTO chatsdk_auth_segment_fields (name, position)
             SELECT name, position - 1 FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position)",
            &[&fields],
        )
        .await
        .map_err(map_err)?;
        tx.batch_execute(BACKFILL).await.map_err(map_err)?;
        tx.batch_execute(RECOUNT).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    pub async fn segment_fields(&self) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        c.query(
            "SELECT name FROM chatsdk_auth_segment_fields ORDER BY position",
            &[],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| col::<String>(r, 0))
        .collect()
    }

    pub async fn list_segment(
        &self,
        w: &Where,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        let c = self.client().await?;
        let Some(keys) = keys(&c, w).await? else {
            return Ok(Vec::new());
        };
        let mut args = bound(&keys);
        let limit = limit as i64;
        let mut sql = format!("SELECT {USER_COLUMNS} {}", from_segment(w.conditions.len()));
        if let Some(a) = &after {
            args.push(a);
            sql.push_str(&format!(" AND s0.user_id > ${}", args.len()));
        }
        args.push(&limit);
        sql.push_str(&format!(" ORDER BY s0.user_id LIMIT ${}", args.len()));
        let rows = c.query(&sql, &args).await.map_err(map_err)?;
        rows.iter().map(user_from_row).collect()
    }

    /// Folds at most `rounds` batches of logged changes into the counts, each its own short
    /// transaction; true when a full last batch suggests more are waiting.
    pub async fn fold_segment_counts(&self, rounds: u32) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT chatsdk_auth_segment_fold($1)")
            .await
            .map_err(map_err)?;
        for _ in 0..rounds {
            let n = col::<i64>(&c.query_one(&st, &[&FOLD_BATCH]).await.map_err(map_err)?, 0)?;
            if n < i64::from(FOLD_BATCH) {
                return Ok(false);
            }
        }
        Ok(rounds > 0)
    }

    /// Each declared field's total and its `k` most common values (the first rows of
    /// `chatsdk_auth_segment_counts_top` for the field).
    pub async fn segment_counts(&self, k: usize) -> Result<Vec<RawCounts>, StoreError> {
        let fields = self.segment_fields().await?;
        let c = self.client().await?;
        let top = c
            .prepare_cached(
                "SELECT value, users FROM chatsdk_auth_segment_counts
                 WHERE field = $1 AND value <> '' AND users > 0 ORDER BY users DESC, value LIMIT $2",
            )
            .await
            .map_err(map_err)?;
        let total = c
            .prepare_cached(
                "SELECT users FROM chatsdk_auth_segment_counts WHERE field = $1 AND value = ''",
            )
            .await
            .map_err(map_err)?;
        let mut out = Vec::with_capacity(fields.len());
        for field in fields {
            let values = c
                .query(&top, &[&field, &(k as i64)])
                .await
                .map_err(map_err)?
                .iter()
                .map(|r| Ok((col::<String>(r, 0)?, col::<i64>(r, 1)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let n = match c.query_opt(&total, &[&field]).await.map_err(map_err)? {
                Some(r) => col::<i64>(&r, 0)?,
                None => 0,
            };
            out.push((field, n, values));
        }
        Ok(out)
    }

    pub async fn count_segment(&self, w: &Where) -> Result<u64, StoreError> {
        let mut c = self.client().await?;
        let Some(keys) = keys(&c, w).await? else {
            return Ok(0);
        };
        let args = bound(&keys);
        let sql = format!(
            "SELECT count(*) FROM chatsdk_auth_user_segments s0 WHERE {}",
            conditions(keys.len())
        );
        let row = if keys.len() == 1 {
            c.query_one(&sql, &args).await.map_err(map_err)?
        } else {
            // Each condition's range is in id order, so a merge join reads each once; left to
            // itself the planner picks a parallel hash join of the two, which costs more time
            // and three processes' CPU (tests/bench/segments.sh prints the plan).
            let tx = c.transaction().await.map_err(map_err)?;
            tx.batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
                .await
                .map_err(map_err)?;
            let row = tx.query_one(&sql, &args).await.map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            row
        };
        Ok(col::<i64>(&row, 0)? as u64)
    }

    pub async fn change_segment_batch(
        &self,
        w: &Where,
        change: UserChange,
        now: i64,
        kick: Option<Kick<'_>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let Some(keys) = keys(&tx, w).await? else {
            return Ok(Vec::new());
        };
        let mut args = bound(&keys);
        let mut sql = format!("SELECT u.id {}", from_segment(w.conditions.len()));
        if let Some(a) = &after {
            args.push(a);
            sql.push_str(&format!(" AND s0.user_id > ${}", args.len()));
        }
        let valid_after = match change {
            UserChange::RevokeTokens { valid_after } => valid_after,
            _ => 0,
        };
        if matches!(change, UserChange::RevokeTokens { .. }) {
            args.push(&valid_after);
        }
        let placeholder = format!("${}", args.len());
        sql.push_str(&format!(
            " AND {} ORDER BY s0.user_id LIMIT {limit} FOR UPDATE OF u",
            still_to_change(change, "u", &placeholder)
        ));
        let ids: Vec<String> = tx
            .query(&sql, &args)
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| col::<String>(r, 0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(ids);
        }
        match change {
            UserChange::Disable | UserChange::Enable => {
                tx.execute(
                    "UPDATE chatsdk_auth_users SET disabled = $2, updated_at = $3 WHERE id = ANY($1)",
                    &[&ids, &(change == UserChange::Disable), &now],
                )
                .await
            }
            UserChange::RevokeTokens { valid_after } => {
                tx.execute(
                    "UPDATE chatsdk_auth_users SET tokens_valid_after = GREATEST(tokens_valid_after, $2), updated_at = $3 WHERE id = ANY($1)",
                    &[&ids, &valid_after, &now],
                )
                .await
            }
            UserChange::Delete => {
                tx.execute("DELETE FROM chatsdk_auth_users WHERE id = ANY($1)", &[&ids])
                    .await
            }
        }
        .map_err(map_err)?;
        match (change, kick) {
            (UserChange::Enable, Some(k)) => {
                tx.execute(
                    "DELETE FROM chatsdk_auth_kicks WHERE user_id = ANY($1) AND code = $2",
                    &[&ids, &(k.code as i32)],
                )
                .await
            }
            (_, Some(k)) => {
                tx.execute(
                    "INSERT INTO chatsdk_auth_kicks (user_id, code, reason, created_at)
                     SELECT id, $2, $3, $4 FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) ORDER BY n",
                    &[&ids, &(k.code as i32), &k.reason, &now],
                )
                .await
            }
            (_, None) => Ok(0),
        }
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(ids)
    }
}

/// The conditions' keys, the narrowest first (fewest users by the folded counts); `None` when
/// a condition's value is nowhere in the store (the segment is empty).
async fn keys(
    c: &impl deadpool_postgres::GenericClient,
    w: &Where,
) -> Result<Option<Vec<i64>>, StoreError> {
    let fields: Vec<&str> = w.conditions.iter().map(|c| c.field.as_str()).collect();
    let values: Vec<&str> = w.conditions.iter().map(|c| c.value.as_str()).collect();
    let rows = c.query(KEYS, &[&fields, &values]).await.map_err(map_err)?;
    let mut found = vec![None; w.conditions.len()];
    for r in &rows {
        let i = col::<i64>(r, 0)?;
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|i| found.get_mut(i))
            .ok_or_else(|| StoreError::Internal(format!("segment key of condition {i}").into()))?;
        *slot = Some((col::<i64>(r, 2)?, col::<i64>(r, 1)?));
    }
    let Some(mut keys) = found.into_iter().collect::<Option<Vec<(i64, i64)>>>() else {
        return Ok(None);
    };
    keys.sort_unstable();
    Ok(Some(keys.into_iter().map(|(_, k)| k).collect()))
}

/// `$1, $2, ...` the keys.
fn bound(keys: &[i64]) -> Vec<&(dyn ToSql + Sync)> {
    let mut out: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(keys.len() + 2);
    for k in keys {
        out.push(k);
    }
    out
}

/// The join compares in the users' id collation (the segment index's ids are `"C"`, the users'
/// primary key the database's default; equality is the same bytes under both), so each user is
/// one look-up in `chatsdk_auth_users_pkey` in the segment index's order, never a hash join over
/// every user.
fn from_segment(n: usize) -> String {
    format!(
        "FROM chatsdk_auth_user_segments s0 JOIN chatsdk_auth_users u ON u.id = s0.user_id COLLATE \"default\" WHERE {}",
        conditions(n)
    )
}

/// The first key is the range scanned (in id order); the others are semi-joined on the user
/// (the planner merges the ranges, each in id order, for a count, and probes them for a page).
fn conditions(n: usize) -> String {
    let mut sql = "s0.key = $1".to_string();
    for i in 1..n {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM chatsdk_auth_user_segments s{i} WHERE s{i}.key = ${} AND s{i}.user_id = s0.user_id)",
            i + 1
        ));
    }
    sql
}
