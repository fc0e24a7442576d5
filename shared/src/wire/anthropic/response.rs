//! Whole answers: an upstream `message` -> model, and model -> the
//! `message` object a client of the Anthropic front door gets.

use serde_json::{Value, json};

use super::blocks::{decode_block, encode_block};
use crate::model::{self, Block, FinishReason, Message, Role, ToolCall, Usage};
use crate::wire::CodecError;

/// The model's finish reason for a Messages `stop_reason`.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("stop_sequence") => FinishReason::StopSequence,
        Some("max_tokens") => FinishReason::Length,
        Some("model_context_window_exceeded") => FinishReason::ContextWindow,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some("pause_turn") => FinishReason::Pause,
        _ => FinishReason::Stop,
    }
}

/// The Messages `stop_reason` for a finish reason.
pub(crate) fn stop_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ContextWindow => "model_context_window_exceeded",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Pause => "pause_turn",
    }
}

/// Usage from a Messages `usage` object: the model's input counts every
/// input token, Anthropic's `input_tokens` only the uncached ones. The
/// 1-hour part of the cache writes comes from `cache_creation`, when given.
pub(crate) fn usage(u: &Value) -> Usage {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let (read, write) = (
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    let write_1h = u["cache_creation"]["ephemeral_1h_input_tokens"]
        .as_u64()
        .unwrap_or(0)
        .min(write);
    Usage {
        input: n("input_tokens") + read + write,
        output: n("output_tokens"),
        cache_read: read,
        cache_write: write,
        cache_write_1h: write_1h,
        reasoning: 0,
    }
}

/// A Messages `usage` object: `input_tokens` without the cached tokens; the
/// writes by TTL (`cache_creation`) only when some were written for an hour,
/// so answers without them read as before.
pub(crate) fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "input_tokens": u.input.saturating_sub(u.cache_read + u.cache_write),
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "output_tokens": u.output,
    });
    if u.cache_write_1h > 0 {
        v["cache_creation"] = cache_creation_json(u);
    }
    v
}

/// The `cache_creation` breakdown of the cache writes by TTL.
pub(crate) fn cache_creation_json(u: &Usage) -> Value {
    json!({
        "ephemeral_5m_input_tokens": u.cache_write.saturating_sub(u.cache_write_1h),
        "ephemeral_1h_input_tokens": u.cache_write_1h,
    })
}

/// An upstream Messages answer as a model response. Tool arguments are the
/// compact JSON of `input`; thinking, redacted thinking and citations stay
/// in their blocks (`citations: null` is read as none); other blocks are
/// kept whole.
pub fn decode_response(v: Value) -> Result<model::Response, CodecError> {
    let bad = |param: &str, detail: &str| CodecError::new(param, detail);
    let blocks = v["content"]
        .as_array()
        .ok_or_else(|| bad("content", "no content array"))?;
    let mut content = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let block = match b["type"].as_str() {
            Some("text") => Block::Text {
                text: b["text"]
                    .as_str()
                    .ok_or_else(|| bad(&format!("content[{j}].text"), "text block without text"))?
                    .to_owned(),
                citations: Some(&b["citations"]).filter(|c| !c.is_null()).cloned(),
                cache: None,
            },
            Some("tool_use") => Block::ToolCall(ToolCall {
                id: b["id"]
                    .as_str()
                    .ok_or_else(|| bad(&format!("content[{j}].id"), "tool_use without id"))?
                    .into(),
                name: b["name"]
                    .as_str()
                    .ok_or_else(|| bad(&format!("content[{j}].name"), "tool_use without name"))?
                    .into(),
                arguments: b["input"].to_string(),
                cache: None,
            }),
            _ => decode_block(b),
        };
        content.push(block);
    }
    let reported = v["usage"].is_object();
    Ok(model::Response {
        id: v["id"].as_str().map(str::to_owned),
        model: v["model"].as_str().map(str::to_owned),
        message: Message {
            role: Role::Assistant,
            content,
            name: None,
        },
        finish: finish_reason(v["stop_reason"].as_str()),
        stop_sequence: v["stop_sequence"].as_str().map(str::to_owned),
        usage: usage(&v["usage"]),
        usage_reported: reported,
    })
}

/// The Messages `message` object for a model response, named `id` and
/// `model` for the client; `stop_sequence` and the four usage counts are
/// always written. Blocks Anthropic has no answer form for (media,
/// tool results, other formats' opaque blocks) are left out.
pub fn encode_response(r: &model::Response, id: &str, model: &str) -> Value {
    let content: Vec<Value> = r.message.content.iter().filter_map(answer_block).collect();
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(r.finish),
        "stop_sequence": r.stop_sequence,
        "usage": usage_json(&r.usage),
    })
}

/// One answer block; tool arguments that are not JSON become `{}`.
pub(crate) fn answer_block(b: &Block) -> Option<Value> {
    match b {
        Block::ToolCall(c) => Some(json!({
            "type": "tool_use",
            "id": c.id,
            "name": c.name,
            "input": serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!({})),
        })),
        Block::Text { .. } | Block::Refusal { .. } | Block::Reasoning { .. } | Block::Opaque(_) => {
            encode_block(b, true).ok().flatten()
        }
        _ => None,
    }
}
