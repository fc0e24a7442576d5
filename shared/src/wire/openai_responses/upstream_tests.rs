//! Golden translations of the Responses upstream codec (issue 18, point 6):
//! the model request as OpenAI's stateless create request, the response
//! object and its event stream as the model's answer.

use serde_json::{Value, json};

use super::{ResponsesDecoder, UpstreamOptions, decode_upstream_response, encode_upstream_request};
use crate::model::{
    Assembler, Block, BlockDelta, BlockStart, Event, Extensions, FinishReason, Message, Reasoning,
    Request, Response, ResponseFormat, Role, Tool, ToolCall, ToolChoice, ToolResult,
    ToolResultPart, Usage, WireFormat,
};
use crate::wire::{DecodeError, Step, StreamDecoder};

fn reasoning(text: &str, signature: Option<&str>, encrypted: Option<&str>) -> Block {
    Block::Reasoning {
        text: text.into(),
        signature: signature.map(Into::into),
        encrypted: encrypted.map(Into::into),
    }
}

fn call(id: &str, name: &str, arguments: &str) -> Block {
    Block::ToolCall(ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
        cache: None,
    })
}

fn msg(role: Role, content: Vec<Block>) -> Message {
    Message {
        role,
        content,
        name: None,
    }
}

// Issue 18, point 6: the request goes stateless, with every parameter in
// its Responses place; the first turn's encrypted reasoning comes back as a
// reasoning item (its summary, no id) before the answer it led to; what
// OpenAI could not read (an Anthropic signature or redacted thinking,
// visible reasoning alone, a reasoning item that ends an answer) is left
// out; no item has an id.
#[test]
fn a_request_with_tools_and_a_carried_reasoning_item() {
    let req = Request {
        messages: vec![
            Message::text(Role::System, "Be brief."),
            Message::text(Role::User, "Weather in Oslo?"),
            msg(
                Role::Assistant,
                vec![
                    reasoning("Need the tool.", None, None),
                    reasoning("", None, Some("gAAAAAB-enc-1")),
                    call("call_1", "weather", "{\"city\":\"Oslo\"}"),
                ],
            ),
            msg(
                Role::Tool,
                vec![Block::ToolResult(ToolResult {
                    call_id: "call_1".into(),
                    content: vec![ToolResultPart::Text {
                        text: "4C, rain".into(),
                        cache: None,
                    }],
                    is_error: false,
                    cache: None,
                })],
            ),
            msg(
                Role::Assistant,
                vec![
                    reasoning("claude thinks", Some("sig-A"), None),
                    reasoning("", None, Some("EmwKAhgBEgy-redacted-thinking")),
                    reasoning("visible only", None, None),
                    reasoning("", None, Some("gAAAAAB-enc-2")),
                    Block::text("4C and rain."),
                ],
            ),
            msg(
                Role::Assistant,
                vec![
                    Block::text("Cut."),
                    reasoning("", None, Some("gAAAAAB-cut")),
                ],
            ),
            Message::text(Role::User, "And tomorrow?"),
        ],
        tools: vec![
            Tool::Function {
                name: "weather".into(),
                description: Some("Weather by city".into()),
                parameters: Some(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                ),
                strict: None,
                cache: None,
            },
            Tool::Function {
                name: "strict_one".into(),
                description: None,
                parameters: None,
                strict: Some(true),
                cache: None,
            },
        ],
        tool_choice: Some(ToolChoice::Tool {
            name: "weather".into(),
        }),
        parallel_tool_calls: Some(false),
        max_output_tokens: Some(500),
        temperature: Some(0.5),
        top_p: Some(0.9),
        stop: vec!["END".into()],
        seed: Some(7),
        user: Some("u-1".into()),
        response_format: Some(ResponseFormat::JsonSchema {
            json_schema: json!({"name": "w", "schema": {"type": "object"}, "strict": true}),
        }),
        reasoning: Some(Reasoning {
            effort: Some("high".into()),
            ..Reasoning::default()
        }),
        ..Request::default()
    };
    let opts = UpstreamOptions {
        stream: true,
        prompt_cache_key: Some("ck"),
    };
    let body = encode_upstream_request(&req, "gpt-5", &opts).unwrap();
    let expected = json!({
        "model": "gpt-5",
        "store": false,
        "include": ["reasoning.encrypted_content"],
        "input": [
            {"type": "message", "role": "system",
                "content": [{"type": "input_text", "text": "Be brief."}]},
            {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
            {"type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Need the tool."}],
                "encrypted_content": "gAAAAAB-enc-1"},
            {"type": "function_call", "call_id": "call_1", "name": "weather",
                "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "4C, rain"},
            {"type": "reasoning",
                "summary": [{"type": "summary_text", "text": "visible only"}],
                "encrypted_content": "gAAAAAB-enc-2"},
            {"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": "4C and rain.", "annotations": []}]},
            {"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": "Cut.", "annotations": []}]},
            {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "And tomorrow?"}]},
        ],
        "tools": [
            {"type": "function", "name": "weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": false},
            {"type": "function", "name": "strict_one", "parameters": null, "strict": true},
        ],
        "tool_choice": {"type": "function", "name": "weather"},
        "parallel_tool_calls": false,
        "max_output_tokens": 500,
        "temperature": 0.5,
        "top_p": 0.9,
        "text": {"format": {"type": "json_schema", "name": "w",
            "schema": {"type": "object"}, "strict": true}},
        "reasoning": {"effort": "high"},
        "user": "u-1",
        "prompt_cache_key": "ck",
        "stream": true,
    });
    assert_eq!(body, expected);

    // Whole: no `stream`; Chat's `reasoning_effort` (an extension) is the effort.
    let mut req = Request {
        messages: vec![Message::text(Role::User, "hi")],
        tool_choice: Some(ToolChoice::Required),
        response_format: Some(ResponseFormat::JsonObject),
        ..Request::default()
    };
    req.extensions = Extensions {
        format: Some(WireFormat::OpenaiChat),
        fields: json!({"reasoning_effort": "low", "logit_bias": {}})
            .as_object()
            .unwrap()
            .clone(),
        headers: Vec::new(),
    };
    let body = encode_upstream_request(&req, "o4-mini", &UpstreamOptions::default()).unwrap();
    assert_eq!(
        body,
        json!({"model": "o4-mini", "store": false, "include": ["reasoning.encrypted_content"],
            "input": [{"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "hi"}]}],
            "tool_choice": "required", "text": {"format": {"type": "json_object"}},
            "reasoning": {"effort": "low"}})
    );
}

/// One answer of every kind the codec reads: a reasoning item with a
/// summary and encrypted content, text with an annotation, a function call,
/// usage with cached and reasoning tokens.
fn whole_answer() -> Value {
    json!({
        "id": "resp_up1", "object": "response", "created_at": 1, "status": "completed",
        "model": "gpt-5-2025-08-07", "error": null, "incomplete_details": null,
        "output": [
            {"type": "reasoning", "id": "rs_1", "status": "completed",
                "summary": [{"type": "summary_text", "text": "First."},
                    {"type": "summary_text", "text": "Second."}],
                "encrypted_content": "gAAAAAB-enc-up"},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "Looking it up.",
                    "annotations": [{"type": "url_citation", "url": "https://x.example"}]}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "weather",
                "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"}
        ],
        "usage": {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100},
            "output_tokens": 60, "output_tokens_details": {"reasoning_tokens": 40},
            "total_tokens": 180}
    })
}

fn whole_model_answer() -> Response {
    Response {
        id: Some("resp_up1".into()),
        model: Some("gpt-5-2025-08-07".into()),
        message: msg(
            Role::Assistant,
            vec![
                reasoning("First.\n\nSecond.", None, None),
                reasoning("", None, Some("gAAAAAB-enc-up")),
                Block::Text {
                    text: "Looking it up.".into(),
                    citations: Some(json!([{"type": "url_citation", "url": "https://x.example"}])),
                    cache: None,
                },
                call("call_9", "weather", "{\"city\":\"Oslo\"}"),
            ],
        ),
        finish: FinishReason::ToolCalls,
        stop_sequence: None,
        usage: Usage::new(120, 60).with_details(100, 40),
        usage_reported: true,
    }
}

// Issue 18, point 6: a whole response object: reasoning (summary, then its
// encrypted content), text, the call, usage with cached and reasoning tokens.
#[test]
fn a_whole_answer() {
    assert_eq!(
        decode_upstream_response(whole_answer()).unwrap(),
        whole_model_answer()
    );
}

/// `(event, data)` pairs of an SSE body.
fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.into();
                }
                if let Some(d) = line.strip_prefix("data: ") {
                    data = d.into();
                }
            }
            (name, data)
        })
        .collect()
}

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

/// The same answer as [`whole_answer`], streamed as OpenAI streams it.
fn streamed_answer() -> String {
    let head = json!({"id": "resp_up1", "object": "response", "status": "in_progress",
        "model": "gpt-5-2025-08-07", "output": [], "usage": null});
    let mut done = whole_answer();
    done["output"].as_array_mut().unwrap().pop();
    sse(&[
        json!({"type": "response.created", "sequence_number": 0, "response": head}),
        json!({"type": "response.in_progress", "sequence_number": 1, "response": head}),
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "summary": [], "status": "in_progress"}}),
        json!({"type": "response.reasoning_summary_part.added", "output_index": 0,
            "summary_index": 0, "item_id": "rs_1", "part": {"type": "summary_text", "text": ""}}),
        json!({"type": "response.reasoning_summary_text.delta", "output_index": 0,
            "summary_index": 0, "item_id": "rs_1", "delta": "Fir"}),
        json!({"type": "response.reasoning_summary_text.delta", "output_index": 0,
            "summary_index": 0, "item_id": "rs_1", "delta": "st."}),
        json!({"type": "response.reasoning_summary_text.delta", "output_index": 0,
            "summary_index": 1, "item_id": "rs_1", "delta": "Second."}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": whole_answer()["output"][0]}),
        json!({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": [],
                "status": "in_progress"}}),
        json!({"type": "response.content_part.added", "output_index": 1, "content_index": 0,
            "item_id": "msg_1", "part": {"type": "output_text", "text": "", "annotations": []}}),
        json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0,
            "item_id": "msg_1", "delta": "Looking "}),
        json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0,
            "item_id": "msg_1", "delta": "it up."}),
        json!({"type": "response.output_text.annotation.added", "output_index": 1,
            "content_index": 0, "annotation_index": 0, "item_id": "msg_1",
            "annotation": {"type": "url_citation", "url": "https://x.example"}}),
        json!({"type": "response.output_text.done", "output_index": 1, "content_index": 0,
            "item_id": "msg_1", "text": "Looking it up."}),
        json!({"type": "response.output_item.done", "output_index": 1,
            "item": whole_answer()["output"][1]}),
        json!({"type": "response.output_item.added", "output_index": 2,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_9",
                "name": "weather", "arguments": "", "status": "in_progress"}}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 2,
            "item_id": "fc_1", "delta": "{\"city\":"}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 2,
            "item_id": "fc_1", "delta": "\"Oslo\"}"}),
        json!({"type": "response.function_call_arguments.done", "output_index": 2,
            "item_id": "fc_1", "arguments": "{\"city\":\"Oslo\"}"}),
        json!({"type": "response.output_item.done", "output_index": 2,
            "item": whole_answer()["output"][2]}),
        json!({"type": "response.completed", "response": done}),
    ])
}

fn decode(body: &str) -> (Vec<Event>, Result<(), DecodeError>) {
    let mut d = ResponsesDecoder::new();
    let mut out = Vec::new();
    for (name, data) in sse_events(body) {
        match d.event(&name, &data, &mut out) {
            Ok(Step::More) => {}
            Ok(Step::Done) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
    let end = d.end(&mut out);
    (out, end)
}

fn assemble(events: &[Event]) -> Response {
    let mut a = Assembler::new(false);
    events.iter().for_each(|e| a.push(e));
    a.finish()
}

// Issue 18, point 6: the stream (summary deltas over two parts, text, a
// citation, a call's arguments split over deltas, the encrypted reasoning
// in its item's `done`, usage in `response.completed`) is the whole answer.
#[test]
fn a_stream_is_the_whole_answer() {
    let (events, end) = decode(&streamed_answer());
    assert_eq!(end, Ok(()));
    assert_eq!(assemble(&events), whole_model_answer());
    let d = |index, delta| Event::BlockDelta { index, delta };
    assert_eq!(
        events,
        vec![
            Event::Start {
                id: Some("resp_up1".into()),
                model: Some("gpt-5-2025-08-07".into())
            },
            Event::BlockStart {
                index: 0,
                block: BlockStart::Reasoning
            },
            d(0, BlockDelta::Reasoning("Fir".into())),
            d(0, BlockDelta::Reasoning("st.".into())),
            d(0, BlockDelta::Reasoning("\n\nSecond.".into())),
            Event::BlockStop { index: 0 },
            Event::BlockStart {
                index: 1,
                block: BlockStart::EncryptedReasoning {
                    data: "gAAAAAB-enc-up".into()
                }
            },
            Event::BlockStop { index: 1 },
            Event::BlockStart {
                index: 2,
                block: BlockStart::Text
            },
            d(2, BlockDelta::Text("Looking ".into())),
            d(2, BlockDelta::Text("it up.".into())),
            d(
                2,
                BlockDelta::Citation(json!({"type": "url_citation", "url": "https://x.example"}))
            ),
            Event::BlockStop { index: 2 },
            Event::BlockStart {
                index: 3,
                block: BlockStart::ToolCall {
                    id: "call_9".into(),
                    name: "weather".into()
                }
            },
            d(3, BlockDelta::Arguments("{\"city\":".into())),
            d(3, BlockDelta::Arguments("\"Oslo\"}".into())),
            Event::BlockStop { index: 3 },
            Event::Usage(Usage::new(120, 60).with_details(100, 40)),
            Event::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None
            },
        ]
    );
}

// Issue 18, point 6: an answer cut by `max_output_tokens` is incomplete:
// finish reason `length`, whole and streamed; a content filter is its own.
#[test]
fn incomplete_by_max_output_tokens() {
    let incomplete = json!({
        "id": "resp_cut", "object": "response", "status": "incomplete", "model": "o4-mini",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [{"type": "reasoning", "id": "rs_1", "summary": [],
            "encrypted_content": "gAAAAAB-cut", "status": "incomplete"}],
        "usage": {"input_tokens": 10, "output_tokens": 16,
            "output_tokens_details": {"reasoning_tokens": 16}}
    });
    let whole = decode_upstream_response(incomplete.clone()).unwrap();
    assert_eq!(whole.finish, FinishReason::Length);
    assert_eq!(
        whole.message.content,
        vec![reasoning("", None, Some("gAAAAAB-cut"))]
    );
    assert_eq!(whole.usage, Usage::new(10, 16).with_details(0, 16));
    let body = sse(&[
        json!({"type": "response.created", "response": {"id": "resp_cut", "model": "o4-mini"}}),
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": incomplete["output"][0]}),
        json!({"type": "response.incomplete", "response": incomplete}),
    ]);
    let (events, end) = decode(&body);
    assert_eq!(end, Ok(()));
    assert_eq!(assemble(&events), whole);

    let mut filtered = json!({"status": "incomplete", "output": [],
        "incomplete_details": {"reason": "content_filter"}});
    assert_eq!(
        decode_upstream_response(filtered.clone()).unwrap().finish,
        FinishReason::ContentFilter
    );
    filtered["status"] = json!("completed");
    assert_eq!(
        decode_upstream_response(filtered).unwrap().finish,
        FinishReason::Stop
    );
}

// Issue 18, point 6: failures carry the upstream's code, never its message
// or anything that reads like a key; a stream cut before its end is malformed.
#[test]
fn failures_carry_codes_only() {
    let failed = sse(&[json!({"type": "response.failed", "response": {"id": "r",
        "status": "failed", "error": {"code": "server_error", "message": "secret prompt"}}})]);
    assert_eq!(
        decode(&failed).1,
        Err(DecodeError::Reported("server_error".into()))
    );
    let error = sse(&[json!({"type": "error", "code": "rate_limit_exceeded",
        "message": "slow down", "param": null})]);
    assert_eq!(
        decode(&error).1,
        Err(DecodeError::Reported("rate_limit_exceeded".into()))
    );
    let keyish = sse(&[json!({"type": "error",
        "code": "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123", "message": "x"})]);
    assert_eq!(
        decode(&keyish).1,
        Err(DecodeError::Reported("error".into()))
    );
    let cut = sse(&[
        json!({"type": "response.created", "response": {"id": "r"}}),
        json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
            "delta": "partial"}),
    ]);
    assert!(matches!(decode(&cut).1, Err(DecodeError::Malformed(_))));
    let mut d = ResponsesDecoder::new();
    let Err(DecodeError::Malformed(m)) =
        d.event("", r#"{"type": 7, "x": "sk-SECRET"}"#, &mut Vec::new())
    else {
        panic!("not malformed")
    };
    assert!(!m.contains("SECRET"), "{m}");
    let whole = json!({"status": "failed", "output": [],
        "error": {"code": "server_error", "message": "secret prompt"}});
    let e = decode_upstream_response(whole).unwrap_err();
    assert!(e.message.contains("server_error") && !e.message.contains("secret"));
}
