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
///
/// Blocks go out one at a time, numbered 0, 1, 2... in the order they went
/// out: Messages clients (the SDKs' accumulators) index their content by
/// the order of `content_block_start` and expect each block stopped before
/// the next starts. A model stream may interleave blocks (an OpenAI upstream
/// streams parallel tool calls by index and stops every block only at its
/// finish), so a block that starts while another is open is held, with its
/// deltas, until the open one stops.
#[derive(Debug)]
pub struct EventEncoder {
    id: String,
    model: String,
    usage: Usage,
    /// The usage `message_start` carried, once sent.
    started: Option<Usage>,
    finish: Option<(FinishReason, Option<String>)>,
    /// The block streaming now: its model index and its index on the wire.
    open: Option<(u32, u32)>,
    /// Blocks started while another was open, in order of start.
    held: Vec<Held>,
    /// The wire index of the next block to go out.
    next: u32,
    /// Model indices of the blocks already stopped on the wire.
    closed: Vec<u32>,
}

/// A block held back while another streams.
#[derive(Debug)]
struct Held {
    /// Its model index.
    index: u32,
    /// Its `content_block`.
    block: Value,
    /// Its deltas so far.
    deltas: Vec<Value>,
    /// Whether it already stopped.
    stopped: bool,
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
            held: Vec::new(),
            next: 0,
            closed: Vec::new(),
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
                self.block_start(*index, b, out);
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
                self.block_delta(*index, delta, d, out);
            }
            Event::BlockStop { index } => {
                self.start(out);
                self.block_stop(*index, out);
            }
        }
    }

    /// A block opens: it goes out now if none is open, else it is held.
    fn block_start(&mut self, index: u32, block: Value, out: &mut Vec<u8>) {
        if self.open.is_none() && self.held.is_empty() {
            self.send_start(index, &block, out);
        } else {
            self.held.push(Held {
                index,
                block,
                deltas: Vec::new(),
                stopped: false,
            });
        }
    }

    fn block_delta(&mut self, index: u32, delta: &BlockDelta, d: Value, out: &mut Vec<u8>) {
        if let Some((open, wire)) = self.open
            && open == index
        {
            send_delta(out, wire, &d);
        } else if let Some(h) = self.held.iter_mut().find(|h| h.index == index) {
            h.deltas.push(d);
        } else if !self.closed.contains(&index) {
            // A delta for a block that never opened opens it (lenient
            // providers), as the assembler reads it.
            let block = match delta {
                BlockDelta::Arguments(_) => {
                    json!({"type": "tool_use", "id": "", "name": "", "input": {}})
                }
                BlockDelta::Reasoning(_) | BlockDelta::Signature(_) => {
                    json!({"type": "thinking", "thinking": ""})
                }
                _ => json!({"type": "text", "text": ""}),
            };
            self.block_start(index, block, out);
            self.block_delta(index, delta, d, out);
        }
    }

    fn block_stop(&mut self, index: u32, out: &mut Vec<u8>) {
        if let Some((open, wire)) = self.open
            && open == index
        {
            send_stop(out, wire);
            self.open = None;
            self.closed.push(index);
            self.release(out);
        } else if let Some(h) = self.held.iter_mut().find(|h| h.index == index) {
            h.stopped = true;
        }
    }

    /// Sends held blocks, in order, until one is still open.
    fn release(&mut self, out: &mut Vec<u8>) {
        while self.open.is_none() && !self.held.is_empty() {
            let h = self.held.remove(0);
            let wire = self.send_start(h.index, &h.block, out);
            for d in &h.deltas {
                send_delta(out, wire, d);
            }
            if h.stopped {
                send_stop(out, wire);
                self.open = None;
                self.closed.push(h.index);
            }
        }
    }

    /// Sends `content_block_start` and opens the block; its wire index.
    fn send_start(&mut self, index: u32, block: &Value, out: &mut Vec<u8>) -> u32 {
        let wire = self.next;
        self.next += 1;
        self.open = Some((index, wire));
        sse(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": wire, "content_block": block}),
        );
        wire
    }

    /// Ends the answer: [`EventEncoder::delta`], then [`EventEncoder::stop`].
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.delta(out);
        out.extend_from_slice(&Self::stop());
    }

    /// Closes what is open and sends `message_delta` with the stop reason
    /// and the final usage (input counts only where they changed since
    /// `message_start`). A front door sends [`EventEncoder::stop`] once the
    /// turn is stored.
    pub fn delta(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        // Blocks the upstream left open are closed, held ones sent whole.
        for h in &mut self.held {
            h.stopped = true;
        }
        if let Some((index, _)) = self.open {
            self.block_stop(index, out);
        }
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

fn send_delta(out: &mut Vec<u8>, wire: u32, delta: &Value) {
    sse(
        out,
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": wire, "delta": delta}),
    );
}

fn send_stop(out: &mut Vec<u8>, wire: u32) {
    sse(
        out,
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": wire}),
    );
}

fn sse(out: &mut Vec<u8>, event: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
