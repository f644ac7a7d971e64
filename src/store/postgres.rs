//! The PostgreSQL backend, for several replicas sharing one store.
//!
//! A deadpool connection pool with cached prepared statements; every wait (pool checkout,
//! connect) is bounded by `storage.postgres_timeout_ms`, so an outage becomes a prompt
//! `StoreError::Unavailable` (503, and Centrifugo's retry) instead of a hung request. The schema
//! is created and migrated at start (src/store/postgres_schema.rs). `custom` is stored as TEXT,
//! byte for byte as the caller sent it (JSONB would reorder).
//! Profile and API-key reads are coalesced into shared statements (src/store/postgres_batch.rs).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::error_chain::Context;

use super::postgres_rows::{audit_event_from_row, col, map_err, map_pool_err, user_from_row};
use super::{
    ApiKeyInfo, ApiKeyRecord, AuditEvent, AuditFilter, Conflict, Field, SessionUser, StoreError,
    Upserted, User, UserPatch,
};

const UPSERT: &str =
    "INSERT INTO chatsdk_auth_users AS u (id, name, image, custom, created_at, updated_at, tokens_valid_after)
VALUES ($1, $2, $3, $4, $5, $5, $5)
ON CONFLICT (id) DO UPDATE SET
    name = CASE WHEN $6 THEN EXCLUDED.name ELSE u.name END,
    image = CASE WHEN $7 THEN EXCLUDED.image ELSE u.image END,
    custom = CASE WHEN $8 THEN EXCLUDED.custom ELSE u.custom END,
    revision = u.revision + 1,
    updated_at = EXCLUDED.updated_at
WHERE u.disabled = FALSE
RETURNING id, name, image,
    GREATEST(tokens_valid_after, COALESCE((SELECT value FROM chatsdk_auth_settings WHERE key = 'tokens_valid_after'), 0)),
    revision";

/// A user's profile, state and effective revocation cutoff (the connect proxy's read, and the
/// read that lets an upsert skip its write).
const PROFILE: &str = "SELECT name, image, custom, disabled,
    GREATEST(tokens_valid_after, COALESCE((SELECT value FROM chatsdk_auth_settings WHERE key = 'tokens_valid_after'), 0))
    FROM chatsdk_auth_users WHERE id = $1";

pub struct PgStore {
    pool: Pool,
    /// Profile and API-key reads gathered into shared statements (`storage.postgres_coalesce`).
    pub(super) lookups: Option<super::postgres_batch::Lookups>,
}

impl PgStore {
    /// Connects (TLS as `tls` says: src/tls/), then, when `migrate`, creates or migrates the
    /// schema (a read-only command passes false and writes nothing). A connection that fails
    /// here, a certificate that does not verify included, names the server and the `sslmode`
    /// in its error, which stops startup.
    pub async fn open(
        url: &str,
        tls: &crate::tls::PgTls,
        pool_size: usize,
        timeout: Duration,
        batch: &crate::config::PgBatch,
        migrate: bool,
    ) -> Result<PgStore, StoreError> {
        let mut pg = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Internal(Context::new("storage.postgres_url cannot be parsed", e).into())
        })?;
        let connector = crate::tls::postgres_connector(tls).map_err(|e| {
            StoreError::Internal(Context::new("storage.postgres_url: TLS settings", e).into())
        })?;
        pg.connect_timeout(timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("chatsdk-auth");
        }
        let server = super::postgres_tls::describe_server(&pg);
        super::postgres_tls::warn_at_start(&server, tls);
        let manager = Manager::from_config(
            pg,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| {
                StoreError::Internal(Context::new("cannot build the PostgreSQL pool", e).into())
            })?;
        let lookups = batch
            .coalesce
            .then(|| super::postgres_batch::Lookups::new(&pool, pool_size, batch, timeout));
        let store = PgStore { pool, lookups };
        if !migrate {
            return Ok(store);
        }
        match store.migrate().await {
            Ok(()) => Ok(store),
            Err(StoreError::Unavailable(cause)) => Err(StoreError::Unavailable(
                Context::new(
                    format!(
                        "cannot connect to PostgreSQL at {server} with sslmode={}",
                        tls.mode
                    ),
                    cause,
                )
                .into(),
            )),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(map_pool_err)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    /// A write that changes nothing but commits (a row lock and a WAL record): it fails as a
    /// real write would on a read-only server or a full disk.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("UPDATE chatsdk_auth_schema SET version = version")
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    /// As on SQLite: a read first, and the upsert (a write, its WAL record and commit flush)
    /// only for a new user or a changed profile; a disabled user or an unchanged profile is
    /// answered from the read. A write that commits between the two is ordered after this call.
    pub async fn upsert_user(&self, p: &UserPatch<'_>, now: i64) -> Result<Upserted, StoreError> {
        if let Some(u) = self.get_session(p.id).await? {
            if u.disabled {
                return Ok(Upserted::Disabled);
            }
            let same = |stored: &Option<String>, f: &Field<&str>| match f {
                Field::Keep => true,
                Field::Clear => stored.is_none(),
                Field::Set(v) => stored.as_deref() == Some(*v),
            };
            if same(&u.name, &p.name) && same(&u.image, &p.image) && same(&u.custom, &p.custom) {
                return Ok(Upserted::Active {
                    id: p.id.to_string(),
                    name: u.name,
                    image: u.image,
                    tokens_valid_after: u.tokens_valid_after,
                    created: false,
                });
            }
        }
        let c = self.client().await?;
        let st = c.prepare_cached(UPSERT).await.map_err(map_err)?;
        let row = c
            .query_opt(
                &st,
                &[
                    &p.id,
                    &p.name.value(),
                    &p.image.value(),
                    &p.custom.value(),
                    &now,
                    &p.name.is_given(),
                    &p.image.is_given(),
                    &p.custom.is_given(),
                ],
            )
            .await
            .map_err(map_err)?;
        Ok(match row {
            Some(r) => Upserted::Active {
                id: col(&r, 0)?,
                name: col(&r, 1)?,
                image: col(&r, 2)?,
                tokens_valid_after: col(&r, 3)?,
                created: col::<i64>(&r, 4)? == 1,
            },
            None => Upserted::Disabled,
        })
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT id, name, image, custom, disabled, tokens_valid_after, created_at, updated_at
                 FROM chatsdk_auth_users WHERE id = $1",
            )
            .await
            .map_err(map_err)?;
        let row = c.query_opt(&st, &[&id]).await.map_err(map_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        if let Some(l) = &self.lookups {
            return l.profiles.get(id.to_string()).await;
        }
        let c = self.client().await?;
        let st = c.prepare_cached(PROFILE).await.map_err(map_err)?;
        let row = c.query_opt(&st, &[&id]).await.map_err(map_err)?;
        row.map(|r| {
            Ok(SessionUser {
                name: col(&r, 0)?,
                image: col(&r, 1)?,
                custom: col(&r, 2)?,
                disabled: col(&r, 3)?,
                tokens_valid_after: col(&r, 4)?,
            })
        })
        .transpose()
    }

    pub async fn find_api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        if let Some(l) = &self.lookups {
            return l.api_keys.get(hash.to_vec()).await;
        }
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT name, hash, revoked_at FROM chatsdk_auth_api_keys WHERE hash = $1",
            )
            .await
            .map_err(map_err)?;
        let row = c.query_opt(&st, &[&&hash[..]]).await.map_err(map_err)?;
        row.map(|r| {
            let stored: &[u8] = col(&r, 1)?;
            let mut h = [0u8; 32];
            if stored.len() == 32 {
                h.copy_from_slice(stored);
            }
            Ok(ApiKeyRecord {
                name: col(&r, 0)?,
                hash: h,
                revoked_at: col(&r, 2)?,
            })
        })
        .transpose()
    }

    pub async fn touch_api_key(&self, name: &str, now: i64) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE chatsdk_auth_api_keys SET last_used_at = $2 WHERE name = $1",
            &[&name, &now],
        )
        .await
        .map(|_| ())
        .map_err(map_err)
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
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO chatsdk_auth_api_keys (name, prefix, hash, created_at) VALUES ($1, $2, $3, $4)",
            &[&name, &prefix, &&hash[..], &now],
        )
        .await
        .map_err(|e| api_key_conflict(e, name))?;
        insert_audit(&tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    pub async fn ensure_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &[u8; 32],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        // One statement: insert, or replace a *different* key of that name; the same key is
        // left as it is (a revoked initial key stays revoked).
        let n = tx
            .execute(
                "INSERT INTO chatsdk_auth_api_keys AS k (name, prefix, hash, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET prefix = EXCLUDED.prefix, hash = EXCLUDED.hash,
                     created_at = EXCLUDED.created_at, last_used_at = NULL, revoked_at = NULL
                 WHERE k.hash <> EXCLUDED.hash",
                &[&name, &prefix, &&hash[..], &now],
            )
            .await
            .map_err(|e| api_key_conflict(e, name))?;
        if n == 0 {
            return Ok(false);
        }
        insert_audit(&tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    pub async fn count_api_keys(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT count(*) FROM chatsdk_auth_api_keys", &[])
            .await
            .map_err(map_err)?;
        Ok(col::<i64>(&row, 0)? as u64)
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT name, prefix, created_at, last_used_at, revoked_at FROM chatsdk_auth_api_keys ORDER BY created_at, name",
                &[],
            )
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyInfo {
                    name: col(r, 0)?,
                    prefix: col(r, 1)?,
                    created_at: col(r, 2)?,
                    last_used_at: col(r, 3)?,
                    revoked_at: col(r, 4)?,
                })
            })
            .collect()
    }

    pub async fn append_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(AUDIT_INSERT, &audit_params(e))
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let c = self.client().await?;
        let limit = if f.limit == 0 {
            i64::MAX
        } else {
            f.limit as i64
        };
        let rows = c
            .query(
                "SELECT at, event, actor, target_kind, target, source, detail FROM (
                     SELECT * FROM chatsdk_auth_audit_events
                     WHERE at >= $1 AND ($2::TEXT IS NULL OR (target_kind = 'user' AND target = $2))
                     ORDER BY id DESC LIMIT $3
                 ) recent ORDER BY id",
                &[&f.since.unwrap_or(i64::MIN), &f.user, &limit],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(|r| audit_event_from_row(r, 0)).collect()
    }

    pub async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        let c = self.client().await?;
        c.execute(
            "DELETE FROM chatsdk_auth_audit_events WHERE at < $1",
            &[&before],
        )
        .await
        .map_err(map_err)
    }

    /// Revokes the key and writes its audit event in one transaction; false, and nothing
    /// written, when no active key has that name.
    pub async fn revoke_api_key(
        &self,
        name: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "UPDATE chatsdk_auth_api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                &[&name, &now],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Ok(false);
        }
        insert_audit(&tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }
}

const AUDIT_INSERT: &str =
    "INSERT INTO chatsdk_auth_audit_events (at, event, actor, target_kind, target, source, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The parameters of [`AUDIT_INSERT`].
fn audit_params(e: &AuditEvent) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
    [
        &e.at,
        &e.event,
        &e.actor,
        &e.target_kind,
        &e.target,
        &e.source,
        &e.detail,
    ]
}

/// Appends `e` to the audit trail inside the change's transaction: the change and its audit
/// event commit together or not at all.
pub(super) async fn insert_audit(
    tx: &tokio_postgres::Transaction<'_>,
    e: &AuditEvent,
) -> Result<(), StoreError> {
    tx.execute(AUDIT_INSERT, &audit_params(e))
        .await
        .map(|_| ())
        .map_err(map_err)
}

/// A whole [`User`] from a row that selects `id, name, image, custom, disabled,
/// tokens_valid_after, created_at, updated_at` in that order.
/// A write to the API-key table refused by its primary key (the name) or its unique hash, as a
/// typed conflict (the driver's message, with the conflicting values, stays the source for the
/// log); any other error as [`map_err`] sees it.
fn api_key_conflict(e: tokio_postgres::Error, name: &str) -> StoreError {
    let kind = match e.as_db_error().and_then(|d| d.constraint()) {
        Some("chatsdk_auth_api_keys_pkey") => Conflict::ApiKeyName(name.to_string()),
        Some("chatsdk_auth_api_keys_hash_key") => Conflict::ApiKeyInUse,
        _ => return map_err(e),
    };
    StoreError::Conflict {
        kind,
        cause: e.into(),
    }
}
