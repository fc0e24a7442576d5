//! Golden round-trip tests of the non-streamed OpenAI Chat codec.
//!
//! Expected upstream bodies and `chat.completion`s are what the code before
//! the codec wrote (`provider::openai::{request_body, stream_body,
//! parse_response}` and the `ChatCompletion` built in `http/chat.rs`); a few
//! are also checked in as single-case files under `golden/`. Where the codec writes a different but equivalent spelling on
//! purpose, the case names the [`Canon`] rule that explains the difference,
//! and the test checks that the rule is needed.
//!
//! Today's code is gone: what it wrote for every case is recorded in
//! `golden/today.json` (written from it before it was replaced), and the
//! tests compare the codec with that record.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::types::{ChatMessage, ChatRequest};
use super::*;
use crate::model::{
    self, Block, Document, Extensions, Image, MediaSource, Message, Opaque, ResponseFormat, Role,
    Tool, ToolCall, ToolChoice, ToolResult, ToolResultPart, WireFormat,
};

const MODEL: &str = "gpt-4o";

// ---------------------------------------------------------------- helpers

fn parse(client: &Value) -> ChatRequest {
    serde_json::from_value(client.clone()).expect("a valid client request")
}

fn field_name(f: MaxTokensField) -> &'static str {
    match f {
        MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        MaxTokensField::MaxTokens => "max_tokens",
    }
}

fn field_of(name: &str) -> MaxTokensField {
    match name {
        "max_tokens" => MaxTokensField::MaxTokens,
        _ => MaxTokensField::MaxCompletionTokens,
    }
}

/// What today's code wrote (`provider::openai::{request_body, stream_body,
/// parse_response}` and the `chat.completion` of `http/chat.rs`), recorded
/// in `golden/today.json` for every case before that code was replaced.
fn today() -> &'static Value {
    static TODAY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    TODAY.get_or_init(|| {
        let text = std::fs::read_to_string(golden_dir().join("today.json")).expect("today.json");
        serde_json::from_str(&text).expect("today.json is JSON")
    })
}

/// Today's upstream body for case `name`: `http/chat.rs` wrote ctxgate's cap
/// into the request when the client named none (`max_completion_tokens` for
/// kind `openai`, `max_tokens` otherwise), then `provider::openai` wrote it.
fn today_body(name: &str, cap: Option<u32>, field: MaxTokensField) -> Value {
    let key = format!("{name}|{}|{cap:?}", field_name(field));
    let body = &today()["bodies"][&key];
    assert!(!body.is_null(), "no recorded body for {key}");
    body.clone()
}

/// The codec's upstream body: the client request decoded, ctxgate's cap set
/// on the model request when the client named none, encoded.
fn new_body(client: &Value, cap: Option<u32>, field: MaxTokensField) -> Value {
    let req = parse(client);
    let mut m = decode_request(&req);
    if let Some(n) = cap
        && m.max_output_tokens.is_none()
    {
        m.max_output_tokens = Some(n);
    }
    let opts = UpstreamOptions {
        stream: req.stream == Some(true),
        max_tokens_field: field,
        prompt_cache_key: None,
    };
    encode_request(&m, MODEL, &opts).expect("encodable")
}

/// A spelling the codec writes on purpose where today's code wrote another
/// one for the same thing (see the top of `request.rs` and `encode_answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Canon {
    /// A one-element `stop` array is written as a string.
    OneStop,
    /// Content of exactly one text part is written as a string.
    OneTextPart,
    /// Refusal content parts become the message's `refusal` field.
    RefusalPart,
    /// A tool message's empty content parts are written as `""`.
    EmptyResult,
    /// Other messages' empty content parts and empty tool call lists are
    /// written as nothing.
    EmptyLists,
    /// Answer: empty text beside tool calls or a refusal is no content
    /// (as the same answer streamed).
    EmptyTextWithCalls,
    /// Answer: no text, no calls, no refusal is `""` (as streamed).
    NullContentAlone,
    /// Answer: content parts are their text joined (as streamed).
    PartsJoined,
}

fn canon_name(s: &str) -> Canon {
    match s {
        "one_stop" => Canon::OneStop,
        "one_text_part" => Canon::OneTextPart,
        "refusal_part" => Canon::RefusalPart,
        "empty_text_with_calls" => Canon::EmptyTextWithCalls,
        "null_content_alone" => Canon::NullContentAlone,
        "parts_joined" => Canon::PartsJoined,
        "empty_result" => Canon::EmptyResult,
        "empty_lists" => Canon::EmptyLists,
        other => panic!("unknown canonical rule {other}"),
    }
}

/// Applies `rule` to one OpenAI message (request or answer).
fn canon_message(m: &mut Value, rule: Canon) {
    let o = m.as_object_mut().expect("a message object");
    match rule {
        Canon::OneTextPart => {
            if let Some(Value::Array(parts)) = o.get("content")
                && let [p] = parts.as_slice()
                && p["type"] == "text"
            {
                let text = p["text"].clone();
                o.insert("content".into(), text);
            }
        }
        Canon::RefusalPart => {
            let Some(Value::Array(parts)) = o.get("content").cloned() else {
                return;
            };
            let (refusals, rest): (Vec<Value>, Vec<Value>) =
                parts.into_iter().partition(|p| p["type"] == "refusal");
            if refusals.is_empty() {
                return;
            }
            let mut refusal = o
                .get("refusal")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            for r in &refusals {
                refusal.push_str(r["refusal"].as_str().unwrap_or_default());
            }
            o.insert("refusal".into(), json!(refusal));
            match rest.as_slice() {
                [] => {
                    o.remove("content");
                }
                [p] if p["type"] == "text" => {
                    o.insert("content".into(), p["text"].clone());
                }
                _ => {
                    o.insert("content".into(), Value::Array(rest));
                }
            }
        }
        Canon::EmptyTextWithCalls => {
            if o.get("content") == Some(&json!(""))
                && (o.contains_key("tool_calls") || o.contains_key("refusal"))
            {
                o.remove("content");
            }
        }
        Canon::NullContentAlone => {
            if !o.contains_key("content")
                && !o.contains_key("tool_calls")
                && !o.contains_key("refusal")
            {
                o.insert("content".into(), json!(""));
            }
        }
        Canon::PartsJoined => {
            if let Some(Value::Array(parts)) = o.get("content") {
                let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
                o.insert("content".into(), json!(text));
            }
        }
        Canon::EmptyLists => {
            for k in ["content", "tool_calls"] {
                if o.get("role") != Some(&json!("tool")) && o.get(k) == Some(&json!([])) {
                    o.remove(k);
                }
            }
        }
        Canon::EmptyResult => {
            if o.get("role") == Some(&json!("tool")) && o.get("content") == Some(&json!([])) {
                o.insert("content".into(), json!(""));
            }
        }
        Canon::OneStop => {}
    }
}

/// Today's upstream body in the codec's canonical spellings `rules`.
fn canon_body(mut body: Value, rules: &[Canon]) -> Value {
    for &rule in rules {
        if rule == Canon::OneStop
            && let Some(Value::Array(a)) = body.get("stop")
            && a.len() == 1
        {
            body["stop"] = a[0].clone();
        }
        for m in body["messages"].as_array_mut().into_iter().flatten() {
            canon_message(m, rule);
        }
    }
    body
}

/// Today's `chat.completion` in the codec's canonical spellings `rules`.
fn canon_completion(mut c: Value, rules: &[Canon]) -> Value {
    for &rule in rules {
        canon_message(&mut c["choices"][0]["message"], rule);
    }
    c
}

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-golden".into(),
        created: 1_764_460_800,
        model: "openai/gpt-4o".into(),
        conversation_id: Some("conv-1".into()),
        redactions: None,
    }
}

/// Today's `chat.completion` for answer case `name`.
fn today_completion(name: &str) -> Value {
    let c = &today()["completions"][name];
    assert!(!c.is_null(), "no recorded completion for {name}");
    c.clone()
}

/// The codec's `chat.completion` for an upstream answer.
fn new_completion(upstream: &Value) -> Value {
    let r = decode_response(upstream.clone()).expect("decodes");
    serde_json::to_value(encode_response(&r, meta())).unwrap()
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/wire/openai_chat/golden")
}

// ------------------------------------------------------------ the requests

fn user(content: Value) -> Value {
    json!({"role": "user", "content": content})
}

/// Client requests covering every part type, role and parameter; each with
/// the canonical rules that explain where the codec's body differs.
fn request_cases() -> Vec<(&'static str, Value, Vec<Canon>)> {
    let png = "data:image/png;base64,iVBORw0KGgo=";
    vec![
        (
            "plain",
            json!({"model": "openai/gpt-4o", "messages": [user(json!("hi"))]}),
            vec![],
        ),
        (
            "every_part_type",
            json!({"model": "m", "messages": [user(json!([
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": png}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": png, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%3E"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3", "extra": 1}},
                {"type": "file", "file": {"file_id": "file-abc"}},
                {"type": "file", "file": {"file_id": "file-abc", "filename": "a.pdf"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "b.pdf"}},
                {"type": "file", "file": {"file_data": "JVBERi0="}},
                {"type": "file", "file": {"file_data": "data:;base64,JVBERi0="}},
                {"type": "file", "file": {"file_id": "file-x", "file_data": "JVBERi0="}},
                {"type": "file", "file": {"filename": null, "file_id": "file-y"}},
                {"type": "text", "text": ""}
            ]))]}),
            vec![],
        ),
        (
            "roles_names_calls_refusal_tools",
            json!({"model": "m", "messages": [
                {"role": "system", "content": "be brief", "name": "sys"},
                {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "user", "content": "weather?", "name": "alice"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{ }"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}, {"type": "text", "text": "UTC"}]},
                {"role": "tool", "tool_call_id": "call_3", "content": "", "name": "legacy"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_5", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "assistant", "content": "It is sunny.", "name": "bot"},
                {"role": "assistant", "content": null, "refusal": "I can't help with that."},
                {"role": "assistant", "content": "partly", "refusal": "no more"},
                {"role": "user", "content": [{"type": "text", "text": "thanks"}, {"type": "image_url", "image_url": {"url": png}}]}
            ]}),
            vec![],
        ),
        (
            "empty_tool_result",
            json!({"model": "m", "messages": [
                {"role": "tool", "tool_call_id": "call_4", "content": []},
                user(json!("hi"))
            ]}),
            vec![Canon::EmptyResult],
        ),
        (
            "empty_parts_and_calls",
            json!({"model": "m", "messages": [
                user(json!("hi")),
                {"role": "assistant", "content": [], "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "assistant", "content": "ok", "tool_calls": []}
            ]}),
            vec![Canon::EmptyLists],
        ),
        (
            "odd_but_valid_messages",
            json!({"model": "m", "messages": [
                {"role": "user", "content": "x", "refusal": "r", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c", "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/i.png"}},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1"}}
                ]},
                {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": ""}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "tool_calls": [{"id": "d", "function": {"name": "g", "arguments": "[1]"}}]}
            ], "tool_choice": "sometimes",
               "tools": [{"type": "function", "function": {"name": "f", "parameters": null, "description": ""}}]}),
            vec![],
        ),
        (
            "one_text_part_and_refusal_part",
            json!({"model": "m", "messages": [
                {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                user(json!([{"type": "text", "text": "hi"}])),
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "well"}, {"type": "refusal", "refusal": "no"}]},
                {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "r"}]},
                user(json!("go on"))
            ]}),
            vec![Canon::RefusalPart, Canon::OneTextPart],
        ),
        (
            "tools_and_every_parameter",
            json!({"model": "m", "messages": [user(json!("hi"))],
                "tools": [
                    {"type": "function", "function": {"name": "f"}},
                    {"type": "function", "function": {"name": "g", "description": "G", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, "strict": true}},
                    {"type": "function", "function": {"name": "h", "strict": false}}
                ],
                "tool_choice": "auto", "parallel_tool_calls": false,
                "temperature": 0.2, "top_p": 0.9, "seed": 42, "presence_penalty": -0.5,
                "frequency_penalty": 1.5, "user": "user-7", "stop": ["END", "STOP"],
                "n": 1, "conversation_id": "conv-1"}),
            vec![],
        ),
        (
            "tool_choice_none",
            json!({"model": "m", "messages": [user(json!("hi"))], "tool_choice": "none"}),
            vec![],
        ),
        (
            "tool_choice_required",
            json!({"model": "m", "messages": [user(json!("hi"))], "tool_choice": "required",
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
            vec![],
        ),
        (
            "tool_choice_named",
            json!({"model": "m", "messages": [user(json!("hi"))],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": true}),
            vec![],
        ),
        (
            "tool_choice_unknown_form",
            json!({"model": "m", "messages": [user(json!("hi"))],
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}),
            vec![],
        ),
        (
            "tool_choice_named_with_extra",
            json!({"model": "m", "messages": [user(json!("hi"))],
                "tool_choice": {"type": "function", "function": {"name": "f", "x": 1}}}),
            vec![],
        ),
        (
            "max_tokens_only",
            json!({"model": "m", "messages": [user(json!("hi"))], "max_tokens": 100}),
            vec![],
        ),
        (
            "max_completion_tokens_only",
            json!({"model": "m", "messages": [user(json!("hi"))], "max_completion_tokens": 200}),
            vec![],
        ),
        (
            "both_caps_equal",
            json!({"model": "m", "messages": [user(json!("hi"))], "max_tokens": 50, "max_completion_tokens": 50}),
            vec![],
        ),
        (
            "both_caps_different",
            json!({"model": "m", "messages": [user(json!("hi"))], "max_tokens": 10, "max_completion_tokens": 20}),
            vec![],
        ),
        (
            "stop_string",
            json!({"model": "m", "messages": [user(json!("hi"))], "stop": "END"}),
            vec![],
        ),
        (
            "stop_one_element_array",
            json!({"model": "m", "messages": [user(json!("hi"))], "stop": ["END"]}),
            vec![Canon::OneStop],
        ),
        (
            "empty_lists",
            json!({"model": "m", "messages": [user(json!("hi"))], "stop": [], "tools": []}),
            vec![],
        ),
        (
            "response_format_text",
            json!({"model": "m", "messages": [user(json!("hi"))], "response_format": {"type": "text"}}),
            vec![],
        ),
        (
            "response_format_json_object",
            json!({"model": "m", "messages": [user(json!("hi"))], "response_format": {"type": "json_object"}}),
            vec![],
        ),
        (
            "response_format_json_schema",
            json!({"model": "m", "messages": [user(json!("hi"))], "response_format": {"type": "json_schema",
                "json_schema": {"name": "answer", "strict": true, "schema": {"type": "object", "properties": {"x": {"type": "string"}}}}}}),
            vec![],
        ),
        (
            "response_format_unknown_shape",
            json!({"model": "m", "messages": [user(json!("hi"))], "response_format": {"type": "json_object", "extra": true}}),
            vec![],
        ),
        (
            "streamed",
            json!({"model": "m", "messages": [user(json!("hi"))], "stream": true,
                "stream_options": {"include_usage": false}, "max_tokens": 5}),
            vec![],
        ),
        (
            "streamed_no_cap",
            json!({"model": "m", "messages": [user(json!("hi"))], "stream": true}),
            vec![],
        ),
    ]
}

// Issue 13, point 1: for every client request shape, the codec's upstream
// body equals today's `request_body` / `stream_body`, with and without
// ctxgate's budget cap, for both cap names; where it differs, only by the
// canonical spellings the case names (each of which is needed).
#[test]
fn upstream_bodies_equal_todays() {
    for (name, client, rules) in request_cases() {
        for field in [
            MaxTokensField::MaxCompletionTokens,
            MaxTokensField::MaxTokens,
        ] {
            for cap in [None, Some(77)] {
                let old = today_body(name, cap, field);
                let new = new_body(&client, cap, field);
                assert_eq!(
                    new,
                    canon_body(old.clone(), &rules),
                    "{name} ({field:?}, cap {cap:?})"
                );
                if !rules.is_empty() {
                    assert_ne!(new, old, "{name}: canonical rules {rules:?} not needed");
                }
            }
        }
    }
}

// Issue 13, point 1: today's budget cap rule. A client that names no cap
// and gets one from ctxgate sends it as `max_completion_tokens` to OpenAI
// (kind `openai`) and as `max_tokens` to compatible servers; a client's own
// cap keeps the name (or names) it came under.
#[test]
fn budget_cap_takes_the_providers_name() {
    let none = json!({"model": "m", "messages": [user(json!("hi"))]});
    let openai = new_body(&none, Some(64), MaxTokensField::MaxCompletionTokens);
    assert_eq!(openai["max_completion_tokens"], 64);
    assert!(openai.get("max_tokens").is_none());
    let compatible = new_body(&none, Some(64), MaxTokensField::MaxTokens);
    assert_eq!(compatible["max_tokens"], 64);
    assert!(compatible.get("max_completion_tokens").is_none());

    let legacy = json!({"model": "m", "messages": [user(json!("hi"))], "max_tokens": 9});
    for field in [
        MaxTokensField::MaxCompletionTokens,
        MaxTokensField::MaxTokens,
    ] {
        let b = new_body(&legacy, Some(64), field);
        assert_eq!(b["max_tokens"], 9, "{}", field_name(field));
        assert!(b.get("max_completion_tokens").is_none());
    }
    let both = json!({"model": "m", "messages": [user(json!("hi"))], "max_tokens": 9, "max_completion_tokens": 12});
    let b = new_body(&both, None, MaxTokensField::MaxTokens);
    assert_eq!(
        (&b["max_tokens"], &b["max_completion_tokens"]),
        (&json!(9), &json!(12))
    );
}

/// Drops null fields of the typed objects (the request, its messages, tool
/// declarations); opaque values inside parts are kept as sent.
fn drop_nulls(req: &mut Value) {
    let strip = |v: &mut Value| {
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
    };
    strip(req);
    for m in req["messages"].as_array_mut().into_iter().flatten() {
        strip(m);
    }
    if let Some(Value::Array(tools)) = req.get_mut("tools") {
        for t in tools {
            strip(&mut t["function"]);
        }
    }
}

// Issue 13, point 2: OpenAI request JSON -> ChatRequest -> model -> OpenAI
// JSON is the original, less ctxgate's own fields (`conversation_id`,
// `stream_options`, `n`) and in canonical spellings.
#[test]
fn client_requests_round_trip() {
    for (name, client, rules) in request_cases() {
        let req = parse(&client);
        let model_name = client["model"].as_str().unwrap();
        let opts = UpstreamOptions {
            stream: req.stream == Some(true),
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            prompt_cache_key: None,
        };
        let mut back = encode_request(&decode_request(&req), model_name, &opts).unwrap();
        let mut want = client.clone();
        for k in ["conversation_id", "stream_options", "n"] {
            want.as_object_mut().unwrap().remove(k);
            back.as_object_mut().unwrap().remove(k);
        }
        // Serde's spellings: a null field is no field, a tool call's `type`
        // defaults to `function`.
        drop_nulls(&mut want);
        for m in want["messages"].as_array_mut().unwrap() {
            if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                for c in calls {
                    c["type"] = json!("function");
                }
            }
        }
        let want = canon_body(want, &rules);
        assert_eq!(back, want, "{name}");
        // The decoded request is a fixed point.
        let again: ChatRequest = serde_json::from_value(back.clone()).unwrap();
        assert_eq!(
            decode_request(&again),
            decode_request(&parse(&want)),
            "{name}"
        );
    }
}

fn call(id: &str, name: &str, args: &str) -> Block {
    Block::ToolCall(ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
        cache: None,
    })
}

fn image(source: MediaSource, detail: Option<&str>) -> Image {
    Image {
        source,
        detail: detail.map(Into::into),
        cache: None,
    }
}

fn document(source: MediaSource, filename: Option<&str>) -> Document {
    Document {
        source,
        filename: filename.map(Into::into),
        title: None,
        context: None,
        citations: None,
        cache: None,
    }
}

fn base64(media_type: &str, data: &str) -> MediaSource {
    MediaSource::Base64 {
        media_type: media_type.into(),
        data: data.into(),
    }
}

fn msg(role: Role, content: Vec<Block>) -> Message {
    Message {
        role,
        content,
        name: None,
    }
}

/// Model messages of every shape OpenAI Chat can hold.
fn holdable_messages() -> Vec<Message> {
    let result = |id: &str, content: Vec<ToolResultPart>| {
        msg(
            Role::Tool,
            vec![Block::ToolResult(ToolResult {
                call_id: id.into(),
                content,
                is_error: false,
                cache: None,
            })],
        )
    };
    let text_part = |t: &str| ToolResultPart::Text {
        text: t.into(),
        cache: None,
    };
    vec![
        Message {
            name: Some("ops".into()),
            ..Message::text(Role::System, "be brief")
        },
        msg(Role::Developer, vec![Block::text("a"), Block::text("b")]),
        Message {
            name: Some("alice".into()),
            ..msg(
                Role::User,
                vec![
                    Block::text("look"),
                    Block::Image(image(base64("image/png", "iVBO"), None)),
                    Block::Image(image(
                        MediaSource::Url {
                            url: "https://example.com/a.jpg".into(),
                        },
                        Some("low"),
                    )),
                    Block::Audio {
                        data: "UklGRg==".into(),
                        format: "wav".into(),
                    },
                    Block::Document(document(
                        MediaSource::File {
                            file_id: "file-1".into(),
                        },
                        None,
                    )),
                    Block::Document(document(base64("application/pdf", "JVBE"), Some("a.pdf"))),
                    Block::Document(document(base64("", "JVBE"), None)),
                    Block::Opaque(Opaque {
                        format: WireFormat::OpenaiChat,
                        value: json!({"type": "input_audio", "input_audio": {"data": "x", "format": "wav", "more": 1}}),
                    }),
                ],
            )
        },
        msg(
            Role::Assistant,
            vec![call("c1", "f", "{\"a\":1}"), call("c2", "g", "not json")],
        ),
        result("c1", vec![text_part("one")]),
        result("c2", vec![text_part("a"), text_part("b")]),
        Message {
            name: Some("legacy".into()),
            ..result("c4", vec![text_part("")])
        },
        msg(
            Role::Assistant,
            vec![Block::text(""), call("c5", "f", "{}")],
        ),
        msg(Role::Assistant, vec![Block::Refusal { text: "no".into() }]),
        msg(
            Role::Assistant,
            vec![Block::text("partly"), Block::Refusal { text: "no".into() }],
        ),
        Message::text(Role::User, ""),
    ]
}

// Issue 13, point 2: model -> OpenAI -> model is the same, for every model
// message OpenAI Chat can hold.
#[test]
fn model_messages_round_trip() {
    let messages = holdable_messages();
    let wire = encode_messages(&messages).unwrap();
    assert_eq!(wire.len(), messages.len());
    // Through JSON, as they travel.
    let wire: Vec<ChatMessage> =
        serde_json::from_value(serde_json::to_value(&wire).unwrap()).unwrap();
    let back: Vec<Message> = wire.iter().map(decode_message).collect();
    assert_eq!(back, messages);
}

// Issue 13, point 2: a model request -> OpenAI body -> model request is the
// same (the cap's name is the one extension OpenAI Chat records).
#[test]
fn model_request_round_trips() {
    let mut fields = serde_json::Map::new();
    fields.insert("max_completion_tokens".into(), json!(300));
    let req = model::Request {
        messages: holdable_messages(),
        tools: vec![
            Tool::Function {
                name: "f".into(),
                description: Some("F".into()),
                parameters: Some(json!({"type": "object"})),
                strict: Some(true),
                cache: None,
            },
            Tool::Function {
                name: "g".into(),
                description: None,
                parameters: None,
                strict: None,
                cache: None,
            },
        ],
        tool_choice: Some(ToolChoice::Tool { name: "f".into() }),
        parallel_tool_calls: Some(true),
        max_output_tokens: Some(300),
        temperature: Some(0.5),
        top_p: Some(0.25),
        top_k: None,
        stop: vec!["a".into(), "b".into()],
        seed: Some(-3),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(-0.5),
        user: Some("u".into()),
        response_format: Some(ResponseFormat::JsonSchema {
            json_schema: json!({"name": "n", "schema": {"type": "object"}}),
        }),
        reasoning: None,
        extensions: Extensions {
            format: Some(WireFormat::OpenaiChat),
            fields,
            ..Extensions::default()
        },
        stable: None,
    };
    let opts = UpstreamOptions {
        stream: false,
        max_tokens_field: MaxTokensField::MaxTokens,
        prompt_cache_key: None,
    };
    let body = encode_request(&req, MODEL, &opts).unwrap();
    let back = decode_request(&serde_json::from_value(body).unwrap());
    assert_eq!(back, req);
    for choice in [ToolChoice::Auto, ToolChoice::None, ToolChoice::Required] {
        let r = model::Request {
            tool_choice: Some(choice),
            ..req.clone()
        };
        let body = encode_request(&r, MODEL, &opts).unwrap();
        assert_eq!(decode_request(&serde_json::from_value(body).unwrap()), r);
    }
}

// ------------------------------------------------------------- the answers

fn answer(message: Value, finish: Value, usage: Option<Value>) -> Value {
    let mut v = json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}]});
    if let Some(u) = usage {
        v["usage"] = u;
    }
    v
}

fn upstream_usage() -> Value {
    json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
}

/// Upstream answers, each with the canonical rules that explain where the
/// codec's `chat.completion` differs from today's.
fn answer_cases() -> Vec<(&'static str, Value, Vec<Canon>)> {
    let calls = json!([
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}
    ]);
    let u = Some(upstream_usage());
    vec![
        (
            "text",
            answer(
                json!({"role": "assistant", "content": "Hello!"}),
                json!("stop"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "tool_calls_content_null",
            answer(
                json!({"role": "assistant", "content": null, "tool_calls": calls}),
                json!("tool_calls"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "tool_calls_with_text",
            answer(
                json!({"role": "assistant", "content": "Let me check.", "tool_calls": calls}),
                json!("tool_calls"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "tool_calls_content_empty",
            answer(
                json!({"role": "assistant", "content": "", "tool_calls": calls}),
                json!("tool_calls"),
                u.clone(),
            ),
            vec![Canon::EmptyTextWithCalls],
        ),
        (
            "tool_calls_legacy_finish",
            answer(
                json!({"role": "assistant", "tool_calls": calls}),
                json!("function_call"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "empty_tool_call_list",
            answer(
                json!({"role": "assistant", "content": "x", "tool_calls": []}),
                json!("stop"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "refusal",
            answer(
                json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
                json!("stop"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "refusal_content_empty",
            answer(
                json!({"role": "assistant", "content": "", "refusal": "No."}),
                json!("stop"),
                u.clone(),
            ),
            vec![Canon::EmptyTextWithCalls],
        ),
        (
            "refusal_with_text",
            answer(
                json!({"role": "assistant", "content": "Sorry.", "refusal": "No."}),
                json!("content_filter"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "content_empty",
            answer(
                json!({"role": "assistant", "content": ""}),
                json!("length"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "content_null_alone",
            answer(
                json!({"role": "assistant", "content": null}),
                json!("length"),
                u.clone(),
            ),
            vec![Canon::NullContentAlone],
        ),
        (
            "content_parts",
            answer(
                json!({"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
                json!("stop"),
                u.clone(),
            ),
            vec![Canon::PartsJoined],
        ),
        (
            "answer_name",
            answer(
                json!({"role": "assistant", "content": "hi", "name": "bot"}),
                json!("stop"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "finish_length",
            answer(
                json!({"role": "assistant", "content": "cut"}),
                json!("length"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "finish_content_filter",
            answer(
                json!({"role": "assistant", "content": ""}),
                json!("content_filter"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "finish_null",
            answer(
                json!({"role": "assistant", "content": "x"}),
                Value::Null,
                u.clone(),
            ),
            vec![],
        ),
        (
            "finish_unknown",
            answer(
                json!({"role": "assistant", "content": "x"}),
                json!("eos"),
                u.clone(),
            ),
            vec![],
        ),
        (
            "usage_details",
            answer(
                json!({"role": "assistant", "content": "thought hard"}),
                json!("stop"),
                Some(
                    json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0,
                        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
                ),
            ),
            vec![],
        ),
        (
            "usage_zero_details",
            answer(
                json!({"role": "assistant", "content": "x"}),
                json!("stop"),
                Some(
                    json!({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 99,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0}}),
                ),
            ),
            vec![],
        ),
        (
            "usage_missing",
            answer(
                json!({"role": "assistant", "content": "x"}),
                json!("stop"),
                None,
            ),
            vec![],
        ),
        (
            "minimal_compatible_server",
            json!({"choices": [{"message": {"role": "assistant", "content": "ok"}}]}),
            vec![],
        ),
    ]
}

// Issue 13, point 2: upstream answer -> model -> `chat.completion` is what
// today's code returns for it (text, tool calls, refusal, empty content,
// every finish reason, usage with cached and reasoning details); where it
// differs, only by the canonical spellings the case names (each needed).
#[test]
fn completions_equal_todays() {
    for (name, upstream, rules) in answer_cases() {
        let old = today_completion(name);
        let new = new_completion(&upstream);
        assert_eq!(new, canon_completion(old.clone(), &rules), "{name}");
        if !rules.is_empty() {
            assert_ne!(new, old, "{name}: canonical rules {rules:?} not needed");
        }
    }
}

fn answer_case(name: &str) -> Value {
    answer_cases()
        .into_iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, v, _)| v)
        .unwrap()
}

// Issue 13, point 2: usage and `usage_reported` as decoded, per finish reason.
#[test]
fn answers_decode_to_the_model() {
    let r = decode_response(answer_case("usage_details")).unwrap();
    assert_eq!(
        r.usage,
        model::Usage {
            input: 2006,
            output: 300,
            cache_read: 1920,
            cache_write: 0,
            cache_write_1h: 0,
            reasoning: 192,
        }
    );
    assert!(r.usage_reported);
    assert_eq!(r.id.as_deref(), Some("chatcmpl-up"));
    assert_eq!(r.model.as_deref(), Some("gpt-4o-2024-08-06"));
    let missing = decode_response(answer_case("usage_missing")).unwrap();
    assert!(!missing.usage_reported && missing.usage.is_empty());
    for (finish, want) in [
        ("stop", model::FinishReason::Stop),
        ("length", model::FinishReason::Length),
        ("tool_calls", model::FinishReason::ToolCalls),
        ("function_call", model::FinishReason::ToolCalls),
        ("content_filter", model::FinishReason::ContentFilter),
        ("other", model::FinishReason::Stop),
    ] {
        let r = decode_response(answer(
            json!({"role": "assistant", "content": "x"}),
            json!(finish),
            None,
        ))
        .unwrap();
        assert_eq!(r.finish, want, "{finish}");
    }
    // Every model finish reason has an OpenAI name.
    use model::FinishReason as F;
    use types::FinishReason as W;
    for (f, w) in [
        (F::Stop, W::Stop),
        (F::StopSequence, W::Stop),
        (F::Pause, W::Stop),
        (F::Length, W::Length),
        (F::ContextWindow, W::Length),
        (F::ToolCalls, W::ToolCalls),
        (F::ContentFilter, W::ContentFilter),
    ] {
        assert_eq!(encode_finish(f), w, "{f:?}");
    }
    // What today refused (each of these failed `parse_response`), the codec
    // refuses, with a field path.
    for bad in [
        json!({"choices": []}),
        json!({"nope": 1}),
        json!({"choices": [{"message": {"role": "user", "content": "x"}}]}),
    ] {
        let bytes = serde_json::to_vec(&bad).unwrap();
        assert!(decode_response_bytes(&bytes).is_none_or(|r| r.is_err()));
        assert!(decode_response(bad).is_err());
    }
}

// Issue 19: an answer decoded straight from its bytes is the one decoded
// through a tree, for every answer case.
#[test]
fn answers_decode_the_same_from_bytes() {
    for (name, upstream, _) in answer_cases() {
        let bytes = serde_json::to_vec(&upstream).unwrap();
        let direct = decode_response_bytes(&bytes).expect(name).expect(name);
        assert_eq!(direct, decode_response(upstream).unwrap(), "{name}");
    }
}

// Issue 13, point 2: model answer -> `chat.completion` -> model answer is
// the same, for answers OpenAI Chat can hold.
#[test]
fn model_answers_round_trip() {
    let usage = model::Usage {
        input: 100,
        output: 40,
        cache_read: 64,
        cache_write: 0,
        cache_write_1h: 0,
        reasoning: 16,
    };
    for (content, finish) in [
        (vec![Block::text("hello")], model::FinishReason::Stop),
        (
            vec![Block::text("checking"), call("c1", "f", "{\"a\":1}")],
            model::FinishReason::ToolCalls,
        ),
        (vec![call("c1", "f", "{}")], model::FinishReason::ToolCalls),
        (
            vec![Block::Refusal { text: "no".into() }],
            model::FinishReason::ContentFilter,
        ),
        (vec![], model::FinishReason::Length),
    ] {
        let r = model::Response {
            id: Some("chatcmpl-golden".into()),
            model: Some("openai/gpt-4o".into()),
            message: msg(Role::Assistant, content),
            finish,
            stop_sequence: None,
            usage,
            usage_reported: true,
        };
        let wire = serde_json::to_value(encode_response(&r, meta())).unwrap();
        assert_eq!(decode_response(wire).unwrap(), r);
    }
}

// --------------------------------------------------------------- errors

// Issue 13, point 1: blocks OpenAI Chat cannot hold. Media it has no
// spelling for is refused with its `messages[i].content[j]` path (and no
// content in the message); reasoning and other formats' opaque blocks are
// left out; nothing panics.
#[test]
fn unholdable_blocks_are_refused_or_left_out_of_the_model_s_own_turns() {
    let secret = "TOP-SECRET-CONTENT";
    let text_doc = Block::Document(document(
        MediaSource::Text {
            media_type: "text/plain".into(),
            data: secret.into(),
        },
        None,
    ));
    let url_doc = Block::Document(document(
        MediaSource::Url {
            url: format!("https://example.com/{secret}.pdf"),
        },
        None,
    ));
    let file_image = Block::Image(image(
        MediaSource::File {
            file_id: secret.into(),
        },
        None,
    ));
    let text_image = Block::Image(image(
        MediaSource::Text {
            media_type: "text/plain".into(),
            data: secret.into(),
        },
        None,
    ));
    let opaque_ours_bad = Block::Opaque(Opaque {
        format: WireFormat::OpenaiChat,
        value: json!({"type": "mystery", "data": secret}),
    });
    for (j, block) in [text_doc, url_doc, file_image, text_image, opaque_ours_bad]
        .into_iter()
        .enumerate()
    {
        let mut content = vec![Block::text("x"); j + 1];
        content[j] = block;
        let messages = vec![Message::text(Role::User, "a"), msg(Role::User, content)];
        let e = encode_messages(&messages).expect_err("refused");
        assert_eq!(e.param, format!("messages[1].content[{j}]"));
        assert!(!e.message.contains(secret) && !e.to_string().contains(secret));
        // The whole request is refused the same way.
        let req = model::Request {
            messages,
            ..Default::default()
        };
        let opts = UpstreamOptions {
            stream: false,
            max_tokens_field: MaxTokensField::MaxTokens,
            prompt_cache_key: None,
        };
        assert_eq!(encode_request(&req, MODEL, &opts).unwrap_err(), e);
    }
    // An image by file id inside a tool result: refused at the block holding it.
    let result = Block::ToolResult(ToolResult {
        call_id: "c".into(),
        content: vec![ToolResultPart::Image(image(
            MediaSource::File {
                file_id: "f".into(),
            },
            None,
        ))],
        is_error: false,
        cache: None,
    });
    let e = encode_messages(&[msg(Role::User, vec![Block::text("a"), result])]).unwrap_err();
    assert_eq!(e.param, "messages[0].content[1]");

    // Left out: reasoning, and blocks and result parts kept for another format.
    let anthropic = |v: Value| Opaque {
        format: WireFormat::Anthropic,
        value: v,
    };
    let messages = vec![msg(
        Role::Assistant,
        vec![
            Block::Reasoning {
                text: "thinking".into(),
                signature: Some("sig".into()),
                encrypted: None,
            },
            Block::Reasoning {
                text: String::new(),
                signature: None,
                encrypted: Some("enc".into()),
            },
            Block::Opaque(anthropic(
                json!({"type": "server_tool_use", "id": "s", "name": "web_search"}),
            )),
            Block::text("answer"),
        ],
    )];
    let wire = encode_messages(&messages).unwrap();
    assert_eq!(
        serde_json::to_value(&wire).unwrap(),
        json!([{"role": "assistant", "content": "answer"}])
    );
    let only_hidden = vec![msg(
        Role::Assistant,
        vec![Block::Opaque(anthropic(json!({"type": "x"})))],
    )];
    assert_eq!(
        serde_json::to_value(encode_messages(&only_hidden).unwrap()).unwrap(),
        json!([{"role": "assistant"}])
    );
    let result = Block::ToolResult(ToolResult {
        call_id: "c".into(),
        content: vec![
            ToolResultPart::Text {
                text: "t".into(),
                cache: None,
            },
            ToolResultPart::Opaque(anthropic(json!({"type": "search_result"}))),
        ],
        is_error: true,
        cache: None,
    });
    // What a user (or a tool) sent is refused, never dropped without a word.
    let e = encode_messages(&[msg(Role::User, vec![result])]).unwrap_err();
    assert_eq!(e.param, "messages[0].content[0]");
    assert!(e.message.contains("'search_result'"), "{e}");
    let user_block = Block::Opaque(anthropic(json!({"type": "search_result"})));
    let e = encode_messages(&[msg(Role::User, vec![Block::text("t"), user_block])]).unwrap_err();
    assert_eq!(e.param, "messages[0].content[1]");
}

/// One block of every kind and source, holdable or not.
fn every_block() -> Vec<Block> {
    let media = || {
        vec![
            MediaSource::Url {
                url: "https://example.com/x".into(),
            },
            base64("image/png", "iVBO"),
            base64("", "iVBO"),
            MediaSource::Text {
                media_type: "text/plain".into(),
                data: "t".into(),
            },
            MediaSource::File {
                file_id: "file-1".into(),
            },
        ]
    };
    let mut parts = vec![ToolResultPart::Text {
        text: "t".into(),
        cache: None,
    }];
    let mut blocks = vec![
        Block::text("t"),
        Block::text(""),
        Block::Audio {
            data: "d".into(),
            format: "wav".into(),
        },
        call("c", "f", "{}"),
        Block::Reasoning {
            text: "r".into(),
            signature: Some("s".into()),
            encrypted: None,
        },
        Block::Reasoning {
            text: String::new(),
            signature: None,
            encrypted: Some("e".into()),
        },
        Block::Refusal { text: "no".into() },
    ];
    for source in media() {
        blocks.push(Block::Image(image(source.clone(), Some("auto"))));
        blocks.push(Block::Document(document(source.clone(), Some("f.pdf"))));
        parts.push(ToolResultPart::Image(image(source.clone(), None)));
        parts.push(ToolResultPart::Document(document(source, None)));
    }
    for format in [WireFormat::OpenaiChat, WireFormat::Anthropic] {
        for value in [
            json!({"type": "text", "text": "t"}),
            json!({"type": "unknown"}),
            json!("not an object"),
        ] {
            let o = Opaque {
                format,
                value: value.clone(),
            };
            blocks.push(Block::Opaque(o.clone()));
            parts.push(ToolResultPart::Opaque(o));
        }
    }
    for p in parts.iter().cloned() {
        blocks.push(Block::ToolResult(ToolResult {
            call_id: "c".into(),
            content: vec![p],
            is_error: true,
            cache: None,
        }));
    }
    blocks.push(Block::ToolResult(ToolResult {
        call_id: "c".into(),
        content: parts,
        is_error: false,
        cache: None,
    }));
    blocks
}

// Issue 13, point 1: whatever a model message holds, in whichever role,
// encoding it never panics; an error names a block of the message, and what
// is encoded reads back.
#[test]
fn encoding_never_panics() {
    let blocks = every_block();
    let roles = [
        Role::System,
        Role::Developer,
        Role::User,
        Role::Assistant,
        Role::Tool,
    ];
    let mut contents = vec![vec![]];
    contents.extend(blocks.iter().map(|b| vec![b.clone()]));
    for a in &blocks {
        for b in &blocks {
            contents.push(vec![a.clone(), b.clone()]);
        }
    }
    for role in roles {
        for content in &contents {
            let m = Message {
                role,
                content: content.clone(),
                name: Some("n".into()),
            };
            match encode_messages(&[Message::text(Role::User, "a"), m.clone()]) {
                Ok(wire) => {
                    let v = serde_json::to_value(&wire).unwrap();
                    let back: Vec<ChatMessage> = serde_json::from_value(v).unwrap();
                    back.iter().for_each(|w| drop(decode_message(w)));
                }
                Err(e) => {
                    let j: usize = e
                        .param
                        .strip_prefix("messages[1].content[")
                        .and_then(|r| r.strip_suffix(']'))
                        .and_then(|j| j.parse().ok())
                        .unwrap_or_else(|| panic!("param {}", e.param));
                    assert!(j < content.len());
                }
            }
        }
    }
}

// ------------------------------------------------------------ golden files

/// The checked-in cases: request fixtures (`request_*.json`: client request,
/// ctxgate's cap, the cap's name, canonical rules, upstream body) and answer
/// fixtures (`response_*.json`: upstream answer, canonical rules, client
/// `chat.completion`), generated once from today's code.
const GOLDEN_REQUESTS: &[(&str, &str, Option<u32>, MaxTokensField)] = &[
    (
        "request_every_part_type",
        "every_part_type",
        None,
        MaxTokensField::MaxCompletionTokens,
    ),
    (
        "request_conversation",
        "roles_names_calls_refusal_tools",
        Some(512),
        MaxTokensField::MaxTokens,
    ),
    (
        "request_canonical_spellings",
        "one_text_part_and_refusal_part",
        Some(512),
        MaxTokensField::MaxCompletionTokens,
    ),
    (
        "request_parameters",
        "tools_and_every_parameter",
        Some(1024),
        MaxTokensField::MaxCompletionTokens,
    ),
    (
        "request_both_caps",
        "both_caps_different",
        Some(1024),
        MaxTokensField::MaxTokens,
    ),
    (
        "request_json_schema",
        "response_format_json_schema",
        None,
        MaxTokensField::MaxTokens,
    ),
    (
        "request_empty_lists",
        "empty_lists",
        Some(256),
        MaxTokensField::MaxCompletionTokens,
    ),
    (
        "request_odd_but_valid",
        "odd_but_valid_messages",
        None,
        MaxTokensField::MaxTokens,
    ),
    (
        "request_streamed",
        "streamed_no_cap",
        Some(2048),
        MaxTokensField::MaxTokens,
    ),
];

const GOLDEN_ANSWERS: &[(&str, &str)] = &[
    ("response_text", "text"),
    ("response_tool_calls", "tool_calls_content_null"),
    ("response_tool_calls_empty_text", "tool_calls_content_empty"),
    ("response_refusal", "refusal"),
    ("response_usage_details", "usage_details"),
    ("response_content_null_alone", "content_null_alone"),
    ("response_length", "finish_length"),
    ("response_answer_name", "answer_name"),
];

fn read_rules(v: &Value) -> Vec<Canon> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| canon_name(r.as_str().unwrap()))
        .collect()
}

// Issue 13, points 1 and 2: the checked-in golden files, written from today's
// code, still hold for the codec (and, while it exists, for today's code).
#[test]
fn golden_files_hold() {
    let mut seen = 0;
    let mut files: Vec<_> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "today" {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let rules = read_rules(&v["canonical"]);
        if name.starts_with("request_") {
            let cap = v["ctxgate_cap"].as_u64().map(|n| n as u32);
            let field = field_of(v["max_tokens_field"].as_str().unwrap());
            let want = canon_body(v["upstream_today"].clone(), &rules);
            assert_eq!(new_body(&v["client"], cap, field), want, "{name}");
        } else {
            let want = canon_completion(v["client_today"].clone(), &rules);
            assert_eq!(new_completion(&v["upstream"]), want, "{name}");
        }
        seen += 1;
    }
    assert_eq!(seen, GOLDEN_REQUESTS.len() + GOLDEN_ANSWERS.len());
}

// Issue 14, point 6: cache writes go to the client as LiteLLM writes them,
// `usage.cache_creation_input_tokens`, only when there are some; compatible
// upstreams that report them are read the same way, whole and streamed.
#[test]
fn cache_writes_are_reported_only_when_made() {
    let written = model::Usage {
        input: 120,
        output: 8,
        cache_read: 64,
        cache_write: 40,
        cache_write_1h: 10,
        reasoning: 0,
    };
    let json_of = |u: &model::Usage| serde_json::to_value(encode_usage(u)).unwrap();
    assert_eq!(
        json_of(&written),
        json!({"prompt_tokens": 120, "completion_tokens": 8, "total_tokens": 128,
            "prompt_tokens_details": {"cached_tokens": 64}, "cache_creation_input_tokens": 40})
    );
    let none = model::Usage {
        cache_write: 0,
        cache_write_1h: 0,
        ..written
    };
    assert!(json_of(&none).get("cache_creation_input_tokens").is_none());
    // Back to the model: the writes, without the TTL split OpenAI cannot carry.
    assert_eq!(
        decode_usage(&encode_usage(&written)),
        model::Usage {
            cache_write_1h: 0,
            ..written
        }
    );
    let upstream = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": json_of(&written)});
    assert_eq!(decode_response(upstream).unwrap().usage.cache_write, 40);
}
