//! Converse answers -> model: the whole `ConverseResponse`, and the pieces
//! the stream's events share with it (stop reasons, usage).

use serde_json::Value;

use crate::model::{Block, FinishReason, Message, Response, Role, ToolCall, Usage};
use crate::wire::CodecError;

/// The model's finish reason for a Converse `stopReason`. Guardrail and
/// content-filter stops are the model's content filter; a malformed answer
/// ends it as a stop.
pub fn finish_reason(stop: Option<&str>) -> FinishReason {
    match stop {
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens") => FinishReason::Length,
        Some("stop_sequence") => FinishReason::StopSequence,
        Some("guardrail_intervened" | "content_filtered") => FinishReason::ContentFilter,
        Some("model_context_window_exceeded") => FinishReason::ContextWindow,
        _ => FinishReason::Stop,
    }
}

/// Usage from a Converse `usage` object. Bedrock's `inputTokens` counts the
/// uncached input only (its `totalTokens` adds the cache reads and writes);
/// the model's input counts all of it. `cacheDetails` splits the writes by TTL.
pub fn usage(u: &Value) -> Usage {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    let write_1h = u["cacheDetails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["ttl"] == "1h")
        .filter_map(|d| d["inputTokens"].as_u64())
        .sum::<u64>()
        .min(write);
    Usage {
        input: n("inputTokens") + read + write,
        output: n("outputTokens"),
        cache_read: read,
        cache_write: write,
        cache_write_1h: write_1h,
        reasoning: 0,
    }
}

/// A `ConverseResponse` as a model response. Text, tool calls (arguments:
/// the compact JSON of `input`) and reasoning (signed text, or redacted
/// content as encrypted reasoning) are kept; blocks the model has no type
/// for (citations, guardrail content) are dropped.
pub fn decode_response(v: &Value) -> Result<Response, CodecError> {
    let blocks = v["output"]["message"]["content"]
        .as_array()
        .ok_or_else(|| CodecError::new("output.message.content", "no content array"))?;
    let mut content = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = |field: &str| format!("output.message.content[{j}].{field}");
        if let Some(t) = b.get("text") {
            let text = t
                .as_str()
                .ok_or_else(|| CodecError::new(at("text"), "text is not a string"))?;
            content.push(Block::text(text));
        } else if let Some(u) = b.get("toolUse") {
            let field = |k: &str| {
                u[k].as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CodecError::new(at(&format!("toolUse.{k}")), "missing"))
            };
            content.push(Block::ToolCall(ToolCall {
                id: field("toolUseId")?,
                name: field("name")?,
                arguments: u["input"].to_string(),
                cache: None,
            }));
        } else if let Some(r) = b.get("reasoningContent") {
            if let Some(t) = r.get("reasoningText") {
                content.push(Block::Reasoning {
                    text: t["text"].as_str().unwrap_or_default().to_owned(),
                    signature: t["signature"].as_str().map(str::to_owned),
                    encrypted: None,
                });
            } else if let Some(data) = r["redactedContent"].as_str() {
                content.push(Block::Reasoning {
                    text: String::new(),
                    signature: None,
                    encrypted: Some(data.to_owned()),
                });
            }
        }
    }
    Ok(Response {
        id: None,
        model: None,
        message: Message {
            role: Role::Assistant,
            content,
            name: None,
        },
        finish: finish_reason(v["stopReason"].as_str()),
        stop_sequence: None,
        usage: usage(&v["usage"]),
        usage_reported: v["usage"].is_object(),
    })
}
