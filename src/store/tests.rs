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

/// A database file restored with a mode others can read (and its WAL) is set back to 0600 at
/// open; a new one is created 0600.
#[tokio::test]
async fn a_database_readable_by_others_is_set_back_to_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("t.db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = Store::open(&sqlite_config(tmp.path())).await.unwrap();
    store.upsert_user(&patch("u1"), 1).await.unwrap();
    assert_eq!(mode(&db), 0o600);
    // A copy that kept its WAL, both restored world-readable.
    let restored = tmp.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    for f in ["t.db", "t.db-wal"] {
        if !tmp.path().join(f).exists() {
            continue;
        }
        std::fs::copy(tmp.path().join(f), restored.join(f)).unwrap();
        std::fs::set_permissions(restored.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    drop(store);
    let store = Store::open(&sqlite_config(&restored)).await.unwrap();
    assert_eq!(mode(&restored.join("t.db")), 0o600);
    if let Ok(m) = std::fs::metadata(restored.join("t.db-wal")) {
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
    // The data is still there (the file was fixed, not replaced).
    assert!(store.get_user("u1").await.unwrap().is_some());
}
