//! Golden tests of the Anthropic Messages codec. Fixtures are under
//! `golden/`; the OpenAI-origin ones were generated once from the Anthropic
//! provider's own translation (`provider::anthropic::request_body` and
//! `parse_response`) before the codec replaced it.

use serde_json::{Value, json};

use super::*;
use crate::model::{
    self, Assembler, Block, Event, FinishReason, Message, Role, Tool, ToolChoice, ToolResultPart,
    Usage, WireFormat,
};
use crate::provider::anthropic::stream::EventDecoder;
use crate::wire::openai_chat::types::ChatRequest;
use crate::wire::{CodecError, DecodeError, Step, StreamDecoder};

const OPENAI_REQUESTS: &str = include_str!("golden/openai_origin_requests.json");
const OPENAI_ANSWERS: &str = include_str!("golden/openai_origin_answers.json");
const REQUEST_FULL: &str = include_str!("golden/request_full.json");
const REQUEST_SIMPLE: &str = include_str!("golden/request_simple.json");
const RESPONSES: &str = include_str!("golden/responses.json");
const STREAM_ANSWERS: &str = include_str!("golden/stream_answers.json");

fn streams(name: &str) -> &'static str {
    match name {
        "anthropic_text" => include_str!("../../../../tests/fixtures/streams/anthropic_text.sse"),
        "anthropic_max_tokens" => {
            include_str!("../../../../tests/fixtures/streams/anthropic_max_tokens.sse")
        }
        "anthropic_multi_block" => {
            include_str!("../../../../tests/fixtures/streams/anthropic_multi_block.sse")
        }
        "anthropic_parallel_tools" => {
            include_str!("../../../../tests/fixtures/streams/anthropic_parallel_tools.sse")
        }
        "anthropic_error" => include_str!("../../../../tests/fixtures/streams/anthropic_error.sse"),
        "anthropic_cut" => include_str!("../../../../tests/fixtures/streams/anthropic_cut.sse"),
        _ => unreachable!(),
    }
}

const OPTS: UpstreamOptions = UpstreamOptions {
    default_max_tokens: 4096,
    stream: false,
    breakpoints: &[],
};

/// A request as it comes in through the OpenAI Chat front door.
fn from_chat(r: &ChatRequest) -> model::Request {
    crate::wire::openai_chat::decode_request(r)
}

fn chat(v: Value) -> model::Request {
    from_chat(&serde_json::from_value(v).unwrap())
}

// Issue 13, point 2: a request that came in as OpenAI Chat gives exactly the
// upstream body (or the error) the Anthropic provider produced before the codec.
#[test]
fn openai_origin_bodies_are_todays() {
    let cases: Vec<Value> = serde_json::from_str(OPENAI_REQUESTS).unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let req = chat(c["openai_request"].clone());
        let got = encode_request(&req, "claude-x", &OPTS);
        match c.get("anthropic_body") {
            Some(body) => {
                assert_eq!(got.as_ref().unwrap(), body, "{}", c["name"]);
                let mut streamed = body.clone();
                streamed["stream"] = json!(true);
                let opts = UpstreamOptions {
                    stream: true,
                    ..OPTS
                };
                assert_eq!(
                    encode_request(&req, "claude-x", &opts).unwrap(),
                    streamed,
                    "{}",
                    c["name"]
                );
            }
            None => assert_eq!(
                got.unwrap_err(),
                CodecError::new(
                    c["error"]["param"].as_str().unwrap(),
                    c["error"]["message"].as_str().unwrap()
                ),
                "{}",
                c["name"]
            ),
        }
    }
}

// Issue 13, point 2: the provider's own test, its assertions kept, on the codec.
#[test]
fn lifts_system_merges_roles_and_translates_tools() {
    let r = chat(json!({"model":"m","messages":[
        {"role":"system","content":"be brief"},
        {"role":"user","content":"a"},
        {"role":"user","content":[{"type":"text","text":"b"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}}]},
        {"role":"assistant","content":"calling","tool_calls":[
            {"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},
            {"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"one"},
        {"role":"tool","tool_call_id":"c2","content":"two"},
        {"role":"developer","content":"and polite"}
    ], "stop":"X", "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}],
       "tool_choice":"required","parallel_tool_calls":false,"user":"u"}));
    let b = encode_request(&r, "claude", &OPTS).unwrap();
    assert_eq!(b["system"], "be brief\n\nand polite");
    assert_eq!(b["max_tokens"], 4096);
    let m = b["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[0]["role"], "user");
    assert_eq!(m[0]["content"].as_array().unwrap().len(), 3);
    assert_eq!(m[0]["content"][2]["source"]["media_type"], "image/png");
    assert_eq!(m[1]["content"][1]["type"], "tool_use");
    assert_eq!(m[1]["content"][1]["input"]["x"], 1);
    assert_eq!(m[2]["content"][0]["type"], "tool_result");
    assert_eq!(m[2]["content"][1]["tool_use_id"], "c2");
    assert_eq!(b["stop_sequences"], json!(["X"]));
    assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(
        b["tool_choice"],
        json!({"type":"any","disable_parallel_tool_use":true})
    );
    assert_eq!(b["metadata"]["user_id"], "u");
}

// Issue 13, point 2: the provider's own test, on the codec.
#[test]
fn max_tokens_from_client_wins() {
    let r = chat(json!({"model":"m","messages":[{"role":"user","content":"a"}],"max_tokens":9}));
    assert_eq!(encode_request(&r, "c", &OPTS).unwrap()["max_tokens"], 9);
}

fn round_trip_request(fixture: &str) -> model::Request {
    let wire: Value = serde_json::from_str(fixture).unwrap();
    let req: MessagesRequest = serde_json::from_value(wire.clone()).unwrap();
    let m = decode_request(&req).unwrap();
    let opts = UpstreamOptions {
        default_max_tokens: 1,
        stream: req.stream == Some(true),
        breakpoints: &[],
    };
    let back = encode_request(&m, &req.model, &opts).unwrap();
    assert_eq!(back, wire);
    // And model -> wire -> model.
    let again: MessagesRequest = serde_json::from_value(back).unwrap();
    assert_eq!(decode_request(&again).unwrap(), m);
    m
}

// Issue 13, point 1: an Anthropic request survives the model unchanged:
// system blocks with cache_control, thinking with its signature, redacted
// thinking, documents with title/context/citations, tool results with
// is_error and images, tool cache_control, top_k, thinking config, server tools.
#[test]
fn anthropic_request_round_trips_losslessly() {
    let m = round_trip_request(REQUEST_FULL);
    // The known shapes are typed, not carried opaque.
    let system = &m.messages[0];
    assert_eq!(system.role, Role::System);
    assert_eq!(
        system.content[1].cache().unwrap().ttl.as_deref(),
        Some("1h")
    );
    let user = &m.messages[1].content;
    assert!(matches!(&user[3], Block::Document(d) if d.title.as_deref() == Some("Report")));
    assert!(
        matches!(&user[5], Block::Opaque(_)),
        "a file source has no model place"
    );
    let assistant = &m.messages[2].content;
    assert!(
        matches!(&assistant[0], Block::Reasoning { signature: Some(s), .. } if s == "EqQBCkYIARgC")
    );
    assert!(matches!(
        &assistant[1],
        Block::Reasoning {
            encrypted: Some(_),
            ..
        }
    ));
    assert!(matches!(
        &assistant[2],
        Block::Text {
            citations: Some(_),
            ..
        }
    ));
    assert!(matches!(&assistant[3], Block::Opaque(_)));
    assert!(matches!(&assistant[5], Block::ToolCall(c) if c.cache.is_some()));
    let Block::ToolResult(r) = &m.messages[3].content[0] else {
        panic!("{:?}", m.messages[3])
    };
    assert!(r.is_error && r.cache.is_some());
    assert!(matches!(r.content[1], ToolResultPart::Image(_)));
    assert!(matches!(r.content[2], ToolResultPart::Opaque(_)));
    assert!(matches!(&m.tools[1], Tool::Function { cache: Some(_), .. }));
    assert!(matches!(&m.tools[2], Tool::Opaque(_)));
    assert_eq!(m.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(m.parallel_tool_calls, Some(false));
    assert_eq!(m.top_k, Some(40));
    assert_eq!(m.reasoning.as_ref().unwrap().budget_tokens, Some(2048));
    assert_eq!(m.user.as_deref(), Some("user-123"));
    assert_eq!(
        m.extensions.for_format(WireFormat::Anthropic).unwrap()["service_tier"],
        "standard_only"
    );
}

// Issue 13, point 1: a system string, same-role neighbours, result-less and
// multi-part tool results, and choices, metadata and tools of shapes the
// model has no place for come back as sent.
#[test]
fn anthropic_request_odd_shapes_round_trip() {
    let m = round_trip_request(REQUEST_SIMPLE);
    assert_eq!(m.messages[0], Message::text(Role::System, "Be brief."));
    assert!(matches!(m.tool_choice, Some(ToolChoice::Opaque(_))));
    assert!(matches!(&m.tools[0], Tool::Opaque(_)));
    assert_eq!(m.user, None);
    let ext = m.extensions.for_format(WireFormat::Anthropic).unwrap();
    assert!(ext.contains_key("metadata"));
    assert_eq!(
        m.reasoning.as_ref().unwrap().mode.as_deref(),
        Some("disabled")
    );
}

// Issue 13, point 1: canonical spellings: string content becomes one text
// block, a one-text-part tool result a string, `is_error: false` is dropped.
#[test]
fn anthropic_request_canonical_spellings() {
    let req: MessagesRequest = serde_json::from_value(json!({"model":"c","max_tokens":5,
        "system":[{"type":"text","text":"s"}],
        "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","is_error":false,"content":[{"type":"text","text":"r"}]}]}]}))
    .unwrap();
    let m = decode_request(&req).unwrap();
    assert!(matches!(&m.messages[3].content[0], Block::ToolResult(r) if r.text() == "r"));
    let back = encode_request(&m, "c", &OPTS).unwrap();
    assert_eq!(
        back,
        json!({"model":"c","max_tokens":5,"system":"s","messages":[
            {"role":"user","content":[{"type":"text","text":"hi"}]},
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"}]}]})
    );
}

// Issue 13, point 2: a block that is not an object with a type is refused by path.
#[test]
fn decode_refuses_untyped_blocks() {
    let req: MessagesRequest = serde_json::from_value(json!({"model":"c","max_tokens":5,
        "messages":[{"role":"user","content":[{"type":"text","text":"a"},{"text":"b"}]}]}))
    .unwrap();
    let e = decode_request(&req).unwrap_err();
    assert_eq!(e.param, "messages[0].content[1]");
}

// Issue 13, point 1: Anthropic answers survive the model unchanged, both ways.
#[test]
fn responses_round_trip() {
    let cases: Vec<Value> = serde_json::from_str(RESPONSES).unwrap();
    for wire in cases {
        let r = decode_response(wire.clone()).unwrap();
        let back = encode_response(
            &r,
            wire["id"].as_str().unwrap(),
            wire["model"].as_str().unwrap(),
        );
        assert_eq!(back, wire);
        assert_eq!(decode_response(back).unwrap(), r);
    }
    let r =
        decode_response(serde_json::from_str::<Vec<Value>>(RESPONSES).unwrap()[0].clone()).unwrap();
    assert_eq!(
        r.usage,
        Usage {
            input: 140,
            output: 45,
            cache_read: 10,
            cache_write: 100,
            cache_write_1h: 0,
            reasoning: 0
        }
    );
    assert!(matches!(
        &r.message.content[0],
        Block::Reasoning {
            signature: Some(_),
            ..
        }
    ));
}

fn openai_finish(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length | FinishReason::ContextWindow => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        _ => "stop",
    }
}

// Issue 13, point 2: an upstream answer decodes to what the provider gave
// before the codec: the same text, calls, finish reason and usage figures.
#[test]
fn openai_origin_answers_are_todays() {
    let cases: Vec<Value> = serde_json::from_str(OPENAI_ANSWERS).unwrap();
    for c in cases {
        let r = decode_response(c["anthropic_answer"].clone()).unwrap();
        let today = &c["today"];
        let text: String = r
            .message
            .content
            .iter()
            .filter_map(Block::as_text)
            .collect();
        assert_eq!(text, today["text"].as_str().unwrap(), "{}", c["name"]);
        let calls: Vec<Value> = r
            .message
            .tool_calls()
            .map(|t| json!({"id": t.id, "name": t.name, "arguments": t.arguments}))
            .collect();
        assert_eq!(Value::from(calls), today["tool_calls"], "{}", c["name"]);
        assert_eq!(
            openai_finish(r.finish),
            today["finish_reason"],
            "{}",
            c["name"]
        );
        let u = &today["usage"];
        assert_eq!(r.usage.input, u["prompt_tokens"].as_u64().unwrap());
        assert_eq!(r.usage.output, u["completion_tokens"].as_u64().unwrap());
        assert_eq!(
            r.usage.cache_read,
            u["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0)
        );
    }
}

// Issue 13, point 2: the provider's own parse test, on the codec.
#[test]
fn parses_text_tools_stop_reason_and_usage() {
    let r = decode_response(json!({"type":"message","role":"assistant","content":[
            {"type":"text","text":"let me check"},
            {"type":"tool_use","id":"tu1","name":"weather","input":{"city":"Oslo"}}],
          "stop_reason":"tool_use","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}}))
    .unwrap();
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(
        r.usage,
        Usage {
            input: 15,
            output: 3,
            cache_read: 5,
            ..Usage::default()
        }
    );
    assert_eq!(r.message.text_content(), "let me check");
    let call = r.message.tool_calls().next().unwrap();
    assert_eq!(call.id, "tu1");
    assert_eq!(call.arguments, r#"{"city":"Oslo"}"#);
    let finish = |s: &str| {
        decode_response(json!({"content":[],"stop_reason":s}))
            .unwrap()
            .finish
    };
    assert_eq!(finish("max_tokens"), FinishReason::Length);
    assert_eq!(finish("end_turn"), FinishReason::Stop);
    assert_eq!(finish("stop_sequence"), FinishReason::StopSequence);
    assert_eq!(
        finish("model_context_window_exceeded"),
        FinishReason::ContextWindow
    );
    assert_eq!(finish("refusal"), FinishReason::ContentFilter);
    assert_eq!(finish("pause_turn"), FinishReason::Pause);
    assert!(decode_response(json!({"oops":1})).is_err());
    assert!(decode_response(json!({"content":[{"type":"tool_use","name":"f"}]})).is_err());
    assert!(decode_response(json!({"content":[{"type":"text"}]})).is_err());
}

/// The (event, data) pairs of an SSE body; a last event without its blank
/// line is incomplete and not dispatched. (The recordings end lines with CRLF.)
fn sse_events(body: &str) -> Vec<(String, String)> {
    let body = body.replace("\r\n", "\n");
    let mut out = Vec::new();
    let mut chunks: Vec<&str> = body.split("\n\n").collect();
    chunks.pop(); // after the last blank line: empty, or an incomplete event
    for chunk in chunks {
        let (mut event, mut data) = (String::new(), String::new());
        for line in chunk.lines() {
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.into();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = d.into();
            }
        }
        if !data.is_empty() {
            out.push((event, data));
        }
    }
    out
}

fn decode_stream(body: &str) -> (Vec<Event>, Result<Step, DecodeError>) {
    let mut d = EventDecoder::new();
    let mut out = Vec::new();
    for (event, data) in sse_events(body) {
        match d.event(&event, &data, &mut out) {
            Ok(Step::Done) => return (out, Ok(Step::Done)),
            Ok(Step::More) => {}
            Err(e) => return (out, Err(e)),
        }
    }
    let end = d.end(&mut out).map(|()| Step::More);
    (out, end)
}

/// A recording in the encoder's canonical form: no pings, no empty
/// `input_json_delta`, and `{}` as the input of a tool called without one.
fn canonical_stream(body: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut tools_without_input: Vec<u64> = Vec::new();
    for (event, data) in sse_events(body) {
        let v: Value = serde_json::from_str(&data).unwrap();
        match event.as_str() {
            "ping" => continue,
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                tools_without_input.push(v["index"].as_u64().unwrap())
            }
            "content_block_delta" if v["delta"]["type"] == "input_json_delta" => {
                if v["delta"]["partial_json"] == "" {
                    continue;
                }
                tools_without_input.retain(|i| *i != v["index"].as_u64().unwrap());
            }
            "content_block_stop" => {
                let i = v["index"].as_u64().unwrap();
                if tools_without_input.contains(&i) {
                    out.push((
                        "content_block_delta".into(),
                        json!({"type":"content_block_delta","index":i,"delta":{"type":"input_json_delta","partial_json":"{}"}}),
                    ));
                }
            }
            _ => {}
        }
        out.push((event, v));
    }
    out
}

const RECORDED: [&str; 4] = [
    "anthropic_text",
    "anthropic_max_tokens",
    "anthropic_multi_block",
    "anthropic_parallel_tools",
];

// Issue 13, point 1: a recorded stream decodes to events that assemble to
// the same answer as the whole answer decoded, with today's figures.
#[test]
fn recorded_streams_assemble_to_the_whole_answer() {
    let answers: Value = serde_json::from_str(STREAM_ANSWERS).unwrap();
    for name in RECORDED {
        let (events, end) = decode_stream(streams(name));
        assert_eq!(end, Ok(Step::Done), "{name}");
        let mut a = Assembler::new(true);
        for e in &events {
            a.push(e);
        }
        let whole = decode_response(answers[name].clone()).unwrap();
        assert_eq!(a.finish(), whole, "{name}");
    }
    // Today's figures for the multi-block recording: 40 prompt tokens, 10 of
    // them cached, 45 completion tokens; the thinking block is kept.
    let (events, _) = decode_stream(streams("anthropic_multi_block"));
    assert_eq!(
        events.last(),
        Some(&Event::Usage(Usage {
            input: 40,
            output: 45,
            cache_read: 10,
            ..Usage::default()
        }))
    );
    // message_start's usage comes first, so a stream failing later is charged.
    assert!(matches!(events[1], Event::Usage(u) if u.input == 40 && u.output == 1));
}

// Issue 13, point 1: recorded stream -> events -> SSE gives the recording back
// (in canonical form: pings are the encoder's own to send).
#[test]
fn recorded_streams_re_encode_to_themselves() {
    for name in RECORDED {
        let (events, _) = decode_stream(streams(name));
        let mut enc = EventEncoder::new("msg_01", "claude-sonnet-4-5", 0);
        let mut out = Vec::new();
        for e in &events {
            enc.push(e, &mut out);
        }
        enc.finish(&mut out);
        let got: Vec<(String, Value)> = sse_events(std::str::from_utf8(&out).unwrap())
            .into_iter()
            .map(|(e, d)| (e, serde_json::from_str(&d).unwrap()))
            .collect();
        assert_eq!(got, canonical_stream(streams(name)), "{name}");
    }
}

// Issue 13, point 1: model -> SSE -> model: a whole answer's events survive
// the encoder and decoder.
#[test]
fn answers_survive_the_stream_codec() {
    let cases: Vec<Value> = serde_json::from_str(RESPONSES).unwrap();
    for wire in cases {
        let r = decode_response(wire.clone()).unwrap();
        let mut enc = EventEncoder::new(wire["id"].as_str().unwrap(), "claude-sonnet-4-5", 0);
        let mut out = Vec::new();
        for e in model::events_of(&r) {
            enc.push(&e, &mut out);
        }
        enc.finish(&mut out);
        let (events, end) = decode_stream(std::str::from_utf8(&out).unwrap());
        assert_eq!(end, Ok(Step::Done));
        let mut a = Assembler::new(true);
        for e in &events {
            a.push(e);
        }
        assert_eq!(a.finish(), r, "{}", wire["id"]);
    }
}

// Issue 13, point 2: an error event is reported by its type only, and a body
// ending before message_stop is malformed, as before the codec.
#[test]
fn stream_errors_are_todays() {
    let (events, end) = decode_stream(streams("anthropic_error"));
    assert_eq!(end, Err(DecodeError::Reported("overloaded_error".into())));
    assert!(events.contains(&Event::BlockDelta {
        index: 0,
        delta: model::BlockDelta::Text("Partial".into())
    }));
    let (_, end) = decode_stream(streams("anthropic_cut"));
    assert!(matches!(end, Err(DecodeError::Malformed(_))));
    let mut d = EventDecoder::new();
    let mut out = Vec::new();
    let secret =
        r#"{"type":"error","error":{"type":"sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}"#;
    assert_eq!(
        d.event("error", secret, &mut out),
        Err(DecodeError::Reported("error".into()))
    );
    let e = d
        .event("", "{\"type\": \"secret-text", &mut out)
        .unwrap_err();
    assert!(!e.to_string().contains("secret"), "{e}");
}

// Issue 13, point 2: the encoder's own events: message_start with the input
// estimate, input counts repeated at the end only when they changed, ping
// and error helpers.
#[test]
fn encoder_events() {
    let mut enc = EventEncoder::new("msg_x", "claude", 7);
    let mut out = Vec::new();
    enc.push(
        &Event::BlockStart {
            index: 0,
            block: model::BlockStart::Text,
        },
        &mut out,
    );
    enc.push(
        &Event::Usage(Usage {
            input: 9,
            output: 2,
            cache_read: 4,
            ..Usage::default()
        }),
        &mut out,
    );
    enc.push(
        &Event::Finish {
            reason: FinishReason::StopSequence,
            stop_sequence: Some("END".into()),
        },
        &mut out,
    );
    enc.finish(&mut out);
    let ev = sse_events(std::str::from_utf8(&out).unwrap());
    let start: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(start["message"]["id"], "msg_x");
    assert_eq!(start["message"]["usage"]["input_tokens"], 7);
    // The block the model never stopped is stopped before the end.
    assert_eq!(ev[2].0, "content_block_stop");
    let delta: Value = serde_json::from_str(&ev[3].1).unwrap();
    assert_eq!(
        delta,
        json!({"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"END"},
            "usage":{"output_tokens":2,"input_tokens":5,"cache_read_input_tokens":4,"cache_creation_input_tokens":0}})
    );
    assert_eq!(ev[4].0, "message_stop");
    assert_eq!(
        EventEncoder::ping(),
        b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
    );
    let err = EventEncoder::error("overloaded_error", "Overloaded");
    let (name, data) = &sse_events(std::str::from_utf8(&err).unwrap())[0];
    assert_eq!(name, "error");
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
    );
}

// Issue 13, point 1: stream shapes the recordings lack: redacted thinking,
// citations, a server tool block, and input counts repeated in message_delta.
#[test]
fn stream_decodes_newer_shapes() {
    let body = [
        r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"enc"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"q\":1}"}}"#,
        r#"{"type":"content_block_stop","index":1}"#,
        r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"x"}}"#,
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"x"}}}"#,
        r#"{"type":"content_block_stop","index":2}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"Z"},"usage":{"input_tokens":3,"cache_creation_input_tokens":8,"cache_read_input_tokens":2,"output_tokens":6}}"#,
        r#"{"type":"message_stop"}"#,
    ]
    .map(|d| format!("event: e\ndata: {d}\n\n"))
    .concat();
    let (events, end) = decode_stream(&body);
    assert_eq!(end, Ok(Step::Done));
    let mut a = Assembler::new(true);
    for e in &events {
        a.push(e);
    }
    let r = a.finish();
    assert_eq!(r.finish, FinishReason::StopSequence);
    assert_eq!(r.stop_sequence.as_deref(), Some("Z"));
    assert_eq!(
        r.usage,
        Usage {
            input: 13,
            output: 6,
            cache_read: 2,
            cache_write: 8,
            cache_write_1h: 0,
            reasoning: 0
        }
    );
    assert!(
        matches!(&r.message.content[0], Block::Reasoning { encrypted: Some(d), .. } if d == "enc")
    );
    assert!(matches!(&r.message.content[1], Block::Opaque(_)));
    assert!(matches!(
        &r.message.content[2],
        Block::Text {
            citations: Some(_),
            ..
        }
    ));
}

// Issue 14, point 1: the 1-hour part of the cache writes (`cache_creation`)
// is read from whole answers and from both stream events that carry input
// counts, and written back when there is one.
#[test]
fn one_hour_cache_writes_are_counted_apart() {
    let usage = json!({"input_tokens": 4, "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 30, "output_tokens": 2,
        "cache_creation": {"ephemeral_5m_input_tokens": 18, "ephemeral_1h_input_tokens": 12}});
    let want = Usage {
        input: 44,
        output: 2,
        cache_read: 10,
        cache_write: 30,
        cache_write_1h: 12,
        reasoning: 0,
    };
    let r = decode_response(json!({"id": "m", "model": "c", "role": "assistant",
        "content": [{"type": "text", "text": "x"}], "stop_reason": "end_turn", "usage": usage}))
    .unwrap();
    assert_eq!(r.usage, want);
    let back = encode_response(&r, "m", "c");
    assert_eq!(back["usage"], usage);
    // Without 1-hour writes the object is as before (no `cache_creation`).
    let five = Usage {
        cache_write_1h: 0,
        ..want
    };
    assert!(response::usage_json(&five).get("cache_creation").is_none());

    for (start, delta) in [
        // message_start carries the counts...
        (usage.clone(), json!({"output_tokens": 2})),
        // ...or message_delta repeats them (newer API versions)...
        (
            json!({"input_tokens": 4, "output_tokens": 1}),
            usage.clone(),
        ),
        // ...or repeats them without the breakdown, which is then kept.
        (usage.clone(), {
            let mut u = usage.clone();
            u.as_object_mut().unwrap().remove("cache_creation");
            u
        }),
    ] {
        let body = [
            json!({"type": "message_start", "message": {"id": "m", "model": "c", "usage": start}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta}),
            json!({"type": "message_stop"}),
        ]
        .map(|d| format!("event: e\ndata: {d}\n\n"))
        .concat();
        let (events, end) = decode_stream(&body);
        assert_eq!(end, Ok(Step::Done));
        let mut a = Assembler::new(true);
        for e in &events {
            a.push(e);
        }
        assert_eq!(a.finish().usage, want);
    }

    // The client's stream: message_start with the counts known then, the
    // breakdown repeated at the end when it changed.
    let mut enc = EventEncoder::new("m", "c", 7);
    let mut out = Vec::new();
    enc.push(&Event::Usage(want), &mut out);
    enc.push(
        &Event::BlockStart {
            index: 0,
            block: model::BlockStart::Text,
        },
        &mut out,
    );
    enc.finish(&mut out);
    let ev = sse_events(std::str::from_utf8(&out).unwrap());
    let start: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(start["message"]["usage"], usage);
    let mut enc = EventEncoder::new("m", "c", 7);
    let mut out = Vec::new();
    enc.push(
        &Event::BlockStart {
            index: 0,
            block: model::BlockStart::Text,
        },
        &mut out,
    );
    enc.push(&Event::Usage(want), &mut out);
    enc.finish(&mut out);
    let ev = sse_events(std::str::from_utf8(&out).unwrap());
    let delta: Value = serde_json::from_str(&ev[3].1).unwrap();
    assert_eq!(delta["usage"], usage);
}

// Issue 17, point 2: blocks go out one at a time, numbered in the order they
// go out, whatever the model stream interleaves: a block started while
// another is open is held with its deltas (and its stop) until that one
// stops; blocks left open are stopped at the end.
#[test]
fn encoder_sends_interleaved_blocks_one_at_a_time() {
    use model::{BlockDelta as D, BlockStart as S};
    let delta = |index, delta| Event::BlockDelta { index, delta };
    let mut enc = EventEncoder::new("m", "c", 1);
    let mut out = Vec::new();
    for e in [
        Event::BlockStart {
            index: 0,
            block: S::Text,
        },
        Event::BlockStart {
            index: 1,
            block: S::ToolCall {
                id: "a".into(),
                name: "f".into(),
            },
        },
        delta(1, D::Arguments("{\"x\":".into())),
        delta(0, D::Text("hi".into())),
        delta(1, D::Arguments("1}".into())),
        Event::BlockStop { index: 1 },
        Event::BlockStart {
            index: 2,
            block: S::Reasoning,
        },
        delta(2, D::Reasoning("hm".into())),
        Event::BlockStop { index: 0 },
        // A stray delta for a stopped block opens nothing.
        delta(0, D::Text("late".into())),
    ] {
        enc.push(&e, &mut out);
    }
    enc.finish(&mut out);
    let got: Vec<Value> = sse_events(std::str::from_utf8(&out).unwrap())
        .into_iter()
        .map(|(_, d)| serde_json::from_str(&d).unwrap())
        .skip(1)
        .collect();
    let start =
        |i: u32, b: Value| json!({"type":"content_block_start","index":i,"content_block":b});
    let delta = |i: u32, d: Value| json!({"type":"content_block_delta","index":i,"delta":d});
    let stop = |i: u32| json!({"type":"content_block_stop","index":i});
    assert_eq!(
        got[..got.len() - 2],
        [
            start(0, json!({"type":"text","text":""})),
            delta(0, json!({"type":"text_delta","text":"hi"})),
            stop(0),
            start(1, json!({"type":"tool_use","id":"a","name":"f","input":{}})),
            delta(
                1,
                json!({"type":"input_json_delta","partial_json":"{\"x\":"})
            ),
            delta(1, json!({"type":"input_json_delta","partial_json":"1}"})),
            stop(1),
            start(2, json!({"type":"thinking","thinking":""})),
            delta(2, json!({"type":"thinking_delta","thinking":"hm"})),
            stop(2),
        ]
    );
}
