//! Model events -> Messages SSE for a client ([`EventEncoder`]). Block
//! indices are Anthropic's own, which are positions in the answer's content.
//! (Upstream Messages streams are read by the Anthropic provider's own
//! translator, `provider/anthropic/stream.rs`.)

use serde_json::{Value, json};

use super::response::{answer_block, stop_reason, usage_json};
use crate::model::{Block, BlockDelta, BlockStart, Event, FinishReason, Usage};

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
    /// The block open now: Anthropic's clients expect one at a time, while
    /// an OpenAI upstream may keep its text open as tool calls begin.
    open: Option<u32>,
    /// Blocks closed early, whose own stop is then dropped.
    closed_early: Vec<u32>,
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
            open: None,
            closed_early: Vec::new(),
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
                if let Some(open) = self.open.take()
                    && open != *index
                {
                    self.closed_early.push(open);
                    sse(
                        out,
                        "content_block_stop",
                        &json!({"type": "content_block_stop", "index": open}),
                    );
                }
                self.open = Some(*index);
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
                if let Some(at) = self.closed_early.iter().position(|i| i == index) {
                    self.closed_early.swap_remove(at);
                    return;
                }
                if self.open == Some(*index) {
                    self.open = None;
                }
                self.start(out);
                sse(
                    out,
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                );
            }
        }
    }

    /// Ends the answer: [`EventEncoder::delta`], then [`EventEncoder::stop`].
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.delta(out);
        out.extend_from_slice(&Self::stop());
    }

    /// `message_delta` with the stop reason and the final usage (input
    /// counts only where they changed since `message_start`). A front door
    /// sends [`EventEncoder::stop`] once the turn is stored.
    pub fn delta(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let (reason, seq) = self.finish.take().unwrap_or((FinishReason::Stop, None));
        let mut u = json!({"output_tokens": self.usage.output});
        let inputs = |u: &Usage| (u.input, u.cache_read, u.cache_write, u.cache_write_1h);
        if let Some(sent) = self.started
            && inputs(&sent) != inputs(&self.usage)
        {
            let full = usage_json(&self.usage);
            for k in [
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "cache_creation",
            ] {
                if let Some(v) = full.get(k) {
                    u[k] = v.clone();
                }
            }
        }
        sse(
            out,
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reason), "stop_sequence": seq}, "usage": u}),
        );
    }

    /// The `message_stop` event.
    pub fn stop() -> Vec<u8> {
        let mut out = Vec::new();
        sse(&mut out, "message_stop", &json!({"type": "message_stop"}));
        out
    }

    /// Sends `message_start` now if it has not gone out (a `ping` may only
    /// follow it), with the usage known so far.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        self.start(out);
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
