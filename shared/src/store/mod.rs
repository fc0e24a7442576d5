//! Persistence: one trait, two implementations that pass one conformance
//! suite: [`dynamo`] (production) and [`embedded`] (local, a file on disk).
//!
//! Every key begins with the tenant, so no lookup can cross tenants.

pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::wire::ChatMessage;

/// Largest stored item, enforced by both stores alike: DynamoDB's documented
/// 400 KB, read as 400,000 bytes to stay clear of the real (slightly larger) cap.
pub const MAX_ITEM_BYTES: usize = 400_000;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The conversation changed since it was read (version check failed).
    #[error("conversation changed concurrently")]
    Conflict,
    /// An item would exceed the store's item size limit.
    #[error("{what} is {bytes} bytes, over the {limit}-byte item limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The backend failed (network, throttling, corrupt data...).
    #[error("store backend error: {0}")]
    Backend(String),
}

/// A conversation's header item: version, counters, system prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationMeta {
    /// Incremented by every turn; 0 means no header exists yet.
    pub version: u64,
    /// Sequence number the next stored message gets.
    pub next_seq: u64,
    /// Completed turns.
    pub turns: u64,
    /// Tokens of all turns (prompt + completion as reported).
    pub tokens: u64,
    /// Unix seconds of the first turn.
    pub created: i64,
    /// Unix seconds of the latest turn.
    pub updated: i64,
    /// The conversation's system prompt (system/developer messages).
    #[serde(default)]
    pub system: Vec<ChatMessage>,
    /// When the conversation expires (TTL), if retention is set.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl ConversationMeta {
    /// Whether the conversation exists and has not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.version > 0 && self.expires_at.is_none_or(|e| e > now)
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Position in the conversation.
    pub seq: u64,
    /// The message.
    pub message: ChatMessage,
    /// Tokens, where known (the completion count for assistant messages).
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Unix seconds.
    pub created: i64,
    /// The model that produced it (assistant messages).
    #[serde(default)]
    pub model: Option<String>,
    /// When it expires (TTL), if retention is set.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A conversation as read: its header and its live messages, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// The header (version 0 when none is stored).
    pub meta: ConversationMeta,
    /// Live messages in order; empty when the conversation is not live.
    pub messages: Vec<StoredMessage>,
}

/// A turn to append: the new header and the messages, written atomically
/// only if the stored header still has `expected_version`.
#[derive(Debug, Clone)]
pub struct TurnWrite {
    /// The version read before the turn (0: no header may exist).
    pub expected_version: u64,
    /// The header after the turn (its version is `expected_version + 1`).
    pub meta: ConversationMeta,
    /// The new messages, with consecutive `seq` from the old `next_seq`.
    pub messages: Vec<StoredMessage>,
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public key id (`key_...`).
    pub key_id: String,
    /// Hex SHA-256 of the secret key.
    pub hash: String,
    /// Tenant the key belongs to.
    pub tenant: String,
    /// Human label.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// Revoked keys stay listed but no longer authenticate.
    pub revoked: bool,
    /// Optional expiry (Unix seconds).
    #[serde(default)]
    pub valid_until: Option<i64>,
    /// Models the key may use (`provider/model` or alias); empty: all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requests per minute allowed for this key (None: the configured default).
    #[serde(default)]
    pub rpm: Option<u32>,
}

/// The address of an atomic counter (rate windows, daily budgets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// Partition, always prefixed by tenant or key id.
    pub pk: String,
    /// Window within the partition.
    pub sk: String,
}

/// A tenant's usage for one day and model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// `provider/model`.
    pub model: String,
    /// Completed requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Prompt + completion.
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u64,
    /// Completion tokens spent reasoning.
    pub reasoning_tokens: u64,
    /// Estimated cost in millionths of a USD.
    pub cost_micro_usd: u64,
    /// Version of the price table the latest request was costed with.
    pub price_version: String,
}

/// The persistence interface.
#[async_trait]
pub trait Store: Send + Sync {
    /// Reads a conversation's header and live messages. A missing or expired
    /// conversation comes back with no messages (and the stored version, so a
    /// new turn can take its place).
    async fn load_conversation(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Conversation, StoreError>;

    /// Reads only the header (`None` when there is none).
    async fn conversation_meta(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ConversationMeta>, StoreError>;

    /// Appends a turn atomically; [`StoreError::Conflict`] if the version moved.
    async fn append_turn(&self, tenant: &str, id: &str, turn: &TurnWrite)
    -> Result<(), StoreError>;

    /// Stores a new key.
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// Finds a key by the hash of its secret.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Lists keys, of one tenant or all.
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes a key by id; `false` if there is no such key.
    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError>;

    /// Finds a key by id.
    async fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Adds `delta` to a counter, atomically, only if the result stays at or
    /// under `limit`; returns `false` (changing nothing) when it would not.
    async fn counter_add(
        &self,
        key: &CounterKey,
        delta: i64,
        limit: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Reads a counter (0 when absent).
    async fn counter_get(&self, key: &CounterKey) -> Result<i64, StoreError>;

    /// Adds a request's usage to its tenant/day/model row.
    async fn add_usage(&self, tenant: &str, row: &UsageRow) -> Result<(), StoreError>;

    /// A tenant's usage rows for days `from..=to` (`YYYY-MM-DD`), by day then model.
    async fn usage(&self, tenant: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, StoreError>;
}

/// Bytes a message occupies as a DynamoDB item (names + values), used by both
/// stores so that they refuse the same things.
pub fn message_item_bytes(tenant: &str, id: &str, msg: &StoredMessage) -> usize {
    let body = serde_json::to_vec(&msg.message)
        .map(|v| v.len())
        .unwrap_or(usize::MAX / 2);
    // PK, SK, msg, tokens, created, model, expires_at: names and fixed-size numbers.
    let key = tenant.len() + id.len() + 6 + 14;
    key + body + msg.model.as_ref().map_or(0, String::len) + 64
}

/// Bytes of a conversation header item.
pub fn meta_item_bytes(tenant: &str, id: &str, meta: &ConversationMeta) -> usize {
    let system = serde_json::to_vec(&meta.system)
        .map(|v| v.len())
        .unwrap_or(usize::MAX / 2);
    tenant.len() + id.len() + 10 + system + 128
}

/// Refuses a turn whose items would not fit.
pub fn check_turn_size(tenant: &str, id: &str, turn: &TurnWrite) -> Result<(), StoreError> {
    let meta = meta_item_bytes(tenant, id, &turn.meta);
    if meta > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge {
            what: "the system prompt",
            bytes: meta,
            limit: MAX_ITEM_BYTES,
        });
    }
    for m in &turn.messages {
        let bytes = message_item_bytes(tenant, id, m);
        if bytes > MAX_ITEM_BYTES {
            return Err(StoreError::TooLarge {
                what: "a message",
                bytes,
                limit: MAX_ITEM_BYTES,
            });
        }
    }
    Ok(())
}
