//! Atomic counters and usage rows.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// The address of an atomic counter (rate windows, daily budgets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// Partition, always prefixed by tenant or key id.
    pub pk: String,
    /// Window within the partition.
    pub sk: String,
}

/// One addition of [`CounterStore::counters_add`]: `delta` to `key`, only if
/// the result stays at or under `limit` (only growth is limited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterAdd {
    /// The counter.
    pub key: CounterKey,
    /// What to add.
    pub delta: i64,
    /// The most the counter may hold afterwards.
    pub limit: Option<i64>,
    /// When the counter may be forgotten (epoch seconds).
    pub expires_at: Option<i64>,
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
    /// Prompt tokens written to the provider's cache (rows from before
    /// issue 14 read as 0).
    #[serde(default)]
    pub cache_write_tokens: u64,
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
    /// Tool calls that failed (rows of MCP servers, `mcp/{server}`, whose
    /// `requests` are the tool calls made).
    #[serde(default)]
    pub tool_errors: u64,
}

impl UsageRow {
    /// Adds another row's counts to this one (same day and model); the
    /// price version is the other's, the latest.
    pub fn add(&mut self, other: &UsageRow) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cost_micro_usd += other.cost_micro_usd;
        self.estimated_requests += other.estimated_requests;
        self.tool_errors += other.tool_errors;
        self.price_version.clone_from(&other.price_version);
    }
}

/// Usage rows and counter deltas aggregated in memory, written together
/// (see `usage::flush`). Applying the same batch twice counts it once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Unique per batch, kept across retries of the same batch.
    pub id: String,
    /// Rows to add, each with its tenant; one per tenant, day and model.
    pub rows: Vec<(String, UsageRow)>,
    /// Unconditional deltas (budget settlements), one per counter.
    pub counters: Vec<(CounterKey, i64)>,
}

impl UsageBatch {
    /// Items the batch writes (DynamoDB writes one more: its marker).
    pub fn len(&self) -> usize {
        self.rows.len() + self.counters.len()
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most items in one [`UsageBatch`]: a DynamoDB transaction holds 100, one
/// of which is the batch's marker.
pub const MAX_BATCH_ITEMS: usize = 99;

/// The counter of a tenant's stored conversations (headers that are not tombstones).
pub fn conversation_count_key(tenant: &str) -> CounterKey {
    CounterKey {
        pk: format!("T#{tenant}#N"),
        sk: "CONVERSATIONS".into(),
    }
}

/// Atomic counters (rate windows, budgets, conversation counts) and usage rows.
#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Adds `delta` to a counter, atomically, only if the result stays at or
    /// under `limit`; returns `false` (changing nothing) when it would not.
    async fn counter_add(
        &self,
        key: &CounterKey,
        delta: i64,
        limit: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Makes several additions to distinct counters as one conditional
    /// write, all or none: returns the index of one that would pass its
    /// limit (nothing changed then: an addition larger than its limit, else
    /// the first to fail), or `None` when all were made.
    /// (DynamoDB: one `UpdateItem` for one addition, one `TransactWriteItems`
    /// for more; embedded: one write transaction.)
    async fn counters_add(&self, adds: &[CounterAdd]) -> Result<Option<usize>, StoreError>;

    /// Reads a counter (0 when absent).
    async fn counter_get(&self, key: &CounterKey) -> Result<i64, StoreError>;

    /// Adds a request's usage to its tenant/day/model row.
    async fn add_usage(&self, tenant: &str, row: &UsageRow) -> Result<(), StoreError>;

    /// Applies a batch atomically, once: a batch whose id was applied
    /// before succeeds without counting again, so a flush whose outcome is
    /// unknown can be retried as it was.
    async fn add_usage_batch(&self, batch: &UsageBatch) -> Result<(), StoreError>;

    /// A tenant's usage rows for days `from..=to` (`YYYY-MM-DD`), by day then model.
    async fn usage(&self, tenant: &str, from: &str, to: &str) -> Result<Vec<UsageRow>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 14, point 5: rows stored before cache writes were counted read
    // as none; adding sums every count.
    #[test]
    fn rows_without_cache_writes_read_as_zero_and_add_up() {
        let old = r#"{"day":"2026-01-01","model":"m","requests":1,"prompt_tokens":5,
            "completion_tokens":1,"total_tokens":6,"cached_tokens":2,"reasoning_tokens":0,
            "cost_micro_usd":3,"price_version":"v0"}"#;
        let mut row: UsageRow = serde_json::from_str(old).unwrap();
        assert_eq!(row.cache_write_tokens, 0);
        let more = UsageRow {
            requests: 1,
            cached_tokens: 1,
            cache_write_tokens: 4,
            cost_micro_usd: 10,
            price_version: "v1".into(),
            ..row.clone()
        };
        row.add(&more);
        assert_eq!(
            (
                row.requests,
                row.cached_tokens,
                row.cache_write_tokens,
                row.cost_micro_usd,
                row.price_version.as_str()
            ),
            (2, 3, 4, 13, "v1")
        );
    }
}
