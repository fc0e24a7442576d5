//! Upstream Anthropic Messages event streams (`message_start`,
//! `content_block_start/delta/stop`, `message_delta`, `message_stop`, `ping`,
//! `error`) to model events. Block indices are Anthropic's own, which are
//! positions in the answer's content.

use serde::Deserialize;
use serde_json::Value;

use crate::model::{BlockDelta, BlockStart, Event, Opaque, Usage, WireFormat};
use crate::wire::anthropic::response::{finish_reason, usage};
use crate::wire::{DecodeError, Step, StreamDecoder, is_reason, json_error};

/// Decoder state for one upstream Messages stream.
#[derive(Debug, Default)]
pub struct EventDecoder {
    /// Tool-use blocks open so far: (block index, whether arguments arrived).
    tools: Vec<(u32, bool)>,
    /// Usage so far.
    usage: Usage,
}

impl EventDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn tool(&mut self, block: u32) -> Option<&mut (u32, bool)> {
        self.tools.iter_mut().find(|t| t.0 == block)
    }

    /// Takes the input counts of a `usage` object (`message_start`, and
    /// `message_delta` in newer API versions, which repeat them). A repeat
    /// without the `cache_creation` breakdown keeps the one already read.
    fn input_counts(&mut self, u: &Value) {
        let read = usage(u);
        let write_1h = if u.get("cache_creation").is_some() {
            read.cache_write_1h
        } else {
            self.usage.cache_write_1h.min(read.cache_write)
        };
        self.usage.input = read.input;
        self.usage.cache_read = read.cache_read;
        self.usage.cache_write = read.cache_write;
        self.usage.cache_write_1h = write_1h;
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    index: u32,
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

fn text_of(v: &Value, key: &str) -> Option<String> {
    v[key].as_str().filter(|t| !t.is_empty()).map(str::to_owned)
}

impl StreamDecoder for EventDecoder {
    fn event(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<Step, DecodeError> {
        let ev: Wire = serde_json::from_str(data).map_err(|e| {
            DecodeError::Malformed(format!("invalid stream event: {}", json_error(&e)))
        })?;
        let index = ev.index;
        match ev.kind.as_str() {
            "message_start" => {
                let m = ev.message.unwrap_or_default();
                out.push(Event::Start {
                    id: m["id"].as_str().map(str::to_owned),
                    model: m["model"].as_str().map(str::to_owned),
                });
                self.input_counts(&m["usage"]);
                self.usage.output = m["usage"]["output_tokens"].as_u64().unwrap_or(0);
                // Usage so far, so that a stream failing later is charged its prompt.
                out.push(Event::Usage(self.usage));
            }
            "content_block_start" => {
                let b = ev.content_block.unwrap_or_default();
                let (start, deltas) = match b["type"].as_str() {
                    Some("text") => (
                        BlockStart::Text,
                        vec![text_of(&b, "text").map(BlockDelta::Text)],
                    ),
                    Some("tool_use") => {
                        self.tools.push((index, false));
                        let start = BlockStart::ToolCall {
                            id: b["id"].as_str().unwrap_or_default().to_owned(),
                            name: b["name"].as_str().unwrap_or_default().to_owned(),
                        };
                        (start, Vec::new())
                    }
                    Some("thinking") => (
                        BlockStart::Reasoning,
                        vec![
                            text_of(&b, "thinking").map(BlockDelta::Reasoning),
                            text_of(&b, "signature").map(BlockDelta::Signature),
                        ],
                    ),
                    Some("redacted_thinking") => (
                        BlockStart::EncryptedReasoning {
                            data: b["data"].as_str().unwrap_or_default().to_owned(),
                        },
                        Vec::new(),
                    ),
                    _ => (
                        BlockStart::Opaque(Opaque {
                            format: WireFormat::Anthropic,
                            value: b,
                        }),
                        Vec::new(),
                    ),
                };
                out.push(Event::BlockStart {
                    index,
                    block: start,
                });
                out.extend(
                    deltas
                        .into_iter()
                        .flatten()
                        .map(|delta| Event::BlockDelta { index, delta }),
                );
            }
            "content_block_delta" => {
                let d = ev.delta.unwrap_or_default();
                let delta = match d["type"].as_str() {
                    Some("text_delta") => text_of(&d, "text").map(BlockDelta::Text),
                    // A tool's input, or a server tool's (an opaque block,
                    // whose input the assembler writes into it).
                    Some("input_json_delta") => text_of(&d, "partial_json").map(|fragment| {
                        if let Some(tool) = self.tool(index) {
                            tool.1 = true;
                        }
                        BlockDelta::Arguments(fragment)
                    }),
                    Some("thinking_delta") => text_of(&d, "thinking").map(BlockDelta::Reasoning),
                    Some("signature_delta") => text_of(&d, "signature").map(BlockDelta::Signature),
                    Some("citations_delta") => d.get("citation").cloned().map(BlockDelta::Citation),
                    _ => None,
                };
                out.extend(delta.map(|delta| Event::BlockDelta { index, delta }));
            }
            "content_block_stop" => {
                // A tool called without input still gets valid JSON arguments,
                // as the whole answer's `input` gives it.
                if let Some(tool) = self.tool(index)
                    && !tool.1
                {
                    tool.1 = true;
                    out.push(Event::BlockDelta {
                        index,
                        delta: BlockDelta::Arguments("{}".into()),
                    });
                }
                out.push(Event::BlockStop { index });
            }
            "message_delta" => {
                let d = ev.delta.unwrap_or_default();
                let u = ev.usage.unwrap_or_default();
                if u.get("input_tokens").is_some() {
                    self.input_counts(&u);
                }
                self.usage.output = u["output_tokens"].as_u64().unwrap_or(0);
                out.push(Event::Finish {
                    reason: finish_reason(d["stop_reason"].as_str()),
                    stop_sequence: d["stop_sequence"].as_str().map(str::to_owned),
                });
                out.push(Event::Usage(self.usage));
            }
            "message_stop" => return Ok(Step::Done),
            "error" => {
                let kind = ev
                    .error
                    .as_ref()
                    .and_then(|e| e["type"].as_str())
                    .filter(|k| is_reason(k))
                    .unwrap_or("error")
                    .to_owned();
                return Err(DecodeError::Reported(kind));
            }
            // `ping` and event types added later.
            _ => {}
        }
        Ok(Step::More)
    }

    fn end(&mut self, _out: &mut Vec<Event>) -> Result<(), DecodeError> {
        Err(DecodeError::Malformed(
            "the stream ended before message_stop".into(),
        ))
    }
}
