//! Golden and round-trip tests of the Responses codec: items <-> model
//! messages, requests, response objects and the event stream.

use serde_json::{Value, json};

use super::*;
use crate::model::{Block, Document, Image, MediaSource, Message, Role, ToolCall, ToolResult};

fn items_of(v: Value) -> Vec<Value> {
    v.as_array().cloned().unwrap()
}

fn to_json(items: &[Item]) -> Value {
    serde_json::to_value(items).unwrap()
}

#[test]
fn item_ids_are_stable_and_parse_back() {
    let ids = ItemIds::slot(7);
    assert_eq!(ids.id("msg", 0), "msg_7_0");
    assert_eq!(parse_item_id("msg_7_0"), Some((7, 0)));
    assert_eq!(parse_item_id("fc_12_3"), Some((12, 3)));
    assert_eq!(parse_item_id("fco_0_1"), Some((0, 1)));
    assert_eq!(
        parse_item_id("rs_18446744073709551615_2"),
        Some((u64::MAX, 2))
    );
    for bad in [
        "",
        "msg_",
        "msg_1",
        "msg_1_",
        "msg__1",
        "msg_a_1",
        "msg_1_2_3",
        "xx_1_2",
        "msg_-1_2",
        "msg_+1_2",
        "resp_1_2",
        "fc_99999999999999999999_1",
    ] {
        assert_eq!(parse_item_id(bad), None, "{bad}");
    }
}

#[test]
fn a_function_call_round_trip_merges_assistant_side_items() {
    let input = items_of(json!([
        {"role": "developer", "content": "be brief"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "reasoning", "id": "rs_x", "summary": [{"type": "summary_text", "text": "think"}],
         "encrypted_content": "gAAAAsecret"},
        {"type": "message", "role": "assistant", "id": "msg_x", "status": "completed",
         "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
        {"type": "function_call", "id": "fc_x", "call_id": "call_1", "name": "weather",
         "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
        {"type": "function_call", "call_id": "call_2", "name": "time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "noon"}]}
    ]));
    let messages = decode_items(&input, "input").unwrap();
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool
        ]
    );
    let answer = &messages[2];
    assert_eq!(answer.content.len(), 4);
    assert_eq!(
        answer.content[0],
        Block::Reasoning {
            text: "think".into(),
            signature: None,
            encrypted: Some("gAAAAsecret".into())
        }
    );
    assert_eq!(answer.content[1], Block::text("let me look"));
    assert_eq!(
        answer.content[2],
        Block::ToolCall(ToolCall {
            id: "call_1".into(),
            name: "weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
            cache: None
        })
    );
    let Block::ToolResult(r) = &messages[3].content[0] else {
        panic!("not a tool result")
    };
    assert_eq!((r.call_id.as_str(), r.text()), ("call_1", "sunny".into()));

    // Encoding the stored answer gives the items back, with ctxgate's ids.
    let items = encode_items(answer, &ItemIds::slot(4));
    assert_eq!(
        to_json(&items),
        json!([
            {"type": "reasoning", "id": "rs_4_0", "summary": [{"type": "summary_text", "text": "think"}],
             "encrypted_content": "gAAAAsecret", "status": "completed"},
            {"type": "message", "id": "msg_4_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
            {"type": "function_call", "id": "fc_4_2", "call_id": "call_1", "name": "weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "id": "fc_4_3", "call_id": "call_2", "name": "time",
             "arguments": "{}", "status": "completed"}
        ])
    );
    assert_eq!(
        to_json(&encode_items(&messages[3], &ItemIds::slot(5))),
        json!([{"type": "function_call_output", "id": "fco_5_0", "call_id": "call_1",
                "output": "sunny", "status": "completed"}])
    );
    // The items decode to the same messages again: one mapping both ways.
    let mut again = Vec::new();
    for (k, m) in messages.iter().enumerate() {
        again.extend(
            encode_items(m, &ItemIds::slot(k as u64))
                .iter()
                .map(|i| serde_json::to_value(i).unwrap()),
        );
    }
    let decoded = decode_items(&again, "items").unwrap();
    assert_eq!(decoded[2..], messages[2..]);
    // Instructions read back with their role, as input_text.
    assert_eq!(decoded[0], Message::text(Role::Developer, "be brief"));
}

#[test]
fn an_anthropic_signature_rides_in_encrypted_content() {
    let m = Message {
        role: Role::Assistant,
        content: vec![
            Block::Reasoning {
                text: "thinking".into(),
                signature: Some("sig123".into()),
                encrypted: None,
            },
            Block::Reasoning {
                text: String::new(),
                signature: None,
                encrypted: Some("redacted".into()),
            },
            Block::text("hi"),
        ],
        name: None,
    };
    let items = encode_items(&m, &ItemIds::slot(1));
    let v = to_json(&items);
    assert_eq!(
        v[0]["encrypted_content"],
        json!(format!("{SIGNATURE_PREFIX}sig123"))
    );
    assert_eq!(v[1]["summary"], json!([]));
    assert_eq!(v[1]["encrypted_content"], "redacted");
    let back = decode_items(&items_of(v), "input").unwrap();
    assert_eq!(back, vec![m]);
}

#[test]
fn media_parts_map_both_ways() {
    let input = items_of(json!([
        {"role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "high"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
            {"type": "input_image", "file_id": "file-1", "detail": "low"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
            {"type": "input_file", "file_id": "file-2"},
            {"type": "input_file", "file_url": "https://x/a.pdf"}
        ]}
    ]));
    let messages = decode_items(&input, "input").unwrap();
    let c = &messages[0].content;
    assert_eq!(
        c[2],
        Block::Image(Image {
            source: MediaSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            },
            detail: Some("auto".into()),
            cache: None
        })
    );
    assert_eq!(
        c[4],
        Block::Document(Document {
            source: MediaSource::Base64 {
                media_type: "application/pdf".into(),
                data: "JVBE".into()
            },
            filename: Some("a.pdf".into()),
            title: None,
            context: None,
            citations: None,
            cache: None
        })
    );
    let items = encode_items(&messages[0], &ItemIds::slot(0));
    let mut expected = input[0].clone();
    expected["type"] = json!("message");
    expected["id"] = json!("msg_0_0");
    expected["status"] = json!("completed");
    assert_eq!(to_json(&items), json!([expected]));
}

#[test]
fn a_tool_result_in_a_user_message_is_its_own_item() {
    // As the Messages door stores it: results first, then the user's text.
    let m = Message {
        role: Role::User,
        content: vec![
            Block::ToolResult(ToolResult {
                call_id: "toolu_1".into(),
                content: vec![],
                is_error: true,
                cache: None,
            }),
            Block::text("and now?"),
        ],
        name: None,
    };
    assert_eq!(
        to_json(&encode_items(&m, &ItemIds::slot(9))),
        json!([
            {"type": "function_call_output", "id": "fco_9_0", "call_id": "toolu_1", "output": "", "status": "completed"},
            {"type": "message", "id": "msg_9_1", "role": "user", "status": "completed",
             "content": [{"type": "input_text", "text": "and now?"}]}
        ])
    );
}

#[test]
fn bad_items_name_their_field() {
    let cases = [
        (
            json!([{"type": "message", "role": "user"}]),
            "input[0].content",
        ),
        (json!([{"role": "tool", "content": "x"}]), "input[0].role"),
        (json!(["hi"]), "input[0]"),
        (json!([{"content": "x"}]), "input[0].type"),
        (
            json!([{"type": "computer_call", "id": "x"}]),
            "input[0].type",
        ),
        (
            json!([{"type": "item_reference", "id": "msg_1"}]),
            "input[0].type",
        ),
        (
            json!([{"role": "user", "content": "a"}, {"type": "function_call", "name": "f", "arguments": "{}"}]),
            "input[1].call_id",
        ),
        (
            json!([{"type": "function_call_output", "call_id": "c"}]),
            "input[0].output",
        ),
        (
            json!([{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]),
            "input[0].content[0].type",
        ),
        (
            json!([{"role": "assistant", "content": [{"type": "input_image", "image_url": "x"}]}]),
            "input[0].content[0].type",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_text"}]}]),
            "input[0].content[0].text",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_image", "detail": "auto"}]}]),
            "input[0].content[0].image_url",
        ),
        (
            json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                   {"role": "user", "content": [{"type": "text", "text": "x"}]}]),
            "input[2].content[0].type",
        ),
        (
            json!([{"type": "function_call_output", "call_id": "c", "output": [{"type": "refusal", "refusal": "x"}]}]),
            "input[0].output[0].type",
        ),
        (
            json!([{"type": "reasoning", "summary": [{"type": "x", "text": "t"}]}]),
            "input[0].summary[0].type",
        ),
    ];
    for (items, param) in cases {
        let e = decode_items(&items_of(items.clone()), "input").unwrap_err();
        assert_eq!(e.param, param, "{items}: {}", e.message);
    }
}

// ------------------------------------------------------------- requests

use crate::model::{
    Assembler, BlockDelta, BlockStart, Event, FinishReason, ResponseFormat, Tool, ToolChoice, Usage,
};

fn request(v: Value) -> CreateRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_string_input_is_one_user_message_and_instructions_come_apart() {
    let d = decode_request(&request(json!({
        "model": "gpt-x", "input": "hello", "instructions": "be brief",
        "max_output_tokens": 50, "temperature": 0.5, "top_p": 0.9, "store": false,
        "metadata": {"k": "v"}, "user": "u1", "truncation": "auto"
    })))
    .unwrap();
    assert_eq!(d.request.messages, vec![Message::text(Role::User, "hello")]);
    assert_eq!(
        d.instructions,
        vec![Message::text(Role::System, "be brief")]
    );
    assert_eq!(d.request.max_output_tokens, Some(50));
    assert_eq!(d.request.temperature, Some(0.5));
    assert_eq!(d.request.top_p, Some(0.9));
    assert_eq!(d.request.user.as_deref(), Some("u1"));
    assert!(d.request.tools.is_empty() && d.mcp_labels.is_empty());
    // No input at all (a continuation may send only tool outputs, or nothing).
    let d = decode_request(&request(json!({"model": "m"}))).unwrap();
    assert!(d.request.messages.is_empty() && d.instructions.is_empty());
}

#[test]
fn tools_choice_format_and_reasoning_decode() {
    let req = request(json!({
        "model": "m", "input": [{"role": "user", "content": "x"}],
        "tools": [
            {"type": "function", "name": "weather", "description": "w",
             "parameters": {"type": "object"}, "strict": true},
            {"type": "mcp", "server_label": "crm", "server_url": "https://ignored",
             "require_approval": "never"}
        ],
        "tool_choice": {"type": "function", "name": "weather"},
        "parallel_tool_calls": false,
        "text": {"format": {"type": "json_schema", "name": "out", "strict": true,
                            "schema": {"type": "object", "properties": {}}}},
        "reasoning": {"effort": "high", "summary": "auto"},
        "safety_identifier": "s1", "user": "u1"
    }));
    let d = decode_request(&req).unwrap();
    assert_eq!(
        d.request.tools,
        vec![Tool::Function {
            name: "weather".into(),
            description: Some("w".into()),
            parameters: Some(json!({"type": "object"})),
            strict: Some(true),
            cache: None
        }]
    );
    assert_eq!(d.mcp_labels, vec![(1, "crm".to_string())]);
    assert_eq!(
        d.request.tool_choice,
        Some(ToolChoice::Tool {
            name: "weather".into()
        })
    );
    assert_eq!(d.request.parallel_tool_calls, Some(false));
    assert_eq!(
        d.request.response_format,
        Some(ResponseFormat::JsonSchema {
            json_schema: json!({"name": "out", "strict": true,
                                "schema": {"type": "object", "properties": {}}})
        })
    );
    assert_eq!(
        d.request.reasoning.and_then(|r| r.effort).as_deref(),
        Some("high")
    );
    assert_eq!(d.request.user.as_deref(), Some("s1"));
    for (choice, want) in [
        (json!("auto"), ToolChoice::Auto),
        (json!("none"), ToolChoice::None),
        (json!("required"), ToolChoice::Required),
        (
            json!({"type": "mcp", "server_label": "crm"}),
            ToolChoice::Required,
        ),
    ] {
        let d = decode_request(&request(json!({"model": "m", "tool_choice": choice}))).unwrap();
        assert_eq!(d.request.tool_choice, Some(want));
    }
    // The request echoes on the response as it came (the mcp tool's extra fields too).
    let head = ResponseHead::new("resp_1", 1, &req);
    let echoed = serde_json::to_value(head.object(types::Status::InProgress, vec![])).unwrap();
    assert_eq!(echoed["tools"], serde_json::to_value(&req.tools).unwrap());
    assert_eq!(
        echoed["tool_choice"],
        json!({"type": "function", "name": "weather"})
    );
    assert_eq!(echoed["text"]["format"]["name"], "out");
    assert_eq!(
        echoed["reasoning"],
        json!({"effort": "high", "summary": "auto"})
    );
    assert_eq!(echoed["parallel_tool_calls"], false);
}

// ------------------------------------------------------------- responses

fn head() -> ResponseHead {
    ResponseHead::new(
        "resp_abc",
        1_700_000_000,
        &request(
            json!({"model": "gpt-x", "input": "hi", "metadata": {"k": "v"},
                        "conversation": {"id": "conv_1"}}),
        ),
    )
}

fn answer(content: Vec<Block>, finish: FinishReason) -> crate::model::Response {
    crate::model::Response {
        id: None,
        model: None,
        message: Message {
            role: Role::Assistant,
            content,
            name: None,
        },
        finish,
        stop_sequence: None,
        usage: Usage {
            input: 10,
            output: 5,
            cache_read: 4,
            reasoning: 2,
            ..Usage::default()
        },
        usage_reported: true,
    }
}

#[test]
fn a_text_answer_is_a_completed_response() {
    let r = encode_response(
        &answer(vec![Block::text("Hello!")], FinishReason::Stop),
        &head(),
        &ItemIds::slot(3),
    );
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "id": "resp_abc", "object": "response", "created_at": 1_700_000_000u64,
            "status": "completed", "error": null, "incomplete_details": null,
            "instructions": null, "max_output_tokens": null, "model": "gpt-x",
            "output": [{"type": "message", "id": "msg_3_0", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "Hello!", "annotations": []}]}],
            "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": null,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": null,
            "truncation": "disabled",
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                      "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15},
            "metadata": {"k": "v"}, "conversation": {"id": "conv_1"}, "background": false
        })
    );
}

#[test]
fn length_and_filter_make_an_incomplete_response() {
    for (finish, reason) in [
        (FinishReason::Length, "max_output_tokens"),
        (FinishReason::ContentFilter, "content_filter"),
    ] {
        let r = encode_response(
            &answer(vec![Block::text("cut")], finish),
            &head(),
            &ItemIds::slot(0),
        );
        assert_eq!(r.status, types::Status::Incomplete);
        assert_eq!(r.incomplete_details.unwrap().reason, reason);
    }
    let r = encode_response(
        &answer(vec![], FinishReason::ToolCalls),
        &head(),
        &ItemIds::slot(0),
    );
    assert_eq!(r.status, types::Status::Completed);
}

// ------------------------------------------------------------- streams

/// The events of an SSE body: name and data, checking that each data's
/// `type` is its name and that sequence numbers count from 0.
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut out = Vec::new();
    for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
        let (event, data) = frame.split_once('\n').unwrap();
        let event = event.strip_prefix("event: ").unwrap().to_owned();
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], json!(event));
        assert_eq!(data["sequence_number"], json!(out.len()), "{event}");
        out.push((event, data));
    }
    out
}

fn names(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(e, _)| e.as_str()).collect()
}

/// Streams `evs` through an encoder, returning the SSE body and the
/// assembled answer.
fn stream(evs: &[Event], ids: ItemIds) -> (Vec<u8>, crate::model::Response, EventEncoder) {
    let mut enc = EventEncoder::new(head(), ids);
    let mut out = Vec::new();
    let mut asm = Assembler::new(false);
    enc.start(&mut out);
    for e in evs {
        enc.push(e, &mut out);
        asm.push(e);
    }
    enc.finish(&mut out);
    let usage = Usage::new(7, 3);
    enc.completed(usage, &mut out);
    (out, asm.finish(), enc)
}

fn text_events() -> Vec<Event> {
    vec![
        Event::Start {
            id: Some("up".into()),
            model: None,
        },
        Event::BlockStart {
            index: 0,
            block: BlockStart::Text,
        },
        Event::BlockDelta {
            index: 0,
            delta: BlockDelta::Text("Hel".into()),
        },
        Event::BlockDelta {
            index: 0,
            delta: BlockDelta::Text("lo".into()),
        },
        Event::BlockStop { index: 0 },
        Event::Finish {
            reason: FinishReason::Stop,
            stop_sequence: None,
        },
        Event::Usage(Usage::new(7, 3)),
    ]
}

#[test]
fn a_streamed_text_answer_goes_out_in_openais_order() {
    let (out, answer, enc) = stream(&text_events(), ItemIds::slot(2));
    let evs = events(&out);
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(evs[0].1["response"]["status"], "in_progress");
    assert_eq!(evs[0].1["response"]["output"], json!([]));
    assert_eq!(
        evs[2].1["item"],
        json!({"type": "message", "id": "msg_2_0", "role": "assistant", "status": "in_progress", "content": []})
    );
    assert_eq!(
        evs[4].1,
        json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_2_0",
               "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": []})
    );
    assert_eq!(evs[6].1["text"], "Hello");
    assert_eq!(
        evs[7].1["part"],
        json!({"type": "output_text", "text": "Hello", "annotations": []})
    );
    assert_eq!(evs[8].1["item"]["status"], "completed");
    let done = &evs[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["usage"]["total_tokens"], 10);
    // What the stream sent is what the stored answer shows.
    assert_eq!(
        done["output"],
        to_json(&output_items(&answer.message, &ItemIds::slot(2)))
    );
    assert_eq!(
        enc.output(),
        output_items(&answer.message, &ItemIds::slot(2))
    );
}

#[test]
fn streamed_parallel_tool_calls_keep_their_indices() {
    // An OpenAI upstream: text, then two calls interleaved, every block
    // stopped only at the finish.
    let start = |index, id: &str, name: &str| Event::BlockStart {
        index,
        block: BlockStart::ToolCall {
            id: id.into(),
            name: name.into(),
        },
    };
    let args = |index, s: &str| Event::BlockDelta {
        index,
        delta: BlockDelta::Arguments(s.into()),
    };
    let evs = vec![
        Event::BlockStart {
            index: 0,
            block: BlockStart::Text,
        },
        Event::BlockDelta {
            index: 0,
            delta: BlockDelta::Text("Checking.".into()),
        },
        start(1, "call_a", "weather"),
        args(1, "{\"city\":"),
        start(2, "call_b", "time"),
        args(2, "{}"),
        args(1, "\"Paris\"}"),
        Event::Finish {
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        },
    ];
    let (out, answer, _) = stream(&evs, ItemIds::slot(5));
    let evs = events(&out);
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            // finish: blocks stop in order.
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        evs[5].1["item"],
        json!({"type": "function_call", "id": "fc_5_1", "call_id": "call_a", "name": "weather",
               "arguments": "", "status": "in_progress"})
    );
    assert_eq!(
        (&evs[9].1["output_index"], &evs[9].1["item_id"]),
        (&json!(1), &json!("fc_5_1"))
    );
    assert_eq!(evs[13].1["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(evs[13].1["name"], "weather");
    assert_eq!(evs[15].1["output_index"], 2);
    let output = &evs[17].1["response"]["output"];
    assert_eq!(
        output,
        &to_json(&output_items(&answer.message, &ItemIds::slot(5)))
    );
    assert_eq!(output[2]["call_id"], "call_b");
}

#[test]
fn streamed_reasoning_is_a_summary_and_carries_its_signature() {
    let evs = vec![
        Event::BlockStart {
            index: 0,
            block: BlockStart::Reasoning,
        },
        Event::BlockDelta {
            index: 0,
            delta: BlockDelta::Reasoning("hmm".into()),
        },
        Event::BlockDelta {
            index: 0,
            delta: BlockDelta::Signature("sig".into()),
        },
        Event::BlockStop { index: 0 },
        Event::BlockStart {
            index: 1,
            block: BlockStart::EncryptedReasoning { data: "enc".into() },
        },
        Event::BlockStop { index: 1 },
        Event::BlockStart {
            index: 2,
            block: BlockStart::Text,
        },
        Event::BlockDelta {
            index: 2,
            delta: BlockDelta::Text("a".into()),
        },
        Event::BlockStop { index: 2 },
        Event::BlockStart {
            index: 3,
            block: BlockStart::Refusal,
        },
        Event::BlockDelta {
            index: 3,
            delta: BlockDelta::Refusal("no".into()),
        },
        Event::BlockStop { index: 3 },
    ];
    let (out, answer, _) = stream(&evs, ItemIds::slot(1));
    let evs = events(&out);
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            // The refusal joins the text's message item.
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        evs[7].1["item"],
        json!({"type": "reasoning", "id": "rs_1_0", "status": "completed",
               "summary": [{"type": "summary_text", "text": "hmm"}],
               "encrypted_content": format!("{SIGNATURE_PREFIX}sig")})
    );
    assert_eq!(evs[9].1["item"]["encrypted_content"], "enc");
    assert_eq!(evs[15].1["content_index"], 1);
    assert_eq!(
        evs[20].1["response"]["output"],
        to_json(&output_items(&answer.message, &ItemIds::slot(1)))
    );
}

#[test]
fn a_stream_cut_by_length_ends_incomplete() {
    let mut evs = text_events();
    evs[5] = Event::Finish {
        reason: FinishReason::Length,
        stop_sequence: None,
    };
    let (out, _, _) = stream(&evs, ItemIds::slot(0));
    let evs = events(&out);
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(data["response"]["status"], "incomplete");
    assert_eq!(
        data["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
}

#[test]
fn a_failed_stream_sends_error_then_response_failed() {
    let mut enc = EventEncoder::new(head(), ItemIds::slot(0));
    let mut out = Vec::new();
    enc.start(&mut out);
    for e in &text_events()[..3] {
        enc.push(e, &mut out);
    }
    enc.failed("server_error", "the provider failed", &mut out);
    let evs = events(&out);
    let n = evs.len();
    assert_eq!(
        evs[n - 2].1,
        json!({"type": "error", "sequence_number": n - 2, "code": "server_error",
               "message": "the provider failed", "param": null})
    );
    assert_eq!(evs[n - 1].0, "response.failed");
    assert_eq!(evs[n - 1].1["response"]["status"], "failed");
    assert_eq!(
        evs[n - 1].1["response"]["error"],
        json!({"code": "server_error", "message": "the provider failed"})
    );
    assert_eq!(
        evs[n - 1].1["response"]["output"][0]["content"][0]["text"],
        "Hel"
    );
    assert!(!String::from_utf8(out).unwrap().contains("[DONE]"));
}

#[test]
fn a_whole_answer_streams_as_its_own_events() {
    // A non-streamed answer replayed as events gives the same response.
    let a = answer(
        vec![
            Block::Reasoning {
                text: "r".into(),
                signature: Some("s".into()),
                encrypted: None,
            },
            Block::text("x"),
            Block::ToolCall(ToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: "{}".into(),
                cache: None,
            }),
        ],
        FinishReason::ToolCalls,
    );
    let (out, _, enc) = stream(&crate::model::events_of(&a), ItemIds::slot(8));
    events(&out);
    let whole = encode_response(&a, &head(), &ItemIds::slot(8));
    assert_eq!(enc.output(), whole.output);
}
