//! The embedded store: redb database files under `CTXGATE_DATA_DIR`.
//!
//! `ctxgate.redb` holds everything but API keys and is held by one process
//! (redb's exclusive-writer mode): its transactions then read the database's
//! state from memory and its commits write only what changed. Reads run on
//! the calling thread; write transactions run one at a time on the
//! [`writer`] thread, which gives the version check the same atomicity a
//! DynamoDB conditional transaction has, and the writes waiting together
//! share one fsync. API keys live in [`keys::KeyFile`], which the admin CLI
//! writes while a server runs.
//!
//! There is no TTL here: expiry indexes record when counters, idempotency
//! records and conversations (tombstones included) may go, and every
//! [`SWEEP_EVERY`]th write sweeps a bounded batch of what is due.

mod file;
pub mod keys;
mod writer;

use std::collections::VecDeque;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tracing::Instrument;
pub use writer::Answer;
use writer::{Verdict, Writer};

use super::window::NewestFirst;
use super::{
    ApiKeyRecord, AuditPage, AuditRecord, AuditStore, ConversationMeta, ConversationPage,
    ConversationStore, CounterAdd, CounterKey, CounterStore, IdempotencyClaim, IdempotencyDone,
    IdempotencyRecord, IdempotencyRequest, IdempotencyStore, KeyStore, ListPosition,
    McpServerRecord, McpServerStore, MessageEdit, MessagePage, Order, ResponseRecord,
    ResponseStore, StoreError, StoredMessage, TurnWrite, UsageBatch, UsageRow, check_turn_size,
    conversation_count_key, listing_key,
};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("conversation_meta");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const COUNTERS: TableDefinition<(&str, &str), i64> = TableDefinition::new("counters");
const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("usage");
/// Tenant, listing key (`{updated}#{id}`) -> conversation id.
const CONV_INDEX: TableDefinition<(&str, &str), &str> = TableDefinition::new("conversation_index");
const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");
// Expiry indexes, so a sweep reads only what is due (the role DynamoDB's TTL plays).
/// When a header may be forgotten (see `ConversationMeta::forget_at`), conversation key.
const CONV_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("conversation_expiry");
/// When an idempotency record expires, tenant, key.
const IDEM_EXPIRY: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// When a counter expires, its pk and sk.
const COUNTER_EXPIRY: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("counter_expiry");
/// A counter's expiry, to move its index entry when it changes.
const COUNTER_TTL: TableDefinition<(&str, &str), i64> = TableDefinition::new("counter_ttl");
/// Responses API records: (tenant, response id) -> record.
const RESPONSES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("responses");
/// Tenant, server name -> the registration (JSON).
const MCP_SERVERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("mcp_servers");
/// (tenant, audit id) -> the row as JSON; ids sort by time.
const AUDIT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("mcp_audit");
/// (expires_at, tenant, audit id): audit rows by when they may go.
const AUDIT_EXPIRY: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("mcp_audit_expiry");

/// The store's file in the data directory.
const FILE: &str = "ctxgate.redb";

/// Messages one range read of a windowed read takes.
const WINDOW_PAGE: usize = 32;

/// Writes between two opportunistic sweeps.
pub const SWEEP_EVERY: u64 = 256;
/// Most entries of each kind one sweep removes (bounded work per write).
pub const SWEEP_BATCH: usize = 512;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired counters (rate windows, daily budgets).
    pub counters: usize,
    /// Expired idempotency records.
    pub idempotency: usize,
    /// Expired conversations and tombstones past their keep time.
    pub conversations: usize,
    /// Audit rows of MCP calls past their retention.
    pub audit: usize,
}

/// A file-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    keys: keys::KeyFile,
    /// The thread every write transaction runs on.
    writer: Arc<Writer>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Conversation key: tenant and id joined by a byte neither may contain.
fn conv_key(tenant: &str, id: &str) -> String {
    format!("{tenant}\u{1f}{id}")
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/ctxgate.redb` and `dir/keys.redb`; fails
    /// when another process holds the first. Writes are answered once
    /// durable.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Answer::WhenDurable)
    }

    /// [`open`](Self::open), answering writes as `answer` says.
    pub fn open_with(dir: &Path, answer: Answer) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
        let file = file::GrownFile::new(file).map_err(backend)?;
        let db = Database::builder().create_with_backend(file).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => backend(format!(
                "{} is in use by another process (a local server on the same CTXGATE_DATA_DIR?)",
                path.display()
            )),
            e => backend(e),
        })?;
        let keys = keys::KeyFile::open(dir)?;
        keys.adopt(&db)?;
        // Create the tables up front so readers never meet a missing table.
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(META).map_err(backend)?;
        tx.open_table(MESSAGES).map_err(backend)?;
        tx.open_table(COUNTERS).map_err(backend)?;
        tx.open_table(USAGE).map_err(backend)?;
        tx.open_table(CONV_INDEX).map_err(backend)?;
        tx.open_table(IDEMPOTENCY).map_err(backend)?;
        tx.open_table(CONV_EXPIRY).map_err(backend)?;
        tx.open_table(IDEM_EXPIRY).map_err(backend)?;
        tx.open_table(COUNTER_EXPIRY).map_err(backend)?;
        tx.open_table(COUNTER_TTL).map_err(backend)?;
        tx.open_table(MCP_SERVERS).map_err(backend)?;
        tx.open_table(AUDIT).map_err(backend)?;
        tx.open_table(AUDIT_EXPIRY).map_err(backend)?;
        tx.open_table(RESPONSES).map_err(backend)?;
        tx.commit().map_err(backend)?;
        let db = Arc::new(db);
        let writer = Arc::new(Writer::start(db.clone(), answer)?);
        Ok(Self { db, keys, writer })
    }

    /// Removes what expired by `now`: counters, idempotency records,
    /// conversations (tombstones included) past their keep time, and audit
    /// rows past their retention, at most
    /// [`SWEEP_BATCH`] of each. The writer runs it every [`SWEEP_EVERY`]
    /// writes, so the file does not grow with what nobody can read any more.
    pub async fn sweep(&self, now: i64) -> Result<Swept, StoreError> {
        self.write(move |tx| Self::sweep_in(tx, now).map(Verdict::Commit))
            .await
    }

    /// The sweep's work inside `tx`.
    fn sweep_in(tx: &WriteTransaction, now: i64) -> Result<Swept, StoreError> {
        Ok(Swept {
            counters: sweep_counters(tx, now)?,
            idempotency: sweep_idempotency(tx, now)?,
            conversations: sweep_conversations(tx, now)?,
            audit: sweep_audit(tx, now)?,
        })
    }

    /// The document stored in one message slot, as written: what format
    /// checks read, since no other process may open the file meanwhile.
    pub async fn raw_message(
        &self,
        tenant: &str,
        id: &str,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = conv_key(tenant, id);
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(MESSAGES).map_err(backend)?;
            let row = table.get((key.as_str(), seq)).map_err(backend)?;
            Ok(row.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// Runs a read on the calling thread. The file is this process's alone,
    /// so a read transaction starts from memory and finds its pages in
    /// redb's cache (or the OS's): microseconds, less than the hand-off to
    /// the blocking pool and back costs (two thread wake-ups). Reads never
    /// wait for a commit's fsync.
    async fn read<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.db)
    }

    /// Runs a write transaction on the writer thread ([`writer`]): `f`
    /// says whether to commit; the answer comes once that is durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<Verdict<T>, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.write(f).await
    }
}

/// Runs blocking redb work on `db` off the async threads.
async fn blocking<T: Send + 'static>(
    db: &Arc<Database>,
    f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || f(&db))
        .await
        .map_err(backend)?
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

/// The descending read of one conversation: the header, then messages in
/// range reads of [`WINDOW_PAGE`] rows, the next read only when the walk asks
/// past the last one.
struct Descending<'a> {
    store: &'a EmbeddedStore,
    key: String,
    /// Documents of the current page, newest first, not handed out yet.
    rows: VecDeque<Vec<u8>>,
    /// The slot the last page ended at (the next one reads below it).
    below: Option<u64>,
    /// Whether no page follows.
    done: bool,
}

#[async_trait]
impl NewestFirst for Descending<'_> {
    async fn header(&mut self) -> Result<Option<ConversationMeta>, StoreError> {
        let key = self.key.clone();
        self.store
            .read(move |db| {
                let tx = db.begin_read().map_err(backend)?;
                read_meta(&tx.open_table(META).map_err(backend)?, &key)
            })
            .instrument(crate::trace::store_span("redb", "read", "window"))
            .await
    }

    async fn next_message(
        &mut self,
        slots: Range<u64>,
    ) -> Result<Option<StoredMessage>, StoreError> {
        while self.rows.is_empty() {
            let hi = self.below.map_or(slots.end, |b| b.min(slots.end));
            if self.done || slots.start >= hi {
                return Ok(None);
            }
            let (key, lo) = (self.key.clone(), slots.start);
            let page: Vec<(u64, Vec<u8>)> = self
                .store
                .read(move |db| {
                    let tx = db.begin_read().map_err(backend)?;
                    let table = tx.open_table(MESSAGES).map_err(backend)?;
                    table
                        .range((key.as_str(), lo)..(key.as_str(), hi))
                        .map_err(backend)?
                        .rev()
                        .take(WINDOW_PAGE)
                        .map(|row| {
                            let (k, v) = row.map_err(backend)?;
                            Ok((k.value().1, v.value().to_vec()))
                        })
                        .collect()
                })
                .await?;
            self.done = page.len() < WINDOW_PAGE;
            self.below = page.last().map(|(seq, _)| *seq);
            self.rows = page.into_iter().map(|(_, doc)| doc).collect();
        }
        match self.rows.pop_front() {
            Some(doc) => serde_json::from_slice(&doc).map(Some).map_err(backend),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl ConversationStore for EmbeddedStore {
    fn newest_first<'a>(&'a self, tenant: &'a str, id: &'a str) -> Box<dyn NewestFirst + 'a> {
        Box::new(Descending {
            store: self,
            key: conv_key(tenant, id),
            rows: VecDeque::new(),
            below: None,
            done: false,
        })
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "message_page"))]
    async fn message_page(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
        order: Order,
        after: Option<u64>,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let key = conv_key(tenant, id);
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let meta = read_meta(&tx.open_table(META).map_err(backend)?, &key)?;
            let Some(meta) = meta.filter(|m| m.is_live(now)) else {
                return Ok(MessagePage::default());
            };
            let (lo, hi) = order.slots(&meta, after);
            let table = tx.open_table(MESSAGES).map_err(backend)?;
            let mut messages = Vec::new();
            let mut has_more = false;
            if lo < hi {
                let range = table
                    .range((key.as_str(), lo)..(key.as_str(), hi))
                    .map_err(backend)?;
                let rows: Box<dyn Iterator<Item = _>> = match order {
                    Order::Asc => Box::new(range),
                    Order::Desc => Box::new(range.rev()),
                };
                for row in rows {
                    if messages.len() == limit {
                        has_more = true;
                        break;
                    }
                    let (_, v) = row.map_err(backend)?;
                    messages.push(serde_json::from_slice(v.value()).map_err(backend)?);
                }
            }
            Ok(MessagePage {
                meta: Some(meta),
                messages,
                has_more,
            })
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "list_conversations"))]
    async fn list_conversations(
        &self,
        tenant: &str,
        now: i64,
        after: Option<&ListPosition>,
        limit: usize,
    ) -> Result<ConversationPage, StoreError> {
        let tenant = tenant.to_owned();
        let upper = after.map(|p| listing_key(p.updated, &p.id));
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let index = tx.open_table(CONV_INDEX).map_err(backend)?;
            let metas = tx.open_table(META).map_err(backend)?;
            // Listing keys are digits then '#': every one sorts below "~".
            let hi = upper.unwrap_or_else(|| "~".to_owned());
            let mut page = ConversationPage::default();
            for row in index
                .range((tenant.as_str(), "")..(tenant.as_str(), hi.as_str()))
                .map_err(backend)?
                .rev()
            {
                let (_, id) = row.map_err(backend)?;
                let id = id.value().to_owned();
                let Some(mut meta) = read_meta(&metas, &conv_key(&tenant, &id))? else {
                    continue;
                };
                if !meta.is_live(now) {
                    continue;
                }
                if page.conversations.len() == limit {
                    let (updated, id) = page
                        .conversations
                        .last()
                        .map(|(id, m)| (m.updated, id.clone()))
                        .unwrap_or_default();
                    page.next = Some(ListPosition { updated, id });
                    break;
                }
                meta.system.clear();
                meta.summary = None;
                page.conversations.push((id, meta));
            }
            Ok(page)
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "conversation_meta"))]
    async fn conversation_meta(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ConversationMeta>, StoreError> {
        let key = conv_key(tenant, id);
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            read_meta(&tx.open_table(META).map_err(backend)?, &key)
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "append_turn"))]
    async fn append_turn(
        &self,
        tenant: &str,
        id: &str,
        turn: &TurnWrite,
    ) -> Result<(), StoreError> {
        check_turn_size(tenant, id, turn)?;
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let key = conv_key(&tenant, &id);
        let turn = turn.clone();
        self.write(move |tx| {
            {
                let mut meta_table = tx.open_table(META).map_err(backend)?;
                let current = read_meta(&meta_table, &key)?;
                if current.as_ref().map_or(0, |m| m.version) != turn.expected_version {
                    return Err(StoreError::Conflict);
                }
                if turn.creates {
                    let count = conversation_count_key(&tenant);
                    let mut counters = tx.open_table(COUNTERS).map_err(backend)?;
                    let n = counter_value(&counters, &count)?;
                    if turn
                        .conversation_cap
                        .is_some_and(|cap| n >= i64::try_from(cap).unwrap_or(i64::MAX))
                    {
                        return Err(StoreError::TooManyConversations {
                            limit: turn.conversation_cap.unwrap_or_default(),
                        });
                    }
                    counters
                        .insert((count.pk.as_str(), count.sk.as_str()), n + 1)
                        .map_err(backend)?;
                }
                if let Some(done) = &turn.idempotency {
                    let mut idem = tx.open_table(IDEMPOTENCY).map_err(backend)?;
                    let was = complete_claim(&mut idem, &tenant, done)?;
                    reindex_record(tx, &tenant, &done.key, Some(was), Some(done.expires_at))?;
                }
                write_head(
                    tx,
                    &mut meta_table,
                    (&tenant, &id),
                    current.as_ref(),
                    &turn.meta,
                )?;
                let mut msgs = tx.open_table(MESSAGES).map_err(backend)?;
                for m in &turn.messages {
                    let bytes = serde_json::to_vec(m).map_err(backend)?;
                    msgs.insert((key.as_str(), m.seq), bytes.as_slice())
                        .map_err(backend)?;
                }
                let mut usage = tx.open_table(USAGE).map_err(backend)?;
                for row in &turn.usage {
                    add_usage_row(&mut usage, &tenant, row)?;
                }
                if let Some(r) = &turn.response {
                    let mut responses = tx.open_table(RESPONSES).map_err(backend)?;
                    let k = (tenant.as_str(), r.id.as_str());
                    if responses.get(k).map_err(backend)?.is_some() {
                        return Err(StoreError::Conflict);
                    }
                    let bytes = serde_json::to_vec(r).map_err(backend)?;
                    responses.insert(k, bytes.as_slice()).map_err(backend)?;
                }
            }
            // Dropping an uncommitted transaction (the error paths above) aborts it.
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "edit_message"))]
    async fn edit_message(
        &self,
        tenant: &str,
        id: &str,
        edit: &MessageEdit,
    ) -> Result<(), StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let key = conv_key(&tenant, &id);
        let edit = edit.clone();
        self.write(move |tx| {
            {
                let mut meta_table = tx.open_table(META).map_err(backend)?;
                let current = read_meta(&meta_table, &key)?;
                if current.as_ref().map_or(0, |m| m.version) != edit.expected_version {
                    return Err(StoreError::Conflict);
                }
                write_head(
                    tx,
                    &mut meta_table,
                    (&tenant, &id),
                    current.as_ref(),
                    &edit.meta,
                )?;
                // One row per slot here: rewriting it leaves nothing stale.
                let mut msgs = tx.open_table(MESSAGES).map_err(backend)?;
                match &edit.message {
                    Some(m) => {
                        let bytes = serde_json::to_vec(m).map_err(backend)?;
                        msgs.insert((key.as_str(), edit.seq), bytes.as_slice())
                            .map_err(backend)?;
                    }
                    None => {
                        msgs.remove((key.as_str(), edit.seq)).map_err(backend)?;
                    }
                }
            }
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "delete_conversation"))]
    async fn delete_conversation(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let key = conv_key(&tenant, &id);
        let now = crate::now_secs();
        self.write(move |tx| {
            {
                let mut meta_table = tx.open_table(META).map_err(backend)?;
                let Some(old) = read_meta(&meta_table, &key)?.filter(|m| !m.is_tombstone()) else {
                    return Ok(Verdict::Abort(()));
                };
                tx.open_table(CONV_INDEX)
                    .map_err(backend)?
                    .remove((tenant.as_str(), listing_key(old.updated, &id).as_str()))
                    .map_err(backend)?;
                // The tombstone keeps the version and numbering: a turn that
                // read the deleted life fails its version check.
                let dead = old.tombstone(now);
                let bytes = serde_json::to_vec(&dead).map_err(backend)?;
                meta_table
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                reindex_conversation(tx, &key, Some(&old), &dead)?;
                remove_messages(
                    &mut tx.open_table(MESSAGES).map_err(backend)?,
                    &key,
                    0,
                    u64::MAX,
                )?;
                let count = conversation_count_key(&tenant);
                let mut counters = tx.open_table(COUNTERS).map_err(backend)?;
                let n = counter_value(&counters, &count)?;
                counters
                    .insert((count.pk.as_str(), count.sk.as_str()), (n - 1).max(0))
                    .map_err(backend)?;
            }
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "purge_messages"))]
    async fn purge_messages(
        &self,
        tenant: &str,
        id: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        let key = conv_key(tenant, id);
        self.write(move |tx| {
            remove_messages(
                &mut tx.open_table(MESSAGES).map_err(backend)?,
                &key,
                from,
                to,
            )?;
            Ok(Verdict::Commit(()))
        })
        .await
    }
}

#[async_trait]
impl IdempotencyStore for EmbeddedStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "idempotency_claim"))]
    async fn idempotency_claim(
        &self,
        tenant: &str,
        req: &IdempotencyRequest<'_>,
    ) -> Result<IdempotencyClaim, StoreError> {
        let tenant = tenant.to_owned();
        let key = req.key.to_owned();
        let claim = IdempotencyRecord::claim(req);
        let now = req.now;
        let outcome = self
            .write(move |tx| {
                let outcome = {
                    let mut table = tx.open_table(IDEMPOTENCY).map_err(backend)?;
                    let current = read_record(&table, &tenant, &key)?;
                    let req = IdempotencyRequest {
                        key: &key,
                        fingerprint: &claim.fingerprint,
                        token: &claim.token,
                        now,
                        lease_until: claim.lease_until,
                        expires_at: claim.expires_at,
                    };
                    match current.as_ref().and_then(|r| r.claim_outcome(&req)) {
                        Some(outcome) => outcome,
                        None => {
                            let bytes = serde_json::to_vec(&claim).map_err(backend)?;
                            table
                                .insert((tenant.as_str(), key.as_str()), bytes.as_slice())
                                .map_err(backend)?;
                            reindex_record(
                                tx,
                                &tenant,
                                &key,
                                current.map(|r| r.expires_at),
                                Some(claim.expires_at),
                            )?;
                            IdempotencyClaim::Acquired
                        }
                    }
                };
                Ok(if outcome == IdempotencyClaim::Acquired {
                    Verdict::Commit(outcome)
                } else {
                    Verdict::Abort(outcome)
                })
            })
            .await?;
        Ok(outcome)
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "idempotency_complete"))]
    async fn idempotency_complete(
        &self,
        tenant: &str,
        done: &IdempotencyDone,
    ) -> Result<(), StoreError> {
        let tenant = tenant.to_owned();
        let done = done.clone();
        self.write(move |tx| {
            let was = complete_claim(
                &mut tx.open_table(IDEMPOTENCY).map_err(backend)?,
                &tenant,
                &done,
            )?;
            reindex_record(tx, &tenant, &done.key, Some(was), Some(done.expires_at))?;
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "idempotency_release"))]
    async fn idempotency_release(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
    ) -> Result<(), StoreError> {
        let (tenant, key, token) = (tenant.to_owned(), key.to_owned(), token.to_owned());
        self.write(move |tx| {
            let mut table = tx.open_table(IDEMPOTENCY).map_err(backend)?;
            let ours = read_record(&table, &tenant, &key)?
                .filter(|r| r.token == token && r.response.is_none());
            // Nothing of ours to release: no commit (and no fsync) for nothing.
            let Some(r) = ours else {
                return Ok(Verdict::Abort(()));
            };
            table
                .remove((tenant.as_str(), key.as_str()))
                .map_err(backend)?;
            reindex_record(tx, &tenant, &key, Some(r.expires_at), None)?;
            Ok(Verdict::Commit(()))
        })
        .await
    }
}

/// Keys are the key file's ([`keys::KeyFile`]).
#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.keys.put_key(key).await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.keys.key_by_hash(hash).await
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.keys.list_keys(tenant).await
    }

    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        self.keys.revoke_key(key_id).await
    }

    async fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.keys.get_key(key_id).await
    }
}

#[async_trait]
impl CounterStore for EmbeddedStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "counter_add"))]
    async fn counter_add(
        &self,
        key: &CounterKey,
        delta: i64,
        limit: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let key = key.clone();
        let allowed = self
            .write(move |tx| {
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
                        if let Some(e) = expires_at {
                            expire_counter(tx, &key, e)?;
                        }
                        true
                    }
                };
                Ok(if allowed {
                    Verdict::Commit(allowed)
                } else {
                    Verdict::Abort(allowed)
                })
            })
            .await?;
        Ok(allowed)
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "counters_add"))]
    async fn counters_add(&self, adds: &[CounterAdd]) -> Result<Option<usize>, StoreError> {
        if adds.is_empty() {
            return Ok(None);
        }
        // Larger than its limit: refused unwritten, as DynamoDB's condition would.
        if let Some(i) = adds
            .iter()
            .position(|a| a.delta > 0 && a.limit.is_some_and(|l| a.delta > l))
        {
            return Ok(Some(i));
        }
        let adds = adds.to_vec();
        let refused = self
            .write(move |tx| {
                {
                    let mut table = tx.open_table(COUNTERS).map_err(backend)?;
                    let mut next = Vec::with_capacity(adds.len());
                    for (i, a) in adds.iter().enumerate() {
                        let current = table
                            .get((a.key.pk.as_str(), a.key.sk.as_str()))
                            .map_err(backend)?
                            .map_or(0, |v| v.value());
                        let n = current.saturating_add(a.delta);
                        if a.delta > 0 && a.limit.is_some_and(|l| n > l) {
                            return Ok(Verdict::Abort(Some(i)));
                        }
                        next.push(n);
                    }
                    for (a, n) in adds.iter().zip(next) {
                        table
                            .insert((a.key.pk.as_str(), a.key.sk.as_str()), n)
                            .map_err(backend)?;
                    }
                }
                for a in &adds {
                    if let Some(e) = a.expires_at {
                        expire_counter(tx, &a.key, e)?;
                    }
                }
                Ok(Verdict::Commit(None))
            })
            .await?;
        Ok(refused)
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "counter_get"))]
    async fn counter_get(&self, key: &CounterKey) -> Result<i64, StoreError> {
        let key = key.clone();
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(COUNTERS).map_err(backend)?;
            Ok(table
                .get((key.pk.as_str(), key.sk.as_str()))
                .map_err(backend)?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "add_usage"))]
    async fn add_usage(&self, tenant: &str, row: &UsageRow) -> Result<(), StoreError> {
        let tenant = tenant.to_owned();
        let row = row.clone();
        self.write(move |tx| {
            add_usage_row(&mut tx.open_table(USAGE).map_err(backend)?, &tenant, &row)?;
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "add_usage_batch"))]
    async fn add_usage_batch(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // As on DynamoDB, a marker counter (swept like the others once it
        // expires) written in the same transaction makes the batch apply once.
        let batch = batch.clone();
        let marker = CounterKey {
            pk: format!("F#{}", batch.id),
            sk: "FLUSH".into(),
        };
        let expires = crate::now_secs() + 7 * 86_400;
        self.write(move |tx| {
            let applied = {
                let mut counters = tx.open_table(COUNTERS).map_err(backend)?;
                let k = (marker.pk.as_str(), marker.sk.as_str());
                let applied = counters.get(k).map_err(backend)?.is_some();
                if !applied {
                    counters.insert(k, 1).map_err(backend)?;
                }
                applied
            };
            if applied {
                return Ok(Verdict::Abort(()));
            }
            expire_counter(tx, &marker, expires)?;
            {
                let mut usage = tx.open_table(USAGE).map_err(backend)?;
                for (tenant, row) in &batch.rows {
                    add_usage_row(&mut usage, tenant, row)?;
                }
                let mut counters = tx.open_table(COUNTERS).map_err(backend)?;
                for (key, delta) in &batch.counters {
                    let k = (key.pk.as_str(), key.sk.as_str());
                    let current = counters.get(k).map_err(backend)?.map_or(0, |v| v.value());
                    counters
                        .insert(k, current.saturating_add(*delta))
                        .map_err(backend)?;
                }
            }
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "usage"))]
    async fn usage(&self, tenant: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, StoreError> {
        let (tenant, lo, hi) = (tenant.to_owned(), format!("{from}#"), format!("{to}$"));
        self.read(move |db| {
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

fn add_usage_row(
    table: &mut redb::Table<(&str, &str), &[u8]>,
    tenant: &str,
    row: &UsageRow,
) -> Result<(), StoreError> {
    let sk = format!("{}#{}", row.day, row.model);
    let mut total: UsageRow = match table.get((tenant, sk.as_str())).map_err(backend)? {
        Some(v) => serde_json::from_slice(v.value()).map_err(backend)?,
        None => UsageRow {
            day: row.day.clone(),
            model: row.model.clone(),
            ..UsageRow::default()
        },
    };
    total.add(row);
    let bytes = serde_json::to_vec(&total).map_err(backend)?;
    table
        .insert((tenant, sk.as_str()), bytes.as_slice())
        .map_err(backend)?;
    Ok(())
}

/// Writes a conversation's header and moves its listing and expiry index
/// entries from `current` (the stored one, if any).
fn write_head(
    tx: &redb::WriteTransaction,
    meta_table: &mut redb::Table<&str, &[u8]>,
    (tenant, id): (&str, &str),
    current: Option<&ConversationMeta>,
    meta: &ConversationMeta,
) -> Result<(), StoreError> {
    let key = conv_key(tenant, id);
    let bytes = serde_json::to_vec(meta).map_err(backend)?;
    meta_table
        .insert(key.as_str(), bytes.as_slice())
        .map_err(backend)?;
    reindex_conversation(tx, &key, current, meta)?;
    let mut index = tx.open_table(CONV_INDEX).map_err(backend)?;
    if let Some(old) = current {
        index
            .remove((tenant, listing_key(old.updated, id).as_str()))
            .map_err(backend)?;
    }
    index
        .insert((tenant, listing_key(meta.updated, id).as_str()), id)
        .map_err(backend)?;
    Ok(())
}

fn remove_messages(
    table: &mut redb::Table<(&str, u64), &[u8]>,
    key: &str,
    from: u64,
    to: u64,
) -> Result<(), StoreError> {
    let mut seqs = Vec::new();
    for row in table.range((key, from)..(key, to)).map_err(backend)? {
        seqs.push(row.map_err(backend)?.0.value().1);
    }
    for seq in seqs {
        table.remove((key, seq)).map_err(backend)?;
    }
    Ok(())
}

/// Moves a conversation's expiry index entry from `old` to `new`.
fn reindex_conversation(
    tx: &redb::WriteTransaction,
    key: &str,
    old: Option<&ConversationMeta>,
    new: &ConversationMeta,
) -> Result<(), StoreError> {
    let mut index = tx.open_table(CONV_EXPIRY).map_err(backend)?;
    if let Some(at) = old.and_then(ConversationMeta::forget_at) {
        index.remove((at, key)).map_err(backend)?;
    }
    if let Some(at) = new.forget_at() {
        index.insert((at, key), ()).map_err(backend)?;
    }
    Ok(())
}

/// Moves an idempotency record's expiry index entry from `old` to `new`.
fn reindex_record(
    tx: &redb::WriteTransaction,
    tenant: &str,
    key: &str,
    old: Option<i64>,
    new: Option<i64>,
) -> Result<(), StoreError> {
    let mut index = tx.open_table(IDEM_EXPIRY).map_err(backend)?;
    if let Some(at) = old {
        index.remove((at, tenant, key)).map_err(backend)?;
    }
    if let Some(at) = new {
        index.insert((at, tenant, key), ()).map_err(backend)?;
    }
    Ok(())
}

/// Records when a counter expires (moving its index entry if that changed).
fn expire_counter(
    tx: &redb::WriteTransaction,
    key: &CounterKey,
    at: i64,
) -> Result<(), StoreError> {
    let mut ttl = tx.open_table(COUNTER_TTL).map_err(backend)?;
    let k = (key.pk.as_str(), key.sk.as_str());
    let old = ttl.get(k).map_err(backend)?.map(|v| v.value());
    if old == Some(at) {
        return Ok(());
    }
    let mut index = tx.open_table(COUNTER_EXPIRY).map_err(backend)?;
    if let Some(old) = old {
        index.remove((old, k.0, k.1)).map_err(backend)?;
    }
    index.insert((at, k.0, k.1), ()).map_err(backend)?;
    ttl.insert(k, at).map_err(backend)?;
    Ok(())
}

fn sweep_counters(tx: &redb::WriteTransaction, now: i64) -> Result<usize, StoreError> {
    let mut index = tx.open_table(COUNTER_EXPIRY).map_err(backend)?;
    let mut gone = Vec::new();
    for row in index.range(..(now + 1, "", "")).map_err(backend)? {
        if gone.len() == SWEEP_BATCH {
            break;
        }
        let (k, _) = row.map_err(backend)?;
        let (at, pk, sk) = k.value();
        gone.push((at, pk.to_owned(), sk.to_owned()));
    }
    let mut counters = tx.open_table(COUNTERS).map_err(backend)?;
    let mut ttl = tx.open_table(COUNTER_TTL).map_err(backend)?;
    for (at, pk, sk) in &gone {
        index
            .remove((*at, pk.as_str(), sk.as_str()))
            .map_err(backend)?;
        counters
            .remove((pk.as_str(), sk.as_str()))
            .map_err(backend)?;
        ttl.remove((pk.as_str(), sk.as_str())).map_err(backend)?;
    }
    Ok(gone.len())
}

fn sweep_idempotency(tx: &redb::WriteTransaction, now: i64) -> Result<usize, StoreError> {
    let mut index = tx.open_table(IDEM_EXPIRY).map_err(backend)?;
    let mut gone = Vec::new();
    for row in index.range(..(now + 1, "", "")).map_err(backend)? {
        if gone.len() == SWEEP_BATCH {
            break;
        }
        let (k, _) = row.map_err(backend)?;
        let (at, tenant, key) = k.value();
        gone.push((at, tenant.to_owned(), key.to_owned()));
    }
    let mut records = tx.open_table(IDEMPOTENCY).map_err(backend)?;
    let mut removed = 0;
    for (at, tenant, key) in &gone {
        index
            .remove((*at, tenant.as_str(), key.as_str()))
            .map_err(backend)?;
        // The index entry is exact, but check: never drop a live record.
        if read_record(&records, tenant, key)?.is_some_and(|r| r.expires_at <= now) {
            records
                .remove((tenant.as_str(), key.as_str()))
                .map_err(backend)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn sweep_audit(tx: &redb::WriteTransaction, now: i64) -> Result<usize, StoreError> {
    let mut index = tx.open_table(AUDIT_EXPIRY).map_err(backend)?;
    let mut gone = Vec::new();
    for row in index.range(..(now + 1, "", "")).map_err(backend)? {
        if gone.len() == SWEEP_BATCH {
            break;
        }
        let (k, _) = row.map_err(backend)?;
        let (at, tenant, id) = k.value();
        gone.push((at, tenant.to_owned(), id.to_owned()));
    }
    let mut rows = tx.open_table(AUDIT).map_err(backend)?;
    for (at, tenant, id) in &gone {
        index
            .remove((*at, tenant.as_str(), id.as_str()))
            .map_err(backend)?;
        rows.remove((tenant.as_str(), id.as_str()))
            .map_err(backend)?;
    }
    Ok(gone.len())
}

fn sweep_conversations(tx: &redb::WriteTransaction, now: i64) -> Result<usize, StoreError> {
    let mut index = tx.open_table(CONV_EXPIRY).map_err(backend)?;
    let mut gone = Vec::new();
    for row in index.range(..(now + 1, "")).map_err(backend)? {
        if gone.len() == SWEEP_BATCH {
            break;
        }
        let (k, _) = row.map_err(backend)?;
        let (at, key) = k.value();
        gone.push((at, key.to_owned()));
    }
    let mut metas = tx.open_table(META).map_err(backend)?;
    let mut listing = tx.open_table(CONV_INDEX).map_err(backend)?;
    let mut messages = tx.open_table(MESSAGES).map_err(backend)?;
    let mut counters = tx.open_table(COUNTERS).map_err(backend)?;
    let mut removed = 0;
    for (at, key) in &gone {
        index.remove((*at, key.as_str())).map_err(backend)?;
        let Some(meta) = read_meta(&metas, key)? else {
            continue;
        };
        if meta.forget_at().is_none_or(|f| f > now) {
            continue;
        }
        let Some((tenant, id)) = key.split_once('\u{1f}') else {
            continue;
        };
        metas.remove(key.as_str()).map_err(backend)?;
        listing
            .remove((tenant, listing_key(meta.updated, id).as_str()))
            .map_err(backend)?;
        remove_messages(&mut messages, key, 0, u64::MAX)?;
        // An expired conversation leaves the tenant's count; a tombstone left it already.
        if !meta.is_tombstone() {
            let count = conversation_count_key(tenant);
            let n = counter_value(&counters, &count)?;
            counters
                .insert((count.pk.as_str(), count.sk.as_str()), (n - 1).max(0))
                .map_err(backend)?;
        }
        removed += 1;
    }
    Ok(removed)
}

fn counter_value(
    table: &impl ReadableTable<(&'static str, &'static str), i64>,
    key: &CounterKey,
) -> Result<i64, StoreError> {
    Ok(table
        .get((key.pk.as_str(), key.sk.as_str()))
        .map_err(backend)?
        .map_or(0, |v| v.value()))
}

fn read_record(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    tenant: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    match table.get((tenant, key)).map_err(backend)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(backend)?)),
        None => Ok(None),
    }
}

/// Stores the response on a claim this attempt still holds; a claim taken
/// over by another attempt makes the write a conflict. Returns the claim's
/// expiry, which the record's index entry moves from.
fn complete_claim(
    table: &mut redb::Table<(&str, &str), &[u8]>,
    tenant: &str,
    done: &IdempotencyDone,
) -> Result<i64, StoreError> {
    let mut record = read_record(table, tenant, &done.key)?
        .filter(|r| r.token == done.token)
        .ok_or(StoreError::Conflict)?;
    let was = record.expires_at;
    record.response = Some(super::unreplayable(&done.response));
    record.expires_at = done.expires_at;
    let bytes = serde_json::to_vec(&record).map_err(backend)?;
    table
        .insert((tenant, done.key.as_str()), bytes.as_slice())
        .map_err(backend)?;
    Ok(was)
}

fn read_mcp(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    tenant: &str,
    name: &str,
) -> Result<Option<McpServerRecord>, StoreError> {
    match table.get((tenant, name)).map_err(backend)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(backend)?)),
        None => Ok(None),
    }
}

#[async_trait]
impl McpServerStore for EmbeddedStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "create_mcp_server"))]
    async fn create_mcp_server(
        &self,
        tenant: &str,
        record: &McpServerRecord,
    ) -> Result<(), StoreError> {
        let (tenant, record) = (tenant.to_owned(), record.clone());
        self.write(move |tx| {
            {
                let mut t = tx.open_table(MCP_SERVERS).map_err(backend)?;
                if read_mcp(&t, &tenant, &record.name)?.is_some() {
                    return Err(StoreError::Exists);
                }
                let bytes = serde_json::to_vec(&record).map_err(backend)?;
                t.insert((tenant.as_str(), record.name.as_str()), bytes.as_slice())
                    .map_err(backend)?;
            }
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "get_mcp_server"))]
    async fn get_mcp_server(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<McpServerRecord>, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(MCP_SERVERS).map_err(backend)?;
            read_mcp(&t, &tenant, &name)
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "list_mcp_servers"))]
    async fn list_mcp_servers(&self, tenant: &str) -> Result<Vec<McpServerRecord>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(MCP_SERVERS).map_err(backend)?;
            let mut out = Vec::new();
            // The tenant's rows sort together, by name.
            for row in t.range((tenant.as_str(), "")..).map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                if k.value().0 != tenant {
                    break;
                }
                out.push(serde_json::from_slice(v.value()).map_err(backend)?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "update_mcp_server"))]
    async fn update_mcp_server(
        &self,
        tenant: &str,
        record: &McpServerRecord,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let (tenant, record) = (tenant.to_owned(), record.clone());
        self.write(move |tx| {
            {
                let mut t = tx.open_table(MCP_SERVERS).map_err(backend)?;
                match read_mcp(&t, &tenant, &record.name)? {
                    None => return Ok(Verdict::Abort(false)),
                    Some(old) if old.version != expected => return Err(StoreError::Conflict),
                    Some(_) => {}
                }
                let bytes = serde_json::to_vec(&record).map_err(backend)?;
                t.insert((tenant.as_str(), record.name.as_str()), bytes.as_slice())
                    .map_err(backend)?;
            }
            Ok(Verdict::Commit(true))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "delete_mcp_server"))]
    async fn delete_mcp_server(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.write(move |tx| {
            let found = tx
                .open_table(MCP_SERVERS)
                .map_err(backend)?
                .remove((tenant.as_str(), name.as_str()))
                .map_err(backend)?
                .is_some();
            Ok(Verdict::Commit(found))
        })
        .await
    }
}

#[async_trait]
impl AuditStore for EmbeddedStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "record_call"))]
    async fn record_call(&self, tenant: &str, record: &AuditRecord) -> Result<(), StoreError> {
        let (tenant, record) = (tenant.to_owned(), record.clone());
        self.write(move |tx| {
            {
                let mut t = tx.open_table(AUDIT).map_err(backend)?;
                let bytes = serde_json::to_vec(&record).map_err(backend)?;
                t.insert((tenant.as_str(), record.id.as_str()), bytes.as_slice())
                    .map_err(backend)?;
                tx.open_table(AUDIT_EXPIRY)
                    .map_err(backend)?
                    .insert((record.expires_at, tenant.as_str(), record.id.as_str()), ())
                    .map_err(backend)?;
            }
            Ok(Verdict::Commit(()))
        })
        .await
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "list_calls"))]
    async fn list_calls(
        &self,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        let tenant = tenant.to_owned();
        let low = super::audit::lower_bound(from_ms);
        let high = super::audit::upper_bound(to_ms, before);
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(AUDIT).map_err(backend)?;
            let mut page = AuditPage::default();
            if low >= high {
                return Ok(page);
            }
            let range = t
                .range((tenant.as_str(), low.as_str())..(tenant.as_str(), high.as_str()))
                .map_err(backend)?;
            for row in range.rev() {
                let (_, v) = row.map_err(backend)?;
                if page.records.len() == limit {
                    page.has_more = true;
                    break;
                }
                page.records
                    .push(serde_json::from_slice(v.value()).map_err(backend)?);
            }
            Ok(page)
        })
        .await
    }
}

#[async_trait]
impl ResponseStore for EmbeddedStore {
    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "read", otel.kind = "client", db.system.name = "redb", db.operation.name = "read", ctxgate.store.call = "get_response"))]
    async fn get_response(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<ResponseRecord>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let record: Option<ResponseRecord> = self
            .read(move |db| {
                let tx = db.begin_read().map_err(backend)?;
                let table = tx.open_table(RESPONSES).map_err(backend)?;
                let row = table.get((tenant.as_str(), id.as_str())).map_err(backend)?;
                row.map(|v| serde_json::from_slice(v.value()).map_err(backend))
                    .transpose()
            })
            .await?;
        Ok(record.filter(|r| r.is_live(now)))
    }

    #[tracing::instrument(target = "ctxgate::otel", name = "store", skip_all, fields(otel.name = "write", otel.kind = "client", db.system.name = "redb", db.operation.name = "write", ctxgate.store.call = "delete_response"))]
    async fn delete_response(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let removed = self
            .write(move |tx| {
                let removed = {
                    let mut table = tx.open_table(RESPONSES).map_err(backend)?;
                    let old = table
                        .remove((tenant.as_str(), id.as_str()))
                        .map_err(backend)?;
                    old.is_some()
                };
                Ok(Verdict::Commit(removed))
            })
            .await?;
        Ok(removed)
    }
}
