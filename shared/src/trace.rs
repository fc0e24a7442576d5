//! OpenTelemetry traces, following the GenAI semantic conventions: a server
//! span per request, a `chat {model}` client span per provider call, an
//! `execute_tool {tool}` span per MCP tool call and a span per store call.
//!
//! The spans are `tracing` spans of the [`TARGET`] target, which the log
//! never shows. They are exported over OTLP (HTTP/protobuf) only when the
//! `otel` feature is built and `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is
//! not `true`; otherwise no layer sees them and every span call site stays
//! disabled (one cached check). Spans carry names, ids, models, counts and
//! outcomes: never message content, tool arguments or results, keys or tokens.
//!
//! The incoming W3C `traceparent`/`tracestate` become the server span's
//! parent, and the current span's context goes out as `traceparent` (and
//! `tracestate`) on provider and MCP requests; nothing else of the client's
//! headers does.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::model::{FinishReason, Response, Usage};

/// The `tracing` target of every exported span (and of nothing else).
pub const TARGET: &str = "ctxgate::otel";

/// Whether spans are being exported (set once, by [`layer`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether every response ends with an export (set with [`ENABLED`], on Lambda).
static FLUSH_EACH: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported at the end of every response (on Lambda,
/// where a frozen environment exports nothing in between).
pub fn flush_each_response() -> bool {
    FLUSH_EACH.load(Ordering::Relaxed)
}

/// Whether this process exports spans.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the environment asks for export: an OTLP endpoint is set and the
/// SDK is not disabled.
pub fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// A request's server span, named `{method} {route}` (the route template,
/// never the path with its ids). Parented on the request's `traceparent`.
pub fn server_span(method: &http::Method, route: &str, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        target: "ctxgate::otel",
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    #[cfg(feature = "otel")]
    if !span.is_disabled() {
        otel::set_parent(&span, headers);
    }
    #[cfg(not(feature = "otel"))]
    let _ = headers;
    span
}

/// Records a response's status on its server span (5xx: an error).
pub fn responded(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// A provider call's client span, `chat {model}` (the model asked for, as
/// the gateway names it); the answer's attributes come with [`answered`].
pub fn chat_span(model: &str, conversation: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        target: "ctxgate::otel",
        "chat",
        otel.name = %format_args!("chat {model}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = tracing::field::Empty,
        gen_ai.request.model = model,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.response.id = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.usage.cache_read.input_tokens = tracing::field::Empty,
        gen_ai.usage.cache_creation.input_tokens = tracing::field::Empty,
        gen_ai.usage.reasoning.output_tokens = tracing::field::Empty,
        gen_ai.conversation.id = conversation,
    )
}

/// The provider that answers a chat span (a fallback may have moved on to
/// another), by its configured name mapped to the semconv's well-known
/// values where one fits.
pub fn routed(span: &tracing::Span, provider: &str, kind: &str) {
    span.record("gen_ai.provider.name", provider_name(provider, kind));
}

/// `gen_ai.provider.name` for a provider of this kind (`openai`,
/// `anthropic`, `bedrock`, `echo`...): the semconv's names.
fn provider_name<'a>(name: &'a str, kind: &'a str) -> &'a str {
    match kind {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "bedrock" => "aws.bedrock",
        _ => name,
    }
}

/// Records an answer on its chat span: response model and id, finish
/// reason, token counts. Never its content.
pub fn answered(span: &tracing::Span, response: &Response) {
    if span.is_disabled() {
        return;
    }
    if let Some(m) = response.model.as_deref() {
        span.record("gen_ai.response.model", m);
    }
    if let Some(id) = response.id.as_deref() {
        span.record("gen_ai.response.id", id);
    }
    record_usage(span, &response.usage);
    #[cfg(feature = "otel")]
    otel::finish_reasons(span, finish_reason(response.finish));
}

fn record_usage(span: &tracing::Span, u: &Usage) {
    span.record("gen_ai.usage.input_tokens", u.input);
    span.record("gen_ai.usage.output_tokens", u.output);
    span.record("gen_ai.usage.cache_read.input_tokens", u.cache_read);
    span.record("gen_ai.usage.cache_creation.input_tokens", u.cache_write);
    span.record("gen_ai.usage.reasoning.output_tokens", u.reasoning);
}

/// The semconv's finish reason values (`stop`, `length`, `tool_calls`,
/// `content_filter`, or ours).
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length | FinishReason::ContextWindow => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Pause => "pause",
    }
}

/// Marks a span as failed with a short error type (a code, never a message).
pub fn failed(span: &tracing::Span, error_type: &str) {
    span.record("otel.status_code", "error");
    span.record("error.type", error_type);
}

/// An MCP tool call's span, `execute_tool {tool}` (the tool's name as the
/// model called it), with the MCP semconv's method and the server's name.
pub fn tool_span(tool: &str, call_id: &str, server: &str) -> tracing::Span {
    tracing::info_span!(
        target: "ctxgate::otel",
        "execute_tool",
        otel.name = %format_args!("execute_tool {tool}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
        gen_ai.tool.call.id = (!call_id.is_empty()).then_some(call_id),
        gen_ai.tool.type = "extension",
        mcp.method.name = "tools/call",
        server.name = server,
    )
}

/// A store call's span, for calls not traced where they are declared (the
/// trait methods carry their own, with the same fields): `db.system.name`
/// (`aws.dynamodb`, `redb`), `db.operation.name` (DynamoDB's API name, or a
/// redb `read`/`write` transaction), and which store call it serves.
pub fn store_span(
    system: &'static str,
    operation: &'static str,
    call: &'static str,
) -> tracing::Span {
    tracing::info_span!(
        target: "ctxgate::otel",
        "store",
        otel.name = operation,
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = operation,
        ctxgate.store.call = call,
    )
}

/// The `traceparent` and `tracestate` of the current span, for an outgoing
/// request (empty when spans are not exported).
pub fn context_headers() -> Vec<(HeaderName, HeaderValue)> {
    #[cfg(feature = "otel")]
    if enabled() {
        return otel::current_headers();
    }
    Vec::new()
}

/// Adds the current span's trace context to an outgoing request.
pub fn propagate(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    context_headers()
        .into_iter()
        .fold(req, |req, (name, value)| req.header(name, value))
}

/// Exports every finished span now, waiting for the exporter (on Lambda,
/// before an invocation ends: a frozen environment exports nothing).
pub async fn flush() {
    #[cfg(feature = "otel")]
    otel::flush().await;
}

/// The exporting layer for the process's subscriber, when [`wanted`] and
/// built with the `otel` feature; it sees the [`TARGET`] spans only. Needs a
/// Tokio runtime (the exporter's requests run on it).
#[cfg(feature = "otel")]
pub fn layer() -> Option<impl tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>
{
    otel::layer()
}

#[cfg(feature = "otel")]
mod otel {
    //! The OpenTelemetry SDK behind [`super`]: the tracer provider with its
    //! batch processor and OTLP exporter, and W3C trace-context propagation.

    use std::sync::OnceLock;

    use http::{HeaderMap, HeaderName, HeaderValue};
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;

    use super::{ENABLED, TARGET};

    /// The process's provider, kept for [`flush`].
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    pub(super) fn layer() -> Option<impl Layer<tracing_subscriber::Registry> + Send + Sync> {
        if !super::wanted() {
            return None;
        }
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let client = OnRuntime {
            client: reqwest::Client::builder()
                .tls_backend_preconfigured(crate::tls::client_config())
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .ok()?,
            rt,
        };
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(client)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("OTLP exporter not built, traces are off: {e}");
                return None;
            }
        };
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            let name =
                std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "ctxgate".into());
            resource = resource.with_service_name(name);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("ctxgate");
        let _ = PROVIDER.set(provider);
        ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
        let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
        super::FLUSH_EACH.store(lambda, std::sync::atomic::Ordering::Relaxed);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(Targets::new().with_target(TARGET, tracing::Level::INFO)),
        )
    }

    pub(super) async fn flush() {
        let Some(provider) = PROVIDER.get().cloned() else {
            return;
        };
        // The batch processor's thread does the export (on our runtime,
        // see `OnRuntime`) while this waits off the runtime's workers.
        match tokio::task::spawn_blocking(move || provider.force_flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "span export failed"),
            Err(_) => tracing::warn!("span export failed"),
        }
    }

    pub(super) fn set_parent(span: &tracing::Span, headers: &HeaderMap) {
        if headers.contains_key("traceparent") {
            let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
            let _ = span.set_parent(cx);
        }
    }

    pub(super) fn current_headers() -> Vec<(HeaderName, HeaderValue)> {
        let cx = tracing::Span::current().context();
        let mut headers = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
        headers
            .into_iter()
            .filter_map(|(k, v)| Some((k?, v)))
            .collect()
    }

    pub(super) fn finish_reasons(span: &tracing::Span, reason: &'static str) {
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(reason)].into()),
        );
    }

    /// Our reqwest client with its requests run on the process's Tokio
    /// runtime: the batch processor exports from a thread of its own, where
    /// reqwest's futures would find no reactor.
    #[derive(Debug)]
    struct OnRuntime {
        client: reqwest::Client,
        rt: tokio::runtime::Handle,
    }

    #[async_trait::async_trait]
    impl HttpClient for OnRuntime {
        async fn send_bytes(
            &self,
            request: http::Request<bytes::Bytes>,
        ) -> Result<http::Response<bytes::Bytes>, HttpError> {
            let client = self.client.clone();
            self.rt
                .spawn(async move {
                    let (parts, body) = request.into_parts();
                    let resp = client
                        .request(parts.method, parts.uri.to_string())
                        .headers(parts.headers)
                        .body(body)
                        .send()
                        .await?;
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    // The collector's answer is a small protobuf message;
                    // nothing of it is needed beyond its status.
                    let body = crate::capped::read(resp, 64 * 1024)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut out = http::Response::new(body);
                    *out.status_mut() = status;
                    *out.headers_mut() = headers;
                    Ok::<_, HttpError>(out)
                })
                .await?
        }
    }
}
