//! Golden translations of the Converse codec: model requests (as the OpenAI
//! Chat and Anthropic Messages doors decode them) to Converse bodies, and
//! Converse answers back to the model.

use serde_json::{Value, json};

use super::*;
use crate::model::{
    Block, Breakpoint, CacheHint, CacheTtl, FinishReason, Message, Request, Role, ToolChoice,
    ToolResult, ToolResultPart, Usage,
};
use crate::wire::openai_chat::types::ChatRequest;

const PNG: &str = "iVBORw0KGgo=";

fn chat(v: Value) -> Request {
    let req: ChatRequest = serde_json::from_value(v).unwrap();
    crate::wire::openai_chat::decode_request(&req)
}

fn encode(req: &Request) -> Value {
    encode_request(req, &UpstreamOptions::default()).unwrap()
}

// Issue 20, point 1: system, messages, images, tools and tool choice, tool
// results (a failed one with `status: error`), stop sequences,
// temperature, top-p and max tokens, from an OpenAI Chat request.
#[test]
fn an_openai_chat_request_becomes_a_converse_body() {
    let req = chat(json!({
        "model": "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"dog\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "tool", "tool_call_id": "call_2", "content": "no such animal"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "lookup", "description": "Looks things up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}
        }}],
        "tool_choice": "required",
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_completion_tokens": 300,
        "seed": 7
    }));
    let mut req = req;
    // The tool loop marks a failed tool's result.
    if let Block::ToolResult(r) = &mut req.messages[5].content[0] {
        r.is_error = true;
    }
    assert_eq!(
        encode(&req),
        json!({
            "system": [{"text": "Be brief."}, {"text": "Answer in English."}],
            "messages": [
                {"role": "user", "content": [
                    {"text": "What is in this picture?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}}
                ]},
                {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "call_1", "name": "lookup", "input": {"q": "cat"}}},
                    {"toolUse": {"toolUseId": "call_2", "name": "lookup", "input": {"q": "dog"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "a cat"}]}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "no such animal"}], "status": "error"}}
                ]}
            ],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
            "toolConfig": {
                "tools": [{"toolSpec": {
                    "name": "lookup", "description": "Looks things up",
                    "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}}
                }}],
                "toolChoice": {"any": {}}
            }
        })
    );
}

// Issue 20, point 1: tool choice auto / a named tool / none (tools left
// out); a history of tool calls without tools on offer still declares
// them, since Converse refuses tool blocks without a toolConfig.
#[test]
fn tool_choices_map_and_none_leaves_the_tools_out() {
    let base = |choice: Value| {
        chat(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": choice
        }))
    };
    let choice = |v: Value| encode(&base(v))["toolConfig"]["toolChoice"].clone();
    assert_eq!(choice(json!("auto")), json!({"auto": {}}));
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "f"}})),
        json!({"tool": {"name": "f"}})
    );
    assert!(encode(&base(json!("none"))).get("toolConfig").is_none());

    let history = chat(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "crm__find", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "found"},
            {"role": "user", "content": "thanks"}
        ]
    }));
    assert_eq!(
        encode(&history)["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "crm__find", "inputSchema": {"json": {"type": "object"}}}}]})
    );
}

// Issue 20, point 3: ctxgate's breakpoints and a client's own hints become
// `cachePoint` blocks right after the block they end, in `system`, in
// messages and among the tools; a one-hour hint keeps its TTL.
#[test]
fn cache_hints_become_cache_points() {
    let mut req = Request {
        messages: vec![
            Message::text(Role::System, "You are a CRM assistant."),
            Message::text(Role::User, "first question"),
            Message::text(Role::Assistant, "first answer"),
            Message::text(Role::User, "second question"),
        ],
        tools: vec![crate::model::Tool::Function {
            name: "f".into(),
            description: None,
            parameters: None,
            strict: None,
            cache: Some(CacheHint::new(CacheTtl::OneHour)),
        }],
        ..Request::default()
    };
    let points = [
        Breakpoint {
            message: 0,
            block: 0,
            hint: CacheHint::new(CacheTtl::OneHour),
        },
        Breakpoint {
            message: 2,
            block: 0,
            hint: CacheHint::new(CacheTtl::FiveMinutes),
        },
    ];
    req.messages[3].content[0] = Block::Text {
        text: "second question".into(),
        citations: None,
        cache: Some(CacheHint::default()),
    };
    let body = encode_request(
        &req,
        &UpstreamOptions {
            breakpoints: &points,
            ..UpstreamOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        body["system"],
        json!([{"text": "You are a CRM assistant."}, {"cachePoint": {"type": "default", "ttl": "1h"}}])
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"text": "first question"}]},
            {"role": "assistant", "content": [{"text": "first answer"}, {"cachePoint": {"type": "default"}}]},
            {"role": "user", "content": [{"text": "second question"}, {"cachePoint": {"type": "default"}}]}
        ])
    );
    assert_eq!(
        body["toolConfig"]["tools"][1],
        json!({"cachePoint": {"type": "default", "ttl": "1h"}})
    );
}

// Issue 20, point 1: documents (bytes with their format, or text), named
// in the characters Bedrock allows; media Bedrock cannot take is refused
// naming the part.
#[test]
fn documents_and_refused_media() {
    let req = Request {
        messages: vec![Message {
            role: Role::User,
            content: vec![
                Block::Document(crate::model::Document {
                    source: crate::model::MediaSource::Base64 {
                        media_type: "application/pdf".into(),
                        data: "JVBERi0=".into(),
                    },
                    filename: None,
                    title: Some("Q3 report: final.pdf".into()),
                    context: None,
                    citations: None,
                    cache: None,
                }),
                Block::Document(crate::model::Document {
                    source: crate::model::MediaSource::Text {
                        media_type: "text/plain".into(),
                        data: "plain words".into(),
                    },
                    filename: None,
                    title: None,
                    context: None,
                    citations: None,
                    cache: None,
                }),
                Block::text("Summarise both."),
            ],
            name: None,
        }],
        ..Request::default()
    };
    assert_eq!(
        encode(&req)["messages"][0]["content"],
        json!([
            {"document": {"format": "pdf", "name": "Q3 report final pdf", "source": {"bytes": "JVBERi0="}}},
            {"document": {"format": "txt", "name": "document 0-1", "source": {"text": "plain words"}}},
            {"text": "Summarise both."}
        ])
    );
    let by_url = chat(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
        ]}]
    }));
    let e = encode_request(&by_url, &UpstreamOptions::default()).unwrap_err();
    assert_eq!(e.param, "messages[0].content[1].image_url.url");
    let bad_args = chat(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
            ]}
        ]
    }));
    let e = encode_request(&bad_args, &UpstreamOptions::default()).unwrap_err();
    assert_eq!(e.param, "messages[1].tool_calls[0].function.arguments");
}

// Issue 20, point 1: Claude's top-k and thinking settings go through
// `additionalModelRequestFields`; signed reasoning goes back as
// `reasoningContent`, unsigned reasoning (another provider's) is dropped.
#[test]
fn claude_fields_and_reasoning() {
    let req = Request {
        messages: vec![
            Message::text(Role::User, "think"),
            Message {
                role: Role::Assistant,
                content: vec![
                    Block::Reasoning {
                        text: "hmm".into(),
                        signature: Some("sig".into()),
                        encrypted: None,
                    },
                    Block::Reasoning {
                        text: "unsigned".into(),
                        signature: None,
                        encrypted: None,
                    },
                    Block::text("done"),
                ],
                name: None,
            },
        ],
        top_k: Some(5),
        reasoning: Some(crate::model::Reasoning {
            effort: None,
            mode: Some("enabled".into()),
            budget_tokens: Some(2048),
        }),
        ..Request::default()
    };
    let claude = encode_request(
        &req,
        &UpstreamOptions {
            claude: true,
            ..UpstreamOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        claude["additionalModelRequestFields"],
        json!({"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048}})
    );
    assert_eq!(
        claude["messages"][1]["content"],
        json!([
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
            {"text": "done"}
        ])
    );
    assert!(encode(&req).get("additionalModelRequestFields").is_none());
}

// Issue 20, point 1: a whole answer: text, a tool call, reasoning, the
// stop reason and usage with cache reads and writes (the model's input
// counts them all; the 1-hour writes from `cacheDetails`).
#[test]
fn a_converse_answer_becomes_the_model_response() {
    let r = decode_response(&json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "let me see", "signature": "s1"}}},
            {"text": "Looking it up."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "lookup", "input": {"q": "cat"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {
            "inputTokens": 10, "outputTokens": 20, "totalTokens": 1530,
            "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 500,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 300}, {"ttl": "5m", "inputTokens": 200}]
        },
        "metrics": {"latencyMs": 100}
    }))
    .unwrap();
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(
        r.usage,
        Usage {
            input: 1510,
            output: 20,
            cache_read: 1000,
            cache_write: 500,
            cache_write_1h: 300,
            reasoning: 0,
        }
    );
    assert!(r.usage_reported);
    assert_eq!(
        r.message.content,
        vec![
            Block::Reasoning {
                text: "let me see".into(),
                signature: Some("s1".into()),
                encrypted: None
            },
            Block::text("Looking it up."),
            Block::ToolCall(crate::model::ToolCall {
                id: "tooluse_1".into(),
                name: "lookup".into(),
                arguments: r#"{"q":"cat"}"#.into(),
                cache: None
            }),
        ]
    );
    assert!(decode_response(&json!({"output": {}})).is_err());
}

// Issue 20, point 1: every Converse stop reason has its model reason.
#[test]
fn stop_reasons() {
    for (wire, model) in [
        ("end_turn", FinishReason::Stop),
        ("tool_use", FinishReason::ToolCalls),
        ("max_tokens", FinishReason::Length),
        ("stop_sequence", FinishReason::StopSequence),
        ("guardrail_intervened", FinishReason::ContentFilter),
        ("content_filtered", FinishReason::ContentFilter),
        ("model_context_window_exceeded", FinishReason::ContextWindow),
        ("malformed_model_output", FinishReason::Stop),
    ] {
        assert_eq!(finish_reason(Some(wire)), model, "{wire}");
    }
}

// A tool result that carries an image (the tool loop's) keeps it.
#[test]
fn tool_results_keep_images() {
    let req = Request {
        messages: vec![Message {
            role: Role::User,
            content: vec![Block::ToolResult(ToolResult {
                call_id: "c1".into(),
                content: vec![
                    ToolResultPart::Text {
                        text: "chart".into(),
                        cache: None,
                    },
                    ToolResultPart::Image(crate::model::Image {
                        source: crate::model::MediaSource::Base64 {
                            media_type: "image/jpeg".into(),
                            data: "AAAA".into(),
                        },
                        detail: None,
                        cache: None,
                    }),
                ],
                is_error: false,
                cache: None,
            })],
            name: None,
        }],
        tool_choice: Some(ToolChoice::Auto),
        ..Request::default()
    };
    assert_eq!(
        encode(&req)["messages"][0]["content"][0],
        json!({"toolResult": {"toolUseId": "c1", "content": [
            {"text": "chart"},
            {"image": {"format": "jpeg", "source": {"bytes": "AAAA"}}}
        ]}})
    );
}
