//! Issue 21: OpenTelemetry GenAI traces. A streamed chat turn with an MCP
//! tool call, under an incoming `traceparent`, exported over OTLP
//! (HTTP/protobuf) to a collector fake on loopback that decodes it: span
//! names, kinds, the GenAI, MCP and database attributes, parentage, one
//! trace (the caller's), the trace context sent on to the provider and the
//! MCP server, and nothing of the content, the keys or the tokens in any
//! export. On both stores. (One test per binary: the tracer is process-global.)

use std::sync::Arc;
use std::time::Duration;

use ctxgate::store::Store;
use ctxgate_tests::mcp_server::{McpFixture, Revision};
use ctxgate_tests::otlp::{CLIENT, Collector, SERVER, Span};
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, dynamo_store, embedded_store};
use serde_json::{Value, json};

const TENANT: &str = "traced";
const USER_TEXT: &str = "CONTENT-7f3a: look up customer 42 please, my secret is swordfish";
const PROVIDER_KEY: &str = "sk-proj-PROVIDERSECRET0123456789";
const ANSWER_TEXT: &str = "ANSWER-c0ffee: the customer is Ada";

/// The scripted model: asks for `crm__get_customer` first, then answers
/// (with cached and reasoning tokens in its usage).
fn model(r: &Received) -> Reply {
    let results = r.body["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    let head = |id: &str| json!({"id": id, "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18"});
    let mut chunks = Vec::new();
    let with = |mut h: Value, choices: Value| {
        h["choices"] = choices;
        h
    };
    if results {
        chunks.push(with(
            head("chatcmpl-step2"),
            json!([{"index": 0, "delta": {"role": "assistant", "content": ANSWER_TEXT}, "finish_reason": null}]),
        ));
        chunks.push(with(
            head("chatcmpl-step2"),
            json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        ));
        let mut u = head("chatcmpl-step2");
        u["choices"] = json!([]);
        u["usage"] = json!({"prompt_tokens": 40, "completion_tokens": 7, "total_tokens": 47,
            "prompt_tokens_details": {"cached_tokens": 16},
            "completion_tokens_details": {"reasoning_tokens": 3}});
        chunks.push(u);
    } else {
        chunks.push(with(
            head("chatcmpl-step1"),
            json!([{"index": 0, "delta": {"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                "id": "call_1", "type": "function",
                "function": {"name": "crm__get_customer", "arguments": "{\"id\":\"42\"}"}}]}, "finish_reason": null}]),
        ));
        chunks.push(with(
            head("chatcmpl-step1"),
            json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        ));
        let mut u = head("chatcmpl-step1");
        u["choices"] = json!([]);
        u["usage"] = json!({"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30});
        chunks.push(u);
    }
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    Reply::sse(body)
}

/// The trace context of a W3C `traceparent`: (trace id, parent id).
fn parse_traceparent(v: &str) -> (String, String) {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    assert_eq!(parts[0], "00", "{v}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// One streamed, stored turn with a tool call under `traceparent`; returns
/// the exported spans of its trace once the server span has arrived.
async fn traced_turn(
    collector: &Collector,
    store: Arc<dyn Store>,
    system: &str,
    trace_id: &str,
) -> Vec<Span> {
    let mcp = McpFixture::start(Revision::Current).await;
    let upstream = MockUpstream::start(model).await;
    let toml = format!(
        "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n\
         [tenants.{TENANT}]\ntokens_per_day = 1000000\n\
         [tenants.{TENANT}.mcp_servers.crm]\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\ntimeout_seconds = 5\n",
        mcp.url()
    );
    let openai = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        store,
        &toml,
        &[
            ("OPENAI_BASE_URL", &openai),
            ("OPENAI_API_KEY", PROVIDER_KEY),
        ],
    );
    let key = gw.key(TENANT, &["chat"]).await;
    let conversation = ctxgate_tests::unique("conv");
    let incoming = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (status, _, raw) = gw
        .call_text(
            "/v1/chat/completions",
            &key,
            &[("traceparent", &incoming), ("tracestate", "vendor=opaque")],
            json!({"model": "openai/gpt-4o-mini", "stream": true, "mcp_servers": ["crm"],
                "conversation_id": conversation,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": USER_TEXT}]}),
        )
        .await;
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains("ANSWER-c0ffee"), "{raw}");
    assert!(raw.ends_with("data: [DONE]\n\n"), "{raw}");
    ctxgate::trace::flush().await;
    let spans = collector
        .until(Duration::from_secs(30), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace_id && s.kind == SERVER)
        })
        .await
        .expect("the server span is exported");
    let spans: Vec<Span> = spans
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect();

    // The server span: the caller's span is its parent.
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    let server = servers[0];
    assert_eq!(server.name, "POST /v1/chat/completions");
    assert_eq!(server.parent, "00f067aa0ba902b7");
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.route"), Some("/v1/chat/completions"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.service, "ctxgate");

    // Two provider calls (the tool step and the answer), under the server span.
    let chats: Vec<&Span> = spans
        .iter()
        .filter(|s| s.attr("gen_ai.operation.name") == Some("chat"))
        .collect();
    assert_eq!(chats.len(), 2, "{spans:#?}");
    for c in &chats {
        assert_eq!(c.name, "chat gpt-4o-mini");
        assert_eq!(c.kind, CLIENT);
        assert_eq!(c.parent, server.span_id);
        assert_eq!(c.attr("gen_ai.provider.name"), Some("openai"));
        assert_eq!(c.attr("gen_ai.request.model"), Some("gpt-4o-mini"));
        assert_eq!(
            c.attr("gen_ai.response.model"),
            Some("gpt-4o-mini-2024-07-18")
        );
        assert_eq!(
            c.attr("gen_ai.conversation.id"),
            Some(conversation.as_str())
        );
    }
    let step = |id: &str| {
        *chats
            .iter()
            .find(|c| c.attr("gen_ai.response.id") == Some(id))
            .unwrap_or_else(|| panic!("a chat span for {id}: {chats:#?}"))
    };
    let first = step("chatcmpl-step1");
    assert_eq!(
        first.attr("gen_ai.response.finish_reasons"),
        Some("tool_calls")
    );
    assert_eq!(first.attr("gen_ai.usage.input_tokens"), Some("20"));
    assert_eq!(first.attr("gen_ai.usage.output_tokens"), Some("10"));
    let second = step("chatcmpl-step2");
    assert_eq!(second.attr("gen_ai.response.finish_reasons"), Some("stop"));
    assert_eq!(second.attr("gen_ai.usage.input_tokens"), Some("40"));
    assert_eq!(second.attr("gen_ai.usage.output_tokens"), Some("7"));
    assert_eq!(
        second.attr("gen_ai.usage.cache_read.input_tokens"),
        Some("16")
    );
    assert_eq!(
        second.attr("gen_ai.usage.reasoning.output_tokens"),
        Some("3")
    );

    // The tool call, under the server span.
    let tools: Vec<&Span> = spans
        .iter()
        .filter(|s| s.attr("gen_ai.operation.name") == Some("execute_tool"))
        .collect();
    assert_eq!(tools.len(), 1, "{spans:#?}");
    let tool = tools[0];
    assert_eq!(tool.name, "execute_tool crm__get_customer");
    assert_eq!(tool.kind, CLIENT);
    assert_eq!(tool.parent, server.span_id);
    assert_eq!(tool.attr("gen_ai.tool.name"), Some("crm__get_customer"));
    assert_eq!(tool.attr("gen_ai.tool.call.id"), Some("call_1"));
    assert_eq!(tool.attr("mcp.method.name"), Some("tools/call"));
    assert_eq!(tool.attr("server.name"), Some("crm"));
    assert_ne!(tool.status, 2, "the call succeeded");

    // Store calls: the key lookup and the commit, in the request's trace.
    let stores: Vec<&Span> = spans
        .iter()
        .filter(|s| s.attr("db.system.name").is_some())
        .collect();
    assert!(
        stores
            .iter()
            .all(|s| s.attr("db.system.name") == Some(system)),
        "{stores:#?}"
    );
    let commit = stores
        .iter()
        .find(|s| s.attr("ctxgate.store.call") == Some("append_turn"))
        .unwrap_or_else(|| panic!("the commit's span: {stores:#?}"));
    assert_eq!(commit.parent, server.span_id);
    let op = if system == "aws.dynamodb" {
        "TransactWriteItems"
    } else {
        "write"
    };
    assert_eq!(commit.attr("db.operation.name"), Some(op));
    assert_eq!(commit.kind, CLIENT);
    assert!(
        stores
            .iter()
            .any(|s| s.attr("ctxgate.store.call") == Some("key_by_hash")),
        "{stores:#?}"
    );

    // The provider got the trace context of its call's span, and only that.
    let seen = upstream.received();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        let tp = r.headers["traceparent"].to_str().unwrap();
        let (trace, parent) = parse_traceparent(tp);
        assert_eq!(trace, trace_id);
        assert!(
            chats.iter().any(|c| c.span_id == parent),
            "the provider's parent is a chat span: {tp}"
        );
        assert_eq!(
            r.headers.get("tracestate").and_then(|v| v.to_str().ok()),
            Some("vendor=opaque")
        );
        assert!(!format!("{:?}", r.headers).contains(&key));
    }
    // So did the MCP server, in the same trace.
    let mcp_seen = mcp.headers_seen();
    assert!(!mcp_seen.is_empty());
    for h in &mcp_seen {
        let tp = h
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .expect("traceparent on every MCP request");
        assert_eq!(parse_traceparent(tp).0, trace_id);
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_tool_turn_is_traced_with_the_genai_conventions() {
    let collector = Collector::start().await;
    // SAFETY: set before the tracer (or anything else) reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url);
        std::env::remove_var("OTEL_SERVICE_NAME");
        std::env::remove_var("OTEL_SDK_DISABLED");
    }
    ctxgate::telemetry::init_with("info", std::io::sink);
    assert!(ctxgate::trace::enabled());

    let (store, _dir) = embedded_store();
    let a = traced_turn(
        &collector,
        store,
        "redb",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )
    .await;
    let b = traced_turn(
        &collector,
        dynamo_store().await,
        "aws.dynamodb",
        "0af7651916cd43dd8448eb211c80319c",
    )
    .await;
    assert!(!a.is_empty() && !b.is_empty());

    // Exported as HTTP/protobuf.
    assert!(
        collector
            .content_types()
            .iter()
            .all(|ct| ct == "application/x-protobuf"),
        "{:?}",
        collector.content_types()
    );
    // Nothing of the content, the tool's arguments or result, the keys or
    // the tokens in any export (the raw protobuf bytes are searched).
    let raw: Vec<u8> = collector.raw().concat();
    let raw = String::from_utf8_lossy(&raw);
    for secret in [
        "CONTENT-7f3a",
        "swordfish",
        "ANSWER-c0ffee",
        "Lovelace",
        "ada@example.com",
        "{\"id\":\"42\"}",
        PROVIDER_KEY,
        "good-token",
        "sk-",
        "Bearer",
    ] {
        assert!(!raw.contains(secret), "{secret} reached an exported span");
    }
}
