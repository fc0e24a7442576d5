//! MCP servers as tool sources: the gateway-wide `[mcp]` settings and the
//! servers a tenant declares in the config file (`[tenants.X.mcp_servers.NAME]`),
//! for local runs; servers registered through the admin API live in the store.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[mcp]`: how ctxgate reaches MCP servers and runs the tool loop.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Hosts that may be reached over plain `http` (loopback for tests and
    /// local runs); every other server URL must be `https`.
    pub allowed_hosts: Vec<String>,
    /// How long a server's tool list is reused when the server gives no `ttlMs`.
    pub tools_ttl_seconds: u64,
    /// Model steps that may end in tool calls before the model is asked once
    /// more with tools off.
    pub max_tool_steps: u32,
    /// A tool result's largest size in bytes; longer results are cut with a marker.
    pub max_result_bytes: usize,
    /// A tool call's time limit when its server sets none.
    pub default_timeout_seconds: u64,
    /// Prefix of the Secrets Manager secrets holding servers' header values
    /// (`{prefix}/{tenant}/{server}`).
    pub secret_prefix: String,
    /// How long audit rows of federated calls (`GET /v1/admin/mcp-calls`)
    /// are kept, days (DynamoDB's TTL drops them after).
    pub audit_retention_days: u32,
    /// How long a process reuses a tenant's registrations read from the
    /// store: how late a change made through another process (or Lambda
    /// environment) takes effect; a change through this one does at once.
    pub registry_cache_seconds: u64,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            tools_ttl_seconds: 300,
            max_tool_steps: 8,
            max_result_bytes: 64 * 1024,
            default_timeout_seconds: 10,
            secret_prefix: "ctxgate/mcp".to_owned(),
            audit_retention_days: 90,
            registry_cache_seconds: 30,
        }
    }
}

/// A server a tenant declares in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The server's Streamable HTTP endpoint.
    pub url: String,
    /// Headers sent to the server (credentials), by name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Tool names or `*` globs the model may use; absent: every tool.
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// A call's time limit in seconds.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}
