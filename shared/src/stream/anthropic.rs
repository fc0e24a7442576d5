//! Anthropic Messages API event streams (`message_start`,
//! `content_block_start/delta/stop`, `message_delta`, `message_stop`, `ping`,
//! `error`) to [`Delta`]s in OpenAI order: text, tool calls numbered among
//! tool calls only, finish reason, usage.

use serde::Deserialize;
use serde_json::Value;

use super::Delta;
use super::sse::{Step, Translator};
use crate::provider::ProviderError;
use crate::provider::anthropic::finish_reason;
use crate::wire::Usage;

/// Translator state for one Anthropic stream.
pub struct AnthropicStream {
    provider: String,
    /// Content block index -> (tool-call index, whether arguments arrived).
    tools: Vec<(u64, u32, bool)>,
    next_tool: u32,
    prompt_tokens: u64,
    cached_tokens: u64,
}

impl AnthropicStream {
    /// A translator for provider `provider`.
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.into(),
            tools: Vec::new(),
            next_tool: 0,
            prompt_tokens: 0,
            cached_tokens: 0,
        }
    }

    fn tool(&mut self, block: u64) -> Option<&mut (u64, u32, bool)> {
        self.tools.iter_mut().find(|t| t.0 == block)
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    index: u64,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    delta: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

fn count(usage: &Value, key: &str) -> u64 {
    usage[key].as_u64().unwrap_or(0)
}

impl Translator for AnthropicStream {
    fn event(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<Delta>,
    ) -> Result<Step, ProviderError> {
        let ev: Event = serde_json::from_str(data).map_err(|e| ProviderError::BadResponse {
            provider: self.provider.clone(),
            detail: format!("invalid stream event: {}", crate::provider::json_error(&e)),
        })?;
        match ev.kind.as_str() {
            "message_start" => {
                let usage = ev
                    .message
                    .as_ref()
                    .map(|m| m["usage"].clone())
                    .unwrap_or_default();
                self.cached_tokens = count(&usage, "cache_read_input_tokens");
                self.prompt_tokens = count(&usage, "input_tokens")
                    + count(&usage, "cache_creation_input_tokens")
                    + self.cached_tokens;
                // Usage so far, so that a stream failing later is charged its prompt.
                out.push(Delta::Usage(
                    Usage::new(self.prompt_tokens, count(&usage, "output_tokens"))
                        .with_details(self.cached_tokens, 0),
                ));
            }
            "content_block_start" => {
                let block = ev.content_block.unwrap_or_default();
                match block["type"].as_str() {
                    Some("text") => {
                        if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(Delta::Text(t.to_owned()));
                        }
                    }
                    Some("tool_use") => {
                        let index = self.next_tool;
                        self.next_tool += 1;
                        self.tools.push((ev.index, index, false));
                        out.push(Delta::ToolCall {
                            index,
                            id: block["id"].as_str().unwrap_or_default().to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                        });
                    }
                    // Thinking and other blocks have no Chat Completions counterpart.
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = ev.delta.unwrap_or_default();
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(t) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(Delta::Text(t.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let fragment = delta["partial_json"].as_str().unwrap_or_default();
                        if let Some(tool) = self.tool(ev.index)
                            && !fragment.is_empty()
                        {
                            tool.2 = true;
                            let index = tool.1;
                            out.push(Delta::ToolArguments {
                                index,
                                fragment: fragment.to_owned(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                // A tool called without input still gets valid JSON arguments,
                // as the non-streamed translation gives it.
                if let Some(tool) = self.tool(ev.index)
                    && !tool.2
                {
                    tool.2 = true;
                    let index = tool.1;
                    out.push(Delta::ToolArguments {
                        index,
                        fragment: "{}".into(),
                    });
                }
            }
            "message_delta" => {
                let delta = ev.delta.unwrap_or_default();
                let usage = ev.usage.unwrap_or_default();
                // Newer API versions repeat the input counts here; prefer them.
                if usage.get("input_tokens").is_some() {
                    self.cached_tokens = count(&usage, "cache_read_input_tokens");
                    self.prompt_tokens = count(&usage, "input_tokens")
                        + count(&usage, "cache_creation_input_tokens")
                        + self.cached_tokens;
                }
                out.push(Delta::Finish(finish_reason(delta["stop_reason"].as_str())));
                out.push(Delta::Usage(
                    Usage::new(self.prompt_tokens, count(&usage, "output_tokens"))
                        .with_details(self.cached_tokens, 0),
                ));
            }
            "message_stop" => return Ok(Step::Done),
            "error" => {
                let kind = ev
                    .error
                    .as_ref()
                    .and_then(|e| e["type"].as_str())
                    .filter(|k| crate::provider::is_reason(k))
                    .unwrap_or("error")
                    .to_owned();
                return Err(ProviderError::Stream {
                    provider: self.provider.clone(),
                    kind,
                });
            }
            // `ping` and event types added later.
            _ => {}
        }
        Ok(Step::More)
    }

    fn end(&mut self, _out: &mut Vec<Delta>) -> Result<(), ProviderError> {
        Err(ProviderError::BadResponse {
            provider: self.provider.clone(),
            detail: "the stream ended before message_stop".into(),
        })
    }
}
