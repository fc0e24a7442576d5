//! Tenants' registered MCP servers: where each is and which headers it gets
//! (their names only; the values live with the credentials, never here).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A registered MCP server as stored (exposed as `mcp::registry::ServerRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerRecord {
    /// The tenant's name for it (`[a-z0-9-]{1,32}`), unique per tenant.
    pub name: String,
    /// Its Streamable HTTP endpoint (checked against the URL rule when written).
    pub url: String,
    /// Names of the headers sent to it; their values are credentials, kept elsewhere.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Tool names or `*` globs the model may use; `None`: every tool.
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// A call's time limit in seconds (`None`: the configured default).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last change.
    pub updated: i64,
    /// Starts at 1 and grows by one with each update (compare-and-set).
    #[serde(default)]
    pub version: u64,
}

/// Tenants' MCP server registrations. Keys begin with the tenant, so no
/// lookup crosses tenants.
#[async_trait]
pub trait McpServerStore: Send + Sync {
    /// Stores a new registration; [`StoreError::Exists`] if the tenant already
    /// has one of that name.
    async fn create_mcp_server(
        &self,
        tenant: &str,
        record: &McpServerRecord,
    ) -> Result<(), StoreError>;

    /// One registration of `tenant`.
    async fn get_mcp_server(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<McpServerRecord>, StoreError>;

    /// Every registration of `tenant`, sorted by name (one read).
    async fn list_mcp_servers(&self, tenant: &str) -> Result<Vec<McpServerRecord>, StoreError>;

    /// Replaces a registration if it still has version `expected`: `false`
    /// when it does not exist, [`StoreError::Conflict`] when it changed since
    /// it was read. `record.version` is stored as given (normally `expected + 1`).
    async fn update_mcp_server(
        &self,
        tenant: &str,
        record: &McpServerRecord,
        expected: u64,
    ) -> Result<bool, StoreError>;

    /// Removes a registration; whether it existed.
    async fn delete_mcp_server(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;
}
