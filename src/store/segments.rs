//! Segments in the store: the declared fields (indexed on both backends), segment queries and
//! counts, and one bounded batch of a bulk change.
//!
//! Each backend keeps a side table, one row per user, declared field and scalar value (every
//! element of an array): the field and the value (as canonical JSON text) are numbered once in
//! a table of keys, and a query or a count is a range of the side table's primary key
//! `(key, user_id)`, in id order, never a scan of the users. Several conditions scan the
//! narrowest (fewest users by the kept counts) and semi-join the others on the user.
//! Triggers keep it in step with every insert, `custom` update and delete, whoever writes;
//! [`Store::declare_segments`] rebuilds it on start when `segments.fields` changed.
//!
//! The overview's users per value ([`Store::segment_counts`]) are kept counts, one row per
//! field and value: its top values are the first rows of an index ordered by count, never a
//! count over the users. SQLite's triggers update them in the write's own transaction (one
//! writer: no contention); PostgreSQL's writes append their changes to a log, which
//! [`Store::fold_segment_counts`] moves into the counts in bounded batches (no popular value's
//! row is ever locked by concurrent upserts).

use serde::Serialize;

use super::{dispatch, Backend, Kick, Store, StoreError, User, UserChange, UserPage};
use crate::segments::Where;

/// The users of one declared field per value: its `k` most common values and the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldCounts {
    pub field: String,
    /// The most common values, most users first (ties by value).
    pub top: Vec<ValueCount>,
    /// Users counted under the other values.
    pub other: u64,
    /// Users counted under any value: a user whose array holds several values counts once per
    /// value, so for an array field this can exceed the users who have the field.
    pub total: u64,
}

/// One value of a field (as JSON: the string `"7"` and the number `7` are two values) and its
/// users.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueCount {
    pub value: serde_json::Value,
    pub users: u64,
}

/// What a backend read of one field's counts answers: the field, its total, and the top values
/// as canonical JSON text with their counts.
pub(super) type RawCounts = (String, i64, Vec<(String, i64)>);

/// The counts the overview shows: every declared field's, and whether changes were still
/// waiting to be counted when they were read (PostgreSQL only, after a burst of writes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentCounts {
    /// How many top values each field shows.
    pub k: usize,
    pub fields: Vec<FieldCounts>,
    /// True when more changes were waiting than one read folds in: the counts lag behind
    /// the users by those, until the next fold (every 30 s in the server's housekeeping).
    pub pending_changes: bool,
}

impl Store {
    /// Makes the declared segment fields `fields`, rebuilding the side table when they differ
    /// from the stored ones (it takes a while on a large store, once). `serve` calls it at
    /// start; every other process (the CLI) queries the fields the server declared.
    pub async fn declare_segments(&self, fields: &[String]) -> Result<(), StoreError> {
        // Not through `dispatch!`: SQLite's writer thread takes owned arguments.
        let rebuilt = match &self.backend {
            Backend::Sqlite(s) => s.declare_segments(fields.to_vec()).await,
            Backend::Postgres(s) => Box::pin(s.declare_segments(fields)).await,
        }?;
        if rebuilt {
            tracing::info!(fields = ?fields, "segment fields changed: segment index rebuilt");
        }
        Ok(())
    }

    /// The declared segment fields the side table indexes, in the order declared.
    pub async fn segment_fields(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self.segment_fields())
    }

    /// Users of the segment `w`, ordered by id, at most `limit`, after the id `after`.
    pub(crate) async fn list_segment(
        &self,
        w: &Where,
        limit: usize,
        after: Option<&str>,
    ) -> Result<UserPage, StoreError> {
        let mut users: Vec<User> = dispatch!(self.list_segment(w, limit + 1, after))?;
        let next_after = if users.len() > limit {
            users.truncate(limit);
            users.last().map(|u| u.id.clone())
        } else {
            None
        };
        Ok(UserPage { users, next_after })
    }

    /// Every declared field's `k` most common values with their users, and the rest. On
    /// PostgreSQL the changes logged since the last fold are folded first (a bounded amount).
    pub async fn segment_counts(&self, k: usize) -> Result<SegmentCounts, StoreError> {
        let pending_changes = match &self.backend {
            Backend::Sqlite(_) => false,
            Backend::Postgres(s) => Box::pin(s.fold_segment_counts(ADMIN_FOLD_ROUNDS)).await?,
        };
        let raw: Vec<RawCounts> = dispatch!(self.segment_counts(k))?;
        let fields = raw
            .into_iter()
            .map(|(field, total, top)| {
                let top = top
                    .into_iter()
                    .map(|(text, users)| {
                        serde_json::from_str(&text)
                            .map(|value| ValueCount {
                                value,
                                users: users.max(0) as u64,
                            })
                            .map_err(|e| {
                                StoreError::Internal(
                                    format!("segment count of {field} holds a value that is not JSON: {e}")
                                        .into(),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let total = total.max(0) as u64;
                let shown: u64 = top.iter().map(|v| v.users).sum();
                Ok(FieldCounts {
                    field,
                    top,
                    other: total.saturating_sub(shown),
                    total,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(SegmentCounts {
            k,
            fields,
            pending_changes,
        })
    }

    /// Moves the logged segment changes into the counts (PostgreSQL; nothing on SQLite, whose
    /// triggers count in the write's transaction), at most `rounds` batches of
    /// [`FOLD_BATCH`]. True when changes remain.
    pub async fn fold_segment_counts(&self, rounds: u32) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(false),
            Backend::Postgres(s) => Box::pin(s.fold_segment_counts(rounds)).await,
        }
    }

    /// How many users the segment `w` holds.
    pub async fn count_segment(&self, w: &Where) -> Result<u64, StoreError> {
        dispatch!(self.count_segment(w))
    }

    /// One batch of a bulk change: up to `limit` users of `w` after the id `after` that the
    /// change still alters (a disable skips disabled users, a revocation users already revoked
    /// at `valid_after`), changed with their kicks in one transaction. Returns their ids in
    /// order; fewer than `limit` means the segment is done.
    pub(crate) async fn change_segment_batch(
        &self,
        w: &Where,
        change: UserChange,
        now: i64,
        kick: Option<Kick<'_>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Not through `dispatch!`: SQLite's writer thread takes owned arguments.
        let result = match &self.backend {
            Backend::Sqlite(s) => {
                s.change_segment_batch(
                    w.clone(),
                    change,
                    now,
                    kick.map(|k| (k.code, k.reason.to_string())),
                    after.map(str::to_string),
                    limit,
                )
                .await
            }
            Backend::Postgres(s) => {
                Box::pin(s.change_segment_batch(w, change, now, kick, after, limit)).await
            }
        };
        self.noted(result)
    }
}

/// Logged changes one fold moves into the counts, in one short transaction.
pub(super) const FOLD_BATCH: i32 = 10_000;

/// Fold batches an overview read runs before it reads the counts.
const ADMIN_FOLD_ROUNDS: u32 = 10;

/// The condition a change adds so that a re-run skips users it already changed.
pub(super) fn still_to_change(change: UserChange, alias: &str, placeholder: &str) -> String {
    match change {
        UserChange::Disable => format!("{alias}.disabled = FALSE"),
        UserChange::Enable => format!("{alias}.disabled = TRUE"),
        UserChange::RevokeTokens { .. } => format!("{alias}.tokens_valid_after < {placeholder}"),
        UserChange::Delete => "TRUE".into(),
    }
}
