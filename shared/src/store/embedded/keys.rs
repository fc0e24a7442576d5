//! The key file: API keys in `keys.redb`, beside the store's own file.
//!
//! The admin CLI mints and revokes keys while a local server runs, so this
//! file is opened in redb's multi-writer mode: any process may write it, one
//! transaction at a time. That mode costs every transaction a read of the
//! file's header and every commit the allocator state, which is why the rest
//! of the store (every turn's write) lives in a file the server holds alone.
//! The server reads keys through its key cache, so their lookups are rare.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    ConcurrencyMode, Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle,
};

use super::{backend, blocking};
use crate::store::{ApiKeyRecord, KeyStore, StoreError};

/// Hash of the secret -> the record (JSON).
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// Key id -> hash of the secret.
const KEY_IDS: TableDefinition<&str, &str> = TableDefinition::new("api_key_ids");

/// The file's name in the data directory.
pub const FILE: &str = "keys.redb";

/// API keys in a file any local process may write.
#[derive(Clone)]
pub struct KeyFile {
    db: Arc<Database>,
}

impl KeyFile {
    /// Opens (or creates) `dir/keys.redb`; `dir` must exist.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(dir.join(FILE))
            .map_err(backend)?;
        // Create the tables up front so readers never meet a missing table.
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(KEYS).map_err(backend)?;
        tx.open_table(KEY_IDS).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Opens the key file for the admin CLI, first moving the keys a store
    /// file of before the split holds when no server has that file open (a
    /// server moves them itself when it opens it).
    pub fn open_for_admin(dir: &Path) -> Result<Self, StoreError> {
        let keys = Self::open(dir)?;
        let store = dir.join(super::FILE);
        if store.exists() {
            match Database::create(&store) {
                Ok(db) => keys.adopt(&db)?,
                Err(DatabaseError::DatabaseAlreadyOpen) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(keys)
    }

    /// Moves the keys a store file of before the split still holds into this
    /// file, then drops them there. A key already here is kept as it is (it
    /// may have been revoked since), so a move cut short is finished by the
    /// next open.
    pub(super) fn adopt(&self, store: &Database) -> Result<(), StoreError> {
        let tx = store.begin_write().map_err(backend)?;
        let held = tx
            .list_tables()
            .map_err(backend)?
            .any(|t| t.name() == KEYS.name());
        if !held {
            return Ok(());
        }
        let mut records = Vec::new();
        for row in tx
            .open_table(KEYS)
            .map_err(backend)?
            .iter()
            .map_err(backend)?
        {
            let (hash, doc) = row.map_err(backend)?;
            records.push((hash.value().to_owned(), doc.value().to_vec()));
        }
        let mut ids = Vec::new();
        for row in tx
            .open_table(KEY_IDS)
            .map_err(backend)?
            .iter()
            .map_err(backend)?
        {
            let (id, hash) = row.map_err(backend)?;
            ids.push((id.value().to_owned(), hash.value().to_owned()));
        }
        let moving = self.db.begin_write().map_err(backend)?;
        {
            let mut keys = moving.open_table(KEYS).map_err(backend)?;
            for (hash, doc) in &records {
                if keys.get(hash.as_str()).map_err(backend)?.is_none() {
                    keys.insert(hash.as_str(), doc.as_slice())
                        .map_err(backend)?;
                }
            }
            let mut key_ids = moving.open_table(KEY_IDS).map_err(backend)?;
            for (id, hash) in &ids {
                if key_ids.get(id.as_str()).map_err(backend)?.is_none() {
                    key_ids
                        .insert(id.as_str(), hash.as_str())
                        .map_err(backend)?;
                }
            }
        }
        moving.commit().map_err(backend)?;
        tx.delete_table(KEYS).map_err(backend)?;
        tx.delete_table(KEY_IDS).map_err(backend)?;
        tx.commit().map_err(backend)?;
        if !records.is_empty() {
            tracing::info!(keys = records.len(), "moved API keys into {FILE}");
        }
        Ok(())
    }
}

#[async_trait]
impl KeyStore for KeyFile {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "put_key"))]
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        blocking(&self.db, move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut ids = tx.open_table(KEY_IDS).map_err(backend)?;
                if ids.get(key.key_id.as_str()).map_err(backend)?.is_some() {
                    return Err(backend("duplicate key id"));
                }
                ids.insert(key.key_id.as_str(), key.hash.as_str())
                    .map_err(backend)?;
                let bytes = serde_json::to_vec(&key).map_err(backend)?;
                tx.open_table(KEYS)
                    .map_err(backend)?
                    .insert(key.hash.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "key_by_hash"))]
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = hash.to_owned();
        blocking(&self.db, move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KEYS).map_err(backend)?;
            match table.get(hash.as_str()).map_err(backend)? {
                Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(backend)?)),
                None => Ok(None),
            }
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "list_keys"))]
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = tenant.map(str::to_owned);
        blocking(&self.db, move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KEYS).map_err(backend)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(backend)? {
                let (_, v) = row.map_err(backend)?;
                let rec: ApiKeyRecord = serde_json::from_slice(v.value()).map_err(backend)?;
                if tenant.as_deref().is_none_or(|t| t == rec.tenant) {
                    out.push(rec);
                }
            }
            out.sort_by(|a, b| (a.created, &a.key_id).cmp(&(b.created, &b.key_id)));
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "revoke_key"))]
    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let key_id = key_id.to_owned();
        blocking(&self.db, move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let found = {
                let ids = tx.open_table(KEY_IDS).map_err(backend)?;
                let hash = ids
                    .get(key_id.as_str())
                    .map_err(backend)?
                    .map(|h| h.value().to_owned());
                match hash {
                    None => false,
                    Some(hash) => {
                        let mut keys = tx.open_table(KEYS).map_err(backend)?;
                        let rec = keys
                            .get(hash.as_str())
                            .map_err(backend)?
                            .map(|v| v.value().to_vec());
                        match rec {
                            None => false,
                            Some(bytes) => {
                                let mut rec: ApiKeyRecord =
                                    serde_json::from_slice(&bytes).map_err(backend)?;
                                rec.revoked = true;
                                let bytes = serde_json::to_vec(&rec).map_err(backend)?;
                                keys.insert(hash.as_str(), bytes.as_slice())
                                    .map_err(backend)?;
                                true
                            }
                        }
                    }
                }
            };
            tx.commit().map_err(backend)?;
            Ok(found)
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "get_key"))]
    async fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let key_id = key_id.to_owned();
        blocking(&self.db, move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let Some(hash) = tx
                .open_table(KEY_IDS)
                .map_err(backend)?
                .get(key_id.as_str())
                .map_err(backend)?
                .map(|h| h.value().to_owned())
            else {
                return Ok(None);
            };
            match tx
                .open_table(KEYS)
                .map_err(backend)?
                .get(hash.as_str())
                .map_err(backend)?
            {
                Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(backend)?)),
                None => Ok(None),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn record(id: &str, hash: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: id.into(),
            hash: hash.into(),
            tenant: "t1".into(),
            name: "old".into(),
            scopes: vec!["chat".into()],
            created: 1,
            revoked: false,
            valid_until: None,
            models: vec![],
            rpm: None,
            mcp_servers: vec![],
            mcp_tools: vec![],
        }
    }

    /// A store file as it was before the split: keys in its own tables.
    fn old_layout(dir: &Path, keys: &[ApiKeyRecord]) {
        let db = Database::create(dir.join("ctxgate.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(KEYS).unwrap();
            let mut ids = tx.open_table(KEY_IDS).unwrap();
            for k in keys {
                let doc = serde_json::to_vec(k).unwrap();
                table.insert(k.hash.as_str(), doc.as_slice()).unwrap();
                ids.insert(k.key_id.as_str(), k.hash.as_str()).unwrap();
            }
        }
        tx.commit().unwrap();
    }

    #[tokio::test]
    async fn keys_of_an_old_store_file_move_to_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        old_layout(dir.path(), &[record("key_a", "ha"), record("key_b", "hb")]);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.list_keys(None).await.unwrap().len(), 2);
        assert_eq!(
            store.key_by_hash("hb").await.unwrap().unwrap().key_id,
            "key_b"
        );
        assert!(store.revoke_key("key_a").await.unwrap());
        drop(store);

        // Gone from the store file, so nothing moves twice.
        let db = Database::create(dir.path().join("ctxgate.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        assert!(
            tx.list_tables()
                .unwrap()
                .all(|t| t.name() != KEYS.name() && t.name() != KEY_IDS.name())
        );
        drop(tx);
        drop(db);
        let keys = KeyFile::open(dir.path()).unwrap();
        assert!(keys.get_key("key_a").await.unwrap().unwrap().revoked);
    }

    #[tokio::test]
    async fn the_admin_cli_moves_keys_when_no_server_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        old_layout(dir.path(), &[record("key_a", "ha")]);
        let cli = KeyFile::open_for_admin(dir.path()).unwrap();
        assert_eq!(cli.list_keys(Some("t1")).await.unwrap().len(), 1);
        // With a server up, the CLI leaves its file alone.
        let server = EmbeddedStore::open(dir.path()).unwrap();
        let cli = KeyFile::open_for_admin(dir.path()).unwrap();
        cli.put_key(&record("key_b", "hb")).await.unwrap();
        assert_eq!(server.list_keys(None).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_move_cut_short_keeps_what_the_key_file_has() {
        let dir = tempfile::tempdir().unwrap();
        // The key file has key_a revoked; the store file still holds its
        // old copy, as after a crash between the two commits.
        let mut revoked = record("key_a", "ha");
        revoked.revoked = true;
        KeyFile::open(dir.path())
            .unwrap()
            .put_key(&revoked)
            .await
            .unwrap();
        old_layout(dir.path(), &[record("key_a", "ha"), record("key_b", "hb")]);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store.get_key("key_a").await.unwrap().unwrap().revoked);
        assert!(!store.get_key("key_b").await.unwrap().unwrap().revoked);
    }

    #[tokio::test]
    async fn keys_are_written_while_a_server_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedStore::open(dir.path()).unwrap();
        // A second server on the same directory is refused, by name.
        let again = EmbeddedStore::open(dir.path()).err().unwrap().to_string();
        assert!(again.contains("in use by another process"), "{again}");
        // The admin CLI opens the key file alone, beside the server.
        let cli = KeyFile::open(dir.path()).unwrap();
        cli.put_key(&record("key_c", "hc")).await.unwrap();
        assert_eq!(
            server.key_by_hash("hc").await.unwrap().unwrap().key_id,
            "key_c"
        );
        assert!(cli.revoke_key("key_c").await.unwrap());
        assert!(server.key_by_hash("hc").await.unwrap().unwrap().revoked);
    }
}
