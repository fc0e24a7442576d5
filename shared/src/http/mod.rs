//! HTTP glue shared by the Lambda functions and the local server: the route
//! table, request ids, access logging, body limits, Lambda stage handling.

pub mod chat;
pub mod models;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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

/// Every route, for the local server.
pub fn app(state: Arc<AppState>) -> Router {
    finish(
        Router::new()
            .route("/v1/chat/completions", post(chat::completions))
            .route("/v1/models", get(models::list)),
        state,
    )
}

fn finish(router: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    router
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe))
        .with_state(state)
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

/// The `Authorization` header as text.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
