//! Persistence: one trait, two implementations that pass one conformance
//! suite: [`dynamo`] (production) and [`embedded`] (local, a file on disk).
//!
//! Every key begins with the tenant, so no lookup can cross tenants.

pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::wire::{ChatMessage, FinishReason, Usage};

/// Largest stored item, enforced by both stores alike: DynamoDB's documented
/// 400 KB, read as 400,000 bytes to stay clear of the real (slightly larger) cap.
pub const MAX_ITEM_BYTES: usize = 400_000;

/// How long a deleted conversation's tombstone (and an expired header) is
/// kept after it stopped being live. It carries the version and numbering on,
/// so a turn that read an earlier life fails its version check instead of
/// writing into a later one; a turn (bounded by the request deadline) and an
/// idempotent replay (kept 24 hours) cannot outlive it.
pub const TOMBSTONE_KEEP_SECS: i64 = 2 * 24 * 3600;

/// `expires_at` of a tombstone: never live, whatever the clock says.
pub const DELETED: i64 = 0;

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
    /// The backend is throttling or briefly unavailable, even after the
    /// SDK's own retries: the client should retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Creating the conversation would pass the tenant's cap on stored conversations.
    #[error("the tenant already stores {limit} conversations")]
    TooManyConversations {
        /// The cap.
        limit: u64,
    },
    /// The conversation a turn was prepared on was deleted (or expired and
    /// started over) while the turn ran.
    #[error("the conversation was deleted while the turn ran")]
    Gone,
    /// The backend failed otherwise (corrupt data, a bug, a misconfiguration).
    #[error("store backend error: {0}")]
    Backend(String),
}

/// A conversation's header item: version, counters, system prompt, title,
/// metadata, retention and the summary of what fell out of the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationMeta {
    /// Incremented by every write; 0 means no header exists yet.
    pub version: u64,
    /// Which life of the id this is: the version its first write started
    /// from. Monotonic across deletes (the tombstone keeps the version), so
    /// a turn or a replay can tell its life from a later one.
    #[serde(default)]
    pub life: u64,
    /// First message of the conversation's current life: slots below belong
    /// to an expired or deleted earlier life and are never shown.
    #[serde(default)]
    pub first_seq: u64,
    /// Sequence number the next stored message gets.
    pub next_seq: u64,
    /// Completed turns.
    pub turns: u64,
    /// Tokens of all turns (prompt + completion as reported).
    pub tokens: u64,
    /// Unix seconds of the conversation's creation.
    pub created: i64,
    /// Unix seconds of the latest change.
    pub updated: i64,
    /// The conversation's system prompt (system/developer messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<ChatMessage>,
    /// When the conversation expires (TTL), if retention is set.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Optional title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Client-defined string pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Retention override in seconds (0: forever); `None` uses the config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<i64>,
    /// Summary of the messages that fell out of the context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

impl ConversationMeta {
    /// Whether the conversation exists and has not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.version > 0 && self.expires_at.is_none_or(|e| e > now)
    }

    /// Whether this header is a deleted conversation's tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.version > 0 && self.expires_at == Some(DELETED)
    }

    /// Whether a header write over this one (as read) creates a stored
    /// conversation, for the per-tenant count: none stored, or a tombstone.
    pub fn counts_as_new(&self) -> bool {
        self.version == 0 || self.is_tombstone()
    }

    /// The life a turn prepared on this header (as read at `now`) belongs to:
    /// the live one, or the one its write will start.
    pub fn life_at(&self, now: i64) -> u64 {
        if self.is_live(now) {
            self.life
        } else {
            self.version
        }
    }

    /// When a store may forget this header (and its numbering): a while
    /// after it stopped being live; `None` while it lives forever.
    pub fn forget_at(&self) -> Option<i64> {
        match self.expires_at {
            Some(DELETED) => Some(self.updated.saturating_add(TOMBSTONE_KEEP_SECS)),
            Some(e) => Some(e.saturating_add(TOMBSTONE_KEEP_SECS)),
            None => None,
        }
    }

    /// The tombstone a delete leaves at `now`: no content, not live, the
    /// version moved on and numbering continued above every slot.
    pub fn tombstone(&self, now: i64) -> ConversationMeta {
        let mut dead = self.reborn(now);
        dead.version = self.version + 1;
        dead.life = self.life;
        dead.expires_at = Some(DELETED);
        dead
    }

    /// The header a new life of this conversation starts from: numbering goes
    /// on after the old life's slots so that nothing of it can reappear.
    pub fn reborn(&self, now: i64) -> ConversationMeta {
        ConversationMeta {
            version: self.version,
            life: self.version,
            first_seq: self.next_seq,
            next_seq: self.next_seq,
            created: now,
            updated: now,
            ..ConversationMeta::default()
        }
    }
}

/// A rolling summary of a conversation's oldest messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The summary text.
    pub text: String,
    /// Last message slot it covers (inclusive).
    pub through_seq: u64,
    /// Its size in tokens (as the summarising model reported it).
    pub tokens: u64,
    /// The model that wrote it.
    pub model: String,
    /// Unix seconds it was written.
    pub created: i64,
}

/// How an assistant answer came about, stored with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnInfo {
    /// Provider name.
    pub provider: String,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
    /// Usage as the provider reported it.
    pub usage: Usage,
    /// Provider call time in milliseconds.
    pub latency_ms: u64,
    /// Values the response processor replaced, per place and category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redactions: BTreeMap<String, BTreeMap<String, u32>>,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Position in the conversation.
    pub seq: u64,
    /// The message.
    pub message: ChatMessage,
    /// Tokens: provider-reported for answers, estimated for the rest.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Unix seconds.
    pub created: i64,
    /// The model that produced it (assistant messages).
    #[serde(default)]
    pub model: Option<String>,
    /// Provider, finish reason, usage, latency, redactions (assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnInfo>,
}

impl StoredMessage {
    /// A message with no answer metadata.
    pub fn new(seq: u64, message: ChatMessage, created: i64) -> Self {
        Self {
            seq,
            message,
            tokens: None,
            created,
            model: None,
            turn: None,
        }
    }

    /// Its tokens, as stored or estimated, with the per-message overhead.
    pub fn window_tokens(&self) -> u64 {
        match self.tokens {
            Some(t) => t + crate::tokens::MESSAGE_OVERHEAD,
            None => crate::tokens::estimate_message(&self.message),
        }
    }
}

/// A conversation as read: its header and its live messages, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// The header (version 0 when none is stored).
    pub meta: ConversationMeta,
    /// Live messages in order; empty when the conversation is not live.
    pub messages: Vec<StoredMessage>,
    /// Whether `messages` reaches back to the window's first slot (false when
    /// the read stopped at the token budget).
    pub complete: bool,
}

/// How much of a conversation a windowed read returns, decided from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimit {
    /// Oldest slot wanted (inclusive).
    pub from_seq: u64,
    /// Token budget: reading stops after the message that exceeds it.
    pub tokens: u64,
}

/// Decides a windowed read's limit from the conversation's header.
pub type WindowFn<'a> = dyn Fn(&ConversationMeta) -> WindowLimit + Send + Sync + 'a;

/// Reading direction of a message page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

impl Order {
    /// The slots (`lo..hi`) a page in this order may read, after slot `after`.
    pub fn slots(self, meta: &ConversationMeta, after: Option<u64>) -> (u64, u64) {
        match (self, after) {
            (Order::Asc, Some(a)) => (a.saturating_add(1).max(meta.first_seq), meta.next_seq),
            (Order::Desc, Some(a)) => (meta.first_seq, a.min(meta.next_seq)),
            (_, None) => (meta.first_seq, meta.next_seq),
        }
    }
}

/// A page of a conversation's messages.
#[derive(Debug, Clone, Default)]
pub struct MessagePage {
    /// The header, when the conversation is live.
    pub meta: Option<ConversationMeta>,
    /// The messages, in the requested order.
    pub messages: Vec<StoredMessage>,
    /// Whether more messages follow the last one in this order.
    pub has_more: bool,
}

/// A page of a tenant's conversations, newest-updated first.
#[derive(Debug, Clone, Default)]
pub struct ConversationPage {
    /// `(id, header)` pairs; headers carry no system prompt or summary.
    pub conversations: Vec<(String, ConversationMeta)>,
    /// Position of the last one, to continue from, when more may follow.
    pub next: Option<ListPosition>,
}

/// A position in a tenant's conversation listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    /// `updated` of the last conversation returned.
    pub updated: i64,
    /// Its id.
    pub id: String,
}

/// A turn to append: the new header and the messages, written atomically
/// only if the stored header still has `expected_version`. The usage rows
/// and the idempotency record ride in the same transaction, so a turn is
/// stored, accounted and remembered together or not at all.
#[derive(Debug, Clone, Default)]
pub struct TurnWrite {
    /// The version read before the turn (0: no header may exist).
    pub expected_version: u64,
    /// The header after the turn (its version is `expected_version + 1`).
    pub meta: ConversationMeta,
    /// The new messages, with consecutive `seq` from the old `next_seq`.
    pub messages: Vec<StoredMessage>,
    /// Usage rows to add.
    pub usage: Vec<UsageRow>,
    /// An idempotency claim this turn completes.
    pub idempotency: Option<IdempotencyDone>,
    /// The tenant's cap on stored conversations, checked (and the count
    /// raised) when the write creates one (see [`ConversationMeta::counts_as_new`]).
    pub conversation_cap: Option<u64>,
    /// Whether the write creates a stored conversation (the header it
    /// replaces, at `expected_version`, was none or a tombstone).
    pub creates: bool,
}

/// A completed idempotent request, stored with its response.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyDone {
    /// The client's key.
    pub key: String,
    /// The claim token the request holds.
    pub token: String,
    /// The response to replay.
    pub response: StoredResponse,
    /// When the record may be forgotten.
    pub expires_at: i64,
}

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers worth replaying (conversation id, redaction counts).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
    /// The conversation (id, life) the response's turn was stored in: a
    /// replay is refused once that life is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<(String, u64)>,
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// The caller now owns the key; it must complete or release it.
    Acquired,
    /// A request with the same body already completed: its response.
    Replay(StoredResponse),
    /// A request with the same key and body is still running.
    InProgress,
    /// The key was used with a different body.
    Mismatch,
}

/// An idempotency claim to make.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest<'a> {
    /// The client's key.
    pub key: &'a str,
    /// Hash of what the request does (route and body).
    pub fingerprint: &'a str,
    /// A random token naming this attempt.
    pub token: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// Until when the claim is held before another attempt may take it over.
    pub lease_until: i64,
    /// When the record may be forgotten.
    pub expires_at: i64,
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
    /// Requests whose tokens are the gateway's estimate: the provider reported
    /// no usage, or the call was cut off before it could.
    #[serde(default)]
    pub estimated_requests: u64,
}

/// The counter of a tenant's stored conversations (headers that are not tombstones).
pub fn conversation_count_key(tenant: &str) -> CounterKey {
    CounterKey {
        pk: format!("T#{tenant}#N"),
        sk: "CONVERSATIONS".into(),
    }
}

/// The persistence interface.
#[async_trait]
pub trait Store: Send + Sync {
    /// Reads a conversation's header, then its live messages newest first
    /// down to `limit(header).from_seq`, stopping after the message that
    /// exceeds the token budget; returns them oldest first. One round trip on
    /// DynamoDB for any conversation that fits a page. A missing or expired
    /// conversation comes back with no messages (and its stored header, so a
    /// new turn can take its place).
    async fn load_window(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
        limit: &WindowFn<'_>,
    ) -> Result<Conversation, StoreError>;

    /// Reads a whole live conversation (tests, small tools).
    async fn load_conversation(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Conversation, StoreError> {
        self.load_window(tenant, id, now, &|m| WindowLimit {
            from_seq: m.first_seq,
            tokens: u64::MAX,
        })
        .await
    }

    /// A page of a live conversation's messages after slot `after` (in the
    /// page's order), at most `limit` of them; `meta` is `None` when the
    /// conversation is missing or expired.
    async fn message_page(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
        order: Order,
        after: Option<u64>,
        limit: usize,
    ) -> Result<MessagePage, StoreError>;

    /// A tenant's live conversations, newest-updated first, after `after`.
    async fn list_conversations(
        &self,
        tenant: &str,
        now: i64,
        after: Option<&ListPosition>,
        limit: usize,
    ) -> Result<ConversationPage, StoreError>;

    /// Reads only the header (`None` when there is none).
    async fn conversation_meta(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ConversationMeta>, StoreError>;

    /// Appends a turn atomically; [`StoreError::Conflict`] if the version moved.
    /// A turn with no messages rewrites only the header (create, update).
    async fn append_turn(&self, tenant: &str, id: &str, turn: &TurnWrite)
    -> Result<(), StoreError>;

    /// Removes a conversation and every message of it; a missing one is fine.
    async fn delete_conversation(&self, tenant: &str, id: &str) -> Result<(), StoreError>;

    /// Removes message slots `from..to` of a conversation (what an expired
    /// life left behind once a new life has started).
    async fn purge_messages(
        &self,
        tenant: &str,
        id: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError>;

    /// Claims an idempotency key, or reports what an earlier request left.
    async fn idempotency_claim(
        &self,
        tenant: &str,
        req: &IdempotencyRequest<'_>,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the response of a claimed key (requests that store no turn).
    async fn idempotency_complete(
        &self,
        tenant: &str,
        done: &IdempotencyDone,
    ) -> Result<(), StoreError>;

    /// Gives a claimed key up (the request failed), so a retry can run.
    async fn idempotency_release(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
    ) -> Result<(), StoreError>;

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
    let json = serde_json::to_vec(msg)
        .map(|v| v.len())
        .unwrap_or(usize::MAX / 2);
    // PK, SK and attribute names around the JSON document.
    tenant.len() + id.len() + 64 + json
}

/// Bytes of a conversation header item.
pub fn meta_item_bytes(tenant: &str, id: &str, meta: &ConversationMeta) -> usize {
    let json = serde_json::to_vec(meta)
        .map(|v| v.len())
        .unwrap_or(usize::MAX / 2);
    // PK, SK, the listing index keys and attribute names.
    2 * (tenant.len() + id.len()) + 160 + json
}

/// Bytes of a message document one DynamoDB item carries; a larger message
/// is split across items (see [`split_parts`]), so no answer a provider can
/// produce is refused for its size after it was paid for.
pub const PART_BYTES: usize = 350_000;

/// Largest response body kept for an idempotent replay (one item); a larger
/// one is replaced by [`unreplayable`].
pub const MAX_REPLAY_BYTES: usize = 300_000;

/// Items one DynamoDB transaction may hold.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Items of a turn besides its messages: header, conversation count, two
/// usage rows (answer and summary), idempotency record.
pub const TURN_OVERHEAD_ITEMS: usize = 5;

/// `text` cut into pieces of at most `max` bytes, on character boundaries.
pub fn split_parts(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

/// Items a message takes on DynamoDB (one per [`PART_BYTES`] of its document).
pub fn message_items_count(msg: &StoredMessage) -> usize {
    let json = serde_json::to_vec(msg).map(|v| v.len()).unwrap_or(0);
    json.div_ceil(PART_BYTES).max(1)
}

/// Items a request message will take once stored: its JSON plus the stored
/// message's own fields (seq, tokens, created), counted without copying it.
pub fn request_message_items(msg: &ChatMessage) -> usize {
    /// More than `{"seq":..,"message":,"tokens":..,"created":..,"model":null}` takes.
    const STORED_FIELDS: usize = 128;
    let mut counter = ByteCount(0);
    let json = serde_json::to_writer(&mut counter, msg).map_or(usize::MAX / 2, |()| counter.0);
    (json + STORED_FIELDS).div_ceil(PART_BYTES).max(1)
}

/// A writer that only counts bytes.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The response kept for replay: itself, or a fixed 409 naming the
/// conversation when it is too large to keep (the turn is stored; the client
/// reads the answer there instead of paying for it twice).
pub fn unreplayable(r: &StoredResponse) -> StoredResponse {
    if r.body.len() <= MAX_REPLAY_BYTES {
        return r.clone();
    }
    let body = serde_json::json!({"error": {
        "message": "this request completed, but its response was too large to keep for replay; read the conversation instead",
        "type": "invalid_request_error",
        "param": "Idempotency-Key",
        "code": "idempotent_response_too_large",
    }});
    StoredResponse {
        status: 409,
        headers: r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-conversation-id"))
            .cloned()
            .collect(),
        body: body.to_string(),
        conversation: r.conversation.clone(),
    }
}

/// Refuses a turn that cannot be stored: a header over the item limit (the
/// header is never split), or more items than one transaction holds. Callers
/// check both before the provider is called (see `context::prepare`).
pub fn check_turn_size(tenant: &str, id: &str, turn: &TurnWrite) -> Result<(), StoreError> {
    let meta = meta_item_bytes(tenant, id, &turn.meta);
    if meta > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge {
            what: "the conversation header (system prompt, summary, metadata)",
            bytes: meta,
            limit: MAX_ITEM_BYTES,
        });
    }
    let items = 1
        + turn.messages.iter().map(message_items_count).sum::<usize>()
        + turn.usage.len()
        + usize::from(turn.idempotency.is_some())
        + usize::from(turn.creates);
    if items > MAX_TRANSACTION_ITEMS {
        return Err(StoreError::TooLarge {
            what: "the turn (items of one transaction)",
            bytes: items,
            limit: MAX_TRANSACTION_ITEMS,
        });
    }
    Ok(())
}

/// The idempotency record as both stores keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of route and body.
    pub fingerprint: String,
    /// The attempt holding the claim.
    pub token: String,
    /// Until when the claim is held.
    pub lease_until: i64,
    /// When the record may be forgotten.
    pub expires_at: i64,
    /// The response, once the request completed.
    #[serde(default)]
    pub response: Option<StoredResponse>,
}

impl IdempotencyRecord {
    /// What a new claim meets when this record is stored (`None`: it may take it).
    pub fn claim_outcome(&self, req: &IdempotencyRequest<'_>) -> Option<IdempotencyClaim> {
        if self.expires_at <= req.now {
            return None;
        }
        if self.fingerprint != req.fingerprint {
            return Some(IdempotencyClaim::Mismatch);
        }
        match &self.response {
            Some(r) => Some(IdempotencyClaim::Replay(r.clone())),
            // A claim whose lease ran out belongs to an attempt that died.
            None if self.lease_until <= req.now => None,
            None => Some(IdempotencyClaim::InProgress),
        }
    }

    /// A fresh claim.
    pub fn claim(req: &IdempotencyRequest<'_>) -> Self {
        Self {
            fingerprint: req.fingerprint.to_owned(),
            token: req.token.to_owned(),
            lease_until: req.lease_until,
            expires_at: req.expires_at,
            response: None,
        }
    }
}

/// Sort key of a conversation in its tenant's listing: newest-updated last
/// in byte order, so listings read it backwards.
pub fn listing_key(updated: i64, id: &str) -> String {
    format!("{:012}#{id}", updated.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Role;

    #[test]
    fn parts_cut_on_character_boundaries_and_rejoin() {
        let text = "aé€𝄞".repeat(1000);
        for max in [4, 5, 7, 100, 4096] {
            let parts = split_parts(&text, max);
            assert!(parts.iter().all(|p| p.len() <= max && !p.is_empty()));
            assert_eq!(parts.concat(), text);
        }
        assert_eq!(split_parts("", 10), [""]);
    }

    #[test]
    fn a_request_message_is_counted_as_it_will_be_stored() {
        for len in [0, 10, PART_BYTES - 200, PART_BYTES, 3 * PART_BYTES] {
            let m = ChatMessage::text(Role::User, "x".repeat(len));
            let stored = message_items_count(&StoredMessage {
                tokens: Some(u64::MAX),
                ..StoredMessage::new(u64::MAX, m.clone(), i64::MAX)
            });
            assert!(request_message_items(&m) >= stored, "{len}");
        }
    }

    #[test]
    fn oversized_replays_become_a_fixed_409() {
        let small = StoredResponse {
            status: 200,
            headers: vec![("x-conversation-id".into(), "c".into())],
            body: "{}".into(),
            conversation: Some(("c".into(), 3)),
        };
        assert_eq!(unreplayable(&small), small);
        let big = StoredResponse {
            body: "x".repeat(MAX_REPLAY_BYTES + 1),
            headers: vec![
                ("x-conversation-id".into(), "c".into()),
                ("content-type".into(), "text/event-stream".into()),
            ],
            ..small.clone()
        };
        let kept = unreplayable(&big);
        assert_eq!(kept.status, 409);
        assert!(kept.body.contains("idempotent_response_too_large"));
        assert_eq!(kept.headers, small.headers);
        assert_eq!(kept.conversation, small.conversation);
    }
}
