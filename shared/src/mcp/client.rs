//! One MCP server over Streamable HTTP, through rmcp.

use crate::config::Config;

/// The HTTP client MCP servers are reached with, and the tool-list cache.
pub struct Clients {}

impl Clients {
    /// Built once per cold start.
    pub fn new(_config: &Config) -> Self {
        Self {}
    }
}
