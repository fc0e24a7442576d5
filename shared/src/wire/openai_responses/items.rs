//! The one mapping between Responses items and model messages: a request's
//! input items are decoded with it, and a stored message (history, a
//! response's output, a conversation's items) is shown as items with it.
//!
//! Decoding: consecutive assistant-side items (`reasoning`, an assistant
//! `message`, `function_call`) make one assistant message, as a model
//! answers them; each `function_call_output` is a tool message of its own;
//! system and developer messages keep their instruction roles.
//!
//! Encoding: one message gives its items in block order. A run of text and
//! refusal blocks is one `message` item; each tool call, tool result and
//! reasoning block is an item of its own. Item ids are derived from the
//! stored message's slot and the item's position ([`ItemIds`]), so that the
//! same stored message always shows the same items with the same ids.
//! Blocks of another wire format ([`Block::Opaque`]) have no item and are
//! left out.
//!
//! Reasoning: the visible text is the item's `summary` (Anthropic's
//! thinking is itself a summary on current models); the provider's opaque
//! state rides in `encrypted_content`: OpenAI's encrypted reasoning as
//! given, an Anthropic signature behind [`SIGNATURE_PREFIX`], so that a
//! client replaying the items (`store: false`) gives the provider back what
//! it needs to continue.

use serde_json::Value;

use super::types::{
    AudioData, ContentPart, FunctionCallItem, FunctionCallOutputItem, Item, ItemRole, ItemStatus,
    MessageItem, ReasoningItem, SummaryPart, ToolOutput,
};
use crate::model::{
    Block, Document, Image, MediaSource, Message, Role, ToolCall, ToolResult, ToolResultPart,
};
use crate::wire::CodecError;
use crate::wire::openai_chat::request::parse_data_url;

/// Marks an Anthropic thinking signature carried in `encrypted_content`.
pub const SIGNATURE_PREFIX: &str = "ctxgate.signature:";

/// Names the items of one stored message: `seq` is the message's slot in
/// its conversation; an item's id is `<kind>_<seq>_<n>`, `n` its position
/// among the message's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemIds {
    /// The stored message's slot.
    pub seq: u64,
}

impl ItemIds {
    /// The id of item `n`, of kind `prefix` (`msg`, `fc`, `fco`, `rs`).
    pub fn id(&self, prefix: &str, n: usize) -> String {
        format!("{prefix}_{}_{n}", self.seq)
    }
}

const PREFIXES: [&str; 4] = ["msg_", "fco_", "fc_", "rs_"];

/// The message slot and item position an item id names; `None` for an id
/// ctxgate did not make.
pub fn parse_item_id(id: &str) -> Option<(u64, usize)> {
    let rest = PREFIXES.iter().find_map(|p| id.strip_prefix(p))?;
    let (seq, n) = rest.split_once('_')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(seq) || !digits(n) {
        return None;
    }
    Some((seq.parse().ok()?, n.parse().ok()?))
}

// ---------------------------------------------------------------- encoding

/// The items of one stored message, every item `completed`.
pub fn encode_items(message: &Message, ids: &ItemIds) -> Vec<Item> {
    let assistant = message.role == Role::Assistant;
    let role = match message.role {
        Role::System => ItemRole::System,
        Role::Developer => ItemRole::Developer,
        Role::Assistant => ItemRole::Assistant,
        // Text in a tool message (not a shape any door writes) reads as the user's.
        Role::User | Role::Tool => ItemRole::User,
    };
    let mut items: Vec<Item> = Vec::new();
    let mut parts: Vec<ContentPart> = Vec::new();
    let flush = |items: &mut Vec<Item>, parts: &mut Vec<ContentPart>| {
        if !parts.is_empty() {
            let n = items.len();
            items.push(Item::Message(MessageItem {
                id: ids.id("msg", n),
                role,
                content: std::mem::take(parts),
                status: ItemStatus::Completed,
            }));
        }
    };
    for b in &message.content {
        match b {
            Block::ToolCall(c) => {
                flush(&mut items, &mut parts);
                let n = items.len();
                items.push(Item::FunctionCall(FunctionCallItem {
                    id: ids.id("fc", n),
                    call_id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                    status: ItemStatus::Completed,
                }));
            }
            Block::ToolResult(r) => {
                flush(&mut items, &mut parts);
                let n = items.len();
                items.push(Item::FunctionCallOutput(FunctionCallOutputItem {
                    id: ids.id("fco", n),
                    call_id: r.call_id.clone(),
                    output: encode_output(r),
                    status: ItemStatus::Completed,
                }));
            }
            Block::Reasoning {
                text,
                signature,
                encrypted,
            } => {
                flush(&mut items, &mut parts);
                let n = items.len();
                items.push(Item::Reasoning(reasoning_item(
                    ids.id("rs", n),
                    text,
                    signature.as_deref(),
                    encrypted.as_deref(),
                )));
            }
            other => {
                if let Some(p) = encode_part(other, assistant) {
                    parts.push(p);
                }
            }
        }
    }
    flush(&mut items, &mut parts);
    items
}

/// A reasoning item of `text` and the provider's opaque state.
pub(super) fn reasoning_item(
    id: String,
    text: &str,
    signature: Option<&str>,
    encrypted: Option<&str>,
) -> ReasoningItem {
    let summary = if text.is_empty() {
        Vec::new()
    } else {
        vec![SummaryPart::SummaryText { text: text.into() }]
    };
    let encrypted_content = match (encrypted, signature) {
        (Some(e), _) => Some(e.to_owned()),
        (None, Some(s)) => Some(format!("{SIGNATURE_PREFIX}{s}")),
        (None, None) => None,
    };
    ReasoningItem {
        id,
        summary,
        encrypted_content,
        status: Some(ItemStatus::Completed),
    }
}

/// A content part for a block; `None` for what has no part (opaque blocks).
fn encode_part(b: &Block, assistant: bool) -> Option<ContentPart> {
    Some(match b {
        Block::Text {
            text, citations, ..
        } if assistant => ContentPart::OutputText {
            text: text.clone(),
            annotations: match citations {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            },
        },
        Block::Text { text, .. } => ContentPart::InputText { text: text.clone() },
        Block::Refusal { text } => ContentPart::Refusal {
            refusal: text.clone(),
        },
        Block::Image(i) => image_part(i),
        Block::Document(d) => document_part(d),
        Block::Audio { data, format } => ContentPart::InputAudio {
            input_audio: AudioData {
                data: data.clone(),
                format: format.clone(),
            },
        },
        Block::ToolCall(_) | Block::ToolResult(_) | Block::Reasoning { .. } | Block::Opaque(_) => {
            return None;
        }
    })
}

fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

fn image_part(i: &Image) -> ContentPart {
    let (image_url, file_id) = match &i.source {
        MediaSource::Url { url } => (Some(url.clone()), None),
        MediaSource::Base64 { media_type, data } | MediaSource::Text { media_type, data } => {
            (Some(data_url(media_type, data)), None)
        }
        MediaSource::File { file_id } => (None, Some(file_id.clone())),
    };
    ContentPart::InputImage {
        image_url,
        file_id,
        detail: i.detail.clone().unwrap_or_else(|| "auto".into()),
    }
}

fn document_part(d: &Document) -> ContentPart {
    let mut file_id = None;
    let mut file_data = None;
    let mut file_url = None;
    match &d.source {
        MediaSource::File { file_id: id } => file_id = Some(id.clone()),
        MediaSource::Url { url } => file_url = Some(url.clone()),
        // Data with no media type came without a data URL: written back as given.
        MediaSource::Base64 { media_type, data } if media_type.is_empty() => {
            file_data = Some(data.clone());
        }
        MediaSource::Base64 { media_type, data } => file_data = Some(data_url(media_type, data)),
        // A plain-text document (Anthropic) is text to the reader.
        MediaSource::Text { data, .. } => return ContentPart::InputText { text: data.clone() },
    }
    ContentPart::InputFile {
        file_id,
        file_data,
        file_url,
        filename: d.filename.clone().or_else(|| d.title.clone()),
    }
}

/// A tool result's output: a string for one text part (or none), else parts.
fn encode_output(r: &ToolResult) -> ToolOutput {
    match r.content.as_slice() {
        [] => ToolOutput::Text(String::new()),
        [ToolResultPart::Text { text, .. }] => ToolOutput::Text(text.clone()),
        parts => ToolOutput::Parts(
            parts
                .iter()
                .filter_map(|p| match p {
                    ToolResultPart::Text { text, .. } => {
                        Some(ContentPart::InputText { text: text.clone() })
                    }
                    ToolResultPart::Image(i) => Some(image_part(i)),
                    ToolResultPart::Document(d) => Some(document_part(d)),
                    ToolResultPart::Opaque(_) => None,
                })
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------- decoding

fn err(param: impl Into<String>, message: impl Into<String>) -> CodecError {
    CodecError::new(param, message)
}

fn str_at<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, CodecError> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => {
            Err(err(format!("{path}.{key}"), format!("'{key}' is required")))
        }
        Some(_) => Err(err(
            format!("{path}.{key}"),
            format!("'{key}' must be a string"),
        )),
    }
}

fn opt_str_at(v: &Value, key: &str, path: &str) -> Result<Option<String>, CodecError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(
            format!("{path}.{key}"),
            format!("'{key}' must be a string"),
        )),
    }
}

/// Input items as model messages; `field` names the array in errors
/// (`input`, `items`), as in `input[3].content[0].type`.
pub fn decode_items(items: &[Value], field: &str) -> Result<Vec<Message>, CodecError> {
    let mut out: Vec<Message> = Vec::new();
    // The assistant message being built from consecutive assistant-side items.
    let mut answer: Option<Message> = None;
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        if !item.is_object() {
            return Err(err(path, "an item must be an object"));
        }
        let kind = match item.get("type") {
            // A message may leave its type out (`{"role": ..., "content": ...}`).
            None | Some(Value::Null) if item.get("role").is_some() => "message",
            None | Some(Value::Null) => {
                return Err(err(format!("{path}.type"), "'type' is required"));
            }
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(err(format!("{path}.type"), "'type' must be a string")),
        };
        let blocks = match kind {
            "message" => {
                let (role, content) = decode_message(item, &path)?;
                if role != Role::Assistant {
                    out.extend(answer.take());
                    out.push(Message {
                        role,
                        content,
                        name: None,
                    });
                    continue;
                }
                content
            }
            "function_call" => {
                let arguments = str_at(item, "arguments", &path)?;
                vec![Block::ToolCall(ToolCall {
                    id: str_at(item, "call_id", &path)?.into(),
                    name: str_at(item, "name", &path)?.into(),
                    arguments: arguments.into(),
                    cache: None,
                })]
            }
            "reasoning" => vec![decode_reasoning(item, &path)?],
            "function_call_output" => {
                out.extend(answer.take());
                out.push(Message {
                    role: Role::Tool,
                    content: vec![Block::ToolResult(ToolResult {
                        call_id: str_at(item, "call_id", &path)?.into(),
                        content: decode_output(item.get("output"), &format!("{path}.output"))?,
                        is_error: false,
                        cache: None,
                    })],
                    name: None,
                });
                continue;
            }
            "item_reference" => {
                return Err(err(
                    path,
                    "item references are not supported; send the item itself, or continue with previous_response_id",
                ));
            }
            other => {
                return Err(err(
                    format!("{path}.type"),
                    format!(
                        "item type '{other}' is not supported (message, function_call, function_call_output, reasoning)"
                    ),
                ));
            }
        };
        answer
            .get_or_insert_with(|| Message {
                role: Role::Assistant,
                content: Vec::new(),
                name: None,
            })
            .content
            .extend(blocks);
    }
    out.extend(answer);
    Ok(out)
}

/// A `message` item's role and content.
fn decode_message(item: &Value, path: &str) -> Result<(Role, Vec<Block>), CodecError> {
    let role = match str_at(item, "role", path)? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "developer" => Role::Developer,
        other => {
            return Err(err(
                format!("{path}.role"),
                format!("role '{other}' is not one of user, assistant, system and developer"),
            ));
        }
    };
    let assistant = role == Role::Assistant;
    let content = match item.get("content") {
        Some(Value::String(t)) => vec![Block::text(t.as_str())],
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                blocks.push(decode_part(p, &format!("{path}.content[{j}]"), assistant)?);
            }
            blocks
        }
        None | Some(Value::Null) => {
            return Err(err(format!("{path}.content"), "'content' is required"));
        }
        Some(_) => {
            return Err(err(
                format!("{path}.content"),
                "'content' must be a string or an array of parts",
            ));
        }
    };
    Ok((role, content))
}

/// One content part as a block; `assistant` parts are output text and refusals.
fn decode_part(p: &Value, path: &str, assistant: bool) -> Result<Block, CodecError> {
    if !p.is_object() {
        return Err(err(path, "a content part must be an object"));
    }
    let kind = str_at(p, "type", path)?;
    let allowed = match kind {
        "output_text" | "refusal" => assistant,
        "input_image" | "input_file" | "input_audio" => !assistant,
        "input_text" => true,
        _ => {
            return Err(err(
                format!("{path}.type"),
                format!("content part type '{kind}' is not supported"),
            ));
        }
    };
    if !allowed {
        let whose = if assistant {
            "an assistant"
        } else {
            "a user, system or developer"
        };
        return Err(err(
            format!("{path}.type"),
            format!("'{kind}' parts may not appear in {whose} message"),
        ));
    }
    Ok(match kind {
        "input_text" => Block::text(str_at(p, "text", path)?),
        "output_text" => Block::Text {
            text: str_at(p, "text", path)?.into(),
            citations: match p.get("annotations") {
                Some(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a.clone())),
                None | Some(Value::Null) | Some(Value::Array(_)) => None,
                Some(_) => {
                    return Err(err(
                        format!("{path}.annotations"),
                        "'annotations' must be an array",
                    ));
                }
            },
            cache: None,
        },
        "refusal" => Block::Refusal {
            text: str_at(p, "refusal", path)?.into(),
        },
        "input_image" => Block::Image(decode_image(p, path)?),
        "input_file" => Block::Document(decode_file(p, path)?),
        _ => {
            let audio = p
                .get("input_audio")
                .filter(|a| a.is_object())
                .ok_or_else(|| err(format!("{path}.input_audio"), "'input_audio' is required"))?;
            let apath = format!("{path}.input_audio");
            Block::Audio {
                data: str_at(audio, "data", &apath)?.into(),
                format: str_at(audio, "format", &apath)?.into(),
            }
        }
    })
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

fn decode_image(p: &Value, path: &str) -> Result<Image, CodecError> {
    let source = match (
        opt_str_at(p, "image_url", path)?,
        opt_str_at(p, "file_id", path)?,
    ) {
        (Some(url), None) => media_from_url(&url),
        (None, Some(file_id)) => MediaSource::File { file_id },
        _ => {
            return Err(err(
                format!("{path}.image_url"),
                "an image needs exactly one of 'image_url' and 'file_id'",
            ));
        }
    };
    Ok(Image {
        source,
        detail: opt_str_at(p, "detail", path)?,
        cache: None,
    })
}

fn decode_file(p: &Value, path: &str) -> Result<Document, CodecError> {
    let given = (
        opt_str_at(p, "file_id", path)?,
        opt_str_at(p, "file_data", path)?,
        opt_str_at(p, "file_url", path)?,
    );
    let source = match given {
        (Some(file_id), None, None) => MediaSource::File { file_id },
        (None, Some(data), None) => match parse_data_url(&data) {
            Some((media_type, data)) if !media_type.is_empty() => MediaSource::Base64 {
                media_type: media_type.into(),
                data: data.into(),
            },
            _ => MediaSource::Base64 {
                media_type: String::new(),
                data,
            },
        },
        (None, None, Some(url)) => MediaSource::Url { url },
        _ => {
            return Err(err(
                format!("{path}.file_id"),
                "a file needs exactly one of 'file_id', 'file_data' and 'file_url'",
            ));
        }
    };
    Ok(Document {
        source,
        filename: opt_str_at(p, "filename", path)?,
        title: None,
        context: None,
        citations: None,
        cache: None,
    })
}

/// A `function_call_output`'s `output`: a string, or input parts.
fn decode_output(v: Option<&Value>, path: &str) -> Result<Vec<ToolResultPart>, CodecError> {
    match v {
        Some(Value::String(t)) => Ok(vec![ToolResultPart::Text {
            text: t.clone(),
            cache: None,
        }]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                out.push(match decode_part(p, &ppath, false)? {
                    Block::Text { text, .. } => ToolResultPart::Text { text, cache: None },
                    Block::Image(i) => ToolResultPart::Image(i),
                    Block::Document(d) => ToolResultPart::Document(d),
                    _ => {
                        return Err(err(
                            format!("{ppath}.type"),
                            "a function call output may hold input_text, input_image and input_file parts",
                        ));
                    }
                });
            }
            Ok(out)
        }
        None | Some(Value::Null) => Err(err(path, "'output' is required")),
        Some(_) => Err(err(path, "'output' must be a string or an array of parts")),
    }
}

/// A `reasoning` item as a reasoning block: the summary (or, failing one,
/// the reasoning text) joined, and the opaque state unpacked.
fn decode_reasoning(item: &Value, path: &str) -> Result<Block, CodecError> {
    let texts = |key: &str, kind: &str| -> Result<Vec<String>, CodecError> {
        match item.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(parts)) => parts
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let ppath = format!("{path}.{key}[{j}]");
                    if p.get("type").and_then(Value::as_str) != Some(kind) {
                        return Err(err(format!("{ppath}.type"), format!("must be '{kind}'")));
                    }
                    str_at(p, "text", &ppath).map(str::to_owned)
                })
                .collect(),
            Some(_) => Err(err(
                format!("{path}.{key}"),
                format!("'{key}' must be an array"),
            )),
        }
    };
    let summary = texts("summary", "summary_text")?;
    let content = texts("content", "reasoning_text")?;
    let text = if summary.is_empty() {
        content.concat()
    } else {
        summary.join("\n\n")
    };
    let (signature, encrypted) = match opt_str_at(item, "encrypted_content", path)? {
        Some(e) => match e.strip_prefix(SIGNATURE_PREFIX) {
            Some(sig) => (Some(sig.to_owned()), None),
            None => (None, Some(e)),
        },
        None => (None, None),
    };
    Ok(Block::Reasoning {
        text,
        signature,
        encrypted,
    })
}
