//! Federation: the tools of every MCP server a tenant has (declared in the
//! config file or registered through the admin API) re-exposed through
//! ctxgate's own MCP endpoint as `{server}__{tool}`, filtered by the
//! principal's `mcp_tools` globs, called with the registered credential
//! (never the client's token: the toolbox never sees it) over a connection
//! kept per tenant, server and credential, and audited after the answer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, JsonObject, Tool};

use crate::AppState;
use crate::auth::Principal;
use crate::mcp::registry::MAX_SERVERS_PER_REQUEST;
use crate::mcp::{Outcome, ServerSpec, names};
use crate::store::AuditRecord;

/// The tenant's registered servers' tools the principal may use, as rmcp tools named `{server}__{tool}`.
pub async fn list(state: &Arc<AppState>, principal: &Principal) -> Vec<Tool> {
    let tenant = principal.tenant.as_str();
    let names = server_names(state, tenant).await;
    let specs = resolve(state, tenant, &names).await;
    // A server that is down or slow costs only its own tools: the toolbox
    // lists concurrently, each within its timeout, and logs the reason.
    let toolbox = state.mcp.federated_toolbox(tenant, specs).await;
    toolbox
        .served_tools()
        .iter()
        .filter(|t| names::tool_permitted(&principal.mcp_tools, &t.name))
        .cloned()
        .collect()
}

/// Runs a federated call; `None` when `name` is no federated tool (the endpoint answers -32602).
pub async fn call(
    state: &Arc<AppState>,
    principal: &Principal,
    name: &str,
    arguments: Option<JsonObject>,
) -> Option<CallToolResult> {
    // Federated names are `{server}__{tool}`; server names have no `_`, so
    // the prefix is the server. Other names (ctxgate's own tools) are not
    // federated and not audited here.
    let (server, _) = name.split_once("__")?;
    let at_ms = now_ms();
    let started = Instant::now();
    let tenant = principal.tenant.as_str();
    let mut run = None;
    // A tool the principal's globs do not match is as unknown as a missing one.
    if crate::mcp::registry::is_server_name(server)
        && names::tool_permitted(&principal.mcp_tools, name)
    {
        let specs = resolve(state, tenant, &[server.to_owned()]).await;
        if !specs.is_empty() {
            let toolbox = state.mcp.federated_toolbox(tenant, specs).await;
            run = toolbox.call_served(name, arguments).await;
        }
    }
    match run {
        Some(run) => {
            audit(
                state,
                principal,
                &run.server,
                &run.tool,
                at_ms,
                run.duration,
                run.outcome,
            );
            Some(run.result)
        }
        None => {
            let asked = crate::mcp::client::short(name, 128);
            audit(
                state,
                principal,
                "",
                asked,
                at_ms,
                started.elapsed(),
                Outcome::UnknownTool,
            );
            None
        }
    }
}

/// Every server name the tenant has: declared in the config file, and
/// registered in the store (cached per process for `[mcp]
/// registry_cache_seconds`; a store failure costs the registered ones only).
async fn server_names(state: &AppState, tenant: &str) -> Vec<String> {
    let mut names: BTreeSet<String> = state
        .config
        .tenants
        .get(tenant)
        .map(|t| t.mcp_servers.keys().cloned().collect())
        .unwrap_or_default();
    match state.mcp.registrations(tenant).await {
        Ok(records) => names.extend(records.iter().map(|r| r.name.clone())),
        Err(e) => {
            tracing::warn!(tenant, error = %e, "cannot list the tenant's MCP servers")
        }
    }
    names.into_iter().collect()
}

/// The servers resolved, in batches the resolver takes; a batch that fails
/// is resolved one by one, so one unreadable server costs only itself.
async fn resolve(state: &AppState, tenant: &str, names: &[String]) -> Vec<ServerSpec> {
    let mut out = Vec::with_capacity(names.len());
    for batch in names.chunks(MAX_SERVERS_PER_REQUEST) {
        match state.mcp.resolve(tenant, batch).await {
            Ok(specs) => out.extend(specs),
            Err(_) if batch.len() > 1 => {
                for name in batch {
                    match state.mcp.resolve(tenant, std::slice::from_ref(name)).await {
                        Ok(specs) => out.extend(specs),
                        Err(e) => {
                            tracing::warn!(tenant, server = %name, reason = %e, "MCP server not federated")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(tenant, server = %batch[0], reason = %e, "MCP server not federated")
            }
        }
    }
    out
}

/// Records one call, after the answer: the write runs on its own task,
/// which every usage flush waits for (the local server's at shutdown, the
/// Lambda function's on its shutdown signal), so none is lost with the
/// process; a failed write is logged and never fails the call.
fn audit(
    state: &AppState,
    principal: &Principal,
    server: &str,
    tool: &str,
    at_ms: i64,
    duration: Duration,
    outcome: Outcome,
) {
    let retention = i64::from(state.config.mcp.audit_retention_days.max(1)) * 86_400;
    let record = AuditRecord {
        id: AuditRecord::new_id(at_ms),
        key_id: principal.key_id.clone(),
        server: server.to_owned(),
        tool: tool.to_owned(),
        at_ms,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        outcome: outcome.as_str().to_owned(),
        expires_at: at_ms / 1000 + retention,
    };
    let (store, tenant) = (state.store.clone(), principal.tenant.clone());
    state.usage.spawn_write(async move {
        if let Err(e) = store.record_call(&tenant, &record).await {
            let (server, tool) = (&record.server, &record.tool);
            tracing::warn!(tenant, server, tool, error = %e, "MCP call audit not written");
        }
    });
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_the_serde_names() {
        for o in [
            Outcome::Ok,
            Outcome::ToolError,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::Malformed,
            Outcome::UnknownTool,
            Outcome::InvalidArguments,
        ] {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::from(o.as_str())
            );
        }
    }
}
