//! Upstream OpenAI (and OpenAI-compatible) `chat.completion.chunk` streams
//! to model [`Event`]s. Chunks have no blocks, so the decoder numbers them
//! itself: the text is one block, each tool call its own, a refusal and
//! reasoning text (DeepSeek's and vLLM's `reasoning_content`, OpenRouter's
//! `reasoning`) one each, in order of first appearance.

use serde::Deserialize;

use crate::model::{BlockDelta, BlockStart, Event, FinishReason, Usage};
use crate::wire::{DecodeError, Step, StreamDecoder, is_reason, json_error};

/// The block a piece of the answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Text,
    Refusal,
    Reasoning,
    /// A tool call, by OpenAI's `index` among tool calls.
    Call(u32),
}

/// Decoder state for one OpenAI stream.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: bool,
    /// Blocks in order of first appearance: a block's index is its position.
    blocks: Vec<Slot>,
    /// Tool calls whose start (id and name) was already passed on.
    calls_started: Vec<u32>,
    /// Blocks open (not yet stopped), by index.
    open: Vec<u32>,
    finished: bool,
}

impl ChunkDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `slot`'s block and whether it is new.
    fn block(&mut self, slot: Slot) -> (u32, bool) {
        match self.blocks.iter().position(|s| *s == slot) {
            Some(i) => (i as u32, false),
            None => {
                self.blocks.push(slot);
                let index = (self.blocks.len() - 1) as u32;
                self.open.push(index);
                (index, true)
            }
        }
    }

    /// Appends `delta` to `slot`'s block, opening it first if it is new.
    fn text_like(
        &mut self,
        slot: Slot,
        start: BlockStart,
        delta: BlockDelta,
        out: &mut Vec<Event>,
    ) {
        let (index, new) = self.block(slot);
        if new {
            out.push(Event::BlockStart {
                index,
                block: start,
            });
        }
        out.push(Event::BlockDelta { index, delta });
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
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
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
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
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

#[derive(Deserialize)]
struct ChunkError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Maps an OpenAI finish reason (unknown ones read as a natural stop).
fn finish_reason(s: &str) -> FinishReason {
    match s {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|t| !t.is_empty())
}

impl StreamDecoder for ChunkDecoder {
    fn event(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<Step, DecodeError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Step::Done);
        }
        if data.is_empty() {
            return Ok(Step::More);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            DecodeError::Malformed(format!("invalid stream chunk: {}", json_error(&e)))
        })?;
        if let Some(err) = chunk.error {
            let kind = err
                .kind
                .or_else(|| err.code.map(|c| c.to_string()))
                .filter(|k| is_reason(k))
                .unwrap_or_else(|| "error".into());
            return Err(DecodeError::Reported(kind));
        }
        if !self.started {
            self.started = true;
            out.push(Event::Start {
                id: chunk.id,
                model: chunk.model,
            });
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) =
                    non_empty(delta.reasoning_content).or(non_empty(delta.reasoning))
                {
                    let d = BlockDelta::Reasoning(text);
                    self.text_like(Slot::Reasoning, BlockStart::Reasoning, d, out);
                }
                if let Some(text) = non_empty(delta.content) {
                    self.text_like(Slot::Text, BlockStart::Text, BlockDelta::Text(text), out);
                }
                if let Some(text) = non_empty(delta.refusal) {
                    let d = BlockDelta::Refusal(text);
                    self.text_like(Slot::Refusal, BlockStart::Refusal, d, out);
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    let (name, arguments) = call
                        .function
                        .map(|f| (f.name, f.arguments))
                        .unwrap_or_default();
                    let (index, _) = self.block(Slot::Call(call.index));
                    if !self.calls_started.contains(&call.index)
                        && (call.id.is_some() || name.is_some())
                    {
                        self.calls_started.push(call.index);
                        out.push(Event::BlockStart {
                            index,
                            block: BlockStart::ToolCall {
                                id: call.id.unwrap_or_default(),
                                name: name.unwrap_or_default(),
                            },
                        });
                    }
                    if let Some(fragment) = non_empty(arguments) {
                        out.push(Event::BlockDelta {
                            index,
                            delta: BlockDelta::Arguments(fragment),
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                out.extend(self.open.drain(..).map(|index| Event::BlockStop { index }));
                out.push(Event::Finish {
                    reason: finish_reason(&reason),
                    stop_sequence: None,
                });
            }
        }
        if let Some(u) = chunk.usage {
            out.push(Event::Usage(Usage {
                input: u.prompt_tokens,
                output: u.completion_tokens,
                cache_read: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                cache_write: 0,
                reasoning: u
                    .completion_tokens_details
                    .map_or(0, |d| d.reasoning_tokens),
            }));
        }
        Ok(Step::More)
    }

    fn end(&mut self, _out: &mut Vec<Event>) -> Result<(), DecodeError> {
        // Some compatible servers omit `[DONE]`; a finish reason is enough.
        if self.finished {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "the stream ended before the answer was complete".into(),
            ))
        }
    }
}
