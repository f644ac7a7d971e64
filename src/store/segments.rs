//! Segments in the store: the declared fields (indexed on both backends), segment queries and
//! counts, and one bounded batch of a bulk change.
//!
//! Each backend keeps a side table, one row per user, declared field and scalar value (every
//! element of an array), with the value as canonical JSON text: a query or a count is a range
//! of its primary key `(field, value, user_id)`, in id order, never a scan of the users.
//! Triggers keep it in step with every insert, `custom` update and delete, whoever writes;
//! [`Store::declare_segments`] rebuilds it on start when `segments.fields` changed.

use super::{dispatch, Backend, Kick, Store, StoreError, User, UserChange, UserPage};
use crate::segments::Where;

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

/// The condition a change adds so that a re-run skips users it already changed.
pub(super) fn still_to_change(change: UserChange, alias: &str, placeholder: &str) -> String {
    match change {
        UserChange::Disable => format!("{alias}.disabled = FALSE"),
        UserChange::Enable => format!("{alias}.disabled = TRUE"),
        UserChange::RevokeTokens { .. } => format!("{alias}.tokens_valid_after < {placeholder}"),
        UserChange::Delete => "TRUE".into(),
    }
}
