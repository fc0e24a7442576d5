//! OpenAI Chat answers to and from the model: upstream answers decoded,
//! the client's `chat.completion` encoded.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::request::decode_message;
use super::types::{
    ChatCompletion, ChatMessage, Choice, CompletionTokensDetails, Content, FinishReason,
    FunctionCall, PromptTokensDetails, Role, ToolCall, Usage,
};
use crate::model::{self, Block};
use crate::wire::CodecError;

/// Model usage in OpenAI's terms.
pub fn encode_usage(u: &model::Usage) -> Usage {
    Usage {
        prompt_tokens: u.input,
        completion_tokens: u.output,
        total_tokens: u.input + u.output,
        prompt_tokens_details: (u.cache_read > 0).then_some(PromptTokensDetails {
            cached_tokens: u.cache_read,
        }),
        completion_tokens_details: (u.reasoning > 0).then_some(CompletionTokensDetails {
            reasoning_tokens: u.reasoning,
        }),
        cache_creation_input_tokens: u.cache_write,
    }
}

/// OpenAI usage as model usage.
pub fn decode_usage(u: &Usage) -> model::Usage {
    model::Usage {
        input: u.prompt_tokens,
        output: u.completion_tokens,
        cache_read: u.cached_tokens(),
        cache_write: u.cache_creation_input_tokens,
        cache_write_1h: 0,
        reasoning: u.reasoning_tokens(),
    }
}

/// A model finish reason as OpenAI names it.
pub fn encode_finish(f: model::FinishReason) -> FinishReason {
    use model::FinishReason as F;
    match f {
        F::Stop | F::StopSequence | F::Pause => FinishReason::Stop,
        F::Length | F::ContextWindow => FinishReason::Length,
        F::ToolCalls => FinishReason::ToolCalls,
        F::ContentFilter => FinishReason::ContentFilter,
    }
}

/// An OpenAI finish reason as the model's.
pub fn decode_finish(s: Option<&str>) -> model::FinishReason {
    match s {
        Some("length") => model::FinishReason::Length,
        Some("tool_calls" | "function_call") => model::FinishReason::ToolCalls,
        Some("content_filter") => model::FinishReason::ContentFilter,
        _ => model::FinishReason::Stop,
    }
}

#[derive(Deserialize)]
struct Upstream {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    choices: Vec<UpstreamChoice>,
    #[serde(default)]
    usage: Option<UpstreamUsage>,
}

#[derive(Deserialize)]
struct UpstreamChoice {
    message: ChatMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct UpstreamUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionTokensDetails>,
    /// Cache writes, from compatible servers that report them (LiteLLM).
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

/// An upstream `chat.completion` body as a model answer. Empty text blocks
/// are dropped, as the same answer streamed has none.
pub fn decode_response(v: Value) -> Result<model::Response, CodecError> {
    let r: Upstream = serde_json::from_value(v).map_err(|e| {
        CodecError::new(
            "",
            format!("unexpected shape: {}", crate::wire::json_error(&e)),
        )
    })?;
    decode_upstream(r)
}

/// [`decode_response`] of an upstream body as it came, parsed straight into
/// its shape (no tree in between); `None` when it does not parse as that
/// shape, for the caller to report why through a tree and [`decode_response`].
pub fn decode_response_bytes(body: &[u8]) -> Option<Result<model::Response, CodecError>> {
    let r: Upstream = serde_json::from_slice(body).ok()?;
    Some(decode_upstream(r))
}

fn decode_upstream(r: Upstream) -> Result<model::Response, CodecError> {
    let choice = r
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| CodecError::new("choices", "no choices"))?;
    if choice.message.role != Role::Assistant {
        return Err(CodecError::new(
            "choices[0].message.role",
            "choice is not an assistant message",
        ));
    }
    let mut message = decode_message(&choice.message);
    message
        .content
        .retain(|b| !matches!(b, Block::Text { text, .. } if text.is_empty()));
    let usage = r.usage.as_ref().map(|u| model::Usage {
        input: u.prompt_tokens,
        output: u.completion_tokens,
        cache_read: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        cache_write: u.cache_creation_input_tokens,
        cache_write_1h: 0,
        reasoning: u
            .completion_tokens_details
            .map_or(0, |d| d.reasoning_tokens),
    });
    Ok(model::Response {
        id: r.id,
        model: r.model,
        message,
        finish: decode_finish(choice.finish_reason.as_deref()),
        stop_sequence: None,
        usage_reported: usage.is_some(),
        usage: usage.unwrap_or_default(),
    })
}

/// An assistant answer as the message of a `chat.completion`: its text
/// blocks joined (as a stream of them reads), its tool calls, its refusal,
/// its name.
/// With no text, the content is absent beside tool calls or a refusal and an
/// empty string otherwise (as OpenAI writes them).
pub fn encode_answer(m: &model::Message) -> ChatMessage {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut refusal: Option<String> = None;
    for b in &m.content {
        match b {
            Block::Text { text: t, .. } => text.push_str(t),
            Block::ToolCall(c) => calls.push(ToolCall {
                id: c.id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
            }),
            Block::Refusal { text } => refusal.get_or_insert_with(String::new).push_str(text),
            _ => {}
        }
    }
    ChatMessage {
        role: Role::Assistant,
        content: (!text.is_empty() || (calls.is_empty() && refusal.is_none()))
            .then_some(Content::Text(text)),
        name: m.name.clone(),
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
        refusal,
    }
}

/// What a `chat.completion` says besides the answer.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered, as the client names it.
    pub model: String,
    /// The stored conversation (ctxgate extension).
    pub conversation_id: Option<String>,
    /// Redaction counts per place and category (ctxgate extension).
    pub redactions: Option<BTreeMap<String, BTreeMap<String, u32>>>,
}

/// A model answer as the client's `chat.completion`.
pub fn encode_response(r: &model::Response, meta: ResponseMeta) -> ChatCompletion {
    ChatCompletion {
        id: meta.id,
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.model,
        choices: vec![Choice {
            index: 0,
            message: encode_answer(&r.message),
            finish_reason: encode_finish(r.finish),
            logprobs: None,
        }],
        usage: encode_usage(&r.usage),
        conversation_id: meta.conversation_id,
        redactions: meta.redactions,
    }
}
