//! What the PostgreSQL driver hands back, as the store's types: a row's columns (a column of
//! an unexpected type is a [`StoreError::BadRow`], never a panic), users and audit events
//! from rows, and driver and pool errors as [`StoreError`]s (unavailable or internal).

use deadpool_postgres::PoolError;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use super::{AuditEvent, StoreError, User};
use crate::error_chain::Context;

pub(super) fn user_from_row(r: &tokio_postgres::Row) -> Result<User, StoreError> {
    Ok(User {
        id: col(r, 0)?,
        name: col(r, 1)?,
        image: col(r, 2)?,
        custom: col(r, 3)?,
        disabled: col(r, 4)?,
        tokens_valid_after: col(r, 5)?,
        created_at: col(r, 6)?,
        updated_at: col(r, 7)?,
    })
}

/// An [`AuditEvent`] from a row that selects `at, event, actor, target_kind, target, source,
/// detail` in that order, from column `first` on.
pub(super) fn audit_event_from_row(r: &Row, first: usize) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        at: col(r, first)?,
        event: col(r, first + 1)?,
        actor: col(r, first + 2)?,
        target_kind: col(r, first + 3)?,
        target: col(r, first + 4)?,
        source: col(r, first + 5)?,
        detail: col(r, first + 6)?,
    })
}

/// Column `i` of `r`; a column of another type than this version reads (a schema changed
/// outside chatsdk-auth) is [`StoreError::BadRow`], where `Row::get` would panic.
pub(super) fn col<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(|e| StoreError::BadRow(e.into()))
}

pub(super) fn map_pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => map_err(e),
        other => StoreError::Unavailable(Context::new("PostgreSQL pool", other).into()),
    }
}

/// A driver error as a [`StoreError`]: a connection or capacity problem is `Unavailable`;
/// anything else, a constraint no call site expected included, is `Internal`.
pub(super) fn map_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code) => {
            let class = code.code().get(..2).unwrap_or("");
            // 08: connection exception, 53: insufficient resources, 57: operator intervention
            // (shutdown, cancelled), 40: serialization/deadlock (retryable).
            if matches!(class, "08" | "53" | "57" | "40") {
                StoreError::Unavailable(e.into())
            } else {
                StoreError::Internal(e.into())
            }
        }
        // No SQLSTATE: the connection itself failed (refused, closed, timed out).
        None => StoreError::Unavailable(e.into()),
    }
}
