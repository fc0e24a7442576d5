//! The tenant's registered MCP servers' tools, re-exposed through `/mcp`
//! (stub until federation lands).

use std::sync::Arc;

use crate::AppState;
use crate::auth::Principal;

/// The tenant's registered servers' tools the principal may use, as rmcp tools named `{server}__{tool}`.
pub async fn list(state: &Arc<AppState>, principal: &Principal) -> Vec<rmcp::model::Tool> {
    let _ = (state, principal);
    Vec::new()
}

/// Runs a federated call; `None` when `name` is no federated tool (then it is unknown: -32602).
pub async fn call(
    state: &Arc<AppState>,
    principal: &Principal,
    name: &str,
    arguments: Option<rmcp::model::JsonObject>,
) -> Option<rmcp::model::CallToolResult> {
    let _ = (state, principal, name, arguments);
    None
}
