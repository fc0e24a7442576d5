//! The embedded store: a redb database file under `CTXGATE_DATA_DIR`.
//!
//! Opened in redb's multi-writer mode so that the admin CLI can mint keys
//! while a local server holds the same file. redb runs one write transaction
//! at a time, which gives the version check the same atomicity a DynamoDB
//! conditional transaction has.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    ApiKeyRecord, Conversation, ConversationMeta, CounterKey, Store, StoreError, StoredMessage,
    TurnWrite, UsageRow, check_turn_size,
};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("conversation_meta");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
const KEY_IDS: TableDefinition<&str, &str> = TableDefinition::new("api_key_ids");
const COUNTERS: TableDefinition<(&str, &str), i64> = TableDefinition::new("counters");
const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("usage");

/// A file-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Conversation key: tenant and id joined by a byte neither may contain.
fn conv_key(tenant: &str, id: &str) -> String {
    format!("{tenant}\u{1f}{id}")
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/ctxgate.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(dir.join("ctxgate.redb"))
            .map_err(backend)?;
        // Create the tables up front so readers never meet a missing table.
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(META).map_err(backend)?;
        tx.open_table(MESSAGES).map_err(backend)?;
        tx.open_table(KEYS).map_err(backend)?;
        tx.open_table(KEY_IDS).map_err(backend)?;
        tx.open_table(COUNTERS).map_err(backend)?;
        tx.open_table(USAGE).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs blocking redb work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }
}

fn read_meta(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<ConversationMeta>, StoreError> {
    match table.get(key).map_err(backend)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(backend)?)),
        None => Ok(None),
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn load_conversation(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Conversation, StoreError> {
        let key = conv_key(tenant, id);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let meta = read_meta(&tx.open_table(META).map_err(backend)?, &key)?.unwrap_or_default();
            let mut messages = Vec::new();
            if meta.is_live(now) {
                let table = tx.open_table(MESSAGES).map_err(backend)?;
                for row in table
                    .range((key.as_str(), 0u64)..(key.as_str(), meta.next_seq))
                    .map_err(backend)?
                {
                    let (_, v) = row.map_err(backend)?;
                    let m: StoredMessage = serde_json::from_slice(v.value()).map_err(backend)?;
                    if m.expires_at.is_none_or(|e| e > now) {
                        messages.push(m);
                    }
                }
            }
            Ok(Conversation { meta, messages })
        })
        .await
    }

    async fn conversation_meta(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ConversationMeta>, StoreError> {
        let key = conv_key(tenant, id);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            read_meta(&tx.open_table(META).map_err(backend)?, &key)
        })
        .await
    }

    async fn append_turn(
        &self,
        tenant: &str,
        id: &str,
        turn: &TurnWrite,
    ) -> Result<(), StoreError> {
        check_turn_size(tenant, id, turn)?;
        let key = conv_key(tenant, id);
        let turn = turn.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut meta_table = tx.open_table(META).map_err(backend)?;
                let current = read_meta(&meta_table, &key)?.map_or(0, |m| m.version);
                if current != turn.expected_version {
                    return Err(StoreError::Conflict);
                }
                let bytes = serde_json::to_vec(&turn.meta).map_err(backend)?;
                meta_table
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                let mut msgs = tx.open_table(MESSAGES).map_err(backend)?;
                for m in &turn.messages {
                    let bytes = serde_json::to_vec(m).map_err(backend)?;
                    msgs.insert((key.as_str(), m.seq), bytes.as_slice())
                        .map_err(backend)?;
                }
            }
            // Dropping an uncommitted transaction (the Conflict path above) aborts it.
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn put_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
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

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = hash.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KEYS).map_err(backend)?;
            match table.get(hash.as_str()).map_err(backend)? {
                Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(backend)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = tenant.map(str::to_owned);
        self.blocking(move |db| {
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

    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let key_id = key_id.to_owned();
        self.blocking(move |db| {
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

    async fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let key_id = key_id.to_owned();
        self.blocking(move |db| {
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

    async fn counter_add(
        &self,
        key: &CounterKey,
        delta: i64,
        limit: Option<i64>,
        _expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let allowed = {
                let mut table = tx.open_table(COUNTERS).map_err(backend)?;
                let current = table
                    .get((key.pk.as_str(), key.sk.as_str()))
                    .map_err(backend)?
                    .map_or(0, |v| v.value());
                let next = current.saturating_add(delta);
                // Only growth is limited: a settlement that gives back never fails.
                if delta > 0 && limit.is_some_and(|l| next > l) {
                    false
                } else {
                    table
                        .insert((key.pk.as_str(), key.sk.as_str()), next)
                        .map_err(backend)?;
                    true
                }
            };
            if allowed {
                tx.commit().map_err(backend)?;
            }
            Ok(allowed)
        })
        .await
    }

    async fn counter_get(&self, key: &CounterKey) -> Result<i64, StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(COUNTERS).map_err(backend)?;
            Ok(table
                .get((key.pk.as_str(), key.sk.as_str()))
                .map_err(backend)?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    async fn add_usage(&self, tenant: &str, row: &UsageRow) -> Result<(), StoreError> {
        let tenant = tenant.to_owned();
        let row = row.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut table = tx.open_table(USAGE).map_err(backend)?;
                let sk = format!("{}#{}", row.day, row.model);
                let mut total: UsageRow =
                    match table.get((tenant.as_str(), sk.as_str())).map_err(backend)? {
                        Some(v) => serde_json::from_slice(v.value()).map_err(backend)?,
                        None => UsageRow {
                            day: row.day.clone(),
                            model: row.model.clone(),
                            ..UsageRow::default()
                        },
                    };
                total.requests += row.requests;
                total.prompt_tokens += row.prompt_tokens;
                total.completion_tokens += row.completion_tokens;
                total.total_tokens += row.total_tokens;
                total.cached_tokens += row.cached_tokens;
                total.reasoning_tokens += row.reasoning_tokens;
                total.cost_micro_usd += row.cost_micro_usd;
                total.price_version = row.price_version.clone();
                let bytes = serde_json::to_vec(&total).map_err(backend)?;
                table
                    .insert((tenant.as_str(), sk.as_str()), bytes.as_slice())
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn usage(&self, tenant: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, StoreError> {
        let (tenant, lo, hi) = (tenant.to_owned(), format!("{from}#"), format!("{to}$"));
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(USAGE).map_err(backend)?;
            let mut out = Vec::new();
            for row in table
                .range((tenant.as_str(), lo.as_str())..(tenant.as_str(), hi.as_str()))
                .map_err(backend)?
            {
                let (_, v) = row.map_err(backend)?;
                out.push(serde_json::from_slice(v.value()).map_err(backend)?);
            }
            Ok(out)
        })
        .await
    }
}
