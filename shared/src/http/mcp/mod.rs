//! `POST /mcp`, ctxgate as an MCP server over Streamable HTTP (rmcp's server
//! side, stateless, buffered JSON answers): the host and `Origin` checks,
//! the bearer credential and the `mcp` scope (401/403 with the challenges
//! RFC 9728 and RFC 6750 name), the JSON-RPC envelope checks rmcp leaves to
//! us (-32700, -32600 with HTTP 400), and the Protected Resource Metadata.
//! rmcp does the protocol: both eras' headers, `initialize` and
//! `server/discover`, per-request `_meta` versions, results' `resultType`.
//!
//! The principal reaches the handlers as an extension of the request parts
//! rmcp hands to them; the client's token stays here (a turn never sees it).

pub mod federation;
#[cfg(feature = "cli")]
pub mod fixtures;
pub mod own_tools;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use lambda_http::request::RequestContext as LambdaContext;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, ClientJsonRpcMessage, ClientRequest,
    CompleteRequestMethod, CompleteRequestParams, CompleteResult, ErrorData,
    GetPromptRequestMethod, GetPromptRequestParams, GetPromptResponse, Implementation,
    ListPromptsRequestMethod, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::{RequestLog, identified, read_body, with_log};
use crate::auth::{KNOWN_SCOPES, Principal, SCOPE_MCP, SCOPE_SUPERADMIN};
use crate::limits::RateCount;
use crate::model::Usage;
use crate::{ApiError, AppState};

/// The endpoint's path.
pub const PATH: &str = "/mcp";
/// The Protected Resource Metadata (RFC 9728), and its path-suffixed form.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The Protected Resource Metadata for `/mcp` (RFC 9728 §3.1).
pub const METADATA_MCP_PATH: &str = "/.well-known/oauth-protected-resource/mcp";
/// The client requests of the protocol: with unparseable params, -32602.
const STANDARD_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];
/// The methods 2026-07-28 removed: asked in that revision, they are unknown
/// (HTTP 404, -32601), however their params look.
const REMOVED_IN_2026: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];
/// The current revision.
const CURRENT_REVISION: &str = "2026-07-28";
/// How long a client may cache `tools/list` and `resources/list` (ms).
const LIST_TTL_MS: u64 = 60_000;

/// The MCP endpoint's routes (the endpoint and its metadata).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(PATH, post(endpoint))
        .route(METADATA_PATH, get(metadata))
        .route(METADATA_MCP_PATH, get(metadata))
}

/// The canonical resource URL and its metadata URL: configured, else from
/// this request's host (and, on an execute-api domain, the stage that
/// prefixes every path there; lambda_http hands routes the path without it).
fn urls(state: &AppState, parts: &Parts) -> (String, String) {
    if let Some(r) = &state.config.mcp_server.resource {
        return (r.clone(), metadata_url(r));
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    // Loopback is plain http locally; anything else is served over TLS.
    let name = host.split(':').next().unwrap_or(host);
    let loopback = matches!(name, "localhost" | "127.0.0.1") || host.starts_with("[::1]");
    let scheme = if loopback { "http" } else { "https" };
    let stage = match parts.extensions.get::<LambdaContext>() {
        Some(LambdaContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(LambdaContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    }
    .filter(|s| !s.is_empty() && s != "$default" && name.ends_with(".amazonaws.com"));
    let base = match stage {
        Some(stage) => format!("{scheme}://{host}/{stage}"),
        None => format!("{scheme}://{host}"),
    };
    (
        format!("{base}{PATH}"),
        format!("{base}{METADATA_MCP_PATH}"),
    )
}

/// The metadata URL of a resource: the well-known path between its origin
/// and its path (RFC 9728 §3.1).
fn metadata_url(resource: &str) -> String {
    let after_scheme = resource.find("://").map_or(0, |i| i + 3);
    let path_at = resource[after_scheme..]
        .find('/')
        .map_or(resource.len(), |i| i + after_scheme);
    let (origin, path) = resource.split_at(path_at);
    format!("{origin}{METADATA_PATH}{}", path.trim_end_matches('/'))
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`.
async fn metadata(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let servers: Vec<String> = if state.config.mcp_server.authorization_servers.is_empty() {
        state.config.jwt.iter().map(|j| j.issuer.clone()).collect()
    } else {
        state.config.mcp_server.authorization_servers.clone()
    };
    let scopes: Vec<&str> = KNOWN_SCOPES
        .iter()
        .copied()
        .filter(|s| *s != SCOPE_SUPERADMIN)
        .collect();
    axum::Json(json!({
        "resource": urls(&state, &parts).0,
        "authorization_servers": servers,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "ctxgate",
    }))
    .into_response()
}

/// A message refused before rmcp sees it: a JSON-RPC error, with HTTP 400
/// (404 for a method the request's revision does not have).
struct Refusal {
    id: Option<Value>,
    code: i32,
    message: &'static str,
    status: StatusCode,
}

fn rpc_error(id: Option<Value>, code: i32, message: &'static str) -> Refusal {
    Refusal {
        id,
        code,
        message,
        status: StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body =
            json!({"jsonrpc": "2.0", "error": {"code": self.code, "message": self.message}});
        if let Some(id) = self.id {
            body["id"] = id;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// What rmcp answers with a 415 or a plain-text body, as the spec's errors:
/// malformed JSON -32700, a message that is not JSON-RPC -32600, a request
/// whose params do not fit its method -32602 (all HTTP 400).
/// Whether the message may go to rmcp: `Ok` with whether it runs a turn (a
/// `tools/call` of `chat`).
fn check_envelope(bytes: &[u8], header_revision: Option<&str>) -> Result<bool, Refusal> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|_| rpc_error(None, -32700, "Parse error: the body is not JSON"))?;
    let Value::Object(o) = &v else {
        return Err(rpc_error(
            None,
            -32600,
            "Invalid Request: send one JSON-RPC message object (batches are not supported)",
        ));
    };
    let id = o.get("id").cloned();
    let id_ok = match &id {
        None => true,
        Some(Value::String(_)) => true,
        Some(Value::Number(n)) => n.is_i64() || n.is_u64(),
        Some(_) => false,
    };
    let invalid = |msg: &'static str| rpc_error(id.clone().filter(|_| id_ok), -32600, msg);
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("Invalid Request: 'jsonrpc' must be \"2.0\""));
    }
    if !id_ok {
        return Err(invalid(
            "Invalid Request: 'id' must be a string or an integer",
        ));
    }
    match o.get("method") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("Invalid Request: 'method' must be a string")),
        None if id.is_some() && (o.contains_key("result") || o.contains_key("error")) => {}
        None => return Err(invalid("Invalid Request: 'method' is missing")),
    }
    if o.get("params").is_some_and(|p| !p.is_object()) {
        return Err(invalid("Invalid Request: 'params' must be an object"));
    }
    // A method 2026-07-28 removed, asked in that revision (by header or
    // `_meta`), is unknown there: 404 and -32601, as the revision says.
    let method = o.get("method").and_then(Value::as_str).unwrap_or("");
    let meta_revision = o
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(Value::as_str);
    if REMOVED_IN_2026.contains(&method)
        && (header_revision == Some(CURRENT_REVISION) || meta_revision == Some(CURRENT_REVISION))
    {
        return Err(Refusal {
            status: StatusCode::NOT_FOUND,
            ..rpc_error(
                id.clone(),
                -32601,
                "Method not found: removed in protocol revision 2026-07-28",
            )
        });
    }
    let bad_params = || {
        rpc_error(
            id.clone(),
            -32602,
            "Invalid params: the params do not fit the method",
        )
    };
    match serde_json::from_value::<ClientJsonRpcMessage>(v.clone()) {
        Err(_) => Err(bad_params()),
        // rmcp reads a standard method whose params do not parse as a custom
        // request (then -32601); its params are what is wrong.
        Ok(ClientJsonRpcMessage::Request(r)) if matches!(&r.request, ClientRequest::CustomRequest(c) if STANDARD_METHODS.contains(&c.method.as_str())) => {
            Err(bad_params())
        }
        Ok(ClientJsonRpcMessage::Request(r)) => Ok(matches!(&r.request,
            ClientRequest::CallToolRequest(c) if c.params.name == own_tools::CHAT)),
        Ok(_) => Ok(false),
    }
}

/// A 401 or 403 with its `WWW-Authenticate` challenge.
fn challenge(state: &AppState, parts: &Parts, e: ApiError) -> Response {
    let (_, metadata) = urls(state, parts);
    let value = match e.status {
        StatusCode::UNAUTHORIZED => Some(format!("Bearer resource_metadata=\"{metadata}\"")),
        StatusCode::FORBIDDEN if e.code == "insufficient_scope" => Some(format!(
            "Bearer error=\"insufficient_scope\", scope=\"{SCOPE_MCP}\", resource_metadata=\"{metadata}\""
        )),
        _ => None,
    };
    let mut resp = e.into_response();
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

fn forbidden(field: &str, message: &str) -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        "forbidden",
        message.to_owned(),
    )
    .with_param(field)
    .into_response()
}

/// `POST /mcp`.
async fn endpoint(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let mut log = RequestLog::default();
    let resp = serve(&state, req, &mut log).await;
    with_log(resp, log)
}

async fn serve(state: &Arc<AppState>, req: Request, log: &mut RequestLog) -> Response {
    let (mut parts, body) = req.into_parts();
    let cfg = &state.config.mcp_server;
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    if !cfg.host_allowed(host) {
        return forbidden(
            "host",
            "this host is not served; see mcp_server.allowed_hosts",
        );
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| cfg.origin_allowed(o, host))
    {
        return forbidden(
            "origin",
            "this Origin may not call /mcp; see mcp_server.allowed_origins",
        );
    }
    // A token must have been issued for this resource (RFC 8707/9728).
    let (audience, _) = urls(state, &parts);
    let now = crate::now_secs();
    let principal = match identified(state, &parts.headers, Some(&audience), now, log).await {
        Ok(p) => p,
        Err(e) => return challenge(state, &parts, e),
    };
    // A `chat` call counts its request with its turn's reservation, in one
    // write; every other request (or a refused one) counts it here, alone.
    let rate = RateCount::of(&principal, &state.config, now);
    let admitted = admit(state, &parts, &principal, body).await;
    let turn = matches!(admitted, Ok((_, true)));
    if let (false, Some(rate)) = (turn, &rate)
        && let Err(e) = rate.count(&*state.store).await
    {
        return ApiError::from(e).into_response();
    }
    let bytes = match admitted {
        Ok((bytes, _)) => bytes,
        Err(refused) => return refused,
    };
    parts.extensions.insert(principal);
    let note = TurnNote::new(rate.filter(|_| turn));
    parts.extensions.insert(note.clone());
    let handler_state = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(Gateway(handler_state.clone())),
        Arc::new(NeverSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            // Checked above, with the deployment's own rules.
            .disable_allowed_hosts(),
    );
    let resp = service
        .handle(http::Request::from_parts(parts, Full::new(bytes)))
        .await;
    let Note {
        rate,
        refused,
        answered,
    } = note.take();
    if let Some((model, usage)) = answered {
        log.model = Some(model);
        log.usage = Some(usage);
    }
    // The rate refused the turn: 429 with `Retry-After`, as on every route.
    if let Some(e) = refused {
        return e.into_response();
    }
    // A `chat` call rmcp did not hand to the tool is counted all the same.
    if let Some(rate) = rate
        && let Err(e) = rate.count(&*state.store).await
    {
        tracing::warn!(error = %e, "rate count of an /mcp request failed");
    }
    // rmcp answers these two in plain text; a client gets them as JSON-RPC
    // errors naming the header, like every other refusal here.
    let media = match resp.status() {
        StatusCode::NOT_ACCEPTABLE => Some((
            "accept",
            "Not Acceptable: send Accept: application/json, text/event-stream",
        )),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Some((
            "content-type",
            "Unsupported Media Type: send Content-Type: application/json",
        )),
        _ => None,
    };
    if let Some((field, message)) = media {
        let body = json!({"jsonrpc": "2.0",
            "error": {"code": -32600, "message": message, "data": {"field": field}}});
        return (resp.status(), axum::Json(body)).into_response();
    }
    resp.map(Body::new)
}

/// The scope, the body and the JSON-RPC envelope: the body, and whether it
/// runs a turn; or the refusal.
async fn admit(
    state: &AppState,
    parts: &Parts,
    principal: &Principal,
    body: Body,
) -> Result<(bytes::Bytes, bool), Response> {
    if let Err(e) = principal.require(SCOPE_MCP) {
        return Err(challenge(state, parts, e.into()));
    }
    let bytes = read_body(&parts.headers, body, state.config.max_body_bytes)
        .await
        .map_err(IntoResponse::into_response)?;
    let revision = parts
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    let turn = check_envelope(&bytes, revision).map_err(IntoResponse::into_response)?;
    Ok((bytes, turn))
}

/// What a `chat` call and the endpoint tell each other: rmcp runs the
/// handler apart from the request, so they talk through this.
#[derive(Clone, Default)]
pub struct TurnNote(Arc<std::sync::Mutex<Note>>);

/// A [`TurnNote`]'s contents.
#[derive(Default)]
struct Note {
    /// The request's rate count, for the turn's reservation to make.
    rate: Option<RateCount>,
    /// The turn's refusal by the rate limit, answered as on every route.
    refused: Option<ApiError>,
    /// The turn's model and usage, for the access-log line.
    answered: Option<(String, Usage)>,
}

impl TurnNote {
    fn new(rate: Option<RateCount>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Note {
            rate,
            ..Note::default()
        })))
    }

    fn note(&self) -> std::sync::MutexGuard<'_, Note> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The request's count against its rate limit, if not yet made: the
    /// turn makes it in its reservation's write (or alone, if it never
    /// gets there).
    pub fn take_rate(&self) -> Option<RateCount> {
        self.note().rate.take()
    }

    /// Records that the rate limit refused the turn: the request is answered 429.
    pub fn rate_refused(&self, e: ApiError) {
        self.note().refused = Some(e);
    }

    /// Records the turn's model and usage.
    pub fn set(&self, model: String, usage: Usage) {
        self.note().answered = Some((model, usage));
    }

    fn take(&self) -> Note {
        std::mem::take(&mut *self.note())
    }
}

/// The rmcp handler of one request: ctxgate's tools, then the tenant's
/// federated ones; conversations as resources.
struct Gateway(Arc<AppState>);

impl Gateway {
    /// Whether the conformance suite's fixtures are served (test-only).
    fn fixtures(&self) -> bool {
        self.0.config.mcp_server.conformance_fixtures
    }
}

/// The principal the endpoint put on the request.
fn principal(ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("no principal on the request", None))
}

/// A resource request refused: the error as JSON-RPC.
fn resource_error(e: &ApiError) -> ErrorData {
    let data = Some(json!({"code": e.code, "field": e.param}));
    if e.status == StatusCode::NOT_FOUND {
        ErrorData::resource_not_found(e.message.clone(), data)
    } else {
        ErrorData::invalid_params(e.message.clone(), data)
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let capabilities = if self.fixtures() {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .enable_completions()
                .build()
        } else {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build()
        };
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("ctxgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "ctxgate: chat with any configured model over stored conversations \
             (tool `chat`), read and delete conversations, read usage, and call the \
             tenant's registered MCP servers' tools ({server}__{tool}).",
            )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        #[cfg(feature = "cli")]
        if self.fixtures()
            && let Some(t) = fixtures::tool(name)
        {
            return Some(t);
        }
        own_tools::tools().into_iter().find(|t| t.name == name)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let p = principal(&ctx)?;
        let mut tools = own_tools::tools();
        #[cfg(feature = "cli")]
        if self.fixtures() {
            tools.extend(fixtures::tools());
        }
        let mut federated = federation::list(&self.0, &p).await;
        federated.sort_by(|a, b| a.name.cmp(&b.name));
        tools.extend(federated);
        Ok(ListToolsResult::with_all_items(tools)
            .with_ttl_ms(LIST_TTL_MS)
            .with_cache_scope(CacheScope::Private))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let p = principal(&ctx)?;
        let name = request.name.to_string();
        let note = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<TurnNote>())
            .cloned()
            .unwrap_or_default();
        if let Some(r) = own_tools::call(&self.0, &p, &name, request.arguments.clone(), &note).await
        {
            return Ok(r.into());
        }
        #[cfg(feature = "cli")]
        if self.fixtures()
            && let Some(r) = fixtures::call(&request, &ctx).await
        {
            return r;
        }
        match federation::call(&self.0, &p, &name, request.arguments).await {
            // A legacy server's result carries no `resultType`; ours must on
            // 2026-07-28 (rmcp takes it off again for legacy peers).
            Some(mut r) => {
                r.result_type
                    .get_or_insert(rmcp::model::ResultType::COMPLETE);
                Ok(r.into())
            }
            None => Err(ErrorData::invalid_params(
                format!("unknown tool '{name}'"),
                Some(json!({"field": "params.name"})),
            )),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let p = principal(&ctx)?;
        let cursor = request.and_then(|r| r.cursor);
        #[cfg(feature = "cli")]
        let with_fixtures = self.fixtures() && cursor.is_none();
        let (resources, next) = own_tools::conversation_resources(&self.0, &p, cursor)
            .await
            .map_err(|e| resource_error(&e))?;
        #[cfg(feature = "cli")]
        let resources = if with_fixtures {
            [resources, fixtures::resources()].concat()
        } else {
            resources
        };
        let mut r = ListResourcesResult::with_all_items(resources)
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private);
        r.next_cursor = next;
        Ok(r)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut t = ResourceTemplate::new(
            format!("{}{{id}}", own_tools::CONVERSATION_URI),
            "conversation",
        );
        t.description = Some("A stored conversation and its messages, as JSON.".into());
        t.mime_type = Some("application/json".into());
        let templates = vec![t];
        #[cfg(feature = "cli")]
        let templates = if self.fixtures() {
            [templates, fixtures::templates()].concat()
        } else {
            templates
        };
        Ok(ListResourceTemplatesResult::with_all_items(templates)
            .with_ttl_ms(LIST_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let p = principal(&ctx)?;
        #[cfg(feature = "cli")]
        if self.fixtures()
            && let Some(contents) = fixtures::read(&request.uri)
        {
            return Ok(ReadResourceResult::new(vec![contents])
                .with_ttl_ms(LIST_TTL_MS)
                .with_cache_scope(CacheScope::Public)
                .into());
        }
        let Some(id) = own_tools::conversation_of(&request.uri) else {
            return Err(ErrorData::resource_not_found(
                format!("no resource '{}'", request.uri),
                Some(json!({"field": "params.uri", "uri": request.uri})),
            ));
        };
        let text = own_tools::conversation_text(&self.0, &p, id)
            .await
            .map_err(|e| resource_error(&e))?;
        let contents =
            ResourceContents::text(text, request.uri.clone()).with_mime_type("application/json");
        // A conversation changes with every turn, and is the tenant's own.
        Ok(ReadResourceResult::new(vec![contents])
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private)
            .into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        #[cfg(feature = "cli")]
        if self.fixtures() {
            return Ok(ListPromptsResult::with_all_items(fixtures::prompts())
                .with_ttl_ms(LIST_TTL_MS)
                .with_cache_scope(CacheScope::Public));
        }
        Err(ErrorData::method_not_found::<ListPromptsRequestMethod>())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if !self.fixtures() {
            return Err(ErrorData::method_not_found::<GetPromptRequestMethod>());
        }
        #[cfg(feature = "cli")]
        if let Some(r) = fixtures::prompt(&request) {
            return r;
        }
        Err(ErrorData::invalid_params(
            format!("unknown prompt '{}'", request.name),
            Some(json!({"field": "params.name"})),
        ))
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        #[cfg(feature = "cli")]
        if self.fixtures() {
            return Ok(fixtures::complete(&request));
        }
        let _ = request;
        Err(ErrorData::method_not_found::<CompleteRequestMethod>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_puts_the_well_known_path_before_the_resource_path() {
        assert_eq!(
            metadata_url("https://api.example.com/mcp"),
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://localhost:8787/prod/mcp/"),
            "http://localhost:8787/.well-known/oauth-protected-resource/prod/mcp"
        );
        assert_eq!(
            metadata_url("https://api.example.com"),
            "https://api.example.com/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn envelopes_are_checked_before_rmcp() {
        let code = |body: &str| check_envelope(body.as_bytes(), None).err().map(|r| r.code);
        assert_eq!(code("{"), Some(-32700));
        assert_eq!(code("[]"), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            Some(-32600)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            Some(-32600)
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), None);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            None
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#),
            Some(-32602)
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"no/such"}"#), None);
    }

    #[test]
    fn methods_2026_07_28_removed_are_unknown_there() {
        let refused = |body: &str, header: Option<&str>| {
            check_envelope(body.as_bytes(), header)
                .err()
                .map(|r| (r.status.as_u16(), r.code))
        };
        let meta = r#"{"jsonrpc":"2.0","id":7,"method":"logging/setLevel","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(refused(meta, None), Some((404, -32601)));
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(refused(init, Some("2026-07-28")), Some((404, -32601)));
        // The legacy revisions still have them.
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert_eq!(refused(ping, Some("2025-11-25")), None);
    }
}
