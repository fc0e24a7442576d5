//! Streams: upstream Messages events -> model events ([`EventDecoder`]), and
//! model events -> Messages SSE for a client ([`EventEncoder`]). Block
//! indices are Anthropic's own, which are positions in the answer's content.

use serde::Deserialize;
use serde_json::{Value, json};

use super::response::{answer_block, finish_reason, stop_reason, usage, usage_json};
use crate::model::{Block, BlockDelta, BlockStart, Event, FinishReason, Opaque, Usage, WireFormat};
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
    /// `message_delta` in newer API versions, which repeat them).
    fn input_counts(&mut self, u: &Value) {
        let read = usage(u);
        self.usage.input = read.input;
        self.usage.cache_read = read.cache_read;
        self.usage.cache_write = read.cache_write;
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
                    Some("input_json_delta") => {
                        match (text_of(&d, "partial_json"), self.tool(index)) {
                            (Some(fragment), Some(tool)) => {
                                tool.1 = true;
                                Some(BlockDelta::Arguments(fragment))
                            }
                            _ => None,
                        }
                    }
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

/// Encoder state for one Messages stream to a client: model events in,
/// `event: X\ndata: {...}\n\n` bytes out. `message_start` waits for the
/// first block (or the end), so that it carries the usage known by then;
/// the finish reason waits for [`EventEncoder::finish`].
#[derive(Debug)]
pub struct EventEncoder {
    id: String,
    model: String,
    usage: Usage,
    /// The usage `message_start` carried, once sent.
    started: Option<Usage>,
    finish: Option<(FinishReason, Option<String>)>,
}

impl EventEncoder {
    /// An encoder naming the answer `id` and `model`; `input_estimate` is
    /// the input token count `message_start` reports until usage comes.
    pub fn new(id: &str, model: &str, input_estimate: u64) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            usage: Usage::new(input_estimate, 0),
            started: None,
            finish: None,
        }
    }

    /// Encodes one model event, appending SSE bytes to `out`.
    pub fn push(&mut self, event: &Event, out: &mut Vec<u8>) {
        match event {
            // The client's id and model are the encoder's own.
            Event::Start { .. } => {}
            Event::Usage(u) => self.usage = *u,
            Event::Finish {
                reason,
                stop_sequence,
            } => self.finish = Some((*reason, stop_sequence.clone())),
            Event::BlockStart { index, block } => {
                self.start(out);
                let b = match block {
                    BlockStart::Text | BlockStart::Refusal => json!({"type": "text", "text": ""}),
                    BlockStart::ToolCall { id, name } => {
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}})
                    }
                    BlockStart::Reasoning => json!({"type": "thinking", "thinking": ""}),
                    BlockStart::EncryptedReasoning { data } => {
                        json!({"type": "redacted_thinking", "data": data})
                    }
                    BlockStart::Opaque(o) => answer_block(&Block::Opaque(o.clone()))
                        .unwrap_or_else(|| json!({"type": "text", "text": ""})),
                };
                sse(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": b}),
                );
            }
            Event::BlockDelta { index, delta } => {
                self.start(out);
                let d = match delta {
                    BlockDelta::Text(t) | BlockDelta::Refusal(t) => {
                        json!({"type": "text_delta", "text": t})
                    }
                    BlockDelta::Arguments(s) => {
                        json!({"type": "input_json_delta", "partial_json": s})
                    }
                    BlockDelta::Reasoning(t) => json!({"type": "thinking_delta", "thinking": t}),
                    BlockDelta::Signature(s) => json!({"type": "signature_delta", "signature": s}),
                    BlockDelta::Citation(c) => json!({"type": "citations_delta", "citation": c}),
                };
                sse(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": d}),
                );
            }
            Event::BlockStop { index } => {
                self.start(out);
                sse(
                    out,
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                );
            }
        }
    }

    /// Ends the answer: `message_delta` with the stop reason and the final
    /// usage (input counts only where they changed since `message_start`),
    /// then `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let (reason, seq) = self.finish.take().unwrap_or((FinishReason::Stop, None));
        let mut u = json!({"output_tokens": self.usage.output});
        if let Some(sent) = self.started
            && (sent.input, sent.cache_read, sent.cache_write)
                != (
                    self.usage.input,
                    self.usage.cache_read,
                    self.usage.cache_write,
                )
        {
            let full = usage_json(&self.usage);
            for k in [
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
            ] {
                u[k] = full[k].clone();
            }
        }
        sse(
            out,
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reason), "stop_sequence": seq}, "usage": u}),
        );
        sse(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(self.usage);
        sse(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": self.model,
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage_json(&self.usage),
            }}),
        );
    }

    /// A `ping` event (keep-alive).
    pub fn ping() -> Vec<u8> {
        let mut out = Vec::new();
        sse(&mut out, "ping", &json!({"type": "ping"}));
        out
    }

    /// An `error` event of `kind` (`overloaded_error`, `api_error`, ...).
    pub fn error(kind: &str, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        sse(
            &mut out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
        out
    }
}

fn sse(out: &mut Vec<u8>, event: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
