//! An upstream Responses event stream to model [`Event`]s: the stream side
//! of [`super::decode_upstream_response`], the same blocks in the same
//! order. Text, refusals, reasoning summaries and function call arguments
//! stream as they come; a reasoning item's encrypted content, complete only
//! in its `response.output_item.done`, is a block of its own then. The
//! answer ends with `response.completed` or `response.incomplete`;
//! `response.failed` and `error` end it with the upstream's error code
//! (never its message, which may echo content).

use serde::Deserialize;
use serde_json::Value;

use super::upstream::{Incomplete, UpstreamError, UpstreamUsage, finish_of, summary_text};
use crate::model::{BlockDelta, BlockStart, Event};
use crate::wire::{DecodeError, Step, StreamDecoder, json_error};

/// What part of an output item a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A message's content part, by its index.
    Content(u32),
    /// A function call.
    Call,
    /// A reasoning item's summary.
    Summary,
    /// A reasoning item's encrypted content.
    Encrypted,
}

/// A block of the answer: the output item it belongs to and what of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    output: u32,
    part: Part,
}

/// Decoder state for one upstream Responses stream.
#[derive(Debug, Default)]
pub struct ResponsesDecoder {
    started: bool,
    /// Blocks in order of first appearance: a block's index is its position.
    blocks: Vec<Slot>,
    /// Blocks open, by index.
    open: Vec<u32>,
    /// Function calls whose arguments streamed (the item's `done` carries
    /// them whole otherwise).
    streamed_arguments: Vec<u32>,
    /// The summary part a reasoning summary block is on, by block index.
    summary_parts: Vec<(u32, u32)>,
    called: bool,
    finished: bool,
}

impl ResponsesDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, response: Option<&EventResponse>, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            out.push(Event::Start {
                id: response.and_then(|r| r.id.clone()),
                model: response.and_then(|r| r.model.clone()),
            });
        }
    }

    fn index_of(&self, slot: Slot) -> Option<u32> {
        self.blocks
            .iter()
            .position(|s| *s == slot)
            .map(|i| i as u32)
    }

    /// Opens a block for `slot`, stopping the text-like block before it (so
    /// that a client shown one block at a time sees each as it streams).
    fn open(&mut self, slot: Slot, block: BlockStart, out: &mut Vec<Event>) -> u32 {
        let stopping: Vec<u32> = self
            .open
            .iter()
            .copied()
            .filter(|&i| self.blocks[i as usize].part != Part::Call)
            .collect();
        for index in stopping {
            self.stop(index, out);
        }
        self.blocks.push(slot);
        let index = (self.blocks.len() - 1) as u32;
        self.open.push(index);
        out.push(Event::BlockStart { index, block });
        index
    }

    fn stop(&mut self, index: u32, out: &mut Vec<Event>) {
        if let Some(p) = self.open.iter().position(|&i| i == index) {
            self.open.remove(p);
            out.push(Event::BlockStop { index });
        }
    }

    /// The open block of `slot`, opened with `block` if it is new.
    fn block(&mut self, slot: Slot, block: BlockStart, out: &mut Vec<Event>) -> u32 {
        match self.index_of(slot) {
            Some(i) if self.open.contains(&i) => i,
            _ => self.open(slot, block, out),
        }
    }

    /// The whole block, started and stopped at once.
    fn whole(
        &mut self,
        slot: Slot,
        block: BlockStart,
        deltas: Vec<BlockDelta>,
        out: &mut Vec<Event>,
    ) {
        let index = self.open(slot, block, out);
        out.extend(
            deltas
                .into_iter()
                .map(|delta| Event::BlockDelta { index, delta }),
        );
        self.stop(index, out);
    }

    /// An output item is complete: its blocks stop; a reasoning item's
    /// encrypted content, and what never streamed, come whole.
    fn item_done(&mut self, output: u32, item: &Value, out: &mut Vec<Event>) {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let mine: Vec<u32> = self
            .open
            .iter()
            .copied()
            .filter(|&i| self.blocks[i as usize].output == output)
            .collect();
        match kind {
            "function_call" => {
                let slot = Slot {
                    output,
                    part: Part::Call,
                };
                let streamed = self.index_of(slot);
                let arguments = item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match streamed {
                    Some(i) if !self.streamed_arguments.contains(&i) && !arguments.is_empty() => {
                        out.push(Event::BlockDelta {
                            index: i,
                            delta: BlockDelta::Arguments(arguments.to_owned()),
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.called = true;
                        let start = call_start(item);
                        self.whole(
                            slot,
                            start,
                            vec![BlockDelta::Arguments(arguments.to_owned())],
                            out,
                        );
                    }
                }
            }
            "reasoning" => {
                let slot = Slot {
                    output,
                    part: Part::Summary,
                };
                let summary = summary_text(item);
                if self.index_of(slot).is_none() && !summary.is_empty() {
                    self.whole(
                        slot,
                        BlockStart::Reasoning,
                        vec![BlockDelta::Reasoning(summary)],
                        out,
                    );
                }
                for i in &mine {
                    self.stop(*i, out);
                }
                if let Some(data) = item
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty())
                {
                    let slot = Slot {
                        output,
                        part: Part::Encrypted,
                    };
                    let start = BlockStart::EncryptedReasoning {
                        data: data.to_owned(),
                    };
                    self.whole(slot, start, Vec::new(), out);
                }
            }
            _ => {}
        }
        for i in mine {
            self.stop(i, out);
        }
    }

    fn finish(&mut self, r: &EventResponse, out: &mut Vec<Event>) {
        self.finished = true;
        for i in std::mem::take(&mut self.open) {
            out.push(Event::BlockStop { index: i });
        }
        if let Some(u) = &r.usage {
            out.push(Event::Usage(u.usage()));
        }
        out.push(Event::Finish {
            reason: finish_of(
                r.status.as_deref(),
                r.incomplete_details.as_ref(),
                self.called,
            ),
            stop_sequence: None,
        });
    }
}

fn call_start(item: &Value) -> BlockStart {
    let s = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    BlockStart::ToolCall {
        id: s("call_id"),
        name: s("name"),
    }
}

/// The `response` of a lifecycle event.
#[derive(Deserialize)]
struct EventResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    usage: Option<UpstreamUsage>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    #[serde(default)]
    error: Option<UpstreamError>,
}

/// One stream event; which fields are set depends on its `type`.
#[derive(Deserialize)]
struct StreamEvent {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    response: Option<EventResponse>,
    #[serde(default)]
    output_index: u32,
    #[serde(default)]
    content_index: u32,
    #[serde(default)]
    summary_index: u32,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    annotation: Option<Value>,
    // An `error` event's own fields.
    #[serde(default)]
    code: Option<Value>,
}

impl StreamDecoder for ResponsesDecoder {
    fn event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<Step, DecodeError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(if self.finished {
                Step::Done
            } else {
                Step::More
            });
        }
        let e: StreamEvent = serde_json::from_str(data).map_err(|e| {
            DecodeError::Malformed(format!("invalid stream event: {}", json_error(&e)))
        })?;
        let kind = e.kind.as_deref().unwrap_or(event);
        let output = e.output_index;
        match kind {
            "error" => {
                let err = UpstreamError {
                    code: e.code,
                    kind: None,
                };
                return Err(DecodeError::Reported(err.reason()));
            }
            "response.failed" => {
                let reason = e
                    .response
                    .as_ref()
                    .and_then(|r| r.error.as_ref())
                    .map_or_else(|| "error".into(), UpstreamError::reason);
                return Err(DecodeError::Reported(reason));
            }
            "response.created" | "response.in_progress" | "response.queued" => {
                self.start(e.response.as_ref(), out);
                return Ok(Step::More);
            }
            _ => self.start(None, out),
        }
        let delta = e.delta.filter(|d| !d.is_empty());
        match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                let Some(d) = delta else {
                    return Ok(Step::More);
                };
                let slot = Slot {
                    output,
                    part: Part::Content(e.content_index),
                };
                let (start, delta) = if kind == "response.output_text.delta" {
                    (BlockStart::Text, BlockDelta::Text(d))
                } else {
                    (BlockStart::Refusal, BlockDelta::Refusal(d))
                };
                let index = self.block(slot, start, out);
                out.push(Event::BlockDelta { index, delta });
            }
            "response.output_text.annotation.added" => {
                let slot = Slot {
                    output,
                    part: Part::Content(e.content_index),
                };
                if let (Some(a), Some(index)) = (e.annotation, self.index_of(slot)) {
                    out.push(Event::BlockDelta {
                        index,
                        delta: BlockDelta::Citation(a),
                    });
                }
            }
            "response.output_item.added" => {
                let item = e.item.unwrap_or_default();
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    self.called = true;
                    let slot = Slot {
                        output,
                        part: Part::Call,
                    };
                    self.open(slot, call_start(&item), out);
                }
            }
            "response.function_call_arguments.delta" => {
                let slot = Slot {
                    output,
                    part: Part::Call,
                };
                if let (Some(d), Some(index)) = (delta, self.index_of(slot)) {
                    if !self.streamed_arguments.contains(&index) {
                        self.streamed_arguments.push(index);
                    }
                    out.push(Event::BlockDelta {
                        index,
                        delta: BlockDelta::Arguments(d),
                    });
                }
            }
            "response.reasoning_summary_text.delta" => {
                let Some(d) = delta else {
                    return Ok(Step::More);
                };
                let slot = Slot {
                    output,
                    part: Part::Summary,
                };
                let index = self.block(slot, BlockStart::Reasoning, out);
                // Summary parts are joined by blank lines, as a whole item's are.
                let part = self.summary_parts.iter_mut().find(|(i, _)| *i == index);
                let d = match part {
                    Some((_, at)) if *at != e.summary_index => {
                        *at = e.summary_index;
                        format!("\n\n{d}")
                    }
                    Some(_) => d,
                    None => {
                        self.summary_parts.push((index, e.summary_index));
                        d
                    }
                };
                out.push(Event::BlockDelta {
                    index,
                    delta: BlockDelta::Reasoning(d),
                });
            }
            "response.output_item.done" => {
                if let Some(item) = e.item {
                    self.item_done(output, &item, out);
                }
            }
            "response.completed" | "response.incomplete" => {
                let Some(r) = e.response else {
                    return Err(DecodeError::Malformed(format!(
                        "{kind} without its response"
                    )));
                };
                self.finish(&r, out);
                return Ok(Step::Done);
            }
            _ => {}
        }
        Ok(Step::More)
    }

    fn end(&mut self, _out: &mut Vec<Event>) -> Result<(), DecodeError> {
        if self.finished {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "the stream ended before the response completed".into(),
            ))
        }
    }
}
