//! Content blocks: one Anthropic block <-> one model block. The shapes the
//! model has a type for are read into it; anything that would not come back
//! identical is kept whole as [`Opaque`], so that nothing is lost.
//!
//! Canonical spelling: a tool result holding one plain text part has string
//! content, and `is_error: false` is omitted.

use serde_json::{Value, json};

use crate::model::{
    Block, CacheHint, Document, Image, MediaSource, Opaque, ToolCall, ToolResult, ToolResultPart,
    WireFormat,
};
use crate::wire::CodecError;

pub(super) const UNSUPPORTED: &str = "this content part is not supported by Anthropic models";

/// `tool_use` for a call; `None` when its arguments are not JSON.
pub(super) fn tool_use(c: &ToolCall) -> Option<Value> {
    let input: Value = serde_json::from_str(&c.arguments).ok()?;
    let mut v = json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input});
    put_cache(&mut v, c.cache.as_ref());
    Some(v)
}

pub(super) fn put_cache(v: &mut Value, cache: Option<&CacheHint>) {
    if let Some(c) = cache {
        let mut cc = json!({"type": "ephemeral"});
        if let Some(ttl) = &c.ttl {
            cc["ttl"] = json!(ttl);
        }
        v["cache_control"] = cc;
    }
}

/// One block as Anthropic JSON; `Ok(None)` drops it: empty text, and
/// unsigned reasoning unless `native` (the API refuses both). An error's
/// `param` is the suffix below the block (`.image_url.url`).
pub(super) fn encode_block(b: &Block, native: bool) -> Result<Option<Value>, CodecError> {
    let unsupported = || CodecError::new("", UNSUPPORTED);
    let v = match b {
        Block::Text {
            text,
            citations,
            cache,
        } => {
            // The API refuses empty text blocks; a request from another
            // front door (an empty OpenAI content string) may hold one.
            if text.is_empty() && citations.is_none() && cache.is_none() {
                return Ok(None);
            }
            let mut v = json!({"type": "text", "text": text});
            if let Some(c) = citations {
                v["citations"] = c.clone();
            }
            put_cache(&mut v, cache.as_ref());
            v
        }
        Block::Refusal { text } => json!({"type": "text", "text": text}),
        Block::Image(img) => encode_image(img)?,
        Block::Document(d) => encode_document(d).ok_or_else(unsupported)?,
        Block::Audio { .. } => return Err(unsupported()),
        Block::ToolCall(c) => {
            tool_use(c).ok_or_else(|| CodecError::new("", "tool call arguments must be JSON"))?
        }
        Block::ToolResult(r) => encode_tool_result(r)?,
        // OpenAI's encrypted reasoning (a conversation that moved between
        // providers) means nothing to Anthropic, which would refuse it.
        Block::Reasoning {
            encrypted: Some(data),
            ..
        } if crate::wire::openai_responses::is_openai_encrypted(data) => return Ok(None),
        Block::Reasoning {
            encrypted: Some(data),
            ..
        } => json!({"type": "redacted_thinking", "data": data}),
        Block::Reasoning {
            text,
            signature: Some(sig),
            ..
        } => json!({"type": "thinking", "thinking": text, "signature": sig}),
        Block::Reasoning { text, .. } => {
            if !native {
                return Ok(None);
            }
            json!({"type": "thinking", "thinking": text})
        }
        Block::Opaque(o) if o.format == WireFormat::Anthropic => o.value.clone(),
        Block::Opaque(_) => return Err(unsupported()),
    };
    Ok(Some(v))
}

fn encode_image(img: &Image) -> Result<Value, CodecError> {
    let source = match &img.source {
        MediaSource::Url { url } => image_url_source(url).ok_or_else(|| {
            CodecError::new(".image_url.url", "not an http(s) or base64 data URL")
        })?,
        MediaSource::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        _ => return Err(CodecError::new("", UNSUPPORTED)),
    };
    let mut v = json!({"type": "image", "source": source});
    put_cache(&mut v, img.cache.as_ref());
    Ok(v)
}

/// The source of an image given by URL: data URLs become inline base64.
fn image_url_source(url: &str) -> Option<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,")?;
        return Some(json!({"type": "base64", "media_type": media_type, "data": data}));
    }
    (url.starts_with("https://") || url.starts_with("http://"))
        .then(|| json!({"type": "url", "url": url}))
}

/// A document; `None` for what Anthropic cannot take (an OpenAI file part,
/// which has a file name or a provider file id).
fn encode_document(d: &Document) -> Option<Value> {
    if d.filename.is_some() {
        return None;
    }
    let source = match &d.source {
        MediaSource::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        MediaSource::Text { media_type, data } => {
            json!({"type": "text", "media_type": media_type, "data": data})
        }
        MediaSource::Url { url } => json!({"type": "url", "url": url}),
        MediaSource::File { .. } => return None,
    };
    let mut v = json!({"type": "document", "source": source});
    if let Some(t) = &d.title {
        v["title"] = json!(t);
    }
    if let Some(c) = &d.context {
        v["context"] = json!(c);
    }
    if let Some(c) = &d.citations {
        v["citations"] = c.clone();
    }
    put_cache(&mut v, d.cache.as_ref());
    Some(v)
}

fn encode_tool_result(r: &ToolResult) -> Result<Value, CodecError> {
    let mut v = json!({"type": "tool_result", "tool_use_id": r.call_id});
    match r.content.as_slice() {
        [] => {}
        [ToolResultPart::Text { text, cache: None }] => v["content"] = json!(text),
        parts => {
            let mut out = Vec::new();
            for p in parts {
                out.push(match p {
                    ToolResultPart::Text { text, cache } => {
                        let mut t = json!({"type": "text", "text": text});
                        put_cache(&mut t, cache.as_ref());
                        t
                    }
                    ToolResultPart::Image(i) => encode_image(i)?,
                    ToolResultPart::Document(d) => {
                        encode_document(d).ok_or_else(|| CodecError::new("", UNSUPPORTED))?
                    }
                    ToolResultPart::Opaque(o) if o.format == WireFormat::Anthropic => {
                        o.value.clone()
                    }
                    ToolResultPart::Opaque(_) => return Err(CodecError::new("", UNSUPPORTED)),
                });
            }
            v["content"] = Value::Array(out);
        }
    }
    if r.is_error {
        v["is_error"] = json!(true);
    }
    put_cache(&mut v, r.cache.as_ref());
    Ok(v)
}

pub(super) fn opaque(v: &Value) -> Opaque {
    Opaque {
        format: WireFormat::Anthropic,
        value: v.clone(),
    }
}

/// One Anthropic block as a model block: the known shapes typed, and
/// anything that would not come back identical kept whole as [`Opaque`].
pub(super) fn decode_block(v: &Value) -> Block {
    let typed = typed_block(v).filter(|b| {
        encode_block(b, true)
            .ok()
            .flatten()
            .is_some_and(|e| e == canonical(v))
    });
    typed.unwrap_or_else(|| Block::Opaque(opaque(v)))
}

/// `v` in the encoder's spelling (see the module doc).
fn canonical(v: &Value) -> Value {
    let mut v = v.clone();
    if v["type"] == "tool_result" {
        if let Some(o) = v.as_object_mut()
            && o.get("is_error") == Some(&json!(false))
        {
            o.remove("is_error");
        }
        if let Some([t]) = v["content"].as_array().map(Vec::as_slice)
            && t.as_object().is_some_and(|o| o.len() == 2)
            && t["type"] == "text"
            && let Some(text) = t["text"].as_str()
        {
            v["content"] = json!(text);
        }
    }
    v
}

pub(super) fn decode_cache(v: &Value) -> Option<Option<CacheHint>> {
    match v.get("cache_control") {
        None => Some(None),
        Some(c) => Some(Some(CacheHint {
            ttl: match c.get("ttl") {
                None => None,
                Some(t) => Some(t.as_str()?.to_owned()),
            },
        })),
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_owned)
}

fn opt_str(v: &Value, key: &str) -> Option<Option<String>> {
    match v.get(key) {
        None => Some(None),
        Some(s) => Some(Some(s.as_str()?.to_owned())),
    }
}

fn decode_source(s: &Value) -> Option<MediaSource> {
    Some(match s["type"].as_str()? {
        "base64" => MediaSource::Base64 {
            media_type: str_of(s, "media_type")?,
            data: str_of(s, "data")?,
        },
        "text" => MediaSource::Text {
            media_type: str_of(s, "media_type")?,
            data: str_of(s, "data")?,
        },
        "url" => MediaSource::Url {
            url: str_of(s, "url")?,
        },
        _ => return None,
    })
}

fn decode_image(v: &Value) -> Option<Image> {
    let source = decode_source(&v["source"])?;
    if matches!(source, MediaSource::Text { .. }) {
        return None;
    }
    Some(Image {
        source,
        detail: None,
        cache: decode_cache(v)?,
    })
}

fn decode_document(v: &Value) -> Option<Document> {
    Some(Document {
        source: decode_source(&v["source"])?,
        filename: None,
        title: opt_str(v, "title")?,
        context: opt_str(v, "context")?,
        citations: v.get("citations").cloned(),
        cache: decode_cache(v)?,
    })
}

/// The typed reading of a block, not yet checked for a lossless round trip.
fn typed_block(v: &Value) -> Option<Block> {
    Some(match v["type"].as_str()? {
        "text" => Block::Text {
            text: str_of(v, "text")?,
            citations: v.get("citations").cloned(),
            cache: decode_cache(v)?,
        },
        "image" => Block::Image(decode_image(v)?),
        "document" => Block::Document(decode_document(v)?),
        "tool_use" => Block::ToolCall(ToolCall {
            id: str_of(v, "id")?,
            name: str_of(v, "name")?,
            arguments: v.get("input")?.to_string(),
            cache: decode_cache(v)?,
        }),
        "tool_result" => {
            let content = match v.get("content") {
                None => Vec::new(),
                Some(Value::String(t)) => vec![ToolResultPart::Text {
                    text: t.clone(),
                    cache: None,
                }],
                Some(Value::Array(parts)) => parts.iter().map(decode_result_part).collect(),
                Some(_) => return None,
            };
            Block::ToolResult(ToolResult {
                call_id: str_of(v, "tool_use_id")?,
                content,
                is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                cache: decode_cache(v)?,
            })
        }
        "thinking" => Block::Reasoning {
            text: str_of(v, "thinking")?,
            signature: opt_str(v, "signature")?,
            encrypted: None,
        },
        "redacted_thinking" => Block::Reasoning {
            text: String::new(),
            signature: None,
            encrypted: Some(str_of(v, "data")?),
        },
        _ => return None,
    })
}

fn decode_result_part(v: &Value) -> ToolResultPart {
    let typed = match v["type"].as_str() {
        Some("text") => str_of(v, "text").and_then(|text| {
            Some(ToolResultPart::Text {
                text,
                cache: decode_cache(v)?,
            })
        }),
        Some("image") => decode_image(v).map(ToolResultPart::Image),
        Some("document") => decode_document(v).map(ToolResultPart::Document),
        _ => None,
    };
    // The whole tool result is checked for a lossless round trip by the caller.
    typed.unwrap_or_else(|| ToolResultPart::Opaque(opaque(v)))
}
