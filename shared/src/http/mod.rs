//! HTTP glue shared by the Lambda functions and the local server: the route
//! table, request ids, access logging, body limits, Lambda stage handling.

pub mod answer;
pub mod chat;
pub mod conversation_items;
pub mod conversations;
pub mod cursor;
pub mod door;
pub mod health;
pub mod keys;
pub mod mcp;
pub mod mcp_calls;
pub mod mcp_servers;
pub mod messages;
pub mod metrics;
pub mod models;
pub mod responses;
pub mod sync_body;
pub mod usage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tracing::Instrument;

use crate::error::{ApiError, ErrorCode};
use crate::model::Usage;
use crate::{AppState, ids};

/// Every route: method, path, and the function crate that serves it. The
/// local server serves all of them; each Lambda function serves its own
/// (`local`: the local server's only, `*`: every function).
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/v1/chat/completions", "chat"),
    ("POST", "/v1/messages", "chat"),
    ("POST", "/v1/messages/count_tokens", "chat"),
    ("POST", "/v1/responses", "chat"),
    ("POST", "/v1/responses/input_tokens", "chat"),
    ("GET", "/v1/responses/{response_id}", "conversations"),
    ("DELETE", "/v1/responses/{response_id}", "conversations"),
    (
        "GET",
        "/v1/responses/{response_id}/input_items",
        "conversations",
    ),
    ("GET", "/v1/models", "models"),
    ("GET", "/v1/conversations", "conversations"),
    ("POST", "/v1/conversations", "conversations"),
    ("GET", "/v1/conversations/{id}", "conversations"),
    ("POST", "/v1/conversations/{id}", "conversations"),
    ("PATCH", "/v1/conversations/{id}", "conversations"),
    ("DELETE", "/v1/conversations/{id}", "conversations"),
    ("GET", "/v1/conversations/{id}/items", "conversations"),
    ("POST", "/v1/conversations/{id}/items", "conversations"),
    (
        "GET",
        "/v1/conversations/{id}/items/{item_id}",
        "conversations",
    ),
    (
        "DELETE",
        "/v1/conversations/{id}/items/{item_id}",
        "conversations",
    ),
    ("POST", "/v1/admin/keys", "keys"),
    ("GET", "/v1/admin/keys", "keys"),
    ("DELETE", "/v1/admin/keys/{id}", "keys"),
    ("GET", "/v1/admin/ready", "keys"),
    ("POST", "/v1/admin/mcp-servers", "keys"),
    ("GET", "/v1/admin/mcp-servers", "keys"),
    ("GET", "/v1/admin/mcp-servers/{name}", "keys"),
    ("PATCH", "/v1/admin/mcp-servers/{name}", "keys"),
    ("DELETE", "/v1/admin/mcp-servers/{name}", "keys"),
    ("GET", "/v1/admin/mcp-calls", "keys"),
    ("GET", "/v1/usage", "usage"),
    ("POST", "/mcp", "mcp"),
    ("GET", "/.well-known/oauth-protected-resource", "mcp"),
    ("GET", "/.well-known/oauth-protected-resource/mcp", "mcp"),
    ("GET", "/health", "*"),
    ("GET", "/metrics", "local"),
];

/// What a handler learned for the access log (never content or secrets).
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    /// Caller's tenant, once authenticated.
    pub tenant: Option<String>,
    /// Resolved model.
    pub model: Option<String>,
    /// Token usage, once known.
    pub usage: Option<Usage>,
}

/// Attaches the log fields to a response for the access-log middleware.
pub fn with_log(mut resp: Response, log: RequestLog) -> Response {
    resp.extensions_mut().insert(log);
    resp
}

/// A handler's result (the response, or its error rendered) with the
/// access-log fields attached.
fn logged(result: Result<Response, ApiError>, log: RequestLog) -> Response {
    with_log(
        result.unwrap_or_else(axum::response::IntoResponse::into_response),
        log,
    )
}

/// The chat function's routes. On Lambda (`usage_flush_after_response`)
/// every response's body ends with a usage flush: the client has had its
/// last byte, and the write still happens within the invocation (the
/// function streams its responses, so the invocation lasts until then).
pub fn chat_routes(state: Arc<AppState>) -> Router {
    let after = state.config.usage_flush_after_response;
    let router = Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/messages", post(messages::create))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/input_tokens", post(responses::input_tokens));
    let router = if after {
        router.layer(middleware::from_fn_with_state(
            state.clone(),
            flush_after_body,
        ))
    } else {
        router
    };
    finish(router, state, "chat")
}

/// Passes the response on, then flushes usage once its body has ended.
async fn flush_after_body(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = next.run(req).await.into_parts();
    let usage = state.usage.clone();
    let flush = futures_util::stream::once(async move {
        usage.after_response().await;
        None
    })
    .filter_map(std::future::ready);
    Response::from_parts(
        parts,
        Body::from_stream(body.into_data_stream().chain(flush)),
    )
}

/// The models function's routes.
pub fn models_routes(state: Arc<AppState>) -> Router {
    finish(
        Router::new().route("/v1/models", get(models::list)),
        state,
        "models",
    )
}

/// The admin API's routes: keys, MCP servers, and the readiness report.
pub fn keys_routes(state: Arc<AppState>) -> Router {
    finish(keys_router(), state, "keys")
}

/// The conversations function's routes.
pub fn conversations_routes(state: Arc<AppState>) -> Router {
    finish(conversations_router(), state, "conversations")
}

fn conversations_router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/responses/{response_id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route(
            "/v1/responses/{response_id}/input_items",
            get(responses::input_items),
        )
        .route(
            "/v1/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route(
            "/v1/conversations/{id}",
            get(conversations::get)
                .post(conversations::update)
                .patch(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/v1/conversations/{id}/items",
            get(conversation_items::list).post(conversation_items::create),
        )
        .route(
            "/v1/conversations/{id}/items/{item_id}",
            get(conversation_items::get).delete(conversation_items::delete),
        )
}

/// The usage function's routes.
pub fn usage_routes(state: Arc<AppState>) -> Router {
    finish(
        Router::new().route("/v1/usage", get(usage::get)),
        state,
        "usage",
    )
}

fn keys_router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/keys", post(keys::create).get(keys::list))
        .route("/v1/admin/keys/{id}", delete(keys::revoke))
        .route("/v1/admin/ready", get(health::ready))
        .route(
            "/v1/admin/mcp-servers",
            post(mcp_servers::create).get(mcp_servers::list),
        )
        .route(
            "/v1/admin/mcp-servers/{name}",
            get(mcp_servers::get)
                .patch(mcp_servers::update)
                .delete(mcp_servers::delete),
        )
        .route("/v1/admin/mcp-calls", get(mcp_calls::list))
}

/// The MCP function's routes: `/mcp` and its Protected Resource Metadata.
pub fn mcp_routes(state: Arc<AppState>) -> Router {
    finish(mcp::router(), state, "mcp")
}

/// Every route, for the local server.
pub fn app(state: Arc<AppState>) -> Router {
    finish(
        Router::new()
            .route("/v1/chat/completions", post(chat::completions))
            .route("/v1/messages", post(messages::create))
            .route("/v1/messages/count_tokens", post(messages::count_tokens))
            .route("/v1/responses", post(responses::create))
            .route("/v1/responses/input_tokens", post(responses::input_tokens))
            .route("/v1/models", get(models::list))
            .route("/v1/usage", get(usage::get))
            .merge(conversations_router())
            .merge(keys_router())
            .route("/metrics", get(metrics::scrape))
            .merge(mcp::router()),
        state,
        "local",
    )
}

/// The routes every function shares, the layers every request goes
/// through, and the state; `function` names the process in its metrics.
fn finish(router: Router<Arc<AppState>>, state: Arc<AppState>, function: &'static str) -> Router {
    let cors = cors(&state.config.cors_origins);
    let meter: metrics::Meter = (state.metrics.clone(), function);
    let router = router
        .route("/health", get(health::health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe))
        .layer(middleware::from_fn_with_state(meter, metrics::metered))
        .with_state(state);
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// CORS for the configured origins only; none configured, no CORS headers.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                http::Method::GET,
                http::Method::POST,
                http::Method::PATCH,
                http::Method::DELETE,
            ])
            .allow_headers([
                http::header::AUTHORIZATION,
                http::HeaderName::from_static(API_KEY_HEADER),
                http::HeaderName::from_static("anthropic-version"),
                http::HeaderName::from_static("anthropic-beta"),
                http::header::CONTENT_TYPE,
                http::HeaderName::from_static("x-conversation-id"),
                http::HeaderName::from_static("idempotency-key"),
                http::HeaderName::from_static(REQUEST_ID_HEADER),
            ])
            .expose_headers([
                http::HeaderName::from_static(REQUEST_ID_HEADER),
                http::HeaderName::from_static(CLIENT_REQUEST_ID_HEADER),
                http::HeaderName::from_static("x-conversation-id"),
                http::HeaderName::from_static("x-ctxgate-redactions"),
                http::HeaderName::from_static("x-ctxgate-model"),
                http::HeaderName::from_static("idempotent-replayed"),
                http::header::RETRY_AFTER,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The service a Lambda function runs: the router behind stage stripping.
pub type LambdaService =
    tower::util::MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request>;

/// Wraps a router for Lambda (API Gateway REST or HTTP API events). With
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` set (the SAM template sets it),
/// lambda_http passes the event's own path: REST events never carry the stage
/// there, so any stage name works, even one equal to a route's first segment.
pub fn lambda_service(router: Router) -> LambdaService {
    let strip: fn(lambda_http::Request) -> lambda_http::Request =
        if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() {
            strip_stage_from_raw_path
        } else {
            strip_stage
        };
    tower::util::MapRequest::new(router, strip)
}

/// Runs a router as a Lambda function: one invocation at a time, or as many
/// at once as `AWS_LAMBDA_MAX_CONCURRENCY` allows (Lambda Managed Instances),
/// all sharing the router's state.
pub async fn run_lambda(router: Router) -> Result<(), lambda_http::Error> {
    // Concurrent workers need a `Sync` response; axum's body is only `Send`.
    let service = tower::ServiceExt::map_response(
        lambda_service(router),
        sync_body::SyncBody::response as fn(Response) -> http::Response<sync_body::SyncBody>,
    );
    lambda_http::run_concurrent(service).await
}

/// Runs a router as a Lambda function with response streaming: every
/// response is sent as a stream (a JSON body is simply a short one), so SSE
/// chunks reach the client as they are produced. The API Gateway route must
/// declare `ResponseTransferMode: RESPONSE_STREAM`. Only the chat function
/// runs this way; the others answer small JSON bodies and stay buffered.
/// Concurrent under `AWS_LAMBDA_MAX_CONCURRENCY` as [`run_lambda`] is.
pub async fn run_lambda_streaming(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run_with_streaming_response_concurrent(lambda_service(router)).await
}

/// lambda_http puts the stage in front of API Gateway paths (`/prod/v1/...`);
/// routes are declared without it.
pub fn strip_stage(req: lambda_http::Request) -> lambda_http::Request {
    strip(req, true)
}

/// For `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH`: only an HTTP API's raw path
/// carries a (named) stage; a REST event's path never does.
pub fn strip_stage_from_raw_path(req: lambda_http::Request) -> lambda_http::Request {
    strip(req, false)
}

fn strip(mut req: lambda_http::Request, strip_rest: bool) -> lambda_http::Request {
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) if strip_rest => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    if let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") {
        let prefix = format!("/{stage}");
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(&prefix)
            && rest.starts_with('/')
        {
            let pq = match req.uri().query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_owned(),
            };
            let mut parts = req.uri().clone().into_parts();
            if let Ok(pq) = pq.parse() {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "unknown_route",
        "no such route",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Header carrying the id the server gave the request.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Header echoing the caller's own `x-request-id`, kept apart from ours.
pub const CLIENT_REQUEST_ID_HEADER: &str = "x-client-request-id";

/// Request id, access log line, `x-request-id` header.
///
/// The id is always the server's (Lambda's, or a fresh one locally): a
/// client-chosen id could collide with or impersonate another request in the
/// logs. The caller's own `x-request-id`, when it is a plain id, comes back
/// in `x-client-request-id` and is logged as such.
async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(ids::request_id);
    let client_request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| ids::is_valid_id(v, 128))
        .map(str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("", |m| m.as_str());
    let server = crate::trace::server_span(&method, route, req.headers());
    // Fields as `&str`, not `%`: a displayed value is formatted into a
    // fresh `String` by the JSON formatter; a string is written as it is.
    let span = tracing::info_span!("request", request_id = request_id.as_str());
    let mut resp = next
        .run(req)
        .instrument(server.clone())
        .instrument(span.clone())
        .await;
    crate::trace::responded(&server, resp.status().as_u16());
    let log = resp
        .extensions()
        .get::<RequestLog>()
        .cloned()
        .unwrap_or_default();
    let usage = log.usage.unwrap_or_default();
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    tracing::info!(
        request_id = request_id.as_str(),
        client_request_id = client_request_id.as_deref(),
        method = method.as_str(),
        path = path.as_str(),
        status = resp.status().as_u16(),
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        tenant = log.tenant.as_deref(),
        model = log.model.as_deref(),
        prompt_tokens = log.usage.map(|_| usage.input),
        completion_tokens = log.usage.map(|_| usage.output),
        error = code,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    if let Some(v) = client_request_id.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(CLIENT_REQUEST_ID_HEADER, v);
    }
    if server.is_disabled() {
        resp
    } else {
        traced_body(resp, server)
    }
}

/// The response with its body produced inside the request's server span
/// (a streamed answer's provider and tool calls are its children), which
/// ends with the body; on Lambda the spans are then exported, within the
/// invocation (the runtime sends a buffered body once it has all of it).
fn traced_body(resp: Response, server: tracing::Span) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = resp.into_parts();
    let mut data = body.into_data_stream();
    let mut server = Some(server);
    let body = futures_util::stream::poll_fn(move |cx| {
        let Some(span) = server.as_ref() else {
            return std::task::Poll::Ready(None);
        };
        let polled = span.in_scope(|| data.poll_next_unpin(cx));
        if let std::task::Poll::Ready(None) = polled {
            server = None;
        }
        polled
    });
    let flush = futures_util::stream::once(async {
        if crate::trace::flush_each_response() {
            crate::trace::flush().await;
        }
        None
    })
    .filter_map(std::future::ready);
    Response::from_parts(parts, Body::from_stream(body.chain(flush)))
}

/// Reads a body up to `limit` bytes; larger bodies get a 413.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("request body exceeds the {limit}-byte limit"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => {
            Err(ApiError::invalid("body", "the request body could not be read").with_param("body"))
        }
    }
}

/// Checks `Content-Type` (JSON, UTF-8 only: 415 otherwise), then reads the body.
pub async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    let charset_ok = parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    if !media.eq_ignore_ascii_case("application/json") || !charset_ok {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            "send the body as 'Content-Type: application/json' (charset utf-8)",
        )
        .with_param("content-type"));
    }
    read_body(headers, body, limit).await
}

/// Authenticates the caller, notes its tenant for the access log, and counts
/// the request against the caller's per-minute limit. Every authenticated
/// route goes through here, so the limit holds on all of them, not only chat.
pub async fn authenticated(
    state: &AppState,
    headers: &HeaderMap,
    log: &mut RequestLog,
) -> Result<crate::auth::Principal, ApiError> {
    authenticated_for(state, headers, None, log).await
}

/// [`authenticated`], where a JWT must carry `audience` (when given) as its
/// `aud` (the MCP endpoint's resource URL).
pub async fn authenticated_for(
    state: &AppState,
    headers: &HeaderMap,
    audience: Option<&str>,
    log: &mut RequestLog,
) -> Result<crate::auth::Principal, ApiError> {
    let now = crate::now_secs();
    let p = identified(state, headers, audience, now, log).await?;
    crate::limits::check_rate(&*state.store, &p, &state.config, now).await?;
    Ok(p)
}

/// Authenticates the caller and notes its tenant for the access log, leaving
/// the count against its rate limit to the caller: a turn makes it with its
/// budget reservation ([`crate::turn::prepare`]), in one write.
pub async fn identified(
    state: &AppState,
    headers: &HeaderMap,
    audience: Option<&str>,
    now: i64,
    log: &mut RequestLog,
) -> Result<crate::auth::Principal, ApiError> {
    let p = state
        .auth
        .authenticate_for(authorization(headers).as_deref(), now, audience)
        .await?;
    log.tenant = Some(p.tenant.clone());
    Ok(p)
}

/// [`authenticated`], then requires `scope`.
pub async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    scope: &'static str,
    log: &mut RequestLog,
) -> Result<crate::auth::Principal, ApiError> {
    let p = authenticated(state, headers, log).await?;
    p.require(scope)?;
    Ok(p)
}

/// The caller's credential as an `Authorization` value: the header, or
/// else Anthropic's `x-api-key` (which Anthropic's SDKs send), as a bearer.
pub fn authorization(headers: &HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        return v.to_str().ok().map(std::borrow::Cow::Borrowed);
    }
    let key = headers.get(API_KEY_HEADER)?.to_str().ok()?;
    Some(std::borrow::Cow::Owned(format!("Bearer {}", key.trim())))
}

/// Anthropic's credential header.
pub const API_KEY_HEADER: &str = "x-api-key";

/// A path parameter (`{id}`) whose rejection (for example a percent-encoded
/// byte that is not UTF-8) is the JSON error envelope rather than axum's
/// plain-text 400.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(e) => Err(ApiError::invalid(
                "id",
                format!("invalid path parameter: {}", e.body_text()),
            )),
        }
    }
}

/// The query string as a map (the last value of a repeated name wins), with
/// the JSON error envelope on a query that cannot be decoded.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(Self(q)),
            Err(e) => Err(ApiError::invalid(
                "query",
                format!("invalid query string: {}", e.body_text()),
            )),
        }
    }
}
