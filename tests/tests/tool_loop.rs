//! Issue 15: the tool loop. A chat turn whose request names the tenant's MCP
//! servers hands their tools to the model, runs the calls the model asks for
//! against real MCP servers (built with rmcp, on loopback), gives the
//! results back and loops until the model answers: through mock OpenAI-wire
//! and Anthropic-wire upstreams that ask for calls (two in parallel) and
//! check exactly what they get back, streamed and not, stored and not, on
//! both stores; with the failure rows (server down, 401, a hanging tool, an
//! error result, an unknown tool, invalid arguments, the step limit, a
//! client that goes away) and the stored conversation and the budget checked
//! after each.

use std::sync::Arc;

use ctxgate::store::{CounterKey, Store};
use ctxgate_tests::mcp_server::{McpFixture, Revision};
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, dynamo_store, embedded_store};
use serde_json::{Value, json};

const TENANT: &str = "tools";

/// Which wire the mock provider speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
}

impl Wire {
    fn model(self) -> &'static str {
        match self {
            Wire::OpenAi => "openai/gpt-4o-mini",
            Wire::Anthropic => "anthropic/claude-sonnet-4-5",
        }
    }
}

/// What the scripted model does, read from the user's message: `CALL a {..}
/// || b {..}` asks for those calls (in parallel) and then answers with the
/// results it got; `LOOP a {..}` asks for the call again after every result
/// (until tools are off).
struct Script {
    calls: Vec<(String, String)>,
    again: bool,
}

fn script(user: &str) -> Script {
    let (again, rest) = match user.strip_prefix("LOOP ") {
        Some(r) => (true, r),
        None => (false, user.strip_prefix("CALL ").unwrap_or("")),
    };
    let calls = rest
        .split("||")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            let (name, args) = c.split_once(' ').unwrap_or((c, "{}"));
            (name.to_owned(), args.to_owned())
        })
        .collect();
    Script { calls, again }
}

/// The tool results at the end of an OpenAI request: (call id, content).
fn openai_results(body: &Value) -> Vec<(String, String)> {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let tail: Vec<&Value> = msgs
        .iter()
        .rev()
        .take_while(|m| m["role"] == "tool")
        .collect();
    tail.iter()
        .rev()
        .map(|m| {
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (m["tool_call_id"].as_str().unwrap_or("").to_owned(), content)
        })
        .collect()
}

fn first_user_openai(body: &Value) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rfind(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The scripted model on the OpenAI wire.
fn openai_model(r: &Received) -> Reply {
    let body = &r.body;
    let streamed = body["stream"] == true;
    let results = openai_results(body);
    let s = script(&first_user_openai(body));
    let tools_off = body["tool_choice"] == "none";
    let step = body["messages"].as_array().map_or(0, Vec::len);
    let answer = if !tools_off && (results.is_empty() || s.again) && !s.calls.is_empty() {
        let calls: Vec<Value> = s
            .calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                json!({"id": format!("call_{step}_{i}"), "type": "function",
                       "function": {"name": name, "arguments": args}})
            })
            .collect();
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                "content": "Let me look.", "tool_calls": calls}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}})
    } else {
        let text = if tools_off {
            "no more tools".to_owned()
        } else {
            results
                .iter()
                .map(|(_, c)| c.clone())
                .collect::<Vec<_>>()
                .join(" | ")
        };
        json!({"id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                "content": format!("answer: {text}")}}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}})
    };
    if streamed {
        Reply::sse(openai_stream(&answer))
    } else {
        Reply::json(answer)
    }
}

/// An OpenAI answer as a chunk stream, each call's arguments split in two.
fn openai_stream(answer: &Value) -> String {
    let choice = &answer["choices"][0];
    let msg = &choice["message"];
    let mut chunks = vec![
        json!({"choices": [{"index": 0, "delta": {"role": "assistant",
        "content": msg["content"]}, "finish_reason": null}]}),
    ];
    for (i, c) in msg["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let args = c["function"]["arguments"].as_str().unwrap_or("");
        let (a, b) = args.split_at(args.len() / 2);
        chunks.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i,
            "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": a}}]},
            "finish_reason": null}]}));
        chunks.push(
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i,
            "function": {"arguments": b}}]}, "finish_reason": null}]}),
        );
    }
    chunks.push(
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}),
    );
    chunks.push(json!({"choices": [], "usage": answer["usage"]}));
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    body
}

/// The tool results at the end of an Anthropic request: (tool_use_id, content as text).
fn anthropic_results(body: &Value) -> Vec<(String, String)> {
    let Some(last) = body["messages"].as_array().and_then(|m| m.last()) else {
        return Vec::new();
    };
    last["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| {
            let content = match &b["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| match p["type"].as_str() {
                        Some("text") => p["text"].as_str().unwrap_or("").to_owned(),
                        Some(t) => format!("<{t}>"),
                        None => String::new(),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            };
            let err = if b["is_error"] == true { "ERROR " } else { "" };
            (
                b["tool_use_id"].as_str().unwrap_or("").to_owned(),
                format!("{err}{content}"),
            )
        })
        .collect()
}

fn first_user_anthropic(body: &Value) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| match &m["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(b) => b
                .iter()
                .filter_map(|b| b["text"].as_str().map(str::to_owned))
                .collect(),
            _ => vec![],
        })
        .next()
        .unwrap_or_default()
}

/// The scripted model on the Anthropic wire.
fn anthropic_model(r: &Received) -> Reply {
    let body = &r.body;
    let results = anthropic_results(body);
    let s = script(&first_user_anthropic(body));
    let tools_off = body["tool_choice"]["type"] == "none";
    let step = body["messages"].as_array().map_or(0, Vec::len);
    let (content, stop) = if !tools_off && (results.is_empty() || s.again) && !s.calls.is_empty() {
        let mut blocks = vec![json!({"type": "text", "text": "Let me look."})];
        for (i, (name, args)) in s.calls.iter().enumerate() {
            let input: Value = serde_json::from_str(args).unwrap_or(json!({"raw": args}));
            blocks.push(
                json!({"type": "tool_use", "id": format!("toolu_{step}_{i}"),
                "name": name, "input": input}),
            );
        }
        (blocks, "tool_use")
    } else {
        let text = if tools_off {
            "no more tools".to_owned()
        } else {
            results
                .iter()
                .map(|(_, c)| c.clone())
                .collect::<Vec<_>>()
                .join(" | ")
        };
        (
            vec![json!({"type": "text", "text": format!("answer: {text}")})],
            "end_turn",
        )
    };
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "content": content, "stop_reason": stop,
        "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 10}});
    if body["stream"] == true {
        Reply::sse(anthropic_stream(&answer))
    } else {
        Reply::json(answer)
    }
}

/// An Anthropic answer as its event stream, tool inputs split in two.
fn anthropic_stream(answer: &Value) -> String {
    let mut events = vec![json!({"type": "message_start", "message": {"id": "msg_1",
        "type": "message", "role": "assistant", "model": answer["model"], "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 1}}})];
    for (i, b) in answer["content"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if b["type"] == "text" {
            events.push(json!({"type": "content_block_start", "index": i,
                "content_block": {"type": "text", "text": ""}}));
            events.push(json!({"type": "content_block_delta", "index": i,
                "delta": {"type": "text_delta", "text": b["text"]}}));
        } else {
            events.push(json!({"type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}));
            let input = b["input"].to_string();
            let (x, y) = input.split_at(input.len() / 2);
            for part in [x, y] {
                events.push(json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": part}}));
            }
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": answer["stop_reason"],
        "stop_sequence": null}, "usage": {"output_tokens": 10}}),
    );
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

/// A gateway whose tenant has the fixture registered as `crm` (in the config
/// file), and a mock provider speaking `wire`.
struct Setup {
    gw: Gateway,
    upstream: MockUpstream,
    key: String,
}

async fn setup(store: Arc<dyn Store>, wire: Wire, mcp_url: &str, extra: &str) -> Setup {
    let upstream = MockUpstream::start(move |r| match wire {
        Wire::OpenAi => openai_model(r),
        Wire::Anthropic => anthropic_model(r),
    })
    .await;
    let toml = format!(
        "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\nmax_tool_steps = 3\n{extra}\n\
         [tenants.{TENANT}]\ntokens_per_day = 1000000\n\
         [tenants.{TENANT}.mcp_servers.crm]\nurl = \"{mcp_url}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\ntimeout_seconds = 2\n"
    );
    let openai = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        store,
        &toml,
        &[
            ("OPENAI_BASE_URL", &openai),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_BASE_URL", &upstream.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ],
    );
    let key = gw.key(TENANT, &["chat", "conversations:read"]).await;
    Setup { gw, upstream, key }
}

fn body(wire: Wire, text: &str, conversation: Option<&str>, stream: bool) -> Value {
    let mut b = json!({"model": wire.model(), "mcp_servers": ["crm"], "stream": stream,
        "messages": [{"role": "user", "content": text}]});
    if let Some(c) = conversation {
        b["conversation_id"] = json!(c);
    }
    if stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// The answer's text and the whole response: for a stream, the text of its
/// chunks, the final usage and the tool comments.
struct Answer {
    status: u16,
    text: String,
    finish: String,
    usage: Value,
    comments: Vec<Value>,
    raw: String,
    headers: http::HeaderMap,
}

async fn ask(s: &Setup, body: Value) -> Answer {
    let stream = body["stream"] == true;
    let (status, headers, raw) =
        s.gw.call_text("/v1/chat/completions", &s.key, &[], body)
            .await;
    let mut a = Answer {
        status,
        text: String::new(),
        finish: String::new(),
        usage: Value::Null,
        comments: Vec::new(),
        raw: raw.clone(),
        headers,
    };
    if !stream {
        let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        a.text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        a.finish = v["choices"][0]["finish_reason"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        a.usage = v["usage"].clone();
        return a;
    }
    for line in raw.lines() {
        if let Some(c) = line.strip_prefix(": ctxgate-tool ") {
            a.comments.push(serde_json::from_str(c).unwrap());
        }
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        assert!(
            v["choices"][0]["delta"]["tool_calls"].is_null(),
            "no MCP call reaches the client: {v}"
        );
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            a.text.push_str(t);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            a.finish = f.to_owned();
        }
        if !v["usage"].is_null() {
            a.usage = v["usage"].clone();
        }
    }
    if !raw.contains("\"error\"") {
        assert!(
            raw.ends_with("data: [DONE]\n\n"),
            "one stream ending in [DONE]: {raw}"
        );
    }
    a
}

/// Tokens reserved or spent today by the tenant.
async fn spent(store: &Arc<dyn Store>) -> i64 {
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let key = CounterKey {
        pk: format!("T#{TENANT}#B"),
        sk: format!("{day}#tokens"),
    };
    store.counter_get(&key).await.unwrap()
}

async fn usage_row(store: &Arc<dyn Store>, model: &str) -> (u64, u64) {
    let rows = store.usage(TENANT, "0000", "9999").await.unwrap();
    rows.iter()
        .filter(|r| r.model == model)
        .map(|r| (r.requests, r.tool_errors))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Two calls in parallel, their results back to the model, the answer; the
/// whole exchange stored in one write, each step metered, the MCP server
/// seeing only the registered credential.
async fn parallel_calls(store: Arc<dyn Store>, wire: Wire, stream: bool, stored: bool) {
    let mcp = McpFixture::start(Revision::Current).await;
    let s = setup(store.clone(), wire, mcp.url().as_str(), "").await;
    let conv = stored.then(|| ctxgate_tests::unique("loop"));
    let before_tokens = spent(&store).await;
    let before_rows = usage_row(&store, "mcp/crm").await;
    let a = ask(
        &s,
        body(
            wire,
            r#"CALL crm__get_customer {"id":"42"} || crm__get_customer {"id":"7"}"#,
            conv.as_deref(),
            stream,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.finish, "stop");
    assert!(a.text.starts_with("Let me look."), "{}", a.text);
    assert!(a.text.contains("answer: "), "{}", a.text);
    assert!(
        a.text.contains("customer 42: Ada") && a.text.contains("customer 7: Ada"),
        "{}",
        a.text
    );
    if stream {
        assert_eq!(a.comments.len(), 2, "{}", a.raw);
        assert!(
            a.comments
                .iter()
                .all(|c| c["outcome"] == "ok" && c["server"] == "crm")
        );
        let keep_alive = a.raw.find(": keep-alive").expect("a beat while tools run");
        assert!(keep_alive < a.raw.find(": ctxgate-tool").unwrap());
    }
    // The turn's usage is both steps'.
    let total = a.usage["total_tokens"].as_u64().unwrap();
    assert_eq!(total, 30 + if wire == Wire::OpenAi { 46 } else { 30 });

    // The provider got the tools, then exactly the two results.
    let seen = s.upstream.received();
    assert_eq!(seen.len(), 2);
    let tools = seen[0].body["tools"].to_string();
    assert!(tools.contains("crm__get_customer"), "{tools}");
    let results = match wire {
        Wire::OpenAi => openai_results(&seen[1].body),
        Wire::Anthropic => anthropic_results(&seen[1].body),
    };
    assert_eq!(results.len(), 2, "{}", seen[1].body);
    assert!(results[0].1.contains("customer 42"), "{results:?}");
    assert!(results[1].1.contains("customer 7"), "{results:?}");

    // The MCP server saw the registered credential and nothing of the client's.
    for h in mcp.headers_seen() {
        let auth = h.get("authorization").and_then(|v| v.to_str().ok());
        assert_eq!(auth, Some("Bearer good-token"));
        assert!(
            !format!("{h:?}").contains(&s.key),
            "the client's key never goes to MCP"
        );
    }

    // Budget: both steps settled, nothing left reserved.
    let after = spent(&store).await;
    assert_eq!(after - before_tokens, i64::try_from(total).unwrap());
    let rows = usage_row(&store, "mcp/crm").await;
    assert_eq!((rows.0 - before_rows.0, rows.1 - before_rows.1), (2, 0));

    if let Some(id) = conv {
        let (status, _, v) =
            s.gw.call(
                "GET",
                &format!("/v1/conversations/{id}"),
                Some(&s.key),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let msgs = v["messages"]["data"].as_array().unwrap();
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            ["user", "assistant", "tool", "tool", "assistant"],
            "{v}"
        );
        assert_eq!(msgs[1]["tool_calls"].as_array().unwrap().len(), 2);
        for m in &msgs[2..4] {
            assert_eq!(m["tool"]["server"], "crm");
            assert_eq!(m["tool"]["tool"], "get_customer");
            assert_eq!(m["tool"]["outcome"], "ok");
            assert!(m["tool"]["duration_ms"].is_u64());
        }
        assert!(msgs[4]["content"].as_str().unwrap().contains("answer: "));
        assert_eq!(v["turns"], 1);
    }
}

#[tokio::test]
async fn openai_parallel_calls_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    parallel_calls(store.clone(), Wire::OpenAi, false, true).await;
    parallel_calls(store.clone(), Wire::OpenAi, true, true).await;
    parallel_calls(store.clone(), Wire::OpenAi, false, false).await;
    parallel_calls(store, Wire::OpenAi, true, false).await;
}

#[tokio::test]
async fn anthropic_parallel_calls_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    parallel_calls(store.clone(), Wire::Anthropic, false, true).await;
    parallel_calls(store.clone(), Wire::Anthropic, true, true).await;
    parallel_calls(store, Wire::Anthropic, true, false).await;
}

#[tokio::test]
async fn parallel_calls_on_dynamodb() {
    let store = dynamo_store().await;
    parallel_calls(store.clone(), Wire::OpenAi, true, true).await;
    parallel_calls(store, Wire::Anthropic, false, true).await;
}

/// The stored conversation's tool messages: (server, tool, outcome).
async fn stored_tools(s: &Setup, id: &str) -> (Vec<String>, Vec<(String, String, String)>) {
    let (status, _, v) =
        s.gw.call(
            "GET",
            &format!("/v1/conversations/{id}"),
            Some(&s.key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let msgs = v["messages"]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let roles = msgs
        .iter()
        .map(|m| m["role"].as_str().unwrap_or("").to_owned())
        .collect();
    let tools = msgs
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let t = &m["tool"];
            (
                t["server"].as_str().unwrap_or("").to_owned(),
                t["tool"].as_str().unwrap_or("").to_owned(),
                t["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    (roles, tools)
}

/// One failing call: the model sees an error result and answers; the turn
/// is stored with the failure named; no 5xx.
async fn failing_call(s: &Setup, wire: Wire, call: &str, outcome: &str, tool: &str) -> Answer {
    let id = ctxgate_tests::unique("fail");
    let a = ask(s, body(wire, &format!("CALL {call}"), Some(&id), true)).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.finish, "stop", "{}", a.raw);
    assert!(a.text.contains("answer: "), "{}", a.text);
    assert_eq!(a.comments.len(), 1, "{}", a.raw);
    assert_eq!(a.comments[0]["outcome"], outcome, "{}", a.raw);
    let (roles, tools) = stored_tools(s, &id).await;
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(tools[0].1, tool);
    assert_eq!(tools[0].2, outcome);
    a
}

#[tokio::test]
async fn failing_calls_become_error_results_the_model_sees() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    let s = setup(store.clone(), Wire::OpenAi, mcp.url().as_str(), "").await;
    let before = usage_row(&store, "mcp/crm").await;

    // A tool that returns an error result.
    failing_call(&s, Wire::OpenAi, "crm__broken {}", "tool_error", "broken").await;
    // The model names a tool no server offers.
    let a = failing_call(
        &s,
        Wire::OpenAi,
        "crm__nope {}",
        "unknown_tool",
        "crm__nope",
    )
    .await;
    assert!(a.text.contains("crm__nope"), "{}", a.text);
    // Arguments that are not JSON.
    failing_call(
        &s,
        Wire::OpenAi,
        "crm__get_customer {\"id\":",
        "invalid_arguments",
        "get_customer",
    )
    .await;
    // A tool that hangs: cut at the server's timeout (2 s), and cancelled.
    failing_call(&s, Wire::OpenAi, "crm__hang {}", "timed_out", "hang").await;
    mcp.cancelled().await;
    // Failed calls are counted per server (the unknown tool has none).
    let after = usage_row(&store, "mcp/crm").await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (3, 3));
    assert_eq!(usage_row(&store, "mcp/").await, (0, 0));

    // On the Anthropic wire the error is flagged as such.
    let s = setup(store, Wire::Anthropic, mcp.url().as_str(), "").await;
    failing_call(
        &s,
        Wire::Anthropic,
        "crm__broken {}",
        "tool_error",
        "broken",
    )
    .await;
    let seen = s.upstream.received();
    let results = anthropic_results(&seen.last().unwrap().body);
    assert!(results[0].1.starts_with("ERROR"), "{results:?}");
}

#[tokio::test]
async fn a_server_that_is_down_or_refuses_leaves_its_tools_out() {
    let (store, _dir) = embedded_store();
    // A server that is down: its tools are left out and the response says so.
    let mut mcp = McpFixture::start(Revision::Current).await;
    let url = mcp.url().to_string();
    mcp.stop().await;
    let s = setup(store.clone(), Wire::OpenAi, &url, "").await;
    let id = ctxgate_tests::unique("down");
    let a = ask(&s, body(Wire::OpenAi, "hello", Some(&id), false)).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.headers["x-ctxgate-mcp-unavailable"], "crm");
    assert!(s.upstream.received()[0].body["tools"].is_null());
    assert_eq!(a.text, "answer: ");

    // A server that refuses the registered credential (401): the same.
    let mcp = McpFixture::start(Revision::Current).await;
    let toml_fix = mcp.url().to_string();
    let s = setup(store.clone(), Wire::OpenAi, &toml_fix, "").await;
    // Listed once with the good token, then the server goes down: the call
    // fails, the model sees it, and the next turn lists again.
    let a = ask(&s, body(Wire::OpenAi, "hello", None, false)).await;
    assert!(a.headers.get("x-ctxgate-mcp-unavailable").is_none());
    let mut mcp = mcp;
    mcp.stop().await;
    let id = ctxgate_tests::unique("gone");
    let a = ask(
        &s,
        body(
            Wire::OpenAi,
            r#"CALL crm__get_customer {"id":"1"}"#,
            Some(&id),
            true,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.comments[0]["outcome"], "failed", "{}", a.raw);
    let (_, tools) = stored_tools(&s, &id).await;
    assert_eq!(tools[0].2, "failed");
    let a = ask(&s, body(Wire::OpenAi, "hello", None, false)).await;
    assert_eq!(a.headers["x-ctxgate-mcp-unavailable"], "crm");
}

#[tokio::test]
async fn a_server_that_answers_401_is_reported_unavailable() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    let upstream = MockUpstream::start(openai_model).await;
    let toml = format!(
        "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n[tenants.{TENANT}.mcp_servers.crm]\n\
         url = \"{}\"\nheaders = {{ Authorization = \"Bearer wrong\" }}\n",
        mcp.url()
    );
    let base = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        store,
        &toml,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-test")],
    );
    let key = gw.key(TENANT, &["chat"]).await;
    let (status, headers, _) = gw
        .call_text(
            "/v1/chat/completions",
            &key,
            &[],
            json!({"model": "openai/gpt-4o-mini", "mcp_servers": ["crm"],
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ctxgate-mcp-unavailable"], "crm");
    assert!(mcp.calls().is_empty());
}

#[tokio::test]
async fn the_step_limit_asks_once_more_with_tools_off() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    for wire in [Wire::OpenAi, Wire::Anthropic] {
        let s = setup(store.clone(), wire, mcp.url().as_str(), "").await;
        let before = spent(&store).await;
        let id = ctxgate_tests::unique("limit");
        let a = ask(
            &s,
            body(
                wire,
                r#"LOOP crm__get_customer {"id":"1"}"#,
                Some(&id),
                false,
            ),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.raw);
        assert_eq!(a.text.matches("Let me look.").count(), 3, "{}", a.text);
        assert!(a.text.ends_with("answer: no more tools"), "{}", a.text);
        assert_eq!(a.finish, "stop");
        let seen = s.upstream.received();
        assert_eq!(seen.len(), 4, "max_tool_steps = 3, then once more");
        let choice = &seen[3].body["tool_choice"];
        assert!(choice == "none" || choice["type"] == "none", "{choice}");
        let (roles, tools) = stored_tools(&s, &id).await;
        assert_eq!(roles.len(), 8, "{roles:?}");
        assert_eq!(tools.len(), 3);
        // Every step was reserved and settled: the budget holds the turn's usage.
        let total = a.usage["total_tokens"].as_i64().unwrap();
        assert_eq!(spent(&store).await - before, total);
    }
}

#[tokio::test]
async fn a_client_tool_call_ends_the_loop_as_today() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    let s = setup(store, Wire::OpenAi, mcp.url().as_str(), "").await;
    let id = ctxgate_tests::unique("client");
    let mut b = body(
        Wire::OpenAi,
        r#"CALL crm__get_customer {"id":"3"} || weather {"city":"Oslo"}"#,
        Some(&id),
        false,
    );
    b["tools"] = json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let (status, _, v) =
        s.gw.call("POST", "/v1/chat/completions", Some(&s.key), Some(b))
            .await;
    assert_eq!(status, 200, "{v}");
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "only the client's call: {v}");
    assert_eq!(calls[0]["function"]["name"], "weather");
    // The MCP call ran and its result is stored after the answer, so the
    // client's result can follow it.
    let (roles, tools) = stored_tools(&s, &id).await;
    assert_eq!(roles, ["user", "assistant", "tool"]);
    assert_eq!(tools[0].2, "ok");
    assert_eq!(mcp.calls().len(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_mid_loop_cancels_the_calls_and_is_refunded() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    let s = setup(store.clone(), Wire::OpenAi, mcp.url().as_str(), "").await;
    let before = spent(&store).await;
    let id = ctxgate_tests::unique("gone");
    let req = http::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", s.key))
        .body(axum::body::Body::from(
            body(Wire::OpenAi, "CALL crm__hang {}", Some(&id), true).to_string(),
        ))
        .unwrap();
    let resp = s.gw.router.clone().oneshot(req).await.unwrap();
    let mut body = resp.into_body();
    // Read until the tool is running, then go away.
    let reading = async { while let Some(Ok(_)) = body.frame().await {} };
    tokio::select! {
        _ = mcp.hang_started() => {}
        _ = reading => panic!("the stream ended while the tool hung"),
    }
    drop(body);
    mcp.cancelled().await;
    // The first step's usage stays spent; nothing else is held.
    ctxgate_tests::eventually("the reservation refunded", || {
        let store = store.clone();
        async move { spent(&store).await - before == 30 }
    })
    .await;
    let (status, _, _) =
        s.gw.call(
            "GET",
            &format!("/v1/conversations/{id}"),
            Some(&s.key),
            None,
        )
        .await;
    assert_eq!(status, 404, "a turn cut off stores nothing");
}

#[tokio::test]
async fn an_unknown_server_is_a_400_and_stores_nothing() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    let s = setup(store, Wire::OpenAi, mcp.url().as_str(), "").await;
    let id = ctxgate_tests::unique("bad");
    for (servers, param) in [
        (json!(["crm", "nope"]), "mcp_servers[1]"),
        (json!(["Bad Name"]), "mcp_servers[0]"),
        (json!(["crm", "crm"]), "mcp_servers[1]"),
        (json!("crm"), "mcp_servers"),
    ] {
        let mut b = body(Wire::OpenAi, "hi", Some(&id), false);
        b["mcp_servers"] = servers;
        let (status, _, v) =
            s.gw.call("POST", "/v1/chat/completions", Some(&s.key), Some(b))
                .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let (status, _, _) =
        s.gw.call(
            "GET",
            &format!("/v1/conversations/{id}"),
            Some(&s.key),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert!(s.upstream.received().is_empty());
}

/// Figure for the closing note: the DynamoDB calls of one stored turn of
/// three model steps (two of which ran a tool), counted at a proxy in front
/// of the emulator. Printed with `--nocapture`.
#[tokio::test]
async fn store_round_trips_of_a_three_step_turn() {
    let mcp = McpFixture::start(Revision::Current).await;
    let upstream = MockUpstream::start(openai_model).await;
    let base = format!("{}/v1", upstream.url);
    let toml = format!(
        "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\nmax_tool_steps = 2\n\
         [tenants.{TENANT}]\ntokens_per_day = 1000000\n\
         [tenants.{TENANT}.mcp_servers.crm]\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\n",
        mcp.url()
    );
    let (gw, proxy) = ctxgate_tests::proxied_gateway(
        &toml,
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-test"),
        ],
    )
    .await;
    let key = gw.key(TENANT, &["chat"]).await;
    let s = Setup { gw, upstream, key };
    // A first turn warms the key cache and the tool list.
    let id = ctxgate_tests::unique("trips");
    ask(&s, body(Wire::OpenAi, "hello", Some(&id), false)).await;
    let ops = [
        "GetItem",
        "Query",
        "UpdateItem",
        "PutItem",
        "TransactWriteItems",
        "BatchWriteItem",
        "DeleteItem",
    ];
    let before: Vec<usize> = ops.iter().map(|o| proxy.calls(o)).collect();
    let a = ask(
        &s,
        body(
            Wire::OpenAi,
            r#"LOOP crm__get_customer {"id":"1"}"#,
            Some(&id),
            false,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(s.upstream.received().len(), 1 + 3, "three model steps");
    println!("DynamoDB calls of a stored turn of three model steps (two ran a tool):");
    println!("| operation | calls |\n|---|---|");
    let mut counts = Vec::new();
    for (o, b) in ops.iter().zip(before) {
        let n = proxy.calls(o) - b;
        counts.push((*o, n));
        if n > 0 {
            println!("| {o} | {n} |");
        }
    }
    let count = |op: &str| counts.iter().find(|(o, _)| *o == op).map_or(0, |(_, n)| *n);
    // One read for the context, one transaction for the commit, whatever the
    // steps; and, after the answer (the test's flush), one batch settling the
    // three steps' budget reservations (issue 19).
    assert_eq!(count("Query"), 1);
    assert_eq!(count("TransactWriteItems"), 1 + 1);
}

/// The loop through a fallback chain (OpenAI down, then Anthropic) and an
/// OpenAI-compatible provider, on a legacy (2025-06-18) server, for a key
/// whose default servers are used when the request names none.
#[tokio::test]
async fn fallback_chains_compatible_providers_legacy_servers_and_key_defaults() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Legacy).await;
    let upstream = MockUpstream::start(|r| {
        if r.path.starts_with("/openai/") {
            return Reply::status(500, r#"{"error":{"message":"down"}}"#);
        }
        match r.path.as_str() {
            "/v1/messages" => anthropic_model(r),
            _ => openai_model(r),
        }
    })
    .await;
    let toml = format!(
        "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n\
         [retry]\nattempts = 1\n\
         [providers.local]\nkind = \"openai_compatible\"\nbase_url = \"{u}/compat/v1\"\n\
         [aliases]\nsmart = [\"openai/gpt-4o-mini\", \"anthropic/claude-sonnet-4-5\"]\n\
         [tenants.{TENANT}.mcp_servers.crm]\nurl = \"{m}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\n",
        u = upstream.url,
        m = mcp.url()
    );
    let openai = format!("{}/openai/v1", upstream.url);
    let gw = Gateway::with_toml(
        store.clone(),
        &toml,
        &[
            ("OPENAI_BASE_URL", &openai),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_BASE_URL", &upstream.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ],
    );
    // A key whose default is the CRM.
    let mut k = ctxgate::auth::mint_key(TENANT, "defaults", &["chat".into()], None, 1).unwrap();
    k.record.mcp_servers = vec!["crm".into()];
    store.put_key(&k.record).await.unwrap();
    let s = Setup {
        gw,
        upstream,
        key: k.secret,
    };
    for (model, stream) in [("smart", false), ("smart", true), ("local/m", true)] {
        let b = json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": r#"CALL crm__get_customer {"id":"5"}"#}]});
        let a = ask(&s, b).await;
        assert_eq!(a.status, 200, "{model}: {}", a.raw);
        assert!(a.text.contains("customer 5: Ada"), "{model}: {}", a.text);
        assert_eq!(a.finish, "stop");
    }
    // The legacy server was initialised once per turn that connected.
    assert_eq!(mcp.initializes(), 3);
    // `[]` turns the key's default off: no tools reach the model.
    let before = s.upstream.received().len();
    let a = ask(
        &s,
        json!({"model": "local/m", "mcp_servers": [],
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(s.upstream.received()[before].body["tools"].is_null());
}

/// Tool results go through the redaction policy: `upstream` for what the
/// model sees, `stored` for the conversation; images reach the model where
/// the provider takes them; a long result is cut with a visible marker.
#[tokio::test]
async fn results_are_redacted_cut_and_shown_as_the_provider_takes_them() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    let extra = format!(
        "max_result_bytes = 2000\n[tenants.{TENANT}.redaction]\nupstream = \"redact\"\nstored = \"redact\"\n"
    );
    for wire in [Wire::OpenAi, Wire::Anthropic] {
        let s = setup(store.clone(), wire, mcp.url().as_str(), &extra).await;
        let id = ctxgate_tests::unique("redact");
        let a = ask(
            &s,
            body(
                wire,
                r#"CALL crm__get_customer {"id":"1"} || crm__photo {} || crm__big {"size":50000}"#,
                Some(&id),
                false,
            ),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.raw);
        let seen = s.upstream.received();
        let sent = seen[1].body.to_string();
        assert!(!sent.contains("ada@example.com"), "{sent}");
        assert!(sent.contains("[EMAIL]"), "{sent}");
        assert!(sent.contains("result truncated"), "the cut is visible");
        match wire {
            // Anthropic takes the image in the tool result.
            Wire::Anthropic => assert!(sent.contains(r#""type":"image""#), "{sent}"),
            // OpenAI takes text only there.
            Wire::OpenAi => {
                assert!(!sent.contains("image_url"), "{sent}");
                assert!(sent.contains("cannot be shown"), "{sent}");
            }
        }
        let (status, _, v) =
            s.gw.call(
                "GET",
                &format!("/v1/conversations/{id}"),
                Some(&s.key),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let stored = v.to_string();
        assert!(!stored.contains("ada@example.com"), "{stored}");
    }
}

/// A provider that fails after the first step: the turn fails, nothing is
/// stored, and the first step's usage is still recorded (it was paid for).
#[tokio::test]
async fn a_provider_failure_mid_loop_stores_nothing() {
    let (store, _dir) = embedded_store();
    let mcp = McpFixture::start(Revision::Current).await;
    let s = setup(
        store.clone(),
        Wire::OpenAi,
        mcp.url().as_str(),
        "[retry]\nattempts = 1\n",
    )
    .await;
    s.upstream.respond(|r| {
        if openai_results(&r.body).is_empty() {
            openai_model(r)
        } else {
            Reply::status(
                400,
                r#"{"error":{"message":"bad request","type":"invalid_request_error"}}"#,
            )
        }
    });
    let before = usage_row(&store, "openai/gpt-4o-mini").await;
    let tools_before = usage_row(&store, "mcp/crm").await;
    let spent_before = spent(&store).await;
    let id = ctxgate_tests::unique("midfail");
    for stream in [false, true] {
        let a = ask(
            &s,
            body(
                Wire::OpenAi,
                r#"CALL crm__get_customer {"id":"1"}"#,
                Some(&id),
                stream,
            ),
        )
        .await;
        if stream {
            assert!(a.raw.contains("\"error\""), "{}", a.raw);
            assert!(!a.raw.contains("[DONE]"), "{}", a.raw);
        } else {
            assert_eq!(a.status, 400, "{}", a.raw);
        }
    }
    let (status, _, _) =
        s.gw.call(
            "GET",
            &format!("/v1/conversations/{id}"),
            Some(&s.key),
            None,
        )
        .await;
    assert_eq!(status, 404, "nothing stored");
    ctxgate_tests::eventually("the first steps' usage recorded", || {
        let store = store.clone();
        async move { usage_row(&store, "openai/gpt-4o-mini").await.0 >= before.0 + 2 }
    })
    .await;
    // The tool calls were made all the same: counted though nothing was stored.
    ctxgate_tests::eventually("the tool calls recorded", || {
        let store = store.clone();
        async move { usage_row(&store, "mcp/crm").await.0 == tools_before.0 + 2 }
    })
    .await;
    ctxgate_tests::eventually("only what was spent stays counted", || {
        let store = store.clone();
        async move { spent(&store).await - spent_before == 60 }
    })
    .await;
}

/// The tool loop behind the Anthropic Messages door: `mcp_servers` in the
/// body, the calls hidden from the client, whole and streamed, on both wires.
#[tokio::test]
async fn the_messages_door_runs_the_loop_too() {
    let mcp = McpFixture::start(Revision::Current).await;
    for wire in [Wire::Anthropic, Wire::OpenAi] {
        let (store, _dir) = embedded_store();
        let s = setup(store, wire, mcp.url().as_str(), "").await;
        for stream in [false, true] {
            let body = json!({"model": wire.model(), "max_tokens": 200, "stream": stream,
                "mcp_servers": ["crm"],
                "messages": [{"role": "user", "content": r#"CALL crm__get_customer {"id":"42"}"#}]});
            let (status, _, raw) = s.gw.call_text("/v1/messages", &s.key, &[], body).await;
            assert_eq!(status, 200, "{raw}");
            let text = if stream {
                assert!(
                    !raw.contains("\"tool_use\""),
                    "no MCP call reaches the client: {raw}"
                );
                assert!(raw.contains(": ctxgate-tool "), "{raw}");
                assert!(
                    raw.trim_end()
                        .ends_with("data: {\"type\":\"message_stop\"}"),
                    "{raw}"
                );
                raw.lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
                    .collect::<String>()
            } else {
                let v: Value = serde_json::from_str(&raw).unwrap();
                assert_eq!(v["stop_reason"], "end_turn", "{v}");
                assert!(
                    v["content"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|b| b["type"] == "text"),
                    "{v}"
                );
                v["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<String>()
            };
            assert!(
                text.contains("customer 42: Ada"),
                "{wire:?} stream={stream}: {text}"
            );
        }
    }
}

/// Issue 18: an `mcp` tool of a Responses request names a registered server
/// (`server_label`): its tools join the turn and the loop runs them, hidden
/// from the client, whole and streamed, on both upstream wires; the stream
/// ends with `response.completed` once the turn is stored.
#[tokio::test]
async fn the_responses_door_runs_the_loop_for_an_mcp_tool() {
    let mcp = McpFixture::start(Revision::Current).await;
    for wire in [Wire::Anthropic, Wire::OpenAi] {
        let (store, _dir) = embedded_store();
        let s = setup(store, wire, mcp.url().as_str(), "").await;
        for stream in [false, true] {
            let body = json!({"model": wire.model(), "stream": stream,
                "tools": [{"type": "mcp", "server_label": "crm", "require_approval": "never"}],
                "input": r#"CALL crm__get_customer {"id":"42"}"#});
            let (status, _, raw) = s.gw.call_text("/v1/responses", &s.key, &[], body).await;
            assert_eq!(status, 200, "{raw}");
            let text = if stream {
                assert!(
                    !raw.contains("\"function_call\""),
                    "no MCP call reaches the client: {raw}"
                );
                assert!(raw.contains(": ctxgate-tool "), "{raw}");
                let last = raw
                    .split("\n\n")
                    .filter(|e| e.starts_with("event: "))
                    .last()
                    .unwrap_or_default();
                assert!(last.starts_with("event: response.completed\n"), "{raw}");
                raw.lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .filter(|v| v["type"] == "response.output_text.delta")
                    .filter_map(|v| v["delta"].as_str().map(str::to_owned))
                    .collect::<String>()
            } else {
                let v: Value = serde_json::from_str(&raw).unwrap();
                assert_eq!(v["status"], "completed", "{v}");
                let output = v["output"].as_array().unwrap();
                assert!(output.iter().all(|i| i["type"] == "message"), "{v}");
                output
                    .iter()
                    .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
                    .filter_map(|p| p["text"].as_str().map(str::to_owned))
                    .collect::<String>()
            };
            assert!(
                text.contains("customer 42: Ada"),
                "{wire:?} stream={stream}: {text}"
            );
        }
    }
}
