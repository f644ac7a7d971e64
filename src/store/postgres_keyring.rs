//! The signing-key ring in PostgreSQL (`chatsdk_auth_signing_keys`, one row): stored and read
//! as an opaque, encrypted [`SealedRing`] (sealing and opening it is `crate::keys`'s), changed
//! only in a transaction holding an advisory lock, so replicas and the CLI take turns, and
//! versioned, so a replica notices a change with one cheap read. The first start's API key is
//! created under the same lock ([`Store::insert_first_api_key`]): replicas starting together
//! on an empty database make one, and none fails.

use std::future::Future;

use super::postgres::{insert_audit, PgStore};
use super::postgres_rows::{col, map_err};
use super::{dispatch, AuditEvent, Backend, LostUpdate, Store, StoreError};

/// Arbitrary constant identifying the key ring's advisory lock (the migration lock's neighbour).
const KEY_RING_LOCK: i64 = 0x6368_6174_7364_6b02;

/// The key ring as stored: encrypted, with what is needed to open it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRing {
    /// Bumped by one on every write (the first write is version 1).
    pub version: i64,
    /// Which key-encryption secret sealed it (an id derived from the secret, `keys::Kek::id`).
    pub kek_id: String,
    /// The AEAD nonce (random, one per write).
    pub nonce: Vec<u8>,
    /// The ring's JSON, encrypted, with its tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRing")
            .field("version", &self.version)
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

const SELECT: &str =
    "SELECT version, kek_id, nonce, ciphertext FROM chatsdk_auth_signing_keys WHERE id = 1";

fn sealed(r: &tokio_postgres::Row) -> Result<SealedRing, StoreError> {
    Ok(SealedRing {
        version: col(r, 0)?,
        kek_id: col(r, 1)?,
        nonce: col(r, 2)?,
        ciphertext: col(r, 3)?,
    })
}

fn sqlite_has_no_ring() -> StoreError {
    StoreError::Internal(
        "the key ring is kept in the store only with storage.backend = \"postgres\"".into(),
    )
}

impl Store {
    /// The stored ring of the PostgreSQL store `config` names, read without writing anything:
    /// no schema is created or migrated, and a database without the ring's table holds no
    /// ring (`None`), as one before the first write does (`keys list`).
    pub async fn read_key_ring_of(
        config: &crate::config::StoreConfig,
    ) -> Result<Option<SealedRing>, StoreError> {
        let crate::config::StoreConfig::Postgres {
            url,
            tls,
            timeout,
            batch,
            ..
        } = config
        else {
            return Err(sqlite_has_no_ring());
        };
        let pg = PgStore::open(url, tls, 1, *timeout, batch, false).await?;
        let c = pg.client().await?;
        let table = c
            .query_one(
                "SELECT to_regclass('chatsdk_auth_signing_keys') IS NOT NULL",
                &[],
            )
            .await
            .map_err(map_err)?;
        if !col::<bool>(&table, 0)? {
            return Ok(None);
        }
        c.query_opt(SELECT, &[])
            .await
            .map_err(map_err)?
            .as_ref()
            .map(sealed)
            .transpose()
    }

    /// Whether the key ring lives in the store (PostgreSQL) rather than in `keyring.json`.
    pub fn keeps_key_ring(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The stored ring's version and nonce (`None` before the first write): the cheap read a
    /// replica polls to notice any write. The nonce is fresh on every write, so a row put back
    /// from a backup, or written over one, is noticed even at a version seen before.
    pub async fn key_ring_stamp(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(sqlite_has_no_ring()),
            Backend::Postgres(s) => Box::pin(s.key_ring_stamp()).await,
        }
    }

    /// The stored ring (`None` before the first write).
    pub async fn load_key_ring(&self) -> Result<Option<SealedRing>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(sqlite_has_no_ring()),
            Backend::Postgres(s) => Box::pin(s.load_key_ring()).await,
        }
    }

    /// Changes the ring in one transaction under the key ring's advisory lock: `change` gets
    /// the stored ring and returns the one to write (its version must be the stored one plus
    /// one, or 1 for the first) or `None` to write nothing, and a result. Concurrent changes,
    /// from any replica or the CLI, take turns, each seeing what the previous one wrote. A
    /// write that came between the read and the write without the lock (a restore) fails the
    /// change as [`StoreError::LostUpdate`], writing nothing.
    pub async fn change_key_ring<T, E, F, Fut>(&self, change: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(Option<SealedRing>) -> Fut,
        Fut: Future<Output = Result<(Option<SealedRing>, T), E>>,
    {
        self.change_ring(change, |_| None).await
    }

    /// [`Store::change_key_ring`], writing the audit event `audit` makes of the change's result
    /// in the same transaction when a ring is written: the ring changes with its event or not
    /// at all (a failed insert of the event rolls the change back and is the change's error).
    pub(crate) async fn change_key_ring_audited<T, E, F, Fut>(
        &self,
        change: F,
        audit: impl FnOnce(&T) -> AuditEvent,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(Option<SealedRing>) -> Fut,
        Fut: Future<Output = Result<(Option<SealedRing>, T), E>>,
    {
        self.change_ring(change, |t| Some(audit(t))).await
    }

    /// Both of the above: the ring is PostgreSQL's alone.
    async fn change_ring<T, E, F, Fut>(
        &self,
        change: F,
        audit: impl FnOnce(&T) -> Option<AuditEvent>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(Option<SealedRing>) -> Fut,
        Fut: Future<Output = Result<(Option<SealedRing>, T), E>>,
    {
        match &self.backend {
            Backend::Sqlite(_) => Err(sqlite_has_no_ring().into()),
            Backend::Postgres(s) => Box::pin(s.change_key_ring(change, audit)).await,
        }
    }
}

impl Store {
    /// Creates the API key `name` = `key` only when the store holds no API key at all: on
    /// PostgreSQL in a transaction under the key ring's advisory lock, on SQLite in one
    /// transaction; `audit` is written in it when the key is. True when this call created it;
    /// false when a key exists (another replica's first start won).
    pub(crate) async fn insert_first_api_key(
        &self,
        name: &str,
        key: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (prefix, hash) = (
            crate::api_key::display_prefix(key),
            crate::api_key::hash(key),
        );
        dispatch!(
            self.insert_first_api_key(name, &prefix, &hash, now, audit)
                .await
        )
    }
}

impl PgStore {
    async fn insert_first_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &[u8; 32],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEY_RING_LOCK])
            .await
            .map_err(map_err)?;
        // Under the lock, so a replica that waited sees the key the first one committed.
        let n = tx
            .execute(
                "INSERT INTO chatsdk_auth_api_keys (name, prefix, hash, created_at)
                 SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM chatsdk_auth_api_keys)",
                &[&name, &prefix, &&hash[..], &now],
            )
            .await
            .map_err(map_err)?;
        if n != 1 {
            return Ok(false);
        }
        insert_audit(&tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn key_ring_stamp(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let c = self.client().await?;
        c.query_opt(
            "SELECT version, nonce FROM chatsdk_auth_signing_keys WHERE id = 1",
            &[],
        )
        .await
        .map_err(map_err)?
        .map(|r| Ok((col::<i64>(&r, 0)?, col::<Vec<u8>>(&r, 1)?)))
        .transpose()
    }

    async fn load_key_ring(&self) -> Result<Option<SealedRing>, StoreError> {
        let c = self.client().await?;
        c.query_opt(SELECT, &[])
            .await
            .map_err(map_err)?
            .as_ref()
            .map(sealed)
            .transpose()
    }

    async fn change_key_ring<T, E, F, Fut>(
        &self,
        change: F,
        audit: impl FnOnce(&T) -> Option<AuditEvent>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(Option<SealedRing>) -> Fut,
        Fut: Future<Output = Result<(Option<SealedRing>, T), E>>,
    {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEY_RING_LOCK])
            .await
            .map_err(map_err)?;
        let current = tx
            .query_opt(SELECT, &[])
            .await
            .map_err(map_err)?
            .as_ref()
            .map(sealed)
            .transpose()?;
        let expected = current.as_ref().map_or(1, |c| c.version + 1);
        let (new, out) = change(current).await?;
        let Some(new) = new else {
            // Nothing to write: the transaction ends (and the lock is released) on drop.
            return Ok(out);
        };
        if new.version != expected {
            return Err(StoreError::Internal(
                format!(
                    "key ring version {} written over version {}",
                    new.version,
                    expected - 1
                )
                .into(),
            )
            .into());
        }
        // Written only over the version read (besides the lock): a lost update is refused.
        let n = tx
            .execute(
                "INSERT INTO chatsdk_auth_signing_keys (id, version, kek_id, nonce, ciphertext, updated_at)
             VALUES (1, $1, $2, $3, $4, extract(epoch FROM now())::bigint)
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, kek_id = EXCLUDED.kek_id,
                 nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
                 updated_at = EXCLUDED.updated_at
             WHERE chatsdk_auth_signing_keys.version = EXCLUDED.version - 1",
                &[&new.version, &new.kek_id, &new.nonce, &new.ciphertext],
            )
            .await
            .map_err(map_err)?;
        if n != 1 {
            return Err(StoreError::LostUpdate(LostUpdate::KeyRing).into());
        }
        if let Some(e) = audit(&out) {
            insert_audit(&tx, &e).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }
}
