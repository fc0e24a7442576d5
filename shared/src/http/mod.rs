//! HTTP glue shared by the Lambda functions and the local server: the route
//! table, request ids, access logging, body limits, Lambda stage handling.

pub mod chat;
pub mod chat_stream;
pub mod keys;
pub mod models;
pub mod usage;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tracing::Instrument;

use crate::error::{ApiError, ErrorCode};
use crate::wire::Usage;
use crate::{AppState, ids};

/// Every route: method, path, and the function crate that serves it. The
/// local server serves all of them; each Lambda function serves its own.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/v1/chat/completions", "chat"),
    ("GET", "/v1/models", "models"),
    ("POST", "/v1/admin/keys", "keys"),
    ("GET", "/v1/admin/keys", "keys"),
    ("DELETE", "/v1/admin/keys/{id}", "keys"),
    ("GET", "/v1/usage", "usage"),
    ("GET", "/health", "*"),
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

/// The chat function's routes.
pub fn chat_routes(state: Arc<AppState>) -> Router {
    finish(
        Router::new().route("/v1/chat/completions", post(chat::completions)),
        state,
    )
}

/// The models function's routes.
pub fn models_routes(state: Arc<AppState>) -> Router {
    finish(Router::new().route("/v1/models", get(models::list)), state)
}

/// The admin key API's routes.
pub fn keys_routes(state: Arc<AppState>) -> Router {
    finish(keys_router(), state)
}

/// The usage function's routes.
pub fn usage_routes(state: Arc<AppState>) -> Router {
    finish(Router::new().route("/v1/usage", get(usage::get)), state)
}

fn keys_router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/keys", post(keys::create).get(keys::list))
        .route("/v1/admin/keys/{id}", delete(keys::revoke))
}

/// Every route, for the local server.
pub fn app(state: Arc<AppState>) -> Router {
    finish(
        Router::new()
            .route("/v1/chat/completions", post(chat::completions))
            .route("/v1/models", get(models::list))
            .route("/v1/usage", get(usage::get))
            .merge(keys_router()),
        state,
    )
}

fn finish(router: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    let cors = cors(&state.config.cors_origins);
    let router = router
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe))
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
                http::header::CONTENT_TYPE,
                http::HeaderName::from_static("x-conversation-id"),
                http::HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                http::HeaderName::from_static("x-request-id"),
                http::HeaderName::from_static("x-conversation-id"),
                http::HeaderName::from_static("x-ctxgate-redactions"),
                http::header::RETRY_AFTER,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The service a Lambda function runs: the router behind stage stripping.
pub type LambdaService =
    tower::util::MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request>;

/// Wraps a router for Lambda (API Gateway REST or HTTP API events).
pub fn lambda_service(router: Router) -> LambdaService {
    tower::util::MapRequest::new(
        router,
        strip_stage as fn(lambda_http::Request) -> lambda_http::Request,
    )
}

/// Runs a router as a Lambda function.
pub async fn run_lambda(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(lambda_service(router)).await
}

/// Runs a router as a Lambda function with response streaming: every
/// response is sent as a stream (a JSON body is simply a short one), so SSE
/// chunks reach the client as they are produced. The API Gateway route must
/// declare `ResponseTransferMode: RESPONSE_STREAM`. Only the chat function
/// runs this way; the others answer small JSON bodies and stay buffered.
pub async fn run_lambda_streaming(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run_with_streaming_response(lambda_service(router)).await
}

/// API Gateway REST events carry the stage in the path (`/prod/v1/...`);
/// routes are declared without it.
pub fn strip_stage(mut req: lambda_http::Request) -> lambda_http::Request {
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
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

async fn health() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
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

/// Request id, access log line, `x-request-id` header.
async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| {
            req.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| ids::is_valid_id(v, 128))
                .map(str::to_owned)
        })
        .unwrap_or_else(ids::request_id);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let log = resp
        .extensions()
        .get::<RequestLog>()
        .cloned()
        .unwrap_or_default();
    let usage = log.usage.unwrap_or_default();
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        tenant = log.tenant.as_deref(),
        model = log.model.as_deref(),
        prompt_tokens = log.usage.map(|_| usage.prompt_tokens),
        completion_tokens = log.usage.map(|_| usage.completion_tokens),
        error = code,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
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

/// The `Authorization` header as text.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
