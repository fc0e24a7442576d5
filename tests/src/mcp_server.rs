//! A real MCP server on loopback (rmcp's server side), in the current
//! revision (2026-07-28, stateless) or as a legacy server (2025-06-18:
//! `initialize`, sessions), with what it received open to the tests.
//!
//! Tools: `get_customer {id}` (text), `find_orders {customer}` (structured
//! content only), `photo` (a PNG), `big` (`size` bytes of text), `broken`
//! (an `isError` result), `hang` (answers only once cancelled), `echo`
//! (its arguments back as text), `garbled` (an answer that is no tool
//! result). `tools/list` is paginated two tools a page.
//! Every request must carry `Authorization: Bearer good-token` (401 without).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ctxgate::mcp::ServerSpec;
use http::{HeaderMap, StatusCode};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, DiscoverResult,
    ErrorCode, ErrorData, JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{MaybeSendFuture, RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The credential the fixture accepts.
pub const GOOD_TOKEN: &str = "Bearer good-token";

/// The protocol revision the fixture speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// 2026-07-28: `server/discover`, no `initialize`, no session.
    Current,
    /// 2025-06-18: `initialize`, then `Mcp-Session-Id` on every request.
    Legacy,
}

/// Settings of a fixture beyond its revision.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `ttlMs` on every `tools/list` page.
    pub ttl_ms: Option<u64>,
    /// `tools/list` never answers (until cancelled).
    pub list_hangs: bool,
    /// `tools/list` answers with something that is no tool list.
    pub list_garbled: bool,
}

/// One HTTP request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its headers.
    pub headers: HeaderMap,
    /// The JSON-RPC method (empty for a GET or DELETE, or a response).
    pub method: String,
    /// Its `Mcp-Session-Id`, if any.
    pub session: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// Time from the request's arrival to the response's headers.
    pub handling: Duration,
}

#[derive(Default)]
struct Probe {
    legacy: bool,
    list_garbled: bool,
    revoked: std::sync::atomic::AtomicBool,
    seen: Mutex<Vec<Seen>>,
    calls: Mutex<Vec<String>>,
    lists: AtomicUsize,
    hang_started: Notify,
    cancelled: Notify,
    cancels: AtomicUsize,
    /// Session ids answered 404 from now on, as an expired session is.
    expired: Mutex<std::collections::HashSet<String>>,
}

#[derive(Clone)]
struct Crm {
    revision: Revision,
    options: Options,
    probe: Arc<Probe>,
}

/// A running fixture; stopped when dropped.
pub struct McpFixture {
    addr: SocketAddr,
    probe: Arc<Probe>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    cancel: Box<dyn Fn() + Send + Sync>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl McpFixture {
    /// Starts a server of `revision` with default options.
    pub async fn start(revision: Revision) -> Self {
        Self::start_with(revision, Options::default()).await
    }

    /// Starts a server of `revision`.
    pub async fn start_with(revision: Revision, options: Options) -> Self {
        let probe = Arc::new(Probe {
            legacy: revision == Revision::Legacy,
            list_garbled: options.list_garbled,
            ..Probe::default()
        });
        let crm = Crm {
            revision,
            options,
            probe: probe.clone(),
        };
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(revision == Revision::Legacy)
            .with_json_response(revision == Revision::Current);
        let token = config.cancellation_token.clone();
        let service: StreamableHttpService<Crm, LocalSessionManager> =
            StreamableHttpService::new(move || Ok(crm.clone()), Default::default(), config);
        let router = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn_with_state(probe.clone(), observe));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // As production servers do (uvicorn, for one): without it, Nagle
        // holds an SSE answer's last chunk for the client's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            probe,
            stop: Some(stop),
            cancel: Box::new(move || token.cancel()),
            task: Some(task),
        }
    }

    /// The server's endpoint.
    pub fn url(&self) -> url::Url {
        format!("http://{}/mcp", self.addr).parse().unwrap()
    }

    /// A spec for this server named `name`, with the good token.
    pub fn spec(&self, name: &str) -> ServerSpec {
        ServerSpec {
            name: name.to_owned(),
            url: self.url(),
            headers: vec![("Authorization".to_owned(), GOOD_TOKEN.to_owned())],
            allowed_tools: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// The tools called, in order.
    pub fn calls(&self) -> Vec<String> {
        self.probe.calls.lock().unwrap().clone()
    }

    /// `tools/list` requests answered (one per page).
    pub fn lists(&self) -> usize {
        self.probe.lists.load(Ordering::SeqCst)
    }

    /// Every request received.
    pub fn seen(&self) -> Vec<Seen> {
        self.probe.seen.lock().unwrap().clone()
    }

    /// The headers of every request received.
    pub fn headers_seen(&self) -> Vec<HeaderMap> {
        self.seen().into_iter().map(|s| s.headers).collect()
    }

    /// The JSON-RPC methods received, in order.
    pub fn methods(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.method).collect()
    }

    /// How many `initialize` requests arrived.
    pub fn initializes(&self) -> usize {
        self.methods().iter().filter(|m| *m == "initialize").count()
    }

    /// How many `hang` calls were cancelled so far.
    pub fn cancels(&self) -> usize {
        self.probe.cancels.load(Ordering::SeqCst)
    }

    /// Resolves once a `hang` call has started.
    pub async fn hang_started(&self) {
        self.probe.hang_started.notified().await
    }

    /// Resolves once a `hang` call has been cancelled (immediately if one was).
    pub async fn cancelled(&self) {
        let notified = self.probe.cancelled.notified();
        if self.cancels() > 0 {
            return;
        }
        notified.await
    }

    /// Expires every session so far: requests carrying one are answered
    /// 404, as the protocol says a server answers an expired session.
    pub fn expire_sessions(&self) {
        let sessions = self.seen().into_iter().filter_map(|s| s.session);
        self.probe.expired.lock().unwrap().extend(sessions);
    }

    /// How many `server/discover` requests arrived.
    pub fn discovers(&self) -> usize {
        self.methods()
            .iter()
            .filter(|m| *m == "server/discover")
            .count()
    }

    /// From now on every request is answered 401, good token or not.
    pub fn revoke(&self) {
        self.probe.revoked.store(true, Ordering::SeqCst);
    }

    /// Stops the server and waits until its port is closed.
    pub async fn stop(&mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn signal_stop(&mut self) {
        (self.cancel)();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for McpFixture {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Records each request, and answers 401 without the good token.
async fn observe(State(probe): State<Arc<Probe>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let method = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let headers = parts.headers.clone();
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(GOOD_TOKEN)
        && !probe.revoked.load(Ordering::SeqCst);
    let id = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("id").cloned());
    let tool = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["params"]["name"].as_str().map(str::to_owned));
    let expired = session
        .as_ref()
        .is_some_and(|s| probe.expired.lock().unwrap().contains(s));
    let response = if expired {
        (StatusCode::NOT_FOUND, "session expired").into_response()
    } else if authorized && method == "tools/list" && probe.list_garbled {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "result": {"tools": "none today"}}).to_string(),
        )
            .into_response()
    } else if authorized && method == "tools/call" && tool.as_deref() == Some("garbled") {
        probe.calls.lock().unwrap().push("garbled".to_owned());
        // A result that is no tool result: content must be a list.
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "result": {"content": "oops", "isError": "no"}})
                .to_string(),
        )
            .into_response()
    } else if authorized && probe.legacy && method == "server/discover" {
        // What a legacy server built with the Python SDK's stateful session
        // manager answers a request that is not `initialize` and has no session.
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({"jsonrpc": "2.0", "id": "server-error",
                   "error": {"code": -32600, "message": "Bad Request: Missing session ID"}})
            .to_string(),
        )
            .into_response()
    } else if authorized {
        next.run(Request::from_parts(parts, Body::from(bytes)))
            .await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer realm=\"crm\"")],
            "no",
        )
            .into_response()
    };
    probe.seen.lock().unwrap().push(Seen {
        headers,
        method,
        session,
        status: response.status().as_u16(),
        handling: started.elapsed(),
    });
    response
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().unwrap().clone())
}

fn tools() -> Vec<Tool> {
    let object = |props: Value| json!({"type": "object", "properties": props});
    vec![
        Tool::new(
            "get_customer",
            "A customer by id",
            schema(
                json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}),
            ),
        ),
        Tool::new(
            "find_orders",
            "Orders of a customer",
            schema(object(json!({"customer": {"type": "string"}}))),
        ),
        Tool::new("photo", "A customer's photo", schema(object(json!({})))),
        Tool::new(
            "big",
            "A long text",
            schema(object(json!({"size": {"type": "integer"}}))),
        ),
        Tool::new("broken", "Always fails", schema(object(json!({})))),
        Tool::new("hang", "Never answers", schema(object(json!({})))),
        Tool::new("echo", "Its arguments back", schema(object(json!({})))),
        Tool::new(
            "garbled",
            "Answers with no tool result",
            schema(object(json!({}))),
        ),
    ]
}

/// A one-pixel PNG, base64.
pub const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

impl ServerHandler for Crm {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        match self.revision {
            Revision::Current => Cow::Borrowed(&[ProtocolVersion::V_2026_07_28]),
            Revision::Legacy => Cow::Borrowed(&[ProtocolVersion::V_2025_06_18]),
        }
    }

    fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, ErrorData>> + MaybeSendFuture + '_ {
        let legacy = self.revision == Revision::Legacy;
        let info = self.get_info();
        let versions = self.supported_protocol_versions().into_owned();
        let _ = context;
        std::future::ready(if legacy {
            Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "Method not found",
                None,
            ))
        } else {
            Ok(DiscoverResult::from_server_info(versions, info))
        })
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.probe.lists.fetch_add(1, Ordering::SeqCst);
        if self.options.list_hangs {
            context.ct.cancelled().await;
        }
        let all = tools();
        let start: usize = request
            .and_then(|r| r.cursor)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let end = (start + 2).min(all.len());
        let mut page = ListToolsResult::with_all_items(all[start..end].to_vec());
        if end < all.len() {
            page.next_cursor = Some(end.to_string());
        }
        if let Some(ttl) = self.options.ttl_ms {
            page = page.with_ttl_ms(ttl);
        }
        Ok(page)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        self.probe.calls.lock().unwrap().push(name.clone());
        let args = request.arguments.unwrap_or_default();
        let result = match name.as_str() {
            "get_customer" => {
                let id = args.get("id").and_then(Value::as_str).unwrap_or("?");
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "customer {id}: Ada Lovelace, ada@example.com"
                ))])
            }
            "find_orders" => {
                let mut r = CallToolResult::success(vec![]);
                r.structured_content = Some(json!({"orders": [{"id": 1, "total": 12.5}]}));
                r
            }
            "photo" => CallToolResult::success(vec![ContentBlock::image(PNG, "image/png")]),
            "big" => {
                let size = args.get("size").and_then(Value::as_u64).unwrap_or(100_000);
                CallToolResult::success(vec![ContentBlock::text("x".repeat(size as usize))])
            }
            "broken" => {
                CallToolResult::error(vec![ContentBlock::text("the CRM database is offline")])
            }
            "hang" => {
                self.probe.hang_started.notify_one();
                context.ct.cancelled().await;
                self.probe.cancels.fetch_add(1, Ordering::SeqCst);
                self.probe.cancelled.notify_waiters();
                CallToolResult::error(vec![ContentBlock::text("cancelled")])
            }
            "echo" => {
                CallToolResult::success(vec![ContentBlock::text(Value::Object(args).to_string())])
            }
            _ => return Err(McpError::invalid_params(format!("no tool {name}"), None)),
        };
        Ok(result.into())
    }
}

/// An [`ctxgate::mcp::Mcp`] over an embedded store, with loopback allowed
/// over plain http and `edit` applied to the config (keep the directory).
pub fn mcp(
    edit: impl FnOnce(&mut ctxgate::config::Config),
) -> (ctxgate::mcp::Mcp, tempfile::TempDir) {
    let mut config = ctxgate::config::Config::from_lookup(|_| None).expect("default test config");
    config.mcp.allowed_hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    edit(&mut config);
    let (store, dir) = crate::embedded_store();
    let clients = ctxgate::mcp::client::Clients::new(&config);
    let mcp = ctxgate::mcp::Mcp::new(
        Arc::new(config),
        store,
        Arc::new(ctxgate::mcp::credentials::MemoryCredentials::default()),
        clients,
    );
    (mcp, dir)
}

/// A model's call of `name` with `arguments` (JSON text).
pub fn tool_call(id: &str, name: &str, arguments: &str) -> ctxgate::model::ToolCall {
    ctxgate::model::ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments: arguments.to_owned(),
        cache: None,
    }
}
