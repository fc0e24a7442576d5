//! ctxgate as a client of OpenAI's Responses API: the model request as a
//! stateless create request, and the upstream's response object as the
//! model's answer. The stream of the same answer is [`super::ResponsesDecoder`].
//!
//! Stateless: every request has `store: false` (ctxgate keeps the
//! conversation; OpenAI keeps nothing) and asks for
//! `reasoning.encrypted_content`, which is how a reasoning model's chain
//! survives between turns. The history goes as items through the one
//! mapping of [`super::encode_items`], without ids: OpenAI looks an item
//! id up among its stored items, and with `store: false` there are none
//! (it refuses the request), so no item carries one (as OpenAI's own Codex
//! client sends them). A reasoning item needs `summary` (possibly empty)
//! and, to be of any use, its `encrypted_content`. System and developer
//! messages go as input messages of their role where they stand, not as
//! `instructions`, so that a conversation's instructions keep their place
//! and role.
//!
//! Reasoning in the model: OpenAI's reasoning item is a visible reasoning
//! block for its summary, when it has one, followed by an encrypted one for
//! its `encrypted_content` (a block carries one or the other through the
//! model's events). Going back upstream the pair is one item again; a
//! reasoning block of another provider (an Anthropic signature or redacted
//! thinking) or with no encrypted content is left out, since OpenAI could
//! not read it and would refuse the request (see [`is_openai_encrypted`]).
//!
//! What the Responses API has no field for (`stop`, `seed`, the penalties,
//! `top_k`) is left out, as the Anthropic provider leaves out what its API
//! lacks; another format's extensions never go upstream.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::items::{ItemIds, encode_items};
use crate::model::{
    self, Block, FinishReason, Message, ResponseFormat, Role, Tool, ToolChoice, Usage, WireFormat,
};
use crate::wire::{CodecError, is_reason};

/// What ctxgate asks the upstream to include in every answer: the
/// reasoning's encrypted content, sent back on the next turn.
pub const ENCRYPTED_REASONING: &str = "reasoning.encrypted_content";

/// How to write an upstream Responses request.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamOptions<'a> {
    /// Streamed (`stream: true`).
    pub stream: bool,
    /// `prompt_cache_key` to send.
    pub prompt_cache_key: Option<&'a str>,
}

/// The create request for an OpenAI Responses upstream.
pub fn encode_upstream_request(
    req: &model::Request,
    model: &str,
    opts: &UpstreamOptions<'_>,
) -> Result<Value, CodecError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("input".into(), Value::Array(encode_input(&req.messages)?));
    body.insert("store".into(), json!(false));
    body.insert("include".into(), json!([ENCRYPTED_REASONING]));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    opt("temperature", req.temperature.map(Value::from));
    opt("top_p", req.top_p.map(Value::from));
    opt("max_output_tokens", req.max_output_tokens.map(Value::from));
    let tools: Vec<Value> = req.tools.iter().filter_map(encode_tool).collect();
    opt("tools", (!tools.is_empty()).then_some(Value::Array(tools)));
    opt(
        "tool_choice",
        req.tool_choice.as_ref().and_then(encode_tool_choice),
    );
    opt(
        "parallel_tool_calls",
        req.parallel_tool_calls.map(Value::from),
    );
    opt(
        "text",
        req.response_format
            .as_ref()
            .map(|f| json!({"format": encode_text_format(f)})),
    );
    opt(
        "reasoning",
        reasoning_effort(req).map(|e| json!({"effort": e})),
    );
    opt("user", req.user.clone().map(Value::from));
    opt("prompt_cache_key", opts.prompt_cache_key.map(Value::from));
    if opts.stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

/// The request's messages as input items, ids and statuses left out.
fn encode_input(messages: &[Message]) -> Result<Vec<Value>, CodecError> {
    let ids = ItemIds::slot(0);
    let mut input = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let carried;
        let m = if m.role == Role::Assistant {
            carried = carried_reasoning(m);
            &carried
        } else {
            m
        };
        for item in encode_items(m, &ids) {
            let mut v = serde_json::to_value(item)
                .map_err(|_| CodecError::new(format!("messages[{i}]"), "unencodable"))?;
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
                o.remove("status");
            }
            input.push(v);
        }
    }
    Ok(input)
}

/// An answer with only the reasoning OpenAI can take back: each encrypted
/// block, with the visible block just before it as its summary. A reasoning
/// item must be followed by the answer it led to, so one that ends the
/// answer (cut by the output cap) is left out too.
fn carried_reasoning(m: &Message) -> Message {
    let mut content: Vec<Block> = Vec::with_capacity(m.content.len());
    let mut summary: Option<&str> = None;
    for b in &m.content {
        match b {
            Block::Reasoning {
                text,
                signature: None,
                encrypted: None,
            } => summary = Some(text),
            Block::Reasoning {
                text,
                signature: None,
                encrypted: Some(e),
            } if is_openai_encrypted(e) => content.push(Block::Reasoning {
                text: match summary.take() {
                    Some(s) if text.is_empty() => s.to_owned(),
                    _ => text.clone(),
                },
                signature: None,
                encrypted: Some(e.clone()),
            }),
            Block::Reasoning { .. } => summary = None,
            other => {
                summary = None;
                content.push(other.clone());
            }
        }
    }
    if matches!(content.last(), Some(Block::Reasoning { .. })) {
        content.pop();
    }
    Message {
        role: m.role,
        content,
        name: None,
    }
}

/// Whether encrypted reasoning is OpenAI's: a Fernet token, whose version
/// byte (0x80) and the high bytes of its timestamp (zero until 2106) read
/// `gAAAAA` in base64. Anthropic's redacted thinking, the other encrypted
/// reasoning the model holds, does not; sent to OpenAI it would fail every
/// later turn of its conversation, where leaving it out only loses the chain.
pub fn is_openai_encrypted(data: &str) -> bool {
    data.starts_with("gAAAAA")
}

/// A function tool; other tools (another format's) have no Responses form.
fn encode_tool(t: &Tool) -> Option<Value> {
    let Tool::Function {
        name,
        description,
        parameters,
        strict,
        ..
    } = t
    else {
        return None;
    };
    let mut v = json!({
        "type": "function",
        "name": name,
        "parameters": parameters.clone().unwrap_or(Value::Null),
        // The Responses API defaults to strict schemas; Chat Completions and
        // Anthropic do not, so an unset `strict` stays off.
        "strict": strict.unwrap_or(false),
    });
    if let Some(d) = description {
        v["description"] = json!(d);
    }
    Some(v)
}

fn encode_tool_choice(c: &ToolChoice) -> Option<Value> {
    Some(match c {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool { name } => json!({"type": "function", "name": name}),
        ToolChoice::Opaque(_) => return None,
    })
}

/// `text.format`: Chat's `json_schema` object is flattened into the format.
fn encode_text_format(f: &ResponseFormat) -> Value {
    match f {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema { json_schema } => {
            let mut v = json!({"type": "json_schema"});
            if let Some(o) = json_schema.as_object() {
                for k in ["name", "schema", "strict", "description"] {
                    if let Some(x) = o.get(k) {
                        v[k] = x.clone();
                    }
                }
            }
            v
        }
    }
}

/// The effort asked for: the model's, or OpenAI Chat's `reasoning_effort`
/// kept as one of its extensions.
fn reasoning_effort(req: &model::Request) -> Option<String> {
    req.reasoning
        .as_ref()
        .and_then(|r| r.effort.clone())
        .or_else(|| {
            req.extensions
                .for_format(WireFormat::OpenaiChat)
                .and_then(|f| f.get("reasoning_effort"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
}

// ---------------------------------------------------------------- answers

#[derive(Deserialize)]
struct UpstreamResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    output: Vec<Value>,
    #[serde(default)]
    usage: Option<UpstreamUsage>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    #[serde(default)]
    error: Option<UpstreamError>,
}

/// A response's `usage`.
#[derive(Deserialize)]
pub(super) struct UpstreamUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl UpstreamUsage {
    pub(super) fn usage(&self) -> Usage {
        Usage::new(self.input_tokens, self.output_tokens).with_details(
            self.input_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens),
            self.output_tokens_details
                .as_ref()
                .map_or(0, |d| d.reasoning_tokens),
        )
    }
}

#[derive(Deserialize)]
pub(super) struct Incomplete {
    #[serde(default)]
    reason: Option<String>,
}

/// A response's or an `error` event's error: its code only, never the message.
#[derive(Deserialize)]
pub(super) struct UpstreamError {
    #[serde(default)]
    pub(super) code: Option<Value>,
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
}

impl UpstreamError {
    /// The code, when it reads like one (never content an upstream echoed).
    pub(super) fn reason(&self) -> String {
        self.code
            .as_ref()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .or_else(|| self.kind.clone())
            .filter(|k| is_reason(k))
            .unwrap_or_else(|| "error".into())
    }
}

/// The finish reason of a response of `status`.
pub(super) fn finish_of(
    status: Option<&str>,
    incomplete: Option<&Incomplete>,
    called: bool,
) -> FinishReason {
    match (status, incomplete.and_then(|i| i.reason.as_deref())) {
        (Some("incomplete"), Some("content_filter")) => FinishReason::ContentFilter,
        (Some("incomplete"), _) => FinishReason::Length,
        _ if called => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn text_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The blocks of one output item: a message's text and refusals, a function
/// call, a reasoning item's summary and encrypted content. Items of other
/// kinds (OpenAI's hosted tools) have none.
pub(super) fn output_blocks(item: &Value) -> Vec<Block> {
    match text_at(item, "type") {
        "message" => item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| match text_at(p, "type") {
                "output_text" => Some(Block::Text {
                    text: text_at(p, "text").to_owned(),
                    citations: p
                        .get("annotations")
                        .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
                        .cloned(),
                    cache: None,
                }),
                "refusal" => Some(Block::Refusal {
                    text: text_at(p, "refusal").to_owned(),
                }),
                _ => None,
            })
            .collect(),
        "function_call" => vec![Block::ToolCall(model::ToolCall {
            id: text_at(item, "call_id").to_owned(),
            name: text_at(item, "name").to_owned(),
            arguments: text_at(item, "arguments").to_owned(),
            cache: None,
        })],
        "reasoning" => {
            let mut out = Vec::new();
            let summary = summary_text(item);
            if !summary.is_empty() {
                out.push(Block::Reasoning {
                    text: summary,
                    signature: None,
                    encrypted: None,
                });
            }
            if let Some(e) = item
                .get("encrypted_content")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
            {
                out.push(Block::Reasoning {
                    text: String::new(),
                    signature: None,
                    encrypted: Some(e.to_owned()),
                });
            }
            out
        }
        _ => Vec::new(),
    }
}

/// A reasoning item's summary parts, joined by blank lines.
pub(super) fn summary_text(item: &Value) -> String {
    let parts: Vec<&str> = item
        .get("summary")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| text_at(p, "text"))
        .collect();
    parts.join("\n\n")
}

/// An upstream response object as the model's answer.
pub fn decode_upstream_response(body: Value) -> Result<model::Response, CodecError> {
    let r: UpstreamResponse = serde_json::from_value(body).map_err(|e| {
        CodecError::new(
            "",
            format!("invalid response object: {}", crate::wire::json_error(&e)),
        )
    })?;
    if r.status.as_deref() == Some("failed") {
        let code = r
            .error
            .as_ref()
            .map_or_else(|| "error".into(), |e| e.reason());
        return Err(CodecError::new(
            "status",
            format!("the response failed: {code}"),
        ));
    }
    let content: Vec<Block> = r.output.iter().flat_map(output_blocks).collect();
    let called = content.iter().any(|b| matches!(b, Block::ToolCall(_)));
    Ok(model::Response {
        id: r.id,
        model: r.model,
        finish: finish_of(r.status.as_deref(), r.incomplete_details.as_ref(), called),
        message: Message {
            role: Role::Assistant,
            content,
            name: None,
        },
        stop_sequence: None,
        usage_reported: r.usage.is_some(),
        usage: r
            .usage
            .as_ref()
            .map(UpstreamUsage::usage)
            .unwrap_or_default(),
    })
}
