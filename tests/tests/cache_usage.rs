//! Issue 14, points 5 to 7: prompt-cache reads and writes, as an Anthropic
//! and an OpenAI upstream report them, streamed and not, end to end: what
//! the client is told, the usage row (cost, cached and written tokens, summed
//! over turns), GET /v1/usage, and each stored answer's usage. Both stores.

use std::sync::Arc;

use ctxgate::store::Store;
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, dynamo_store, embedded_store};
use serde_json::{Value, json};

/// Anthropic's usage: 1000 uncached, 20000 read, 5000 written (2000 of them
/// for an hour), 500 out.
fn anthropic_usage() -> Value {
    json!({"input_tokens": 1000, "cache_read_input_tokens": 20000,
        "cache_creation_input_tokens": 5000, "output_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 3000, "ephemeral_1h_input_tokens": 2000}})
}

/// Claude Sonnet 4.5 (3.00 in, 0.30 read, 3.75 5m write, 6.00 1h write,
/// 15.00 out per million): 3000 + 6000 + 11250 + 12000 + 7500 micro-USD.
const ANTHROPIC_COST: u64 = 39_750;

/// What the client sees of it, in OpenAI's terms.
fn anthropic_usage_openai() -> Value {
    json!({"prompt_tokens": 26000, "completion_tokens": 500, "total_tokens": 26500,
        "prompt_tokens_details": {"cached_tokens": 20000},
        "cache_creation_input_tokens": 5000})
}

fn anthropic(r: &Received) -> Reply {
    if r.body["stream"] != true {
        return Reply::json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": r.body["model"],
            "content": [{"type": "text", "text": "cached"}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": anthropic_usage()
        }));
    }
    let mut start_usage = anthropic_usage();
    start_usage["output_tokens"] = 1.into();
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_2", "type": "message",
            "role": "assistant", "model": r.body["model"], "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "cached"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 500}}),
        json!({"type": "message_stop"}),
    ];
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    Reply::sse(body)
}

/// OpenAI's usage: 2006 prompt tokens of which 1920 cached, 300 out.
fn openai_usage() -> Value {
    json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920}})
}

/// gpt-4o (2.50 in, 1.25 cached, 10.00 out): 215 + 2400 + 3000.
const OPENAI_COST: u64 = 5615;

fn openai(r: &Received) -> Reply {
    if r.body["stream"] != true {
        return Reply::json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "cached"},
                "finish_reason": "stop"}],
            "usage": openai_usage()
        }));
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let events = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "cached"}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!({"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": [], "usage": openai_usage()}),
    ];
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    Reply::sse(body)
}

/// The JSON payloads of a client stream's `data:` events, `[DONE]` left out.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

async fn cache_tokens(store: Arc<dyn Store>) {
    let (anthropic_up, openai_up) = (
        MockUpstream::start(anthropic).await,
        MockUpstream::start(openai).await,
    );
    let base = format!("{}/v1", openai_up.url);
    let gw = Gateway::new(
        store.clone(),
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-openai"),
            ("ANTHROPIC_BASE_URL", anthropic_up.url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant"),
        ],
    );
    let key = gw
        .key("acme", &["chat", "usage:read", "conversations:read"])
        .await;

    for (model, conversation, want) in [
        (
            "anthropic/claude-sonnet-4-5",
            "c-anthropic",
            anthropic_usage_openai(),
        ),
        ("openai/gpt-4o", "c-openai", openai_usage()),
    ] {
        // Whole: the answer's usage says what was read and written.
        let body = json!({"model": model, "conversation_id": conversation,
            "messages": [{"role": "user", "content": "the long shared prefix"}]});
        let (status, _, answer) = gw
            .call("POST", "/v1/chat/completions", Some(&key), Some(body))
            .await;
        assert_eq!(status, 200, "{model}: {answer}");
        assert_eq!(answer["usage"], want, "{model}");

        // Streamed: the final usage chunk says the same.
        let body = json!({"model": model, "conversation_id": conversation, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "and again"}]});
        let (status, _, text) = gw.call_text("/v1/chat/completions", &key, &[], body).await;
        assert_eq!(status, 200, "{model}: {text}");
        let last = events(&text).pop().unwrap();
        assert_eq!(last["usage"], want, "{model}: {text}");

        // Each stored answer keeps its usage, cache writes included.
        let (status, _, conv) = gw
            .call(
                "GET",
                &format!("/v1/conversations/{conversation}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{conv}");
        let answers: Vec<&Value> = conv["messages"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .collect();
        assert_eq!(answers.len(), 2, "{conv}");
        for a in answers {
            assert_eq!(a["usage"], want, "{model}: {a}");
        }
    }

    // The usage rows: two requests each, cache reads and writes summed and
    // priced apart.
    let (status, _, usage) = gw.call("GET", "/v1/usage", Some(&key), None).await;
    assert_eq!(status, 200, "{usage}");
    let row = |model: &str| -> Value {
        usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == model)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {model}: {usage}"))
    };
    let a = row("anthropic/claude-sonnet-4-5");
    assert_eq!(
        (
            &a["requests"],
            &a["prompt_tokens"],
            &a["cached_tokens"],
            &a["cache_write_tokens"],
            &a["cost_micro_usd"],
        ),
        (
            &json!(2),
            &json!(52_000),
            &json!(40_000),
            &json!(10_000),
            &json!(2 * ANTHROPIC_COST)
        ),
        "{a}"
    );
    assert_eq!(a["cost_usd"], json!(2.0 * ANTHROPIC_COST as f64 / 1e6));
    let o = row("openai/gpt-4o");
    assert_eq!(
        (
            &o["requests"],
            &o["prompt_tokens"],
            &o["cached_tokens"],
            &o["cache_write_tokens"],
            &o["cost_micro_usd"],
        ),
        (
            &json!(2),
            &json!(4012),
            &json!(3840),
            &json!(0),
            &json!(2 * OPENAI_COST)
        ),
        "{o}"
    );
}

#[tokio::test]
async fn cache_tokens_are_priced_and_reported_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    cache_tokens(store).await;
}

#[tokio::test]
async fn cache_tokens_are_priced_and_reported_on_dynamodb() {
    cache_tokens(dynamo_store().await).await;
}
