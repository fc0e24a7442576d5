//! The one place where library errors become HTTP responses, in each front
//! door's envelope ([`Dialect`]): OpenAI's `{"error":{"message","type",
//! "code","param"}}`, or Anthropic's `{"type":"error","error":{"type",
//! "message"}}`, with the right status.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::auth::AuthError;
use crate::context::ContextError;
use crate::limits::LimitError;
use crate::provider::ProviderError;
use crate::redact::Blocked;
use crate::store::StoreError;
use crate::validate::ValidationError;

/// An error as the client sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message; never contains secrets or internals.
    pub message: String,
    /// OpenAI error type (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    /// Machine-readable code.
    pub code: &'static str,
    /// The offending request field, as a path (`messages[2].role`).
    pub param: Option<String>,
    /// Seconds to wait before retrying, sent as `Retry-After`.
    pub retry_after: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    param: Option<&'a str>,
}

impl ApiError {
    /// A new error with no param.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code,
            param: None,
            retry_after: None,
        }
    }

    /// 400 invalid_request_error naming `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
        .with_param(param)
    }

    /// 404 for an id that does not exist (or belongs to another tenant).
    pub fn not_found(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            message,
        )
        .with_param(param)
    }

    /// 500 with a generic message; details go to the log, never to the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            "internal error",
        )
    }

    /// Sets the offending field.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400 for content the redaction policy blocks, naming the category (never the value).
    pub fn blocked(b: &Blocked, param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "content_blocked",
            format!(
                "blocked by the redaction policy: the content contains {}",
                b.category.as_str()
            ),
        )
        .with_param(param)
    }

    /// The JSON envelope as bytes.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                param: self.param.as_deref(),
            },
        })
        .unwrap_or_default()
    }
}

/// The wire format an error is written in: each front door's own envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's (`/v1/chat/completions` and every ctxgate route).
    OpenAi,
    /// Anthropic's (`/v1/messages`).
    Anthropic,
}

impl ApiError {
    /// Anthropic's error type for this error's status.
    pub fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 409 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        }
    }

    /// The message as Anthropic's envelope carries it: it has no `param`,
    /// so the offending field leads the message.
    pub fn anthropic_message(&self) -> String {
        match &self.param {
            Some(p) if !p.is_empty() => format!("{p}: {}", self.message),
            _ => self.message.clone(),
        }
    }

    /// The envelope in `dialect`, as bytes.
    pub fn body_in(&self, dialect: Dialect) -> Vec<u8> {
        match dialect {
            Dialect::OpenAi => self.body(),
            Dialect::Anthropic => serde_json::to_vec(&serde_json::json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": self.anthropic_message()},
            }))
            .unwrap_or_default(),
        }
    }

    /// The response in `dialect`: status, envelope, `Retry-After`.
    pub fn render(self, dialect: Dialect) -> Response {
        let mut resp = (self.status, self.body_in(dialect)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(ra) = self
            .retry_after
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(header::RETRY_AFTER, ra);
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Dialect::OpenAi)
    }
}

/// The error code of a response, kept for the access log.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let mut err = ApiError::invalid(e.param.clone().unwrap_or_default(), e.message);
        if e.param.is_none() {
            err.param = None;
        }
        err
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let unauthorized = |code, msg: String| {
            ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", code, msg)
        };
        match e {
            AuthError::Missing | AuthError::Invalid | AuthError::Revoked | AuthError::Expired => {
                unauthorized("invalid_api_key", e.to_string())
            }
            AuthError::Token(_) => unauthorized("invalid_token", e.to_string()),
            AuthError::JwksUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "auth_unavailable",
                e.to_string(),
            ),
            AuthError::MissingScope(scope) => ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "insufficient_scope",
                format!("this credential lacks the '{scope}' scope"),
            ),
            AuthError::ModelNotAllowed(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "model_not_allowed",
                e.to_string(),
            )
            .with_param("model"),
            AuthError::Store(s) => s.into(),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        let (code, retry_after) = match &e {
            LimitError::RateLimited { retry_after, .. } => ("rate_limit_exceeded", *retry_after),
            LimitError::BudgetExceeded { retry_after, .. } => ("budget_exceeded", *retry_after),
            LimitError::Store(_) => ("", 0),
        };
        if let LimitError::Store(s) = e {
            return s.into();
        }
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            code,
            e.to_string(),
        );
        err.retry_after = Some(retry_after.max(1).to_string());
        err
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => {
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "invalid_request_error",
                    "conversation_conflict",
                    "the conversation was changed concurrently; retry the request",
                );
                e.retry_after = Some("1".into());
                e
            }
            StoreError::Exists => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "already_exists",
                "an item of that name already exists",
            ),
            StoreError::TooLarge { what, bytes, limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "item_too_large",
                format!("{what} is {bytes} bytes once stored; the limit is {limit}"),
            ),
            StoreError::TooManyConversations { limit } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                "conversation_limit_reached",
                format!(
                    "this tenant already stores {limit} conversations, its limit; delete some first"
                ),
            )
            .with_param("conversation_id"),
            StoreError::Gone => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "conversation_deleted",
                "the conversation was deleted while this request ran; nothing was stored",
            )
            .with_param("conversation_id"),
            StoreError::Unavailable(ref detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "store_unavailable",
                    "the conversation store is busy; retry shortly",
                );
                e.retry_after = Some("1".into());
                e
            }
            StoreError::Backend(ref detail) => {
                tracing::error!(error = %detail, "store failure");
                ApiError::internal()
            }
        }
    }
}

impl From<ContextError> for ApiError {
    fn from(e: ContextError) -> Self {
        match e {
            ContextError::Store(s) => s.into(),
            ContextError::NotFound { param, message } => ApiError::not_found(&param, message),
            ContextError::TooLong { param, message } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
                message,
            )
            .with_param(param),
            ContextError::TooLarge { param, message } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "message_too_large",
                message,
            )
            .with_param(param),
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        let gateway =
            |code, msg: String| ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", code, msg);
        match e {
            ProviderError::Auth { provider } => gateway(
                "provider_auth_failed",
                format!(
                    "provider authentication failed ({provider}); check the gateway's provider key \
                     (for Bedrock: the AWS credentials or role that sign its calls)"
                ),
            ),
            ProviderError::MissingKey { provider } => gateway(
                "provider_key_missing",
                format!("no API key is configured for provider '{provider}'"),
            ),
            ProviderError::RateLimited {
                provider,
                retry_after,
                ..
            } => {
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "upstream_rate_limited",
                    format!("provider '{provider}' is rate limiting requests; retry later"),
                );
                err.retry_after = retry_after;
                err
            }
            ProviderError::Unavailable {
                provider, status, ..
            } => gateway(
                "upstream_unavailable",
                format!("provider '{provider}' failed with HTTP {status}"),
            ),
            ProviderError::Deadline => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                "deadline_exceeded",
                "no provider answered within the request deadline",
            ),
            ProviderError::Timeout { provider } => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                "upstream_timeout",
                format!("provider '{provider}' did not answer in time"),
            ),
            ProviderError::Connect { provider } => gateway(
                "upstream_unreachable",
                format!("provider '{provider}' could not be reached"),
            ),
            ProviderError::Stream { provider, kind } => {
                // The status has gone out; this one only types the error
                // event, so that an overload reads as one (clients retry it).
                let status = match kind.as_str() {
                    "overloaded_error" | "overloaded" => StatusCode::SERVICE_UNAVAILABLE,
                    "rate_limit_error" | "rate_limit_exceeded" => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::BAD_GATEWAY,
                };
                ApiError::new(
                    status,
                    "upstream_error",
                    "upstream_stream_error",
                    format!("provider '{provider}' reported an error mid-stream"),
                )
            }
            ProviderError::BadResponse { provider, detail } => {
                tracing::warn!(provider = %provider, detail = %detail, "unparseable upstream response");
                gateway(
                    "upstream_bad_response",
                    format!("provider '{provider}' sent a response that could not be read"),
                )
            }
            // The status class and a fixed message: the upstream body may
            // echo the prompt or the key.
            ProviderError::Rejected { provider, status } => ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                "upstream_rejected",
                format!("provider '{provider}' rejected the request (HTTP {status})"),
            ),
            ProviderError::Redirected { provider, .. } => gateway(
                "upstream_redirected",
                format!("provider '{provider}' answered with a redirect, which is not followed"),
            ),
            ProviderError::Invalid { param, message } => ApiError::invalid(param, message),
            ProviderError::Secrets(detail) => {
                tracing::error!(error = %detail, "provider key lookup failed");
                ApiError::internal()
            }
            ProviderError::ModelUnavailable {
                provider,
                model,
                status: 404,
                missing,
            } => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("provider '{provider}' has no model '{model}': {missing}"),
            )
            .with_param("model"),
            ProviderError::ModelUnavailable {
                provider,
                model,
                missing,
                ..
            } => gateway(
                "provider_model_access_denied",
                format!("provider '{provider}' may not invoke model '{model}': {missing}"),
            ),
            ProviderError::RejectedField {
                provider,
                param,
                message,
            } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "upstream_rejected",
                format!("provider '{provider}' rejected the request: {message}"),
            )
            .with_param(param),
            ProviderError::NotConfigured { provider, missing } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_error",
                "provider_not_configured",
                format!("provider '{provider}' cannot be called: {missing}"),
            ),
        }
    }
}
