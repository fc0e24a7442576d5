//! Model request -> Converse body (`messages`, `system`, `inferenceConfig`,
//! `toolConfig`, `additionalModelRequestFields`); the model id goes in the
//! URL, not the body.
//!
//! Instructions are lifted into `system`, neighbouring same-role messages
//! merged (Converse wants alternating roles), tool messages sent as user
//! `toolResult` blocks, empty text and empty messages dropped. Prompt-cache
//! hints (ctxgate's breakpoints and a client's own) become a `cachePoint`
//! block right after the block they end. Dropped on purpose, since Converse
//! has no field for them: seed, penalties, user, response format, and
//! (for models other than Claude) top-k and reasoning settings.

use serde_json::{Map, Value, json};

use crate::model::{
    Block, Breakpoint, CacheHint, Document, Image, MediaSource, Message, Request, Role, Tool,
    ToolCall, ToolChoice, ToolResult, ToolResultPart,
};
use crate::wire::CodecError;

/// What a part the Converse API has no block for gets.
pub(super) const UNSUPPORTED: &str = "this content part is not supported by Bedrock models";

/// How the body is built, beyond the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamOptions<'a> {
    /// Prompt-cache breakpoints to add (see `provider::prompt_cache`).
    pub breakpoints: &'a [Breakpoint],
    /// `maxTokens` when the request sets none (else the model's own default).
    pub default_max_tokens: Option<u32>,
    /// The model is Anthropic's Claude, which takes `top_k` and `thinking`
    /// through `additionalModelRequestFields`.
    pub claude: bool,
}

/// The Converse body for `req`.
pub fn encode_request(req: &Request, opts: &UpstreamOptions<'_>) -> Result<Value, CodecError> {
    let mut system = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            Role::System | Role::Developer => {
                encode_system(m, i, opts, &mut system);
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let blocks = encode_message(m, i, opts)?;
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let mut body = Map::new();
    body.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    if let Some(n) = req.max_output_tokens.or(opts.default_max_tokens) {
        inference.insert("maxTokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if !req.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(req.stop));
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tools) = encode_tool_config(req) {
        body.insert("toolConfig".into(), tools);
    }
    if opts.claude {
        let mut extra = Map::new();
        if let Some(k) = req.top_k {
            extra.insert("top_k".into(), json!(k));
        }
        if let Some(r) = &req.reasoning
            && let Some(mode) = &r.mode
        {
            let mut thinking = json!({"type": mode});
            if let Some(b) = r.budget_tokens {
                thinking["budget_tokens"] = json!(b);
            }
            extra.insert("thinking".into(), thinking);
        }
        if !extra.is_empty() {
            body.insert("additionalModelRequestFields".into(), Value::Object(extra));
        }
    }
    Ok(Value::Object(body))
}

/// A `cachePoint` block for a hint.
fn cache_point(hint: &CacheHint) -> Value {
    let mut point = json!({"type": "default"});
    if let Some(ttl) = &hint.ttl {
        point["ttl"] = json!(ttl);
    }
    json!({ "cachePoint": point })
}

/// The hint that ends at block `j` of message `i`: ctxgate's breakpoint, else
/// the client's own.
fn hint_at<'a>(
    opts: &UpstreamOptions<'a>,
    i: usize,
    j: usize,
    b: &'a Block,
) -> Option<&'a CacheHint> {
    opts.breakpoints
        .iter()
        .find(|bp| bp.message == i && bp.block == j)
        .map(|bp| &bp.hint)
        .or_else(|| b.cache())
}

/// An instruction message's text blocks as `system` blocks (Converse's
/// system prompt takes text only).
fn encode_system(m: &Message, i: usize, opts: &UpstreamOptions<'_>, out: &mut Vec<Value>) {
    for (j, b) in m.content.iter().enumerate() {
        if let Block::Text { text, .. } = b
            && !text.is_empty()
        {
            out.push(json!({"text": text}));
            if let Some(h) = hint_at(opts, i, j, b) {
                out.push(cache_point(h));
            }
        }
    }
}

/// One message's blocks, errors at the paths a request from the OpenAI door
/// came with (`messages[i].content[j]`, `messages[i].tool_calls[j]`).
fn encode_message(
    m: &Message,
    i: usize,
    opts: &UpstreamOptions<'_>,
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
            _ => {
                let j = part;
                part += 1;
                encode_block(b, i, k).map_err(|e| CodecError {
                    param: format!("messages[{i}].content[{j}]{}", e.param),
                    message: e.message,
                })?
            }
        };
        if let Some(v) = v {
            out.push(v);
            if let Some(h) = hint_at(opts, i, k, b) {
                out.push(cache_point(h));
            }
        }
    }
    Ok(out)
}

/// `toolUse` for a call; `None` when its arguments are not JSON.
fn tool_use(c: &ToolCall) -> Option<Value> {
    let input: Value = serde_json::from_str(&c.arguments).ok()?;
    Some(json!({"toolUse": {"toolUseId": c.id, "name": c.name, "input": input}}))
}

/// One block; `Ok(None)` drops it (empty text, reasoning Bedrock cannot
/// take back). An error's `param` is the suffix below the block.
fn encode_block(b: &Block, i: usize, k: usize) -> Result<Option<Value>, CodecError> {
    let unsupported = || CodecError::new("", UNSUPPORTED);
    Ok(Some(match b {
        Block::Text { text, .. } | Block::Refusal { text } => {
            if text.is_empty() {
                return Ok(None);
            }
            json!({"text": text})
        }
        Block::Image(img) => json!({"image": image(img)?}),
        Block::Document(d) => json!({"document": document(d, &format!("document {i}-{k}"))?}),
        Block::ToolCall(c) => {
            tool_use(c).ok_or_else(|| CodecError::new("", "tool call arguments must be JSON"))?
        }
        Block::ToolResult(r) => tool_result(r, i, k)?,
        // OpenAI's encrypted reasoning means nothing to Bedrock.
        Block::Reasoning {
            encrypted: Some(data),
            ..
        } if crate::wire::openai_responses::is_openai_encrypted(data) => return Ok(None),
        Block::Reasoning {
            encrypted: Some(data),
            ..
        } => json!({"reasoningContent": {"redactedContent": data}}),
        Block::Reasoning {
            text,
            signature: Some(sig),
            ..
        } => json!({"reasoningContent": {"reasoningText": {"text": text, "signature": sig}}}),
        // Unsigned reasoning (another provider's) cannot be given back.
        Block::Reasoning { .. } => return Ok(None),
        Block::Audio { .. } | Block::Opaque(_) => return Err(unsupported()),
    }))
}

/// An `image` block: inline bytes only (Bedrock fetches no URLs), its format
/// from the media type.
fn image(img: &Image) -> Result<Value, CodecError> {
    let (media_type, data) = match &img.source {
        MediaSource::Base64 { media_type, data } => (media_type.as_str(), data.as_str()),
        MediaSource::Url { url } => {
            let inline = url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"));
            inline.ok_or_else(|| {
                CodecError::new(
                    ".image_url.url",
                    "Bedrock models take images inline: send a base64 data URL",
                )
            })?
        }
        _ => return Err(CodecError::new("", UNSUPPORTED)),
    };
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => {
            return Err(CodecError::new(
                "",
                "Bedrock models take png, jpeg, gif or webp images",
            ));
        }
    };
    Ok(json!({"format": format, "source": {"bytes": data}}))
}

/// A `document` block: inline bytes or text; named by its title or file
/// name (in the characters Bedrock allows), else `fallback`.
fn document(d: &Document, fallback: &str) -> Result<Value, CodecError> {
    let (format, source) = match &d.source {
        MediaSource::Base64 { media_type, data } => {
            let format = match media_type.as_str() {
                "application/pdf" => "pdf",
                "text/csv" => "csv",
                "text/html" => "html",
                "text/plain" => "txt",
                "text/markdown" => "md",
                "application/msword" => "doc",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
                "application/vnd.ms-excel" => "xls",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
                _ => {
                    return Err(CodecError::new(
                        "",
                        "Bedrock models take pdf, csv, doc, docx, xls, xlsx, html, txt or md documents",
                    ));
                }
            };
            (format, json!({"bytes": data}))
        }
        MediaSource::Text { data, .. } => ("txt", json!({"text": data})),
        _ => return Err(CodecError::new("", UNSUPPORTED)),
    };
    let wanted = d
        .title
        .as_deref()
        .or(d.filename.as_deref())
        .unwrap_or(fallback);
    let mut name = String::new();
    for c in wanted.chars() {
        let c = if c.is_ascii_alphanumeric() || "-()[]".contains(c) {
            c
        } else {
            ' '
        };
        // No runs of whitespace (Bedrock refuses them).
        if !(c == ' ' && (name.is_empty() || name.ends_with(' '))) {
            name.push(c);
        }
    }
    let name = match name.trim_end() {
        "" => fallback.to_owned(),
        n => n.chars().take(200).collect(),
    };
    let mut v = json!({"format": format, "name": name, "source": source});
    if let Some(c) = &d.context {
        v["context"] = json!(c);
    }
    Ok(v)
}

/// A `toolResult` block, `status: error` for a failed tool.
fn tool_result(r: &ToolResult, i: usize, k: usize) -> Result<Value, CodecError> {
    let mut content = Vec::new();
    for (n, p) in r.content.iter().enumerate() {
        let at = |e: CodecError| CodecError {
            param: format!(".content[{n}]{}", e.param),
            message: e.message,
        };
        match p {
            ToolResultPart::Text { text, .. } if text.is_empty() => {}
            ToolResultPart::Text { text, .. } => content.push(json!({"text": text})),
            ToolResultPart::Image(img) => content.push(json!({"image": image(img).map_err(at)?})),
            ToolResultPart::Document(d) => {
                let name = format!("document {i}-{k}-{n}");
                content.push(json!({"document": document(d, &name).map_err(at)?}));
            }
            ToolResultPart::Opaque(_) => return Err(at(CodecError::new("", UNSUPPORTED))),
        }
    }
    let mut v = json!({"toolUseId": r.call_id, "content": content});
    if r.is_error {
        v["status"] = json!("error");
    }
    Ok(json!({ "toolResult": v }))
}

/// `toolConfig`: the function tools and the choice; none with no tools or
/// `tool_choice: none`. Converse refuses tool blocks in the history without
/// a `toolConfig`, so a request that offers no tools but carries earlier
/// calls declares the tools those calls named (with an open schema).
fn encode_tool_config(req: &Request) -> Option<Value> {
    let mut tools: Vec<Value> = Vec::new();
    if req.tool_choice != Some(ToolChoice::None) {
        for t in &req.tools {
            if let Tool::Function {
                name,
                description,
                parameters,
                cache,
                ..
            } = t
            {
                let schema = parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                let mut spec = json!({"name": name, "inputSchema": {"json": schema}});
                if let Some(d) = description.as_deref().filter(|d| !d.is_empty()) {
                    spec["description"] = json!(d);
                }
                tools.push(json!({ "toolSpec": spec }));
                if let Some(h) = cache {
                    tools.push(cache_point(h));
                }
            }
        }
    }
    let offered = !tools.is_empty();
    if !offered {
        let mut named: Vec<&str> = Vec::new();
        for c in req.messages.iter().flat_map(Message::tool_calls) {
            if !named.contains(&c.name.as_str()) {
                named.push(&c.name);
            }
        }
        tools = named
            .into_iter()
            .map(|name| {
                json!({"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}})
            })
            .collect();
    }
    if tools.is_empty() {
        return None;
    }
    let mut config = json!({ "tools": tools });
    let choice = match (&req.tool_choice, offered) {
        (Some(ToolChoice::Auto), true) => Some(json!({"auto": {}})),
        (Some(ToolChoice::Required), true) => Some(json!({"any": {}})),
        (Some(ToolChoice::Tool { name }), true) => Some(json!({"tool": {"name": name}})),
        _ => None,
    };
    if let Some(c) = choice {
        config["toolChoice"] = c;
    }
    Some(config)
}
