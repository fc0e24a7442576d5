//! OpenAI (and OpenAI-compatible) `chat.completion.chunk` streams to
//! [`Delta`]s: the first choice's text, tool-call fragments, finish reason,
//! and the usage chunk the gateway always asks for.

use serde::Deserialize;

use super::Delta;
use super::sse::{Step, Translator};
use crate::provider::ProviderError;
use crate::provider::openai::finish_reason;
use crate::wire::{CompletionTokensDetails, PromptTokensDetails, Usage};

/// Translator state for one OpenAI stream.
pub struct OpenAiStream {
    provider: String,
    /// Tool-call indexes whose start (id and name) was already passed on.
    started: Vec<u32>,
    finished: bool,
}

impl OpenAiStream {
    /// A translator for provider `provider`.
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.into(),
            started: Vec::new(),
            finished: false,
        }
    }

    fn bad(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::BadResponse {
            provider: self.provider.clone(),
            detail: detail.into(),
        }
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<ChunkUsage>,
    #[serde(default)]
    error: Option<ChunkError>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Deserialize)]
struct ChunkError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

impl Translator for OpenAiStream {
    fn event(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<Delta>,
    ) -> Result<Step, ProviderError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Step::Done);
        }
        if data.is_empty() {
            return Ok(Step::More);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            self.bad(format!(
                "invalid stream chunk: {}",
                crate::provider::json_error(&e)
            ))
        })?;
        if let Some(err) = chunk.error {
            let kind = err
                .kind
                .or_else(|| err.code.map(|c| c.to_string()))
                .filter(|k| crate::provider::is_reason(k))
                .unwrap_or_else(|| "error".into());
            return Err(ProviderError::Stream {
                provider: self.provider.clone(),
                kind,
            });
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(Delta::Text(text));
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    let (name, arguments) = call
                        .function
                        .map(|f| (f.name, f.arguments))
                        .unwrap_or_default();
                    if !self.started.contains(&call.index) && (call.id.is_some() || name.is_some())
                    {
                        self.started.push(call.index);
                        out.push(Delta::ToolCall {
                            index: call.index,
                            id: call.id.unwrap_or_default(),
                            name: name.unwrap_or_default(),
                        });
                    }
                    if let Some(fragment) = arguments.filter(|a| !a.is_empty()) {
                        out.push(Delta::ToolArguments {
                            index: call.index,
                            fragment,
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                out.push(Delta::Finish(finish_reason(Some(&reason))));
            }
        }
        if let Some(u) = chunk.usage {
            out.push(Delta::Usage(
                Usage::new(u.prompt_tokens, u.completion_tokens).with_details(
                    u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                    u.completion_tokens_details
                        .map_or(0, |d| d.reasoning_tokens),
                ),
            ));
        }
        Ok(Step::More)
    }

    fn end(&mut self, _out: &mut Vec<Delta>) -> Result<(), ProviderError> {
        // Some compatible servers omit `[DONE]`; a finish reason is enough.
        if self.finished {
            Ok(())
        } else {
            Err(self.bad("the stream ended before the answer was complete"))
        }
    }
}
