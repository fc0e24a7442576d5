//! Model events -> the Responses event stream ([`EventEncoder`]).
//!
//! Every event is `event: <type>\ndata: <json>\n\n`, its data carrying the
//! same `type` and a `sequence_number` counting from 0. Output items are
//! numbered (`output_index`) in the order they start and named as
//! [`super::encode_items`] names the stored answer's items: a run of text
//! and refusal blocks is one `message` item (one content part per block),
//! each tool call and reasoning block an item of its own. Blocks of another
//! format have no item and are left out.
//!
//! A model stream may interleave blocks (an OpenAI upstream streams parallel
//! tool calls by index and stops every block only at its finish); the
//! Responses stream allows that, since every delta names its item by
//! `output_index` and `item_id`, so blocks go out as they come and an item is
//! done when its last block stops.

use std::cell::Cell;

use serde::Serialize;
use serde_json::{Value, json};

use super::items::{ItemIds, reasoning_item};
use super::response::ResponseHead;
use super::types::{
    ContentPart, FunctionCallItem, Item, ItemRole, ItemStatus, MessageItem, ResponseObject, Status,
    SummaryPart,
};
use crate::model::{BlockDelta, BlockStart, Event, FinishReason, Usage};

/// Encoder state for one Responses stream: model events in, SSE bytes out.
///
/// [`EventEncoder::start`] sends `response.created` and
/// `response.in_progress`; [`EventEncoder::push`] the items' events;
/// [`EventEncoder::finish`] closes what is open; then, once the turn is
/// stored, [`EventEncoder::completed`] (or [`EventEncoder::failed`]) ends
/// the stream. No `[DONE]`.
#[derive(Debug)]
pub struct EventEncoder {
    head: ResponseHead,
    ids: ItemIds,
    /// The next `sequence_number` (a cell: the closing events are written
    /// through `&self`, once the turn is stored).
    seq: Cell<u64>,
    /// The output items, by `output_index`.
    items: Vec<Building>,
    /// The message item new text blocks join, while the run lasts.
    run: Option<usize>,
    /// Model block index -> where it goes.
    slots: Vec<(u32, Slot)>,
    finish: Option<FinishReason>,
    started: bool,
}

/// An output item being built.
#[derive(Debug)]
struct Building {
    item: Item,
    /// Blocks of the item not yet stopped.
    open: usize,
    /// Whether `response.output_item.done` went out.
    done: bool,
    /// Reasoning: the summary text and signature so far, and whether the
    /// summary part was announced.
    reasoning: Option<Reasoning>,
}

#[derive(Debug, Default)]
struct Reasoning {
    text: String,
    signature: Option<String>,
    encrypted: Option<String>,
    part_open: bool,
}

/// Where a model block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Content part `part` of message item `item`.
    Part { item: usize, part: usize },
    /// Function call item `item`.
    Call(usize),
    /// Reasoning item `item`.
    Reasoning(usize),
    /// A block with no item.
    Ignored,
    /// A block already stopped.
    Closed,
}

impl EventEncoder {
    /// An encoder for the response `head`, naming its items with `ids`.
    pub fn new(head: ResponseHead, ids: ItemIds) -> Self {
        Self {
            head,
            ids,
            seq: Cell::new(0),
            items: Vec::new(),
            run: None,
            slots: Vec::new(),
            finish: None,
            started: false,
        }
    }

    /// Sends `response.created` and `response.in_progress` (once).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.head.object(Status::InProgress, Vec::new());
        self.send(out, "response.created", json!({"response": r}));
        self.send(out, "response.in_progress", json!({"response": r}));
    }

    /// Encodes one model event, appending SSE bytes to `out`.
    pub fn push(&mut self, event: &Event, out: &mut Vec<u8>) {
        self.start(out);
        match event {
            Event::Start { .. } | Event::Usage(_) => {}
            Event::Finish { reason, .. } => self.finish = Some(*reason),
            Event::BlockStart { index, block } => self.block_start(*index, block, out),
            Event::BlockDelta { index, delta } => self.block_delta(*index, delta, out),
            Event::BlockStop { index } => self.block_stop(*index, out),
        }
    }

    /// Stops every open block, in order, and ends the text run.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let open: Vec<u32> = self
            .slots
            .iter()
            .filter(|(_, s)| !matches!(s, Slot::Closed))
            .map(|(i, _)| *i)
            .collect();
        for index in open {
            self.block_stop(index, out);
        }
        self.end_run(out);
    }

    /// The output items as sent (complete once [`EventEncoder::finish`] ran).
    pub fn output(&self) -> Vec<Item> {
        self.items.iter().map(|b| b.item.clone()).collect()
    }

    /// The finish reason seen, if any.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// The finished response object (status by the finish reason seen) with `usage`.
    pub fn response(&self, usage: &Usage) -> ResponseObject {
        self.head.finished(
            self.finish.unwrap_or(FinishReason::Stop),
            self.output(),
            usage,
        )
    }

    /// `response.completed`, or `response.incomplete` when the finish reason
    /// says so, carrying the whole response with `usage`.
    pub fn completed(&self, usage: Usage, out: &mut Vec<u8>) {
        let r = self.response(&usage);
        let kind = if r.status == Status::Incomplete {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.send(out, kind, json!({"response": r}));
    }

    /// An `error` event of `code` (`server_error`, `rate_limit_exceeded`...),
    /// then `response.failed` with the output so far.
    pub fn failed(&self, code: &str, message: &str, out: &mut Vec<u8>) {
        self.send(
            out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let r = self.head.failed(code, message, self.output());
        self.send(out, "response.failed", json!({"response": r}));
    }

    /// The keep-alive a silence sends: an SSE comment, which clients skip.
    pub fn keep_alive() -> &'static [u8] {
        b": keep-alive\n\n"
    }

    // ------------------------------------------------------------ blocks

    fn slot(&self, index: u32) -> Option<Slot> {
        self.slots
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, s)| *s)
    }

    fn set_slot(&mut self, index: u32, slot: Slot) {
        match self.slots.iter_mut().find(|(i, _)| *i == index) {
            Some(s) => s.1 = slot,
            None => self.slots.push((index, slot)),
        }
    }

    fn block_start(&mut self, index: u32, block: &BlockStart, out: &mut Vec<u8>) {
        if self.slot(index).is_some() {
            return;
        }
        let slot = match block {
            BlockStart::Text => self.start_part(
                ContentPart::OutputText {
                    text: String::new(),
                    annotations: Vec::new(),
                },
                out,
            ),
            BlockStart::Refusal => self.start_part(
                ContentPart::Refusal {
                    refusal: String::new(),
                },
                out,
            ),
            BlockStart::ToolCall { id, name } => {
                self.end_run(out);
                let n = self.items.len();
                let item = Item::FunctionCall(FunctionCallItem {
                    id: self.ids.id("fc", n),
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    status: ItemStatus::InProgress,
                });
                self.add_item(item, None, out);
                Slot::Call(n)
            }
            BlockStart::Reasoning | BlockStart::EncryptedReasoning { .. } => {
                self.end_run(out);
                let n = self.items.len();
                let encrypted = match block {
                    BlockStart::EncryptedReasoning { data } => Some(data.clone()),
                    _ => None,
                };
                let mut item = reasoning_item(self.ids.id("rs", n), "", None, None);
                item.status = Some(ItemStatus::InProgress);
                let state = Reasoning {
                    encrypted,
                    ..Reasoning::default()
                };
                self.add_item(Item::Reasoning(item), Some(state), out);
                Slot::Reasoning(n)
            }
            BlockStart::Opaque(_) => Slot::Ignored,
        };
        self.set_slot(index, slot);
    }

    /// Adds `part` to the run's message item (opening one if none runs).
    fn start_part(&mut self, part: ContentPart, out: &mut Vec<u8>) -> Slot {
        let item = match self.run {
            Some(i) => i,
            None => {
                let n = self.items.len();
                let msg = Item::Message(MessageItem {
                    id: self.ids.id("msg", n),
                    role: ItemRole::Assistant,
                    content: Vec::new(),
                    status: ItemStatus::InProgress,
                });
                self.add_item(msg, None, out);
                self.run = Some(n);
                n
            }
        };
        let b = &mut self.items[item];
        b.open += 1;
        let Item::Message(m) = &mut b.item else {
            unreachable!("a run is a message item")
        };
        let part_index = m.content.len();
        m.content.push(part.clone());
        let item_id = m.id.clone();
        self.send(
            out,
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": item, "content_index": part_index, "part": part}),
        );
        Slot::Part {
            item,
            part: part_index,
        }
    }

    fn add_item(&mut self, item: Item, reasoning: Option<Reasoning>, out: &mut Vec<u8>) {
        let n = self.items.len();
        self.send(
            out,
            "response.output_item.added",
            json!({"output_index": n, "item": item}),
        );
        self.items.push(Building {
            item,
            open: 1,
            done: false,
            reasoning,
        });
        // A message item counts its parts, not itself.
        if let Item::Message(_) = self.items[n].item {
            self.items[n].open = 0;
        }
    }

    fn block_delta(&mut self, index: u32, delta: &BlockDelta, out: &mut Vec<u8>) {
        let slot = match self.slot(index) {
            Some(s) => s,
            None => {
                // A delta for a block that never opened opens it (lenient
                // providers), as the assembler reads it.
                let start = match delta {
                    BlockDelta::Arguments(_) => BlockStart::ToolCall {
                        id: String::new(),
                        name: String::new(),
                    },
                    BlockDelta::Reasoning(_) | BlockDelta::Signature(_) => BlockStart::Reasoning,
                    BlockDelta::Refusal(_) => BlockStart::Refusal,
                    BlockDelta::Text(_) | BlockDelta::Citation(_) => BlockStart::Text,
                };
                self.block_start(index, &start, out);
                match self.slot(index) {
                    Some(s) => s,
                    None => return,
                }
            }
        };
        match (slot, delta) {
            (Slot::Part { item, part }, BlockDelta::Text(t) | BlockDelta::Refusal(t)) => {
                let Item::Message(m) = &mut self.items[item].item else {
                    return;
                };
                let kind = match &mut m.content[part] {
                    ContentPart::OutputText { text, .. } => {
                        text.push_str(t);
                        "response.output_text.delta"
                    }
                    ContentPart::Refusal { refusal } => {
                        refusal.push_str(t);
                        "response.refusal.delta"
                    }
                    _ => return,
                };
                let item_id = m.id.clone();
                let mut data = json!({"item_id": item_id, "output_index": item, "content_index": part, "delta": t});
                if kind == "response.output_text.delta" {
                    data["logprobs"] = json!([]);
                }
                self.send(out, kind, data);
            }
            (Slot::Part { item, part }, BlockDelta::Citation(c)) => {
                let Item::Message(m) = &mut self.items[item].item else {
                    return;
                };
                let ContentPart::OutputText { annotations, .. } = &mut m.content[part] else {
                    return;
                };
                annotations.push(c.clone());
                let annotation_index = annotations.len() - 1;
                let item_id = m.id.clone();
                self.send(
                    out,
                    "response.output_text.annotation.added",
                    json!({"item_id": item_id, "output_index": item, "content_index": part,
                           "annotation_index": annotation_index, "annotation": c}),
                );
            }
            (Slot::Call(item), BlockDelta::Arguments(a)) => {
                let Item::FunctionCall(c) = &mut self.items[item].item else {
                    return;
                };
                c.arguments.push_str(a);
                let item_id = c.id.clone();
                self.send(
                    out,
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": item, "delta": a}),
                );
            }
            (Slot::Reasoning(item), BlockDelta::Reasoning(t)) => {
                let id = self.items[item].item.id().to_owned();
                let Some(r) = self.items[item].reasoning.as_mut() else {
                    return;
                };
                let announce = !r.part_open;
                r.part_open = true;
                r.text.push_str(t);
                if announce {
                    self.send(
                        out,
                        "response.reasoning_summary_part.added",
                        json!({"item_id": id, "output_index": item, "summary_index": 0,
                               "part": {"type": "summary_text", "text": ""}}),
                    );
                }
                self.send(
                    out,
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": item, "summary_index": 0, "delta": t}),
                );
            }
            (Slot::Reasoning(item), BlockDelta::Signature(s)) => {
                if let Some(r) = self.items[item].reasoning.as_mut() {
                    r.signature.get_or_insert_with(String::new).push_str(s);
                }
            }
            // A delta that does not fit its block (or a closed block) is dropped.
            _ => {}
        }
    }

    fn block_stop(&mut self, index: u32, out: &mut Vec<u8>) {
        let Some(slot) = self.slot(index) else {
            return;
        };
        self.set_slot(index, Slot::Closed);
        match slot {
            Slot::Part { item, part } => {
                let Item::Message(m) = &self.items[item].item else {
                    return;
                };
                let item_id = m.id.clone();
                let p = m.content[part].clone();
                let (kind, mut data) = match &p {
                    ContentPart::OutputText { text, .. } => (
                        "response.output_text.done",
                        json!({"text": text, "logprobs": []}),
                    ),
                    ContentPart::Refusal { refusal } => {
                        ("response.refusal.done", json!({"refusal": refusal}))
                    }
                    _ => return,
                };
                data["item_id"] = json!(item_id);
                data["output_index"] = json!(item);
                data["content_index"] = json!(part);
                self.send(out, kind, data);
                self.send(
                    out,
                    "response.content_part.done",
                    json!({"item_id": item_id, "output_index": item, "content_index": part, "part": p}),
                );
                self.items[item].open -= 1;
                if self.run != Some(item) {
                    self.item_done(item, out);
                }
            }
            Slot::Call(item) => {
                let Item::FunctionCall(c) = &self.items[item].item else {
                    return;
                };
                let data = json!({"item_id": c.id, "output_index": item, "name": c.name, "arguments": c.arguments});
                self.send(out, "response.function_call_arguments.done", data);
                self.items[item].open = 0;
                self.item_done(item, out);
            }
            Slot::Reasoning(item) => {
                let id = self.items[item].item.id().to_owned();
                let Some(r) = self.items[item].reasoning.take() else {
                    return;
                };
                if r.part_open {
                    self.send(
                        out,
                        "response.reasoning_summary_text.done",
                        json!({"item_id": id, "output_index": item, "summary_index": 0, "text": r.text}),
                    );
                    self.send(
                        out,
                        "response.reasoning_summary_part.done",
                        json!({"item_id": id, "output_index": item, "summary_index": 0,
                               "part": SummaryPart::SummaryText { text: r.text.clone() }}),
                    );
                }
                self.items[item].item = Item::Reasoning(reasoning_item(
                    id,
                    &r.text,
                    r.signature.as_deref(),
                    r.encrypted.as_deref(),
                ));
                self.items[item].open = 0;
                self.item_done(item, out);
            }
            Slot::Ignored | Slot::Closed => {}
        }
    }

    /// Ends the text run: its message item is done once its parts are.
    fn end_run(&mut self, out: &mut Vec<u8>) {
        if let Some(item) = self.run.take()
            && self.items[item].open == 0
        {
            self.item_done(item, out);
        }
    }

    /// Sends `response.output_item.done` for item `n` (once), as completed.
    fn item_done(&mut self, n: usize, out: &mut Vec<u8>) {
        let b = &mut self.items[n];
        if b.done || b.open > 0 {
            return;
        }
        b.done = true;
        match &mut b.item {
            Item::Message(m) => m.status = ItemStatus::Completed,
            Item::FunctionCall(c) => c.status = ItemStatus::Completed,
            Item::FunctionCallOutput(o) => o.status = ItemStatus::Completed,
            Item::Reasoning(r) => r.status = Some(ItemStatus::Completed),
        }
        let item = b.item.clone();
        self.send(
            out,
            "response.output_item.done",
            json!({"output_index": n, "item": item}),
        );
    }

    /// Writes one event: its data gets `type` and the next `sequence_number`.
    fn send(&self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), json!(kind));
            o.insert("sequence_number".into(), json!(seq));
        }
        sse(out, kind, &data);
    }
}

fn sse(out: &mut Vec<u8>, event: &str, data: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(
        serde_json::to_string(data)
            .unwrap_or_else(|_| "{}".into())
            .as_bytes(),
    );
    out.extend_from_slice(b"\n\n");
}
