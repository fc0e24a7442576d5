//! The audit of federated MCP tool calls (calls a client of `/mcp` made to a
//! tenant's registered servers): who called which tool, when, how long it
//! took and how it ended; never arguments or results. Newest first.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// One federated call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique within the tenant and sortable by time: `{at_ms:013}#{random}`.
    pub id: String,
    /// The calling key's id (`jwt:{sub}` for a token).
    pub key_id: String,
    /// The server (empty when the tool named no server of the tenant).
    pub server: String,
    /// The tool's name on its server (or the name asked for, when unknown).
    pub tool: String,
    /// When the call started, Unix milliseconds.
    pub at_ms: i64,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
    /// How it ended (`ok`, `tool_error`, `failed`, `timed_out`, `malformed`,
    /// `unknown_tool`, `invalid_arguments`).
    pub outcome: String,
    /// When the row may be dropped, Unix seconds (DynamoDB's TTL).
    pub expires_at: i64,
}

impl AuditRecord {
    /// The id of a row written at `at_ms`: time first, so ids sort by time.
    pub fn new_id(at_ms: i64) -> String {
        format!(
            "{:013}#{}",
            at_ms.max(0),
            hex::encode(crate::ids::random_bytes::<6>())
        )
    }
}

/// A page of audit rows, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    /// The rows.
    pub records: Vec<AuditRecord>,
    /// Whether more rows (older, within the range) follow.
    pub has_more: bool,
}

/// The audit of federated MCP calls, per tenant.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one row.
    async fn record_call(&self, tenant: &str, record: &AuditRecord) -> Result<(), StoreError>;

    /// `tenant`'s rows with `from_ms <= at_ms < to_ms`, newest first, at most
    /// `limit`; `before` (the `id` of the last row of a previous page) starts
    /// past it. DynamoDB reads one partition per UTC day of the range, so
    /// callers bound it (the admin API: the retention plus a day).
    async fn list_calls(
        &self,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError>;
}

/// The exclusive upper sort key of a listing: the cursor's id, or the first
/// id at `to_ms`.
pub fn upper_bound(to_ms: i64, before: Option<&str>) -> String {
    let top = format!("{:013}", to_ms.max(0));
    match before {
        Some(b) if b < top.as_str() => b.to_owned(),
        _ => top,
    }
}

/// The inclusive lower sort key of a listing.
pub fn lower_bound(from_ms: i64) -> String {
    format!("{:013}", from_ms.max(0))
}
