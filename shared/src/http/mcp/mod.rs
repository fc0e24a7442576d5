//! ctxgate's own MCP endpoint (`POST /mcp`).
//!
//! - [`federation`]: the tenant's registered servers' tools, re-exposed.

pub mod federation;
