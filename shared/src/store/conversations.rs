//! Conversations: the header, the messages, the listing, and the trait
//! that reads and writes them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::window::{NewestFirst, WindowFn, WindowLimit};
use super::{DELETED, IdempotencyDone, StoreError, TOMBSTONE_KEEP_SECS, UsageRow};
use crate::model::{FinishReason, Message, Usage};

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
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "super::format::serialize_system",
        deserialize_with = "super::format::system"
    )]
    pub system: Vec<Message>,
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
    /// The first message the latest turn's window kept, where the next
    /// window starts while the history fits (a stable prompt prefix for
    /// providers' caches); `None` when the window may start anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_from: Option<u64>,
    /// A fork's parent: the conversation whose history up to a slot this one
    /// continues, read from there rather than copied. Own slots start above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
}

/// Where a fork's inherited history lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent conversation.
    pub id: String,
    /// Its life at the fork (a later life is not this history).
    pub life: u64,
    /// The last inherited slot (inclusive).
    pub through_seq: u64,
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

/// How a tool result came about (a result of ctxgate's tool loop), stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// The MCP server that ran it (empty when the model named no known tool).
    pub server: String,
    /// The tool's name on its server.
    pub tool: String,
    /// Time the call took, in milliseconds.
    pub duration_ms: u64,
    /// How it ended (`ok`, `tool_error`, `failed`, `timed_out`, `malformed`,
    /// `unknown_tool`, `invalid_arguments`).
    pub outcome: String,
}

/// One stored message. Read by [`super::format`], which also reads the
/// format written before the model; `format` is written before `message`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    /// Position in the conversation.
    pub seq: u64,
    /// The format `message` and `turn.usage` are written in (see [`super::format`]).
    #[serde(rename = "v")]
    pub format: u32,
    /// The message.
    pub message: Message,
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
    /// Server, tool, duration and outcome (tool results of the tool loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolInfo>,
    /// The fields of the Responses API response this answer ends (echoed
    /// parameters, instructions, metadata), as its front door wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
}

impl StoredMessage {
    /// A message with no answer metadata.
    pub fn new(seq: u64, message: Message, created: i64) -> Self {
        Self {
            seq,
            format: super::format::MESSAGE_FORMAT,
            message,
            tokens: None,
            created,
            model: None,
            turn: None,
            tool: None,
            response: None,
        }
    }

    /// Its tokens, as stored or estimated, with the per-message overhead.
    pub fn window_tokens(&self) -> u64 {
        match self.tokens {
            Some(t) => t + crate::tokens::MESSAGE_OVERHEAD,
            None => crate::tokens::estimate(&self.message),
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
    /// The Responses API record of this turn, written only if none of its id exists.
    pub response: Option<super::ResponseRecord>,
}

/// A change to one stored message slot: the message rewritten (fewer items
/// after a client removed one) or, with `message: None`, the slot removed;
/// written with the new header only if the stored header still has
/// `expected_version`, so it cannot race a turn or another edit.
#[derive(Debug, Clone, Default)]
pub struct MessageEdit {
    /// The version read before the edit.
    pub expected_version: u64,
    /// The header after the edit (its version is `expected_version + 1`).
    pub meta: ConversationMeta,
    /// The slot edited.
    pub seq: u64,
    /// What the slot holds afterwards (its `seq` is `seq`); `None` removes it.
    pub message: Option<StoredMessage>,
}

/// Sort key of a conversation in its tenant's listing: newest-updated last
/// in byte order, so listings read it backwards.
pub fn listing_key(updated: i64, id: &str) -> String {
    format!("{:012}#{id}", updated.max(0))
}

/// Conversations: headers, messages, listings, turns, deletes and purges.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Opens a descending read of a conversation: its header, then its
    /// messages newest first, page by page (see [`window`](super::window)).
    fn newest_first<'a>(&'a self, tenant: &'a str, id: &'a str) -> Box<dyn NewestFirst + 'a>;

    /// Reads a conversation's header, then its live messages newest first
    /// down to `limit(header).from_seq`, stopping after the message that
    /// exceeds the token budget; returns them oldest first. One round trip on
    /// DynamoDB for any conversation that fits a page. A missing or expired
    /// conversation comes back with no messages (and its stored header, so a
    /// new turn can take its place). Backends provide [`Self::newest_first`]
    /// and leave this to the one walk, [`window::walk`](super::window::walk).
    async fn load_window(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
        limit: &WindowFn<'_>,
    ) -> Result<Conversation, StoreError> {
        self.load_window_to(tenant, id, now, limit, None).await
    }

    /// [`Self::load_window`] of the history up to slot `to` (exclusive; a
    /// fork's view of its parent), a fork's inherited history included.
    async fn load_window_to(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
        limit: &WindowFn<'_>,
        to: Option<u64>,
    ) -> Result<Conversation, StoreError> {
        super::window::walk_forks(self, tenant, id, now, limit, to).await
    }

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

    /// Rewrites or removes one message slot with the header, atomically;
    /// [`StoreError::Conflict`] if the version moved. No part of the slot's
    /// old message outlives the edit.
    async fn edit_message(
        &self,
        tenant: &str,
        id: &str,
        edit: &MessageEdit,
    ) -> Result<(), StoreError>;

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
}
