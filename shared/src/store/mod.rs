//! Persistence, one trait per concern, and two implementations that pass one
//! conformance suite: [`dynamo`] (production) and [`embedded`] (local, a
//! file on disk).
//!
//! - [`ConversationStore`]: headers, messages, listings, turns, deletes;
//!   the context-window walk over it is written once, in [`window`].
//! - [`KeyStore`]: API key records.
//! - [`CounterStore`]: atomic counters and usage rows.
//! - [`IdempotencyStore`]: Idempotency-Key claims.
//! - [`McpServerStore`]: tenants' MCP server registrations.
//! - [`AuditStore`]: the audit of federated MCP tool calls.
//! - [`ResponseStore`]: stored responses of the Responses API (turns).
//!
//! [`Store`] is all seven, for what holds the one store of a process.
//! Every key begins with the tenant, so no lookup can cross tenants.

mod audit;
mod conversations;
mod counters;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod format;
mod idempotency;
mod keys;
mod mcp_servers;
mod responses;
mod size;
pub mod window;

pub use audit::{AuditPage, AuditRecord, AuditStore};
pub use conversations::{
    Conversation, ConversationMeta, ConversationPage, ConversationStore, ListPosition, MessageEdit,
    MessagePage, Order, ParentRef, StoredMessage, Summary, ToolInfo, TurnInfo, TurnWrite,
    listing_key,
};
pub use counters::{
    CounterAdd, CounterKey, CounterStore, MAX_BATCH_ITEMS, UsageBatch, UsageRow,
    conversation_count_key,
};
pub use idempotency::{
    IdempotencyClaim, IdempotencyDone, IdempotencyRecord, IdempotencyRequest, IdempotencyStore,
    MAX_REPLAY_BYTES, StoredResponse, unreplayable,
};
pub use keys::{ApiKeyRecord, KeyStore};
pub use mcp_servers::{McpServerRecord, McpServerStore};
pub use responses::{ResponseRecord, ResponseStore};
pub use size::{
    MAX_TRANSACTION_ITEMS, PART_BYTES, TURN_OVERHEAD_ITEMS, check_turn_size, message_item_bytes,
    message_items_count, meta_item_bytes, request_message_items, split_parts,
};
pub use window::{WindowFn, WindowLimit};

/// Everything a process's one store does: all seven concerns. Code that
/// needs only one takes the narrow trait.
pub trait Store:
    ConversationStore
    + KeyStore
    + CounterStore
    + IdempotencyStore
    + McpServerStore
    + AuditStore
    + ResponseStore
{
}

impl<
    T: ConversationStore
        + KeyStore
        + CounterStore
        + IdempotencyStore
        + McpServerStore
        + AuditStore
        + ResponseStore
        + ?Sized,
> Store for T
{
}

/// How many times a write is re-read and re-tried after losing a race.
pub const MAX_WRITE_ATTEMPTS: u32 = 8;

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

/// A store failure (cloned for every caller of a shared read).
#[derive(Debug, Clone, thiserror::Error)]
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
    /// An item of that name already exists (a create lost to an earlier one).
    #[error("an item of that name already exists")]
    Exists,
    /// The backend failed otherwise (corrupt data, a bug, a misconfiguration).
    #[error("store backend error: {0}")]
    Backend(String),
}
