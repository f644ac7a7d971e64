//! Every statement the SQLite backend runs: user upserts and lookups, API keys, revocation.

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use super::{map_err, SqliteStore};
use crate::store::{
    ApiKeyInfo, ApiKeyRecord, AuditEvent, AuditFilter, Conflict, Field, SessionUser, StoreError,
    Upserted, User, UserPatch,
};

/// What the upsert needs to know about an existing row before deciding to write, and what a
/// proxy decision needs (one cached statement for both).
/// Its `tokens_valid_after` is the effective one: the user's own or the app-wide revocation
/// instant (`revoke-tokens --all`), whichever is later.
const PROFILE: &str = "SELECT name, image, custom, disabled,
    max(tokens_valid_after, coalesce((SELECT value FROM settings WHERE key = 'tokens_valid_after'), 0))
    FROM users WHERE id = ?1";

/// The upsert: insert, or update only the fields the request carried. A new row refuses tokens
/// issued before it existed (those of a deleted user with the same id). A disabled user is not
/// touched (the `WHERE` makes the conflict branch a no-op, so no row comes back).
const UPSERT: &str =
    "INSERT INTO users (id, name, image, custom, created_at, updated_at, tokens_valid_after)
VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)
ON CONFLICT(id) DO UPDATE SET
    name = CASE WHEN ?6 THEN excluded.name ELSE users.name END,
    image = CASE WHEN ?7 THEN excluded.image ELSE users.image END,
    custom = CASE WHEN ?8 THEN excluded.custom ELSE users.custom END,
    revision = users.revision + 1,
    updated_at = excluded.updated_at
WHERE users.disabled = 0
RETURNING id, name, image,
    max(tokens_valid_after, coalesce((SELECT value FROM settings WHERE key = 'tokens_valid_after'), 0)),
    revision";

impl SqliteStore {
    pub fn ping(&self) -> Result<(), StoreError> {
        let c = self.reader();
        c.prepare_cached("SELECT count(*) FROM api_keys")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map(|_| ())
            .map_err(map_err)
    }

    pub async fn upsert_user(&self, p: &UserPatch<'_>, now: i64) -> Result<Upserted, StoreError> {
        if let Some(done) = self.upsert_without_write(p)? {
            return Ok(done);
        }
        let owned = OwnedPatch::of(p);
        self.writer.run(move |c| upsert(c, &owned, now)).await
    }

    /// The upsert's outcome when it needs no write: the user exists and either is disabled
    /// (the upsert would not touch the row) or already holds every field the patch carries.
    /// `None` means a write is needed. Read on a reader connection, so it never waits for the
    /// writer; a write that commits in between is ordered after this call, as if it came later.
    fn upsert_without_write(&self, p: &UserPatch<'_>) -> Result<Option<Upserted>, StoreError> {
        let c = self.reader();
        let mut st = c.prepare_cached(PROFILE).map_err(map_err)?;
        let mut rows = st.query([p.id]).map_err(map_err)?;
        let Some(r) = rows.next().map_err(map_err)? else {
            return Ok(None);
        };
        if r.get::<_, i64>(3).map_err(map_err)? != 0 {
            return Ok(Some(Upserted::Disabled));
        }
        let same = |i: usize, f: &Field<&str>| -> Result<bool, StoreError> {
            let stored = r.get_ref(i).map_err(map_err)?;
            Ok(match f {
                Field::Keep => true,
                Field::Clear => stored == ValueRef::Null,
                Field::Set(v) => stored == ValueRef::Text(v.as_bytes()),
            })
        };
        if !(same(0, &p.name)? && same(1, &p.image)? && same(2, &p.custom)?) {
            return Ok(None);
        }
        Ok(Some(Upserted::Active {
            id: p.id.to_string(),
            name: r.get(0).map_err(map_err)?,
            image: r.get(1).map_err(map_err)?,
            tokens_valid_after: r.get(4).map_err(map_err)?,
            created: false,
        }))
    }

    pub fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let c = self.reader();
        let mut st = c
            .prepare_cached(
                "SELECT id, name, image, custom, disabled, tokens_valid_after, created_at, updated_at
                 FROM users WHERE id = ?1",
            )
            .map_err(map_err)?;
        st.query_row([id], user_from_row)
            .optional()
            .map_err(map_err)
    }

    pub fn get_session(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        let c = self.reader();
        let mut st = c.prepare_cached(PROFILE).map_err(map_err)?;
        st.query_row([id], |r| {
            Ok(SessionUser {
                name: r.get(0)?,
                image: r.get(1)?,
                custom: r.get(2)?,
                disabled: r.get::<_, i64>(3)? != 0,
                tokens_valid_after: r.get(4)?,
            })
        })
        .optional()
        .map_err(map_err)
    }

    pub fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        let c = self.reader();
        let mut st = c
            .prepare_cached("SELECT name, hash, revoked_at FROM api_keys WHERE hash = ?1")
            .map_err(map_err)?;
        st.query_row([&hash[..]], |r| {
            let stored: Vec<u8> = r.get(1)?;
            let mut h = [0u8; 32];
            if stored.len() == 32 {
                h.copy_from_slice(&stored);
            }
            Ok(ApiKeyRecord {
                name: r.get(0)?,
                hash: h,
                revoked_at: r.get(2)?,
            })
        })
        .optional()
        .map_err(map_err)
    }

    /// A write that changes nothing but commits: `user_version` set to its own value rewrites
    /// the database header, so the commit appends a WAL frame and fails as a real write would
    /// (disk full, read-only file or directory, a lock held past the busy timeout).
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        self.writer
            .run(|c| {
                c.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
                let probe = c
                    .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                    .and_then(|v| c.pragma_update(None, "user_version", v))
                    .and_then(|_| c.execute_batch("COMMIT"));
                if probe.is_err() {
                    let _ = c.execute_batch("ROLLBACK");
                }
                probe.map_err(map_err)
            })
            .await
    }

    pub async fn touch_api_key(&self, name: &str, now: i64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .run(move |c| {
                c.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE name = ?1")
                    .and_then(|mut s| s.execute(params![name, now]))
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
    }

    /// Inserts the key and its audit event in one transaction.
    pub async fn insert_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &[u8; 32],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (name, prefix, hash) = (name.to_string(), prefix.to_string(), *hash);
        let audit = audit.clone();
        self.writer
            .run(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                insert_api_key(&tx, &name, &prefix, &hash, now)?;
                insert_audit(&tx, &audit)?;
                tx.commit().map_err(map_err)
            })
            .await
    }

    pub async fn ensure_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &[u8; 32],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (name, prefix, hash) = (name.to_string(), prefix.to_string(), *hash);
        let audit = audit.clone();
        self.writer
            .run(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                if !ensure_api_key(&tx, &name, &prefix, &hash, now)? {
                    return Ok(false);
                }
                insert_audit(&tx, &audit)?;
                tx.commit().map_err(map_err)?;
                Ok(true)
            })
            .await
    }

    /// Inserts the key only when the table is empty (one statement: SQLite serialises
    /// writers), with its audit event in the same transaction; true when it did.
    pub async fn insert_first_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &[u8; 32],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (name, prefix, hash) = (name.to_string(), prefix.to_string(), *hash);
        let audit = audit.clone();
        self.writer
            .run(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let n = tx
                    .execute(
                        "INSERT INTO api_keys (name, prefix, hash, created_at)
                         SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM api_keys)",
                        params![name, prefix, &hash[..], now],
                    )
                    .map_err(|e| api_key_conflict(e, &name))?;
                if n != 1 {
                    return Ok(false);
                }
                insert_audit(&tx, &audit)?;
                tx.commit().map_err(map_err)?;
                Ok(true)
            })
            .await
    }

    pub fn count_api_keys(&self) -> Result<u64, StoreError> {
        let c = self.reader();
        c.query_row("SELECT count(*) FROM api_keys", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(map_err)
    }

    pub fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let c = self.reader();
        let mut st = c
            .prepare("SELECT name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, name")
            .map_err(map_err)?;
        let rows = st
            .query_map([], |r| {
                Ok(ApiKeyInfo {
                    name: r.get(0)?,
                    prefix: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used_at: r.get(3)?,
                    revoked_at: r.get(4)?,
                })
            })
            .map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    pub async fn append_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let e = e.clone();
        self.writer.run(move |c| insert_audit(c, &e)).await
    }

    pub fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let c = self.reader();
        let limit = if f.limit == 0 { -1 } else { f.limit as i64 };
        let mut st = c
            .prepare(
                "SELECT at, event, actor, target_kind, target, source, detail FROM (
                     SELECT * FROM audit_events
                     WHERE at >= ?1 AND (?2 IS NULL OR (target_kind = 'user' AND target = ?2))
                     ORDER BY id DESC LIMIT ?3
                 ) ORDER BY id",
            )
            .map_err(map_err)?;
        let rows = st
            .query_map(params![f.since.unwrap_or(i64::MIN), f.user, limit], |r| {
                audit_event_from_row(r, 0)
            })
            .map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    pub async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        self.writer
            .run(move |c| {
                c.execute("DELETE FROM audit_events WHERE at < ?1", [before])
                    .map(|n| n as u64)
                    .map_err(map_err)
            })
            .await
    }

    /// Revokes the key and writes its audit event in one transaction; false, and nothing
    /// written, when no active key has that name.
    pub async fn revoke_api_key(
        &self,
        name: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (name, audit) = (name.to_string(), audit.clone());
        self.writer
            .run(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let n = tx
                    .execute(
                        "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                        params![name, now],
                    )
                    .map_err(map_err)?;
                if n == 0 {
                    return Ok(false);
                }
                insert_audit(&tx, &audit)?;
                tx.commit().map_err(map_err)?;
                Ok(true)
            })
            .await
    }
}

/// Appends `e` to the audit trail, inside the caller's transaction when it has one: a change
/// and its audit event commit together or not at all.
pub(super) fn insert_audit(c: &Connection, e: &AuditEvent) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO audit_events (at, event, actor, target_kind, target, source, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.at,
            e.event,
            e.actor,
            e.target_kind,
            e.target,
            e.source,
            e.detail
        ])
    })
    .map(|_| ())
    .map_err(map_err)
}

/// A whole [`User`] from a row that selects `id, name, image, custom, disabled,
/// tokens_valid_after, created_at, updated_at` in that order.
/// An [`AuditEvent`] from a row that selects `at, event, actor, target_kind, target, source,
/// detail` in that order, from column `first` on.
pub(in crate::store) fn audit_event_from_row(
    r: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        at: r.get(first)?,
        event: r.get(first + 1)?,
        actor: r.get(first + 2)?,
        target_kind: r.get(first + 3)?,
        target: r.get(first + 4)?,
        source: r.get(first + 5)?,
        detail: r.get(first + 6)?,
    })
}

pub(super) fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get(2)?,
        custom: r.get(3)?,
        disabled: r.get::<_, i64>(4)? != 0,
        tokens_valid_after: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

/// A [`UserPatch`] the writer thread can own.
struct OwnedPatch {
    id: String,
    name: Field<String>,
    image: Field<String>,
    custom: Field<String>,
}

impl OwnedPatch {
    fn of(p: &UserPatch<'_>) -> OwnedPatch {
        let own = |f: &Field<&str>| match f {
            Field::Keep => Field::Keep,
            Field::Clear => Field::Clear,
            Field::Set(v) => Field::Set(v.to_string()),
        };
        OwnedPatch {
            id: p.id.to_string(),
            name: own(&p.name),
            image: own(&p.image),
            custom: own(&p.custom),
        }
    }
}

/// The upsert itself, on the writer connection.
fn upsert(c: &Connection, p: &OwnedPatch, now: i64) -> Result<Upserted, StoreError> {
    let mut st = c.prepare_cached(UPSERT).map_err(map_err)?;
    let mut rows = st
        .query(params![
            p.id,
            p.name.value(),
            p.image.value(),
            p.custom.value(),
            now,
            p.name.is_given(),
            p.image.is_given(),
            p.custom.is_given(),
        ])
        .map_err(map_err)?;
    let first = match rows.next().map_err(map_err)? {
        Some(r) => Some(Upserted::Active {
            id: r.get(0).map_err(map_err)?,
            name: r.get(1).map_err(map_err)?,
            image: r.get(2).map_err(map_err)?,
            tokens_valid_after: r.get(3).map_err(map_err)?,
            created: r.get::<_, i64>(4).map_err(map_err)? == 1,
        }),
        None => None,
    };
    // Drain to completion so the statement finishes and the WAL can checkpoint.
    while rows.next().map_err(map_err)?.is_some() {}
    Ok(first.unwrap_or(Upserted::Disabled))
}

fn insert_api_key(
    c: &Connection,
    name: &str,
    prefix: &str,
    hash: &[u8; 32],
    now: i64,
) -> Result<(), StoreError> {
    let res = c.execute(
        "INSERT INTO api_keys (name, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, prefix, &hash[..], now],
    );
    res.map(|_| ()).map_err(|e| api_key_conflict(e, name))
}

/// A write to `api_keys` refused by its primary key (the name) or its unique hash, as a typed
/// conflict; any other error as [`map_err`] sees it.
fn api_key_conflict(e: rusqlite::Error, name: &str) -> StoreError {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Conflict::ApiKeyName(name.to_string()),
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => Conflict::ApiKeyInUse,
            _ => return map_err(e),
        },
        _ => return map_err(e),
    };
    StoreError::Conflict {
        kind,
        cause: e.into(),
    }
}

fn ensure_api_key(
    c: &Connection,
    name: &str,
    prefix: &str,
    hash: &[u8; 32],
    now: i64,
) -> Result<bool, StoreError> {
    let existing: Option<Vec<u8>> = c
        .query_row("SELECT hash FROM api_keys WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(map_err)?;
    match existing {
        // Same key: keep the row as it is (a revoked initial key stays revoked).
        Some(h) if h == hash[..] => Ok(false),
        Some(_) => c
            .execute(
                "UPDATE api_keys SET prefix = ?2, hash = ?3, created_at = ?4, last_used_at = NULL, revoked_at = NULL WHERE name = ?1",
                params![name, prefix, &hash[..], now],
            )
            .map(|_| true)
            .map_err(|e| api_key_conflict(e, name)),
        None => insert_api_key(c, name, prefix, hash, now).map(|_| true),
    }
}
