//! OpenAI Chat requests and messages to and from the model: client requests
//! decoded at the front door, model requests encoded for OpenAI-protocol
//! providers, stored messages shown back in OpenAI's shape.
//!
//! Canonical spellings (what the encoder writes where OpenAI has two for the
//! same thing): content that is one text block is a string, otherwise parts;
//! one stop sequence is a string; a refusal is the message's `refusal` field;
//! a tool result with no content is `""`; other empty content parts and an
//! empty tool call list are left out.

use serde_json::{Map, Value, json};

use super::types::{
    ChatMessage, ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Role,
    Stop, Tool as WireTool, ToolCall as WireToolCall,
};
use crate::model::{
    self, Block, CacheHint, Document, Extensions, Image, MediaSource, Message, Opaque,
    ResponseFormat, Tool, ToolCall, ToolChoice, ToolResult, ToolResultPart, WireFormat,
};
use crate::wire::CodecError;

const FORMAT: WireFormat = WireFormat::OpenaiChat;

/// Which name an OpenAI-protocol upstream takes the output cap under when
/// the client named none (ctxgate set it from the budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_completion_tokens` (OpenAI itself; required by reasoning models).
    MaxCompletionTokens,
    /// `max_tokens` (what OpenAI-compatible servers understand).
    MaxTokens,
}

/// How to write an upstream request.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions<'a> {
    /// Streamed: adds `stream` and asks for the usage chunk, which budgets
    /// and storage need whether or not the client wants it.
    pub stream: bool,
    /// The output cap's name when the client named none.
    pub max_tokens_field: MaxTokensField,
    /// `prompt_cache_key` to send unless the client set its own.
    pub prompt_cache_key: Option<&'a str>,
}

/// A client's request as a model request (the turn's new messages; ctxgate's
/// own fields, `conversation_id`, `stream` and `stream_options`, stay with
/// the front door).
pub fn decode_request(req: &ChatRequest) -> model::Request {
    let mut fields = Map::new();
    // Which cap names the client used, so they go upstream under the same names.
    if let Some(n) = req.max_tokens {
        fields.insert("max_tokens".into(), json!(n));
    }
    if let Some(n) = req.max_completion_tokens {
        fields.insert("max_completion_tokens".into(), json!(n));
    }
    // Empty lists the model holds as nothing, passed on as sent.
    if req.stop.as_ref().is_some_and(|s| s.to_vec().is_empty()) {
        fields.insert("stop".into(), json!([]));
    }
    if req.tools.as_ref().is_some_and(Vec::is_empty) {
        fields.insert("tools".into(), json!([]));
    }
    if let Some(k) = &req.prompt_cache_key {
        fields.insert("prompt_cache_key".into(), json!(k));
    }
    let response_format = req.response_format.as_ref().and_then(|v| {
        let format = match v["type"].as_str()? {
            "text" => ResponseFormat::Text,
            "json_object" => ResponseFormat::JsonObject,
            "json_schema" => ResponseFormat::JsonSchema {
                json_schema: v.get("json_schema").cloned().unwrap_or(Value::Null),
            },
            _ => return None,
        };
        // Anything the typed form would not write back stays as sent.
        (encode_response_format(&format) == *v).then_some(format)
    });
    if let (None, Some(v)) = (&response_format, &req.response_format) {
        fields.insert("response_format".into(), v.clone());
    }
    model::Request {
        messages: req.messages.iter().map(decode_message).collect(),
        tools: req.tools.iter().flatten().map(decode_tool).collect(),
        tool_choice: req.tool_choice.as_ref().map(decode_tool_choice),
        parallel_tool_calls: req.parallel_tool_calls,
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: None,
        stop: req.stop.as_ref().map(Stop::to_vec).unwrap_or_default(),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        user: req.user.clone(),
        response_format,
        reasoning: None,
        extensions: Extensions {
            format: (!fields.is_empty()).then_some(FORMAT),
            fields,
            ..Extensions::default()
        },
        stable: None,
    }
}

fn decode_tool(t: &WireTool) -> Tool {
    if t.kind != "function" {
        return Tool::Opaque(Opaque {
            format: FORMAT,
            value: serde_json::to_value(t).unwrap_or(Value::Null),
        });
    }
    Tool::Function {
        name: t.function.name.clone(),
        description: t.function.description.clone(),
        parameters: t.function.parameters.clone(),
        strict: t.function.strict,
        cache: None,
    }
}

fn decode_tool_choice(v: &Value) -> ToolChoice {
    match (
        v.as_str(),
        v["type"].as_str(),
        v["function"]["name"].as_str(),
    ) {
        (Some("auto"), ..) => ToolChoice::Auto,
        (Some("none"), ..) => ToolChoice::None,
        (Some("required"), ..) => ToolChoice::Required,
        (None, Some("function"), Some(name))
            if v.as_object().is_some_and(|o| o.len() == 2)
                && v["function"].as_object().is_some_and(|o| o.len() == 1) =>
        {
            ToolChoice::Tool { name: name.into() }
        }
        _ => ToolChoice::Opaque(Opaque {
            format: FORMAT,
            value: v.clone(),
        }),
    }
}

/// One OpenAI message as a model message.
pub fn decode_message(m: &ChatMessage) -> Message {
    let role = match m.role {
        Role::System => model::Role::System,
        Role::Developer => model::Role::Developer,
        Role::User => model::Role::User,
        Role::Assistant => model::Role::Assistant,
        Role::Tool => model::Role::Tool,
    };
    let mut content = Vec::new();
    if role == model::Role::Tool {
        content.push(Block::ToolResult(ToolResult {
            call_id: m.tool_call_id.clone().unwrap_or_default(),
            content: m.content.as_ref().map(decode_result).unwrap_or_default(),
            is_error: false,
            cache: None,
        }));
    } else {
        match &m.content {
            None => {}
            Some(Content::Text(t)) => content.push(Block::text(t.clone())),
            Some(Content::Parts(parts)) => content.extend(parts.iter().map(decode_part)),
        }
    }
    for c in m.tool_calls.iter().flatten() {
        content.push(Block::ToolCall(ToolCall {
            id: c.id.clone(),
            name: c.function.name.clone(),
            arguments: c.function.arguments.clone(),
            cache: None,
        }));
    }
    if let Some(r) = &m.refusal {
        content.push(Block::Refusal { text: r.clone() });
    }
    Message {
        role,
        content,
        name: m.name.clone(),
    }
}

fn decode_result(c: &Content) -> Vec<ToolResultPart> {
    match c {
        Content::Text(t) => vec![ToolResultPart::Text {
            text: t.clone(),
            cache: None,
        }],
        Content::Parts(parts) => parts
            .iter()
            .map(|p| match decode_part(p) {
                Block::Text { text, cache, .. } => ToolResultPart::Text { text, cache },
                Block::Image(i) => ToolResultPart::Image(i),
                Block::Document(d) => ToolResultPart::Document(d),
                _ => ToolResultPart::Opaque(opaque_part(p)),
            })
            .collect(),
    }
}

fn opaque_part(p: &ContentPart) -> Opaque {
    Opaque {
        format: FORMAT,
        value: serde_json::to_value(p).unwrap_or(Value::Null),
    }
}

fn decode_part(p: &ContentPart) -> Block {
    match p {
        ContentPart::Text {
            text,
            cache_control,
        } => Block::Text {
            text: text.clone(),
            citations: None,
            cache: cache_control.as_ref().map(|c| CacheHint {
                ttl: c.ttl.map(|t| t.as_str().to_owned()),
            }),
        },
        ContentPart::Refusal { refusal } => Block::Refusal {
            text: refusal.clone(),
        },
        ContentPart::ImageUrl { image_url } => Block::Image(Image {
            source: media_from_url(&image_url.url),
            detail: image_url.detail.clone(),
            cache: None,
        }),
        ContentPart::InputAudio { input_audio } => {
            match (input_audio["data"].as_str(), input_audio["format"].as_str()) {
                (Some(data), Some(format)) if input_audio.as_object().map(Map::len) == Some(2) => {
                    Block::Audio {
                        data: data.into(),
                        format: format.into(),
                    }
                }
                _ => Block::Opaque(opaque_part(p)),
            }
        }
        ContentPart::File { file } => match decode_file(file) {
            Some(d) => Block::Document(d),
            None => Block::Opaque(opaque_part(p)),
        },
    }
}

/// An OpenAI `file` object as a document, when it is one of the two shapes
/// the model holds (a file id, or inline data with an optional file name).
fn decode_file(file: &Value) -> Option<Document> {
    let o = file.as_object()?;
    let filename = o.get("filename").map(|v| v.as_str().map(str::to_owned));
    let source = match (o.get("file_id"), o.get("file_data")) {
        (Some(Value::String(id)), None) => MediaSource::File {
            file_id: id.clone(),
        },
        (None, Some(Value::String(data))) => match parse_data_url(data) {
            // An empty media type would not be written back: kept as sent.
            Some((media_type, data)) if !media_type.is_empty() => MediaSource::Base64 {
                media_type: media_type.into(),
                data: data.into(),
            },
            _ => MediaSource::Base64 {
                media_type: String::new(),
                data: data.clone(),
            },
        },
        _ => return None,
    };
    let known = 1 + usize::from(filename.is_some());
    if o.len() != known || filename == Some(None) {
        return None;
    }
    Some(Document {
        source,
        filename: filename.flatten(),
        title: None,
        context: None,
        citations: None,
        cache: None,
    })
}

/// `data:<type>;base64,<data>` split in two.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")?.split_once(";base64,")
}

fn media_from_url(url: &str) -> MediaSource {
    match parse_data_url(url) {
        Some((media_type, data)) => MediaSource::Base64 {
            media_type: media_type.into(),
            data: data.into(),
        },
        None => MediaSource::Url { url: url.into() },
    }
}

fn media_to_url(source: &MediaSource) -> Option<String> {
    match source {
        MediaSource::Url { url } => Some(url.clone()),
        MediaSource::Base64 { media_type, data } => {
            Some(format!("data:{media_type};base64,{data}"))
        }
        MediaSource::Text { .. } | MediaSource::File { .. } => None,
    }
}

/// Model messages as OpenAI messages. Tool results become `tool` messages
/// (one per result, before the rest of the message they came in); reasoning
/// has no place in OpenAI Chat and is left out, as are blocks kept opaque
/// for another format.
pub fn encode_messages(messages: &[Message]) -> Result<Vec<ChatMessage>, CodecError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        encode_message_into(m, i, &mut out)?;
    }
    Ok(out)
}

fn encode_message_into(
    m: &Message,
    i: usize,
    out: &mut Vec<ChatMessage>,
) -> Result<(), CodecError> {
    let role = match m.role {
        model::Role::System => Role::System,
        model::Role::Developer => Role::Developer,
        model::Role::User => Role::User,
        model::Role::Assistant => Role::Assistant,
        model::Role::Tool => Role::Tool,
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut refusal: Option<String> = None;
    let mut rest = false;
    for (j, b) in m.content.iter().enumerate() {
        let param = || format!("messages[{i}].content[{j}]");
        match b {
            Block::ToolResult(r) => {
                out.push(ChatMessage {
                    role: Role::Tool,
                    content: Some(encode_result(r, &param())?),
                    // A tool message's own name; results in other messages have none.
                    name: (m.role == model::Role::Tool)
                        .then(|| m.name.clone())
                        .flatten(),
                    tool_calls: None,
                    tool_call_id: Some(r.call_id.clone()),
                    refusal: None,
                });
            }
            Block::ToolCall(c) => calls.push(WireToolCall {
                id: c.id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
            }),
            Block::Refusal { text } => refusal.get_or_insert_with(String::new).push_str(text),
            Block::Reasoning { .. } => {}
            // Another format's record of its own server tools is left out;
            // what a user sent is never dropped without a word.
            Block::Opaque(o) if o.format != FORMAT && m.role == model::Role::Assistant => {}
            Block::Opaque(o) if o.format != FORMAT => {
                let kind = o.value["type"].as_str().unwrap_or("unknown");
                return Err(CodecError::new(
                    param(),
                    format!(
                        "a '{kind}' block has no form in OpenAI's Chat format; this model cannot take it"
                    ),
                ));
            }
            b => {
                rest = true;
                parts.push(encode_part(b, &param())?);
            }
        }
    }
    let tool_only = m.role == model::Role::Tool || (!rest && calls.is_empty() && refusal.is_none());
    if tool_only && m.content.iter().any(|b| matches!(b, Block::ToolResult(_))) {
        return Ok(());
    }
    let content = match parts.len() {
        0 if m.content.is_empty() && m.role != model::Role::Assistant => {
            Some(Content::Text(String::new()))
        }
        0 => None,
        1 if matches!(&parts[0], ContentPart::Text { .. }) => match parts.pop() {
            Some(ContentPart::Text { text, .. }) => Some(Content::Text(text)),
            _ => None,
        },
        _ => Some(Content::Parts(parts)),
    };
    out.push(ChatMessage {
        role,
        content,
        name: m.name.clone(),
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
        refusal,
    });
    Ok(())
}

fn unsupported(param: &str) -> CodecError {
    CodecError::new(param, "this content is not supported by OpenAI models")
}

fn encode_part(b: &Block, param: &str) -> Result<ContentPart, CodecError> {
    Ok(match b {
        Block::Text { text, .. } => ContentPart::Text {
            text: text.clone(),
            cache_control: None,
        },
        Block::Image(i) => ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: media_to_url(&i.source).ok_or_else(|| unsupported(param))?,
                detail: i.detail.clone(),
            },
        },
        Block::Audio { data, format } => ContentPart::InputAudio {
            input_audio: json!({"data": data, "format": format}),
        },
        Block::Document(d) => ContentPart::File {
            file: encode_file(d).ok_or_else(|| unsupported(param))?,
        },
        Block::Opaque(o) => {
            serde_json::from_value(o.value.clone()).map_err(|_| unsupported(param))?
        }
        _ => return Err(unsupported(param)),
    })
}

fn encode_file(d: &Document) -> Option<Value> {
    let mut file = Map::new();
    match &d.source {
        MediaSource::File { file_id } => {
            file.insert("file_id".into(), json!(file_id));
        }
        MediaSource::Base64 { media_type, data } if media_type.is_empty() => {
            file.insert("file_data".into(), json!(data));
        }
        MediaSource::Base64 { media_type, data } => {
            file.insert(
                "file_data".into(),
                json!(format!("data:{media_type};base64,{data}")),
            );
        }
        MediaSource::Url { .. } | MediaSource::Text { .. } => return None,
    }
    if let Some(name) = &d.filename {
        file.insert("filename".into(), json!(name));
    }
    Some(Value::Object(file))
}

fn encode_result(r: &ToolResult, param: &str) -> Result<Content, CodecError> {
    if let [ToolResultPart::Text { text, .. }] = r.content.as_slice() {
        return Ok(Content::Text(text.clone()));
    }
    let parts = r
        .content
        .iter()
        .map(|p| match p {
            ToolResultPart::Text { text, .. } => Ok(ContentPart::Text {
                text: text.clone(),
                cache_control: None,
            }),
            ToolResultPart::Image(i) => encode_part(&Block::Image(i.clone()), param),
            ToolResultPart::Document(d) => encode_part(&Block::Document(d.clone()), param),
            ToolResultPart::Opaque(o) if o.format == FORMAT => {
                encode_part(&Block::Opaque(o.clone()), param)
            }
            ToolResultPart::Opaque(o) => {
                let kind = o.value["type"].as_str().unwrap_or("unknown");
                Err(CodecError::new(
                    param,
                    format!("a '{kind}' part of a tool result has no form in OpenAI's Chat format; this model cannot take it"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match parts.is_empty() {
        true => Content::Text(String::new()),
        false => Content::Parts(parts),
    })
}

fn encode_response_format(f: &ResponseFormat) -> Value {
    match f {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema { json_schema } => {
            json!({"type": "json_schema", "json_schema": json_schema})
        }
    }
}

fn encode_tool(t: &Tool) -> Option<Value> {
    match t {
        Tool::Function {
            name,
            description,
            parameters,
            strict,
            ..
        } => serde_json::to_value(WireTool {
            kind: "function".into(),
            function: FunctionDef {
                name: name.clone(),
                description: description.clone(),
                parameters: parameters.clone(),
                strict: *strict,
            },
        })
        .ok(),
        Tool::Opaque(o) => (o.format == FORMAT).then(|| o.value.clone()),
    }
}

fn encode_tool_choice(c: &ToolChoice) -> Option<Value> {
    Some(match c {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool { name } => json!({"type": "function", "function": {"name": name}}),
        ToolChoice::Opaque(o) => return (o.format == FORMAT).then(|| o.value.clone()),
    })
}

/// OpenAI takes only text in a tool message; an Anthropic tool result may
/// hold images and documents (a screenshot tool's). For a request from the
/// Anthropic front door, a tool message keeps its text and its other parts
/// go in a user message after the run of tool messages, where the model
/// sees them next to the results. (An OpenAI client's tool messages go as
/// sent: some compatible servers take media there.)
fn media_out_of_tool_messages(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let user = |parts| ChatMessage {
        role: Role::User,
        content: Some(Content::Parts(parts)),
        name: None,
        tool_calls: None,
        tool_call_id: None,
        refusal: None,
    };
    let mut out = Vec::with_capacity(messages.len());
    let mut media: Vec<ContentPart> = Vec::new();
    for mut m in messages {
        if m.role != Role::Tool && !media.is_empty() {
            out.push(user(std::mem::take(&mut media)));
        }
        if m.role == Role::Tool
            && let Some(Content::Parts(parts)) = &mut m.content
        {
            let (text, other): (Vec<ContentPart>, Vec<ContentPart>) = std::mem::take(parts)
                .into_iter()
                .partition(|p| matches!(p, ContentPart::Text { .. }));
            media.extend(other);
            m.content = Some(match <[ContentPart; 1]>::try_from(text) {
                Ok([ContentPart::Text { text, .. }]) => Content::Text(text),
                Ok(one) => Content::Parts(one.into()),
                Err(text) if text.is_empty() => Content::Text(String::new()),
                Err(text) => Content::Parts(text),
            });
        }
        out.push(m);
    }
    if !media.is_empty() {
        out.push(user(media));
    }
    out
}

/// The body for an OpenAI-protocol upstream.
pub fn encode_request(
    req: &model::Request,
    model: &str,
    opts: &UpstreamOptions<'_>,
) -> Result<Value, CodecError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let mut messages = encode_messages(&req.messages)?;
    if req.extensions.format == Some(WireFormat::Anthropic) {
        messages = media_out_of_tool_messages(messages);
    }
    body.insert(
        "messages".into(),
        serde_json::to_value(messages).map_err(|_| CodecError::new("messages", "unencodable"))?,
    );
    let ext = req.extensions.for_format(FORMAT);
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    opt("temperature", req.temperature.map(Value::from));
    opt("top_p", req.top_p.map(Value::from));
    if let Some(n) = req.max_output_tokens {
        let named = |k: &str| ext.is_some_and(|f| f.contains_key(k));
        let (legacy, current) = match (named("max_tokens"), named("max_completion_tokens")) {
            (false, false) => match opts.max_tokens_field {
                MaxTokensField::MaxTokens => (true, false),
                MaxTokensField::MaxCompletionTokens => (false, true),
            },
            named => named,
        };
        if legacy {
            // Both names sent: each keeps the client's value (the newer one is the cap).
            let sent = ext.and_then(|f| f.get("max_tokens")).filter(|_| current);
            opt("max_tokens", Some(sent.cloned().unwrap_or(json!(n))));
        }
        if current {
            opt("max_completion_tokens", Some(json!(n)));
        }
    }
    opt(
        "stop",
        match req.stop.as_slice() {
            [] => None,
            [one] => Some(json!(one)),
            many => Some(json!(many)),
        },
    );
    opt("user", req.user.clone().map(Value::from));
    opt(
        "response_format",
        req.response_format.as_ref().map(encode_response_format),
    );
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
    // Reasoning effort from another door (Responses' `reasoning.effort`);
    // the Chat door's own `reasoning_effort` rides in the extensions.
    opt(
        "reasoning_effort",
        req.reasoning
            .as_ref()
            .and_then(|r| r.effort.clone())
            .map(Value::from),
    );
    opt("seed", req.seed.map(Value::from));
    opt("presence_penalty", req.presence_penalty.map(Value::from));
    opt("frequency_penalty", req.frequency_penalty.map(Value::from));
    // The format's own fields the model has no place for, unless the model
    // now says otherwise (the cap's names are markers, written above).
    for (k, v) in ext.into_iter().flatten() {
        if !matches!(k.as_str(), "max_tokens" | "max_completion_tokens") && !body.contains_key(k) {
            body.insert(k.clone(), v.clone());
        }
    }
    if let Some(key) = opts.prompt_cache_key {
        body.entry("prompt_cache_key").or_insert_with(|| json!(key));
    }
    if opts.stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(body))
}
