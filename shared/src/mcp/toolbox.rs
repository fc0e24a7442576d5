//! A turn's MCP tools: listed (cached per tenant and server), named for the
//! model, and run. One connection per server per turn, opened on first need
//! and closed (cancelling what is in flight) when the Toolbox is dropped;
//! federated calls through `/mcp` instead reuse a connection kept per
//! tenant, server and credential ([`Mcp::federated_toolbox`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{CacheKey, ConnCell, Connection, Failure, Inner, short};
use super::{Mcp, Outcome, ServerSpec, ToolRun, names};
use crate::model::{Image, MediaSource, Tool, ToolCall, ToolResult, ToolResultPart};
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

/// The tools of the servers one turn uses.
#[derive(Default)]
pub struct Toolbox {
    tools: Vec<Tool>,
    /// The same tools as their servers described them, renamed `{server}__{tool}`.
    served: Vec<rmcp::model::Tool>,
    unavailable: Vec<(String, String)>,
    /// Model name -> (index into `links`, the tool's own name).
    routes: HashMap<String, (usize, String)>,
    links: Vec<Link>,
    inner: Option<Arc<Inner>>,
    tenant: String,
}

impl Drop for Toolbox {
    /// Closes the turn's connections. A call abandoned just before (the
    /// client went away) has queued its `notifications/cancelled`: the
    /// connections are dropped on a task of their own after the runtime has
    /// had a few turns to send it, so a legacy server hears it at once rather
    /// than when its session is deleted. Dropping cancels them either way.
    fn drop(&mut self) {
        // Kept connections stay open for the next call.
        let conns: Vec<Connection> = self
            .links
            .drain(..)
            .filter(|l| !l.kept)
            .filter_map(|l| Arc::into_inner(l.conn)?.into_inner())
            .collect();
        if conns.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
                drop(conns);
            });
        }
    }
}

/// One server for the length of a turn (or a federated call).
struct Link {
    spec: ServerSpec,
    key: CacheKey,
    conn: ConnCell,
    /// Whether `conn` is kept across calls (federation).
    kept: bool,
}

impl Link {
    /// The connection, opened on first use.
    async fn conn<'a>(&self, inner: &Inner, cell: &'a ConnCell) -> Result<&'a Connection, Failure> {
        cell.get_or_try_init(|| inner.open(&self.spec, self.kept))
            .await
    }

    /// After a failure through `cell`: a kept connection is no longer kept,
    /// so the next call opens a new one.
    fn failed(&self, inner: &Inner, cell: &ConnCell) {
        if self.kept {
            inner.unpool(&self.key, cell);
        }
    }
}

impl Mcp {
    /// Lists the servers' tools (from the cache when fresh). A server that
    /// cannot be listed is left out and reported by [`Toolbox::unavailable`].
    pub async fn toolbox(&self, tenant: &str, servers: Vec<ServerSpec>) -> Toolbox {
        self.open_toolbox(tenant, servers, false).await
    }

    /// [`Mcp::toolbox`] for federated calls: each server's connection is
    /// kept across calls in this process (per tenant, server and
    /// credential), so a call makes no `server/discover` or `initialize` of
    /// its own.
    pub async fn federated_toolbox(&self, tenant: &str, servers: Vec<ServerSpec>) -> Toolbox {
        self.open_toolbox(tenant, servers, true).await
    }

    async fn open_toolbox(&self, tenant: &str, servers: Vec<ServerSpec>, kept: bool) -> Toolbox {
        let inner = self.clients.inner.clone();
        let links: Vec<Link> = servers
            .into_iter()
            .map(|spec| {
                let key = Inner::key(tenant, &spec);
                let conn = if kept {
                    inner.pooled(&key)
                } else {
                    ConnCell::default()
                };
                Link {
                    key,
                    spec,
                    conn,
                    kept,
                }
            })
            .collect();
        // Servers are listed concurrently, each bounded by its own timeout.
        let lists = futures_util::future::join_all(links.iter().map(|link| {
            let inner = &inner;
            async move {
                if let Some(tools) = inner.cached(&link.key) {
                    return Ok::<_, Failure>(tools);
                }
                let timeout = link.spec.timeout;
                let listed = tokio::time::timeout(timeout, async {
                    let conn = link.conn(inner, &link.conn).await?;
                    conn.list_all_tools_with_cache_hint()
                        .await
                        .map_err(|e| Failure::from_error(&e))
                })
                .await
                .unwrap_or(Err(Failure::TimedOut(timeout)))
                .inspect_err(|_| link.failed(inner, &link.conn))?;
                let tools = Arc::new(listed.items);
                inner.store(link.key.clone(), tools.clone(), listed.ttl_ms);
                Ok(tools)
            }
        }))
        .await;

        let mut unavailable = Vec::new();
        // (link index, tool) in offer order: the request's server order, then the server's.
        let mut offered = Vec::new();
        for (i, (link, list)) in links.iter().zip(lists).enumerate() {
            match list {
                Ok(tools) => {
                    let allowed = link.spec.allowed_tools.as_deref();
                    for t in tools.iter().filter(|t| names::allowed(allowed, &t.name)) {
                        offered.push((i, t.clone()));
                    }
                }
                Err(failure) => {
                    let reason = failure.reason();
                    tracing::warn!(tenant, server = %link.spec.name, reason = %reason, "MCP server unavailable");
                    unavailable.push((link.spec.name.clone(), reason));
                }
            }
        }
        let pairs: Vec<(String, String)> = offered
            .iter()
            .map(|(i, t)| (links[*i].spec.name.clone(), t.name.to_string()))
            .collect();
        let model_names = names::assign(&pairs);
        let mut tools = Vec::with_capacity(offered.len());
        let mut served = Vec::with_capacity(offered.len());
        let mut routes = HashMap::with_capacity(offered.len());
        for ((i, t), name) in offered.into_iter().zip(model_names) {
            tools.push(model_tool(&name, &t));
            let mut renamed = t.clone();
            renamed.name = name.clone().into();
            served.push(renamed);
            routes.insert(name, (i, t.name.to_string()));
        }
        Toolbox {
            tools,
            served,
            unavailable,
            routes,
            links,
            inner: Some(inner),
            tenant: tenant.to_owned(),
        }
    }
}

/// An MCP tool as the model sees it.
fn model_tool(name: &str, t: &rmcp::model::Tool) -> Tool {
    let description = t
        .description
        .as_deref()
        .map(str::to_owned)
        .or_else(|| t.title.clone())
        .or_else(|| t.annotations.as_ref().and_then(|a| a.title.clone()));
    let mut schema = Value::Object((*t.input_schema).clone());
    if schema.get("type").is_none() {
        schema["type"] = Value::from("object");
    }
    if schema.get("properties").is_none() {
        schema["properties"] = Value::Object(Default::default());
    }
    Tool::Function {
        name: name.to_owned(),
        description,
        parameters: Some(schema),
        strict: None,
        cache: None,
    }
}

impl Toolbox {
    /// The tools as the model sees them (`{server}__{tool}`), in a stable order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The same tools as their servers described them (title, schemas,
    /// annotations kept), named `{server}__{tool}`, in the same order.
    pub fn served_tools(&self) -> &[rmcp::model::Tool] {
        &self.served
    }

    /// Runs a call on the server behind `name` and returns its result as the
    /// server gave it (text cut at `max_result_bytes`); `None` when `name` is
    /// none of these tools. A failure is an `isError` result with a short,
    /// safe reason.
    pub async fn call_served(
        &self,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> Option<ServedRun> {
        use tracing::Instrument;
        let server = self.server_of(name)?;
        let span = crate::trace::tool_span(name, "", server);
        let run = self
            .run_served(name, arguments)
            .instrument(span.clone())
            .await?;
        if !run.outcome.is_ok() {
            crate::trace::failed(&span, run.outcome.as_str());
        }
        Some(run)
    }

    async fn run_served(
        &self,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> Option<ServedRun> {
        let (i, tool) = self.routes.get(name)?;
        let inner = self.inner.as_deref()?;
        let link = &self.links[*i];
        let server = link.spec.name.as_str();
        let started = Instant::now();
        let timeout = link.spec.timeout;
        let mut params = CallToolRequestParams::new(tool.clone());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let call = async |cell: &ConnCell| {
            let conn = link.conn(inner, cell).await?;
            conn.call_tool(params.clone())
                .await
                .map_err(|e| Failure::from_error(&e))
        };
        // A kept connection may have gone stale while the process slept (a
        // frozen Lambda environment): a call that could not reach the
        // server through it is tried once more on a new one.
        let reused = link.kept && link.conn.initialized();
        let mut used = link.conn.clone();
        let answer = tokio::time::timeout(timeout, async {
            match call(&used).await {
                Err(Failure::Connect | Failure::Closed) if reused => {
                    link.failed(inner, &used);
                    used = inner.pooled(&link.key);
                    call(&used).await
                }
                other => other,
            }
        })
        .await
        .unwrap_or(Err(Failure::TimedOut(timeout)));
        let duration = started.elapsed();
        let (outcome, result) = match answer {
            Ok(result) => {
                let outcome = if result.is_error == Some(true) {
                    Outcome::ToolError
                } else {
                    Outcome::Ok
                };
                (outcome, cap_result(result, inner.max_result_bytes))
            }
            Err(failure) => {
                let outcome = outcome_of(&failure);
                inner.forget(&link.key);
                link.failed(inner, &used);
                let reason = failure.reason();
                tracing::warn!(tenant = %self.tenant, server, tool = %tool, outcome = ?outcome, reason = %reason, "MCP tool call failed");
                (
                    outcome,
                    CallToolResult::error(vec![ContentBlock::text(format!(
                        "calling {tool} on {server} failed: {reason}"
                    ))]),
                )
            }
        };
        crate::metrics::tool_call(outcome.is_ok());
        Some(ServedRun {
            server: server.to_owned(),
            tool: tool.clone(),
            outcome,
            duration,
            result,
        })
    }

    /// Servers whose tools could not be listed, with why (no secrets in it).
    pub fn unavailable(&self) -> &[(String, String)] {
        &self.unavailable
    }

    /// Whether `name` (as the model saw it) is one of these tools.
    pub fn owns(&self, name: &str) -> bool {
        self.routes.contains_key(name)
    }

    /// The server and the tool's own name behind a model's tool name.
    pub fn route(&self, name: &str) -> Option<(&str, &str)> {
        self.routes
            .get(name)
            .map(|(i, tool)| (self.links[*i].spec.name.as_str(), tool.as_str()))
    }

    /// The server offering the tool the model calls `name`.
    pub fn server_of(&self, name: &str) -> Option<&str> {
        self.route(name).map(|(server, _)| server)
    }

    /// Runs one call; never fails: a failure is an error result the model
    /// sees. Traced as `execute_tool {name}`.
    pub async fn call(&self, call: &ToolCall) -> ToolRun {
        use tracing::Instrument;
        let server = self.server_of(&call.name).unwrap_or_default();
        let span = crate::trace::tool_span(&call.name, &call.id, server);
        let run = self.run_call(call).instrument(span.clone()).await;
        if !run.outcome.is_ok() {
            crate::trace::failed(&span, run.outcome.as_str());
        }
        run
    }

    async fn run_call(&self, call: &ToolCall) -> ToolRun {
        let (Some((i, tool)), Some(inner)) = (self.routes.get(&call.name), self.inner.as_deref())
        else {
            return run(
                call,
                "",
                &call.name,
                Outcome::UnknownTool,
                Duration::ZERO,
                text_parts(format!(
                    "unknown tool {:?}: no MCP server of this request offers it",
                    short(&call.name, 128)
                )),
            );
        };
        let link = &self.links[*i];
        let server = link.spec.name.as_str();
        let arguments = match parse_arguments(&call.arguments) {
            Ok(a) => a,
            Err(e) => {
                return run(
                    call,
                    server,
                    tool,
                    Outcome::InvalidArguments,
                    Duration::ZERO,
                    text_parts(format!(
                        "the arguments of {} are not a JSON object: {e}",
                        call.name
                    )),
                );
            }
        };
        let started = Instant::now();
        let timeout = link.spec.timeout;
        let answer = tokio::time::timeout(timeout, async {
            let conn = link.conn(inner, &link.conn).await?;
            let params = CallToolRequestParams::new(tool.clone()).with_arguments(arguments);
            conn.call_tool(params)
                .await
                .map_err(|e| Failure::from_error(&e))
        })
        .await
        .unwrap_or(Err(Failure::TimedOut(timeout)));
        let duration = started.elapsed();
        let (outcome, content) = match answer {
            Ok(result) => convert(result, inner.max_result_bytes),
            Err(failure) => {
                let outcome = outcome_of(&failure);
                // The list may be what is wrong (a renamed tool, a moved
                // server): the next turn lists again.
                inner.forget(&link.key);
                let reason = failure.reason();
                tracing::warn!(tenant = %self.tenant, server, tool = %tool, outcome = ?outcome, reason = %reason, "MCP tool call failed");
                (
                    outcome,
                    text_parts(format!("calling {tool} on {server} failed: {reason}")),
                )
            }
        };
        run(call, server, tool, outcome, duration, content)
    }
}

/// One call run for a client of ctxgate's own MCP endpoint.
#[derive(Debug, Clone)]
pub struct ServedRun {
    /// The server.
    pub server: String,
    /// The tool's name on its server.
    pub tool: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Time from sending the call to its result (or failure).
    pub duration: Duration,
    /// The server's result (or an `isError` one saying why there is none).
    pub result: CallToolResult,
}

/// A server's result with its text cut like the loop's ([`cap`]);
/// `structuredContent` longer than `max_bytes` (as JSON) is dropped, since a
/// cut object would not parse, and a text block says so.
pub fn cap_result(mut result: CallToolResult, max_bytes: usize) -> CallToolResult {
    let total: usize = result
        .content
        .iter()
        .filter_map(|b| b.as_text().map(|t| t.text.len()))
        .sum();
    if total > max_bytes {
        let mut left = max_bytes;
        let mut marked = false;
        let mut out = Vec::with_capacity(result.content.len());
        for block in std::mem::take(&mut result.content) {
            let Some(text) = block.as_text().map(|t| t.text.clone()) else {
                out.push(block);
                continue;
            };
            if marked {
                continue;
            }
            if text.len() <= left {
                left -= text.len();
                out.push(block);
                continue;
            }
            let kept = short(&text, left);
            let shown = max_bytes - left + kept.len();
            out.push(ContentBlock::text(format!(
                "{kept}\n[ctxgate: result truncated, {shown} of {total} bytes shown]"
            )));
            marked = true;
            left = 0;
        }
        result.content = out;
    }
    if let Some(structured) = &result.structured_content {
        let size = structured.to_string().len();
        if size > max_bytes {
            result.structured_content = None;
            result.content.push(ContentBlock::text(format!(
                "[ctxgate: structuredContent of {size} bytes dropped, over the {max_bytes}-byte limit]"
            )));
        }
    }
    result
}

fn run(
    call: &ToolCall,
    server: &str,
    tool: &str,
    outcome: Outcome,
    duration: Duration,
    content: Vec<ToolResultPart>,
) -> ToolRun {
    ToolRun {
        server: server.to_owned(),
        tool: tool.to_owned(),
        outcome,
        duration,
        result: ToolResult {
            call_id: call.id.clone(),
            content,
            is_error: !outcome.is_ok(),
            cache: None,
        },
    }
}

fn text_parts(text: String) -> Vec<ToolResultPart> {
    vec![ToolResultPart::Text { text, cache: None }]
}

/// The model's `arguments`: a JSON object (empty text means `{}`).
pub fn parse_arguments(arguments: &str) -> Result<serde_json::Map<String, Value>, String> {
    if arguments.trim().is_empty() {
        return Ok(Default::default());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected an object, got {}", kind(&other))),
        Err(e) => Err(e.to_string()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A tool's answer as the model gets it, its text cut at `max_bytes`.
pub fn convert(result: CallToolResult, max_bytes: usize) -> (Outcome, Vec<ToolResultPart>) {
    let outcome = if result.is_error == Some(true) {
        Outcome::ToolError
    } else {
        Outcome::Ok
    };
    let mut parts = Vec::new();
    for block in result.content {
        match block {
            ContentBlock::Text(t) => parts.push(ToolResultPart::Text {
                text: t.text,
                cache: None,
            }),
            ContentBlock::Image(i) => parts.push(ToolResultPart::Image(Image {
                source: MediaSource::Base64 {
                    media_type: i.mime_type,
                    data: i.data,
                },
                detail: None,
                cache: None,
            })),
            ContentBlock::Audio(a) => parts.push(ToolResultPart::Text {
                text: format!(
                    "[audio ({}, {} bytes of base64) not shown]",
                    a.mime_type,
                    a.data.len()
                ),
                cache: None,
            }),
            ContentBlock::Resource(r) => {
                let text = match r.resource {
                    ResourceContents::TextResourceContents { text, .. } => text,
                    ResourceContents::BlobResourceContents { uri, mime_type, .. } => format!(
                        "[embedded resource {uri} ({}) not shown]",
                        mime_type.as_deref().unwrap_or("binary")
                    ),
                    _ => "[embedded resource of an unknown kind not shown]".to_owned(),
                };
                parts.push(ToolResultPart::Text { text, cache: None })
            }
            ContentBlock::ResourceLink(link) => {
                let v = serde_json::to_value(&link).unwrap_or_default();
                let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                parts.push(ToolResultPart::Text {
                    text: format!("[resource link: {} <{}>]", field("name"), field("uri")),
                    cache: None,
                })
            }
            // A content type newer than this client: said, not dropped silently.
            #[allow(unreachable_patterns)]
            _ => parts.push(ToolResultPart::Text {
                text: "[content of an unknown type not shown]".to_owned(),
                cache: None,
            }),
        }
    }
    let has_text = parts
        .iter()
        .any(|p| matches!(p, ToolResultPart::Text { .. }));
    if !has_text && let Some(structured) = result.structured_content {
        parts.push(ToolResultPart::Text {
            text: structured.to_string(),
            cache: None,
        });
    }
    if parts.is_empty() {
        let text = if outcome == Outcome::ToolError {
            "the tool reported an error"
        } else {
            "(the tool returned no content)"
        };
        parts.push(ToolResultPart::Text {
            text: text.to_owned(),
            cache: None,
        });
    }
    (outcome, cap(parts, max_bytes))
}

/// Cuts the text parts once their total passes `max_bytes` (at a char
/// boundary), with a visible marker; later text parts are dropped.
pub fn cap(parts: Vec<ToolResultPart>, max_bytes: usize) -> Vec<ToolResultPart> {
    let total: usize = parts
        .iter()
        .map(|p| match p {
            ToolResultPart::Text { text, .. } => text.len(),
            _ => 0,
        })
        .sum();
    if total <= max_bytes {
        return parts;
    }
    let mut left = max_bytes;
    let mut out = Vec::with_capacity(parts.len());
    let mut marked = false;
    for part in parts {
        match part {
            ToolResultPart::Text { text, cache } => {
                if marked {
                    continue;
                }
                if text.len() <= left {
                    left -= text.len();
                    out.push(ToolResultPart::Text { text, cache });
                    continue;
                }
                let kept = short(&text, left);
                let shown = max_bytes - left + kept.len();
                out.push(ToolResultPart::Text {
                    text: format!(
                        "{kept}\n[ctxgate: result truncated, {shown} of {total} bytes shown]"
                    ),
                    cache,
                });
                marked = true;
                left = 0;
            }
            other => out.push(other),
        }
    }
    out
}

/// The outcome a failed call is audited and counted as.
fn outcome_of(failure: &Failure) -> Outcome {
    match failure {
        Failure::TimedOut(_) => Outcome::TimedOut,
        Failure::Malformed => Outcome::Malformed,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolResult, ContentBlock};
    use serde_json::json;

    fn texts(parts: &[ToolResultPart]) -> Vec<String> {
        parts
            .iter()
            .filter_map(|p| match p {
                ToolResultPart::Text { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The tool loop runs toolboxes and calls on any task.
    #[allow(dead_code)]
    fn futures_are_send(mcp: &Mcp, tb: &Toolbox, call: &ToolCall) {
        fn send<T: Send>(_: T) {}
        fn send_sync<T: Send + Sync>() {}
        send(mcp.toolbox("t", Vec::new()));
        send(tb.call(call));
        send_sync::<Toolbox>();
    }

    #[test]
    fn tools_reach_the_model_as_functions() {
        let mut t = rmcp::model::Tool::default();
        t.name = "get.customer".into();
        t.title = Some("Customer".to_owned());
        let Tool::Function {
            name,
            description,
            parameters,
            strict,
            cache,
        } = model_tool("crm__get_customer", &t)
        else {
            panic!("a function")
        };
        assert_eq!(name, "crm__get_customer");
        assert_eq!(description.as_deref(), Some("Customer"));
        assert_eq!(
            parameters,
            Some(json!({"type": "object", "properties": {}}))
        );
        assert_eq!((strict, cache), (None, None));
        t.description = Some("Reads a customer".into());
        t.input_schema = std::sync::Arc::new(
            json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        let Tool::Function {
            description,
            parameters,
            ..
        } = model_tool("x", &t)
        else {
            panic!("a function")
        };
        assert_eq!(description.as_deref(), Some("Reads a customer"));
        assert_eq!(parameters.unwrap()["required"], json!(["id"]));
    }

    #[test]
    fn arguments_must_be_an_object() {
        assert!(parse_arguments("").unwrap().is_empty());
        assert!(parse_arguments("  ").unwrap().is_empty());
        assert_eq!(parse_arguments(r#"{"id":7}"#).unwrap()["id"], 7);
        assert!(parse_arguments("[1]").unwrap_err().contains("an array"));
        assert!(parse_arguments("{nope").is_err());
    }

    #[test]
    fn content_maps_to_parts() {
        let result = CallToolResult::success(vec![
            ContentBlock::text("hello"),
            ContentBlock::image("aGk=", "image/png"),
        ]);
        let (outcome, parts) = convert(result, 1000);
        assert_eq!(outcome, Outcome::Ok);
        assert_eq!(texts(&parts), ["hello"]);
        assert!(matches!(
            &parts[1],
            ToolResultPart::Image(Image { source: MediaSource::Base64 { media_type, data }, .. })
                if media_type == "image/png" && data == "aGk="
        ));
    }

    #[test]
    fn structured_content_is_text_when_there_is_no_text() {
        let result = CallToolResult::structured(json!({"orders": [1, 2]}));
        let (_, parts) = convert(result.clone(), 1000);
        let t = texts(&parts);
        assert_eq!(t.len(), 1);
        let v: Value = serde_json::from_str(&t[0]).unwrap();
        assert_eq!(v, json!({"orders": [1, 2]}));
        let mut with_text = CallToolResult::success(vec![ContentBlock::text("two orders")]);
        with_text.structured_content = Some(json!({"orders": [1, 2]}));
        assert_eq!(texts(&convert(with_text, 1000).1), ["two orders"]);
    }

    #[test]
    fn errors_are_flagged() {
        let (outcome, parts) = convert(CallToolResult::error(vec![ContentBlock::text("no")]), 99);
        assert_eq!(outcome, Outcome::ToolError);
        assert_eq!(texts(&parts), ["no"]);
        let (_, parts) = convert(CallToolResult::error(vec![]), 99);
        assert_eq!(texts(&parts), ["the tool reported an error"]);
    }

    #[test]
    fn served_results_are_cut_like_the_loops() {
        let mut r = CallToolResult::success(vec![
            ContentBlock::text("é".repeat(100)),
            ContentBlock::image("aGk=", "image/png"),
            ContentBlock::text("more"),
        ]);
        r.structured_content = Some(json!({"k": "v"}));
        let cut = cap_result(r.clone(), 51);
        assert_eq!(cut.content.len(), 2);
        assert_eq!(
            cut.content[0].as_text().unwrap().text,
            format!(
                "{}\n[ctxgate: result truncated, 50 of 204 bytes shown]",
                "é".repeat(25)
            )
        );
        assert!(cut.content[1].as_image().is_some());
        assert_eq!(cut.structured_content, Some(json!({"k": "v"})));
        assert_eq!(cap_result(r.clone(), 1000), r);
        // Structured content over the limit is dropped, and says so.
        let mut big = CallToolResult::structured(json!({"x": "y".repeat(100)}));
        big.content.clear();
        let cut = cap_result(big, 50);
        assert_eq!(cut.structured_content, None);
        assert!(cut.content[0].as_text().unwrap().text.contains("dropped"));
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary_with_a_marker() {
        let long = "é".repeat(100); // 200 bytes
        let (_, parts) = convert(
            CallToolResult::success(vec![ContentBlock::text(long), ContentBlock::text("more")]),
            51,
        );
        let t = texts(&parts);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0],
            format!(
                "{}\n[ctxgate: result truncated, 50 of 204 bytes shown]",
                "é".repeat(25)
            )
        );
    }
}
