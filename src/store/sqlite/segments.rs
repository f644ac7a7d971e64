//! The SQLite statements of segments: declaring the fields (and rebuilding `user_segments`),
//! segment pages and counts on a reader, each field's most common values (`segment_counts`),
//! and one batch of a bulk change on the writer. `user_segments` and its triggers are schema 6,
//! `segment_counts` and its triggers schema 7, the compact keys (`segment_keys`) schema 8
//! (`migrations.rs`).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use super::outbox::apply_change;
use super::queries::user_from_row;
use super::{map_err, SqliteStore};
use crate::segments::Where;
use crate::store::segments::{still_to_change, RawCounts};
use crate::store::{Kick, StoreError, User, UserChange};

/// A value as `user_segments` holds it: canonical JSON text, as the triggers write it.
const CANONICAL: &str = "SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' \
     WHEN 'null' THEN 'null' ELSE json_quote(value) END FROM json_each(?1)";

/// Every declared field's scalar values (and array elements) of every user: first their keys,
/// then the entries.
const BACKFILL: &str = "INSERT OR IGNORE INTO segment_keys (field, value)
    SELECT DISTINCT f.name, CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END
    FROM users u, segment_fields f, json_each(u.custom, '$.\"' || f.name || '\"') j
    WHERE u.custom IS NOT NULL AND json_type(u.custom, '$.\"' || f.name || '\"') <> 'object'
      AND j.type NOT IN ('object', 'array')
    ORDER BY 1, 2;
    INSERT OR IGNORE INTO user_segments (key, user_id)
    SELECT k.key, u.id
    FROM users u, segment_fields f, json_each(u.custom, '$.\"' || f.name || '\"') j, segment_keys k
    WHERE u.custom IS NOT NULL AND json_type(u.custom, '$.\"' || f.name || '\"') <> 'object'
      AND j.type NOT IN ('object', 'array') AND k.field = f.name
      AND k.value = CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE json_quote(j.value) END;";

/// A condition's key and its users (the kept count, exact on SQLite), when the field has that
/// value at all.
const KEY: &str = "SELECT k.key, coalesce(c.users, 0) FROM segment_keys k
    LEFT JOIN segment_counts c ON c.field = k.field AND c.value = k.value
    WHERE k.field = ?1 AND k.value = ?2";

const USER_COLUMNS: &str =
    "u.id, u.name, u.image, u.custom, u.disabled, u.tokens_valid_after, u.created_at, u.updated_at";

impl SqliteStore {
    /// Replaces the declared fields and rebuilds `user_segments` when they differ from the
    /// stored ones (in one transaction); true when it rebuilt.
    pub async fn declare_segments(&self, fields: Vec<String>) -> Result<bool, StoreError> {
        self.writer
            .run(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_err)?;
                if fields_of(&tx)? == fields {
                    return Ok(false);
                }
                // The counts first, so that the triggers of the segments' delete find nothing
                // to count down; the backfill's inserts count them again.
                tx.execute_batch(
                    "DELETE FROM segment_fields; DELETE FROM segment_counts; DELETE FROM user_segments;
                     DELETE FROM segment_keys;",
                )
                .map_err(map_err)?;
                for (i, f) in fields.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO segment_fields (name, position) VALUES (?1, ?2)",
                        rusqlite::params![f, i as i64],
                    )
                    .map_err(map_err)?;
                }
                tx.execute_batch(BACKFILL).map_err(map_err)?;
                tx.commit().map_err(map_err)?;
                Ok(true)
            })
            .await
    }

    pub fn segment_fields(&self) -> Result<Vec<String>, StoreError> {
        fields_of(&self.reader())
    }

    pub fn list_segment(
        &self,
        w: &Where,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        let c = self.reader();
        let Some(mut args) = bound(&c, w)? else {
            return Ok(Vec::new());
        };
        let mut sql = format!("SELECT {USER_COLUMNS} {}", from_segment(w.conditions.len()));
        if let Some(a) = after {
            args.push(Value::Text(a.to_string()));
            sql.push_str(&format!(" AND s0.user_id > ?{}", args.len()));
        }
        args.push(Value::Integer(limit as i64));
        sql.push_str(&format!(" ORDER BY s0.user_id LIMIT ?{}", args.len()));
        let mut st = c.prepare(&sql).map_err(map_err)?;
        let rows = st
            .query_map(params_from_iter(args), user_from_row)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    /// Each declared field's total and its `k` most common values: the first rows of
    /// `segment_counts_top` for the field, and its `''` row.
    pub fn segment_counts(&self, k: usize) -> Result<Vec<RawCounts>, StoreError> {
        let c = self.reader();
        let mut top = c
            .prepare_cached(
                "SELECT value, users FROM segment_counts WHERE field = ?1 AND value <> '' AND users > 0
                 ORDER BY users DESC, value LIMIT ?2",
            )
            .map_err(map_err)?;
        let mut total = c
            .prepare_cached("SELECT users FROM segment_counts WHERE field = ?1 AND value = ''")
            .map_err(map_err)?;
        let mut out = Vec::new();
        for field in fields_of(&c)? {
            let values = top
                .query_map(rusqlite::params![field, k as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(map_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_err)?;
            let n: Option<i64> = total
                .query_row([&field], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            out.push((field, n.unwrap_or(0), values));
        }
        Ok(out)
    }

    pub fn count_segment(&self, w: &Where) -> Result<u64, StoreError> {
        let c = self.reader();
        let Some(args) = bound(&c, w)? else {
            return Ok(0);
        };
        let sql = format!(
            "SELECT count(*) FROM user_segments s0 WHERE {}",
            conditions(w.conditions.len())
        );
        let n: i64 = c
            .prepare(&sql)
            .and_then(|mut st| st.query_row(params_from_iter(args), |r| r.get(0)))
            .map_err(map_err)?;
        Ok(n as u64)
    }

    pub async fn change_segment_batch(
        &self,
        w: Where,
        change: UserChange,
        now: i64,
        kick: Option<(u32, String)>,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.writer
            .run(move |c| {
                let kick = kick.as_ref().map(|(code, reason)| Kick {
                    code: *code,
                    reason,
                });
                batch(c, &w, change, now, kick, after.as_deref(), limit)
            })
            .await
    }
}

fn fields_of(c: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = c
        .prepare_cached("SELECT name FROM segment_fields ORDER BY position")
        .map_err(map_err)?;
    let rows = st.query_map([], |r| r.get(0)).map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

/// The batch in one `IMMEDIATE` transaction: select the ids, change each with its kick.
fn batch(
    c: &mut Connection,
    w: &Where,
    change: UserChange,
    now: i64,
    kick: Option<Kick<'_>>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let Some(mut args) = bound(&tx, w)? else {
        return Ok(Vec::new());
    };
    let mut sql = format!("SELECT u.id {}", from_segment(w.conditions.len()));
    if let Some(a) = after {
        args.push(Value::Text(a.to_string()));
        sql.push_str(&format!(" AND s0.user_id > ?{}", args.len()));
    }
    if let UserChange::RevokeTokens { valid_after } = change {
        args.push(Value::Integer(valid_after));
    }
    let placeholder = format!("?{}", args.len());
    sql.push_str(&format!(
        " AND {} ORDER BY s0.user_id LIMIT {limit}",
        still_to_change(change, "u", &placeholder)
    ));
    let ids: Vec<String> = {
        let mut st = tx.prepare(&sql).map_err(map_err)?;
        let rows = st
            .query_map(params_from_iter(args), |r| r.get(0))
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)?
    };
    for id in &ids {
        apply_change(&tx, id, change, now, kick)?;
    }
    tx.commit().map_err(map_err)?;
    Ok(ids)
}

/// `?1, ?2, ...` the conditions' keys, the narrowest condition first (fewest users by the
/// kept counts: it drives the scan, the others are probed per entry); `None` when a condition's
/// value is nowhere in the store (the segment is empty).
fn bound(c: &Connection, w: &Where) -> Result<Option<Vec<Value>>, StoreError> {
    let mut canonical = c.prepare_cached(CANONICAL).map_err(map_err)?;
    let mut key = c.prepare_cached(KEY).map_err(map_err)?;
    let mut keys: Vec<(i64, i64)> = Vec::with_capacity(w.conditions.len());
    for cond in &w.conditions {
        let v: String = canonical
            .query_row([&cond.value], |r| r.get(0))
            .map_err(map_err)?;
        match key
            .query_row(rusqlite::params![cond.field, v], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(0)?))
            })
            .optional()
            .map_err(map_err)?
        {
            Some(k) => keys.push(k),
            None => return Ok(None),
        }
    }
    keys.sort_unstable();
    Ok(Some(
        keys.into_iter().map(|(_, k)| Value::Integer(k)).collect(),
    ))
}

/// `FROM ... WHERE <the conditions>` over `user_segments s0` joined to the users.
fn from_segment(n: usize) -> String {
    format!(
        "FROM user_segments s0 JOIN users u ON u.id = s0.user_id WHERE {}",
        conditions(n)
    )
}

/// The first key is the range scanned (in id order); the others are looked up.
fn conditions(n: usize) -> String {
    let mut sql = "s0.key = ?1".to_string();
    for i in 1..n {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM user_segments s{i} WHERE s{i}.key = ?{} AND s{i}.user_id = s0.user_id)",
            i + 1
        ));
    }
    sql
}
