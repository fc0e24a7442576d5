//! `POST /v1/messages`, the Anthropic Messages front door, through the
//! router against loopback mocks of both upstream wires: Anthropic passed
//! through without loss (thinking signatures, `cache_control`, unknown
//! blocks, `anthropic-beta`), OpenAI translated whole and streamed, one
//! conversation continued through both doors, `count_tokens`, the Anthropic
//! shape of `/v1/models`, and bad input in Anthropic's envelope with nothing
//! stored.

use std::sync::Arc;

use axum::body::Body;
use ctxgate::store::Store;
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, embedded_store};
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn gateway(store: Arc<dyn Store>, openai: &MockUpstream, anthropic: &MockUpstream) -> Gateway {
    let base = format!("{}/v1", openai.url);
    Gateway::new(
        store,
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-openai-PROVIDER"),
            ("ANTHROPIC_BASE_URL", anthropic.url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-PROVIDER"),
        ],
    )
}

/// A Messages request with `x-api-key` (as Anthropic's SDKs send it).
async fn messages(
    gw: &Gateway,
    key: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, http::HeaderMap, String) {
    post(gw, "/v1/messages", key, headers, body.to_string()).await
}

async fn post(
    gw: &Gateway,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (u16, http::HeaderMap, String) {
    let mut all = vec![("x-api-key", key), ("anthropic-version", "2023-06-01")];
    all.extend_from_slice(headers);
    gw.call_raw_text("POST", path, None, &all, body.into_bytes())
        .await
}

/// `(event, data)` of each SSE event.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty() && !e.starts_with(':'))
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                }
                if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

fn anthropic_answer(r: &Received) -> Reply {
    Reply::json(json!({
        "id": "msg_up", "type": "message", "role": "assistant", "model": r.body["model"],
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig-ABC"},
            {"type": "text", "text": "Hello from Claude."},
            {"type": "future_block", "payload": {"x": 1}}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 40, "output_tokens": 9,
            "cache_read_input_tokens": 30, "cache_creation_input_tokens": 0}
    }))
}

#[tokio::test]
async fn anthropic_upstreams_get_the_request_and_give_the_answer_without_loss() {
    let (store, _dir) = embedded_store();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::start(anthropic_answer).await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat"]).await;
    let body = json!({
        "model": "anthropic/claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "lookup", "description": "Looks up.", "input_schema": {"type": "object"},
            "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Earlier thought.", "signature": "sig-OLD"},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found x"},
                {"type": "text", "text": "And now?", "cache_control": {"type": "ephemeral"}},
                {"type": "some_future_block", "data": [1, 2]}
            ]}
        ]
    });
    let (status, headers, text) = messages(
        &gw,
        &key,
        &[("anthropic-beta", "interleaved-thinking-2025-05-14")],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["type"], "message");
    assert!(answer["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(answer["content"][0]["signature"], "sig-ABC", "{answer}");
    assert_eq!(answer["content"][1]["text"], "Hello from Claude.");
    assert_eq!(answer["content"][2]["type"], "future_block", "{answer}");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["usage"]["cache_read_input_tokens"], 30);
    assert_eq!(headers["x-ctxgate-model"], "anthropic/claude-sonnet-4-5");

    let got = anthropic.received();
    assert_eq!(got.len(), 1);
    let up = &got[0];
    // The gateway's key upstream, never the client's; the beta passed on.
    assert_eq!(up.headers["x-api-key"], "sk-ant-PROVIDER");
    assert_eq!(
        up.headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    assert!(up.headers.get("authorization").is_none());
    let mut expected = body.clone();
    expected["model"] = json!("claude-sonnet-4-5");
    expected["messages"][0]["content"] = json!([{"type": "text", "text": "Hi"}]);
    assert_eq!(up.body["messages"], expected["messages"], "messages kept");
    assert_eq!(up.body["system"], expected["system"]);
    assert_eq!(up.body["tools"], expected["tools"]);
    assert_eq!(up.body["thinking"], expected["thinking"]);
    assert!(openai.received().is_empty());
}

/// An OpenAI stream whose tool-call arguments arrive in awkward pieces.
fn openai_tool_stream() -> String {
    let chunks = [
        json!({"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Checking"}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"sm"}}]}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ørrebrød\", \"n\""}}]}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 2}"}}]}}]}),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 8}}),
    ];
    let mut s = String::new();
    for c in chunks {
        s.push_str(&format!("data: {c}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

#[tokio::test]
async fn openai_upstreams_are_translated_whole_and_streamed() {
    let (store, _dir) = embedded_store();
    let openai = MockUpstream::start(|r| {
        if r.body["stream"] == true {
            Reply::sse(openai_tool_stream())
        } else {
            Reply::json(ctxgate_tests::openai_completion("plain answer", 12, 3))
        }
    })
    .await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat"]).await;
    let base = json!({
        "model": "openai/gpt-4o-mini",
        "max_tokens": 100,
        "system": "Be brief.",
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Look it up"}]}]
    });

    let (status, _, text) = messages(&gw, &key, &[], base.clone()).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["content"][0]["text"], "saw: plain answer");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["usage"]["input_tokens"], 12);
    let up = &openai.received()[0];
    assert_eq!(
        up.body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(up.body["tools"][0]["function"]["name"], "lookup");
    assert_eq!(up.headers["authorization"], "Bearer sk-openai-PROVIDER");

    let mut streamed = base.clone();
    streamed["stream"] = json!(true);
    let (status, headers, text) = messages(&gw, &key, &[], streamed).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let evs = events(&text);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{text}"
    );
    // message_start carries an estimate: OpenAI reports usage only at the end.
    assert!(
        evs[0].1["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(evs[4].1["content_block"]["type"], "tool_use");
    assert_eq!(evs[4].1["content_block"]["id"], "call_A");
    let args: String = evs
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"q": "smørrebrød", "n": 2})
    );
    let delta = &evs[9].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 8);
    assert_eq!(delta["usage"]["input_tokens"], 21, "{delta}");
}

#[tokio::test]
async fn one_conversation_continues_through_either_door() {
    let (store, _dir) = embedded_store();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat", "conversations:read"]).await;

    let (status, headers, text) = messages(
        &gw,
        &key,
        &[("x-conversation-id", "both-doors")],
        json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 50,
            "messages": [{"role": "user", "content": "first through messages"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-conversation-id"], "both-doors");
    let (status, _, answer) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(
                json!({"model": "openai/gpt-4o-mini", "conversation_id": "both-doors",
                "messages": [{"role": "user", "content": "second through chat"}]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // OpenAI saw the first turn, stored through the other door.
    let seen = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(seen.contains("first through messages"), "{seen}");
    assert!(seen.contains("second through chat"), "{seen}");
    // And the Anthropic door sees both turns next.
    let (status, _, _) = messages(
        &gw,
        &key,
        &[("x-conversation-id", "both-doors")],
        json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 50,
            "messages": [{"role": "user", "content": "third"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let up = anthropic.received().pop().unwrap();
    let texts = up.body["messages"].to_string();
    assert!(texts.contains("first through messages") && texts.contains("second through chat"));
    let (_, _, conv) = gw
        .call("GET", "/v1/conversations/both-doors", Some(&key), None)
        .await;
    assert_eq!(
        conv["messages"]["data"].as_array().map(Vec::len),
        Some(6),
        "{conv}"
    );
}

#[tokio::test]
async fn bad_input_is_a_400_in_anthropic_s_envelope_and_stores_nothing() {
    let (store, _dir) = embedded_store();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat", "conversations:read"]).await;
    let user = json!({"role": "user", "content": "hi"});
    let cases = [
        ("{not json".to_owned(), ""),
        (
            json!({"model": "anthropic/claude-sonnet-4-5", "messages": [user]}).to_string(),
            "max_tokens",
        ),
        (
            json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]}]})
            .to_string(),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10,
                "messages": [{"role": "assistant", "content": "I start"}, user]})
            .to_string(),
            "messages[0].role",
        ),
        (
            json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10,
                "messages": [user, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope"}]}]})
            .to_string(),
            "messages[1].content[0].tool_use_id",
        ),
        (
            json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10, "temperature": 1.5,
                "messages": [user]})
            .to_string(),
            "temperature",
        ),
        (
            json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10,
                "messages": [{"role": "system", "content": "x"}]})
            .to_string(),
            "messages[0].role",
        ),
    ];
    for (body, field) in cases {
        let (status, _, text) = post(
            &gw,
            "/v1/messages",
            &key,
            &[("x-conversation-id", "refused")],
            body.clone(),
        )
        .await;
        assert_eq!(status, 400, "{body}: {text}");
        let e: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(e["type"], "error", "{text}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{text}");
        assert!(
            e["error"]["message"].as_str().unwrap().starts_with(field),
            "{body}: {text}"
        );
    }
    assert!(anthropic.received().is_empty());
    let (status, _, _) = gw
        .call("GET", "/v1/conversations/refused", Some(&key), None)
        .await;
    assert_eq!(status, 404, "a refused request stored nothing");
    // No credential: Anthropic's authentication_error.
    let (status, _, text) = post(&gw, "/v1/messages", "cgk_nope", &[], "{}".into()).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["type"],
        "authentication_error"
    );
}

#[tokio::test]
async fn count_tokens_asks_anthropic_and_estimates_elsewhere() {
    let (store, _dir) = embedded_store();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::start(|r| {
        assert!(r.path.ends_with("/v1/messages/count_tokens"), "{}", r.path);
        assert!(r.body.get("max_tokens").is_none());
        Reply::json(json!({"input_tokens": 1234}))
    })
    .await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat"]).await;
    let body = |model: &str| {
        json!({"model": model, "system": "Be brief.",
            "messages": [{"role": "user", "content": "How many tokens is this sentence?"}]})
        .to_string()
    };
    let (status, headers, text) = post(
        &gw,
        "/v1/messages/count_tokens",
        &key,
        &[],
        body("anthropic/claude-sonnet-4-5"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["input_tokens"],
        1234
    );
    assert_eq!(headers["x-ctxgate-token-count"], "provider");
    assert_eq!(
        anthropic.received()[0].headers["x-api-key"],
        "sk-ant-PROVIDER"
    );

    let (status, headers, text) = post(
        &gw,
        "/v1/messages/count_tokens",
        &key,
        &[],
        body("openai/gpt-4o-mini"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let n = serde_json::from_str::<Value>(&text).unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(n > 5, "an estimate, never a made-up zero: {n}");
    assert_eq!(headers["x-ctxgate-token-count"], "estimate");
    assert!(openai.received().is_empty());
}

#[tokio::test]
async fn models_answer_in_anthropic_s_shape_when_asked_so() {
    let (store, _dir) = embedded_store();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat"]).await;
    let get = |headers: Vec<(&'static str, String)>, uri: &'static str| {
        let gw = &gw;
        async move {
            let mut req = Request::get(uri);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = gw
                .router
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, list) = get(
        vec![
            ("x-api-key", key.clone()),
            ("anthropic-version", "2023-06-01".into()),
        ],
        "/v1/models?limit=1",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["type"], "model");
    assert_eq!(list["has_more"], true);
    assert_eq!(list["first_id"], list["data"][0]["id"]);
    assert_eq!(list["last_id"], list["data"][0]["id"]);
    let (status, openai_shape) = get(
        vec![("authorization", format!("Bearer {key}"))],
        "/v1/models",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(openai_shape["object"], "list");
}

#[tokio::test]
async fn fallbacks_cross_providers_streams_are_redacted_and_retries_replay() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    let (gw, openai, anthropic) = ctxgate_tests::fallback_gateway(store).await;
    let key = gw.key("acme", &["chat"]).await;

    // Anthropic is overloaded: the chain moves on to OpenAI.
    let body = json!({"model": "smart", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}]});
    let (status, headers, text) = messages(&gw, &key, &[], body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-ctxgate-model"], "openai/gpt-4o-mini");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["content"][0]["text"], "saw: from openai");
    assert!(!anthropic.received().is_empty());

    // A streamed answer is redacted on the way out, however it is split;
    // the same Idempotency-Key replays it byte for byte, upstream once.
    let body = json!({"model": "openai/gpt-4o-mini", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "pii"}]});
    let calls = openai.received().len();
    let (status, _, first) = messages(&gw, &key, &[("idempotency-key", "k-1")], body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let text: String = events(&first)
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Card: [CARD], mail [EMAIL]. Done.");
    assert!(
        !first.contains("4111") && !first.contains("bob."),
        "{first}"
    );
    let (status, headers, again) = messages(&gw, &key, &[("idempotency-key", "k-1")], body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first);
    assert_eq!(openai.received().len(), calls + 1);
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_error_event_and_stores_nothing() {
    let (store, _dir) = embedded_store();
    let openai = MockUpstream::start(|_| {
        let c = json!({"choices": [{"index": 0, "delta": {"content": "half an ans"}, "finish_reason": null}]});
        Reply::sse(format!("data: {c}\n\ndata: {{\"choices\""))
    })
    .await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat", "conversations:read"]).await;
    let body = json!({"model": "openai/gpt-4o-mini", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "go"}]});
    let (status, _, text) = messages(&gw, &key, &[("x-conversation-id", "cut")], body).await;
    assert_eq!(status, 200);
    let evs = events(&text);
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "error", "{text}");
    assert_eq!(data["type"], "error");
    assert!(data["error"]["type"].is_string(), "{data}");
    assert!(!text.contains("message_stop"), "{text}");
    let (status, _, _) = gw
        .call("GET", "/v1/conversations/cut", Some(&key), None)
        .await;
    assert_eq!(status, 404, "nothing stored");
}

/// A client continuing a stored conversation sends only the new turn: a
/// `tool_result` answering the stored answer's `tool_use`. Without a stored
/// conversation the same first-message result answers nothing: a 400.
async fn tool_result_answers_the_stored_call(store: Arc<dyn Store>) {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::start(|r: &Received| {
        let last = r.body["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        if last["content"][0]["type"] == "tool_result" {
            return anthropic_answer(r);
        }
        Reply::json(json!({
            "id": "msg_up", "type": "message", "role": "assistant", "model": r.body["model"],
            "content": [
                {"type": "thinking", "thinking": "Look it up.", "signature": "sig-T1"},
                {"type": "tool_use", "id": "toolu_stored", "name": "lookup", "input": {"q": "x"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 5}
        }))
    })
    .await;
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &["chat"]).await;
    let tools = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
    let conv = [("x-conversation-id", "tool-turns")];
    let (status, _, text) = messages(
        &gw,
        &key,
        &conv,
        json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 50, "tools": tools,
            "messages": [{"role": "user", "content": "Look up x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let result = json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 50, "tools": tools,
        "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_stored", "content": "x is 42"}]}]});

    let (status, _, text) = messages(&gw, &key, &[], result.clone()).await;
    assert_eq!(status, 400, "{text}");
    let e: Value = serde_json::from_str(&text).unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages[0].content[0].tool_use_id"),
        "{text}"
    );
    assert_eq!(anthropic.received().len(), 1, "a refusal sends nothing");

    let (status, _, text) = messages(&gw, &key, &conv, result).await;
    assert_eq!(status, 200, "{text}");
    let up = anthropic.received().pop().unwrap();
    let history = up.body["messages"].as_array().unwrap();
    let roles: Vec<&str> = history
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(history[1]["content"][0]["signature"], "sig-T1");
    assert_eq!(history[1]["content"][1]["id"], "toolu_stored");
    assert_eq!(history[2]["content"][0]["tool_use_id"], "toolu_stored");
}

#[tokio::test]
async fn a_first_tool_result_may_answer_the_stored_call_embedded() {
    let (store, _dir) = embedded_store();
    tool_result_answers_the_stored_call(store).await;
}

#[tokio::test]
async fn a_first_tool_result_may_answer_the_stored_call_dynamodb() {
    tool_result_answers_the_stored_call(ctxgate_tests::dynamo_store().await).await;
}
