//! Requests: client request -> model, and model -> upstream body.
//!
//! Canonical spellings (where the Messages API has two for one thing, the
//! encoder writes one): message content is always a block array; a system
//! prompt of one plain text block is a string; empty `stop_sequences` are
//! omitted; blocks as in [`super::blocks`].

use serde_json::{Map, Value, json};

use super::blocks::{decode_block, decode_cache, encode_block, opaque, put_cache, tool_use};
use super::types::{MessageContent, MessageRole, MessagesRequest, SystemPrompt};
use crate::model::{
    self, Block, Breakpoint, CacheHint, Extensions, Message, Reasoning, Role, Tool, ToolChoice,
    ToolResultPart, WireFormat,
};
use crate::wire::CodecError;

/// How the upstream body is built, beyond the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamOptions<'a> {
    /// Output cap when the request sets none (the Messages API requires one).
    pub default_max_tokens: u32,
    /// Whether to ask for a streamed answer.
    pub stream: bool,
    /// Prompt-cache breakpoints to add (see `provider::prompt_cache`).
    pub breakpoints: &'a [Breakpoint],
}

/// A client's Messages request as a model request, marked as Anthropic's so
/// that [`encode_request`] gives it back unchanged. Blocks, tools and choices
/// the model has no type for are kept whole as [`Opaque`](crate::model::Opaque).
pub fn decode_request(req: &MessagesRequest) -> Result<model::Request, CodecError> {
    let mut messages = Vec::new();
    match &req.system {
        None => {}
        Some(SystemPrompt::Text(t)) => messages.push(Message::text(Role::System, t.as_str())),
        Some(SystemPrompt::Blocks(blocks)) => messages.push(Message {
            role: Role::System,
            content: decode_blocks(blocks, "system")?,
            name: None,
        }),
    }
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            MessageRole::User => Role::User,
            MessageRole::Assistant => Role::Assistant,
        };
        let content = match &m.content {
            MessageContent::Text(t) => vec![Block::text(t.as_str())],
            MessageContent::Blocks(b) => decode_blocks(b, &format!("messages[{i}].content"))?,
        };
        messages.push(Message {
            role,
            content,
            name: None,
        });
    }
    let mut fields = req.extra.clone();
    let tools = req
        .tools
        .iter()
        .flatten()
        .map(decode_tool)
        .collect::<Vec<_>>();
    let (tool_choice, parallel_tool_calls) = match &req.tool_choice {
        None => (None, None),
        Some(v) => {
            let (c, p) = decode_tool_choice(v);
            (Some(c), p)
        }
    };
    let user = match &req.metadata {
        None => None,
        Some(m) => match m.as_object() {
            Some(o) if o.len() == 1 && o.get("user_id").is_some_and(Value::is_string) => {
                o["user_id"].as_str().map(str::to_owned)
            }
            _ => {
                fields.insert("metadata".into(), m.clone());
                None
            }
        },
    };
    let reasoning = match &req.thinking {
        None => None,
        Some(t) => match decode_thinking(t) {
            Some(r) => Some(r),
            None => {
                fields.insert("thinking".into(), t.clone());
                None
            }
        },
    };
    Ok(model::Request {
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        max_output_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop: req.stop_sequences.clone().unwrap_or_default(),
        user,
        reasoning,
        extensions: Extensions {
            format: Some(WireFormat::Anthropic),
            fields,
            ..Extensions::default()
        },
        ..model::Request::default()
    })
}

/// The upstream Messages body for `req`, sent to `model`.
///
/// A request from another front door is translated as the Anthropic provider
/// always has: instructions lifted into one `system` string joined with blank
/// lines, neighbouring same-role messages merged, tool messages as user
/// `tool_result` blocks, empty messages dropped. Empty text blocks are
/// dropped from any request. A request decoded by
/// [`decode_request`] comes back as it was sent.
pub fn encode_request(
    req: &model::Request,
    model: &str,
    opts: &UpstreamOptions<'_>,
) -> Result<Value, CodecError> {
    let native = req.extensions.format == Some(WireFormat::Anthropic);
    let marks = Marks(opts.breakpoints);
    let mut system: Vec<(usize, &Message)> = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            Role::System | Role::Developer => {
                system.push((i, m));
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let blocks = encode_message(m, i, native, marks)?;
        if native {
            out.push((role, blocks));
            continue;
        }
        if blocks.is_empty() {
            continue;
        }
        // The Messages API wants alternating roles: merge neighbours.
        match out.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(req.max_output_tokens.unwrap_or(opts.default_max_tokens)),
    );
    body.insert(
        "messages".into(),
        Value::Array(
            out.into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if let Some(system) = encode_system(&system, native, marks) {
        body.insert("system".into(), system);
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(t) = req.top_p {
        body.insert("top_p".into(), json!(t));
    }
    if let Some(k) = req.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req.tools.iter().filter_map(encode_tool).collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = encode_tool_choice(req.tool_choice.as_ref(), req.parallel_tool_calls) {
        body.insert("tool_choice".into(), tc);
    }
    if let Some(t) = req.reasoning.as_ref().and_then(encode_thinking) {
        body.insert("thinking".into(), t);
    }
    if let Some(fields) = req.extensions.for_format(WireFormat::Anthropic) {
        for (k, v) in fields {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if opts.stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

/// The breakpoints ctxgate adds, looked up by block.
#[derive(Clone, Copy)]
struct Marks<'a>(&'a [Breakpoint]);

impl<'a> Marks<'a> {
    /// The hint added on block `j` of message `i`, if any.
    fn at(self, i: usize, j: usize) -> Option<&'a CacheHint> {
        self.0
            .iter()
            .find(|b| b.message == i && b.block == j)
            .map(|b| &b.hint)
    }

    /// `v` (block `j` of message `i`, as encoded) with the added hint, if any.
    fn apply(self, i: usize, j: usize, v: Option<Value>) -> Option<Value> {
        v.map(|mut v| {
            if let Some(h) = self.at(i, j) {
                put_cache(&mut v, Some(h));
            }
            v
        })
    }
}

/// The `system` field: a string joined with blank lines, or blocks where an
/// instruction carries a cache hint (its own or one added) or citations, or
/// (for a request decoded here) where it came as more than one block.
fn encode_system(system: &[(usize, &Message)], native: bool, marks: Marks<'_>) -> Option<Value> {
    let blocks: Vec<(usize, usize, &Block)> = system
        .iter()
        .flat_map(|(i, m)| m.content.iter().enumerate().map(move |(j, b)| (*i, j, b)))
        .collect();
    let plain = |(i, j, b): &(usize, usize, &Block)| {
        marks.at(*i, *j).is_none()
            && matches!(
                b,
                Block::Text {
                    citations: None,
                    cache: None,
                    ..
                }
            )
    };
    let array = |blocks: &[(usize, usize, &Block)]| {
        Value::Array(
            blocks
                .iter()
                .filter_map(|(i, j, b)| marks.apply(*i, *j, encode_block(b, native).ok().flatten()))
                .collect(),
        )
    };
    if native {
        return match blocks.as_slice() {
            [] if system.is_empty() => None,
            [b] if plain(b) => Some(json!(b.2.as_text().unwrap_or_default())),
            _ => Some(array(&blocks)),
        };
    }
    if system.is_empty() {
        return None;
    }
    if blocks.iter().all(plain) {
        let texts: Vec<String> = system.iter().map(|(_, m)| m.text_content()).collect();
        return Some(json!(texts.join("\n\n")));
    }
    Some(array(&blocks))
}

/// One message's blocks, with errors at the OpenAI paths a translated
/// request came with (`messages[i].content[j]`, `messages[i].tool_calls[j]`).
fn encode_message(
    m: &Message,
    i: usize,
    native: bool,
    marks: Marks<'_>,
) -> Result<Vec<Value>, CodecError> {
    let mut out = Vec::new();
    let (mut part, mut call) = (0usize, 0usize);
    for (k, b) in m.content.iter().enumerate() {
        let v = match b {
            Block::ToolCall(c) => {
                let j = call;
                call += 1;
                Some(tool_use(c).ok_or_else(|| {
                    CodecError::new(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        "tool call arguments must be JSON",
                    )
                })?)
            }
            // A tool message (OpenAI's shape) carries its result as text;
            // one with media (the tool loop's) keeps its blocks.
            Block::ToolResult(r)
                if m.role == Role::Tool
                    && r.content
                        .iter()
                        .all(|p| matches!(p, ToolResultPart::Text { .. })) =>
            {
                let mut v =
                    json!({"type": "tool_result", "tool_use_id": r.call_id, "content": r.text()});
                if r.is_error {
                    v["is_error"] = json!(true);
                }
                put_cache(&mut v, r.cache.as_ref());
                Some(v)
            }
            _ => {
                let j = part;
                part += 1;
                encode_block(b, native).map_err(|e| CodecError {
                    param: format!("messages[{i}].content[{j}]{}", e.param),
                    message: e.message,
                })?
            }
        };
        out.extend(marks.apply(i, k, v));
    }
    Ok(out)
}

fn encode_tool(t: &Tool) -> Option<Value> {
    match t {
        Tool::Function {
            name,
            description,
            parameters,
            cache,
            ..
        } => {
            let mut v = json!({
                "name": name,
                "input_schema": parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = description {
                v["description"] = json!(d);
            }
            put_cache(&mut v, cache.as_ref());
            Some(v)
        }
        Tool::Opaque(o) if o.format == WireFormat::Anthropic => Some(o.value.clone()),
        Tool::Opaque(_) => None,
    }
}

fn encode_tool_choice(choice: Option<&ToolChoice>, parallel: Option<bool>) -> Option<Value> {
    let mut tc = match choice {
        None if parallel != Some(false) => return None,
        None | Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::None) => json!({"type": "none"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Tool { name }) => json!({"type": "tool", "name": name}),
        Some(ToolChoice::Opaque(o)) if o.format == WireFormat::Anthropic => {
            return Some(o.value.clone());
        }
        Some(ToolChoice::Opaque(_)) => json!({"type": "auto"}),
    };
    if parallel == Some(false) && tc["type"] != "none" {
        tc["disable_parallel_tool_use"] = json!(true);
    }
    Some(tc)
}

/// `thinking`, where the reasoning settings are in Anthropic's terms.
fn encode_thinking(r: &Reasoning) -> Option<Value> {
    let mode = r.mode.as_ref()?;
    let mut v = json!({"type": mode});
    if let Some(b) = r.budget_tokens {
        v["budget_tokens"] = json!(b);
    }
    Some(v)
}

fn decode_thinking(v: &Value) -> Option<Reasoning> {
    let r = Reasoning {
        effort: None,
        mode: Some(v["type"].as_str()?.to_owned()),
        budget_tokens: match v.get("budget_tokens") {
            None => None,
            Some(b) => Some(u32::try_from(b.as_u64()?).ok()?),
        },
    };
    (encode_thinking(&r).as_ref() == Some(v)).then_some(r)
}

fn decode_tool(v: &Value) -> Tool {
    let function = (|| {
        let o = v.as_object()?;
        let t = Tool::Function {
            name: o.get("name")?.as_str()?.to_owned(),
            description: match o.get("description") {
                None => None,
                Some(d) => Some(d.as_str()?.to_owned()),
            },
            parameters: Some(o.get("input_schema")?.clone()),
            strict: None,
            cache: decode_cache(v)?,
        };
        (encode_tool(&t).as_ref() == Some(v)).then_some(t)
    })();
    function.unwrap_or_else(|| Tool::Opaque(opaque(v)))
}

fn decode_tool_choice(v: &Value) -> (ToolChoice, Option<bool>) {
    let known = (|| {
        let choice = match v["type"].as_str()? {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "any" => ToolChoice::Required,
            "tool" => ToolChoice::Tool {
                name: v["name"].as_str()?.to_owned(),
            },
            _ => return None,
        };
        let parallel = (v.get("disable_parallel_tool_use") == Some(&json!(true))).then_some(false);
        (encode_tool_choice(Some(&choice), parallel).as_ref() == Some(v))
            .then_some((choice, parallel))
    })();
    known.unwrap_or_else(|| (ToolChoice::Opaque(opaque(v)), None))
}

fn decode_blocks(blocks: &[Value], path: &str) -> Result<Vec<Block>, CodecError> {
    blocks
        .iter()
        .enumerate()
        .map(|(j, b)| {
            if b.get("type").and_then(Value::as_str).is_none() {
                return Err(CodecError::new(
                    format!("{path}[{j}]"),
                    "a content block must be an object with a type",
                ));
            }
            Ok(decode_block(b))
        })
        .collect()
}
