//! Unit tests of [`super::Store`]'s readiness bookkeeping, on a real SQLite file whose write
//! lock a second connection holds (as `sqlite3` or a backup tool would).

use std::time::Duration;

use super::*;

fn sqlite_config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig::Sqlite {
        path: dir.join("t.db"),
        busy_timeout: Duration::from_millis(50),
    }
}

fn patch(id: &str) -> UserPatch<'_> {
    UserPatch {
        id,
        name: Field::Set("n"),
        image: Field::Keep,
        custom: Field::Keep,
    }
}

/// A write failed for an unavailable store; an error that says nothing about whether writes
/// work (a conflict, a bug) must not turn readiness green while the lock is still held.
#[tokio::test]
async fn only_a_successful_write_clears_the_failed_write_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_config(tmp.path())).await.unwrap();
    let holder = rusqlite::Connection::open(tmp.path().join("t.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let failed = store.upsert_user(&patch("a"), 1).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(!store.writes_work().await);
    // A conflict (or any error other than Unavailable) is no news about the disk.
    let conflict: Result<(), StoreError> = Err(StoreError::Conflict {
        kind: Conflict::ApiKeyName("taken".into()),
        cause: "UNIQUE constraint failed".into(),
    });
    assert!(store.noted(conflict).is_err());
    let internal: Result<(), StoreError> = Err(StoreError::Internal("a bug".into()));
    assert!(store.noted(internal).is_err());
    assert!(
        !store.writes_work().await,
        "readiness turned green while writes still fail"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(store.writes_work().await);
}
