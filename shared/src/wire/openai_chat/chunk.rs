//! Model [`Event`]s to OpenAI `chat.completion.chunk` SSE events
//! (`data: {...}\n\n`), field order as OpenAI sends them. Text arrives here
//! already redacted: redaction belongs to the turn, not the format.

use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::response::encode_usage;
use super::types::{FinishReason, Usage};
use crate::model::{self, BlockDelta, BlockStart, Event};

/// The SSE comment sent during long upstream silences, so that proxies and
/// clients do not time the connection out.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
/// The last event of a successful stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// What every chunk of one answer repeats; injected so tests are deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMeta {
    /// `chatcmpl-...`, the same in every chunk.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The model as reported to the client (`provider/model`).
    pub model: String,
    /// Whether the client asked for a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// What an open block is, as far as the chunks it becomes are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Refusal,
    Reasoning,
    /// A tool call, by its position among the answer's tool calls.
    Call(u32),
    /// Nothing OpenAI Chat can carry (encrypted reasoning, opaque blocks).
    Silent,
}

/// Encoder state for one streamed answer to an OpenAI Chat client.
#[derive(Debug)]
pub struct ChunkEncoder {
    meta: ChunkMeta,
    reasoning_field: Option<&'static str>,
    /// Kinds of the blocks seen, by block index.
    blocks: Vec<(u32, Kind)>,
    calls: u32,
    finish_sent: bool,
    usage: model::Usage,
}

impl ChunkEncoder {
    /// An encoder whose chunks repeat `meta`; reasoning is not sent.
    pub fn new(meta: ChunkMeta) -> Self {
        Self {
            meta,
            reasoning_field: None,
            blocks: Vec::new(),
            calls: 0,
            finish_sent: false,
            usage: model::Usage::default(),
        }
    }

    /// Sends reasoning text as `delta.<field>` (as DeepSeek's
    /// `reasoning_content`); OpenAI Chat itself has no such field, so `None`
    /// (the default) drops it.
    pub fn with_reasoning_field(mut self, field: Option<&'static str>) -> Self {
        self.reasoning_field = field;
        self
    }

    /// The first chunk: the assistant role and empty content.
    pub fn start(&self) -> Bytes {
        self.choice(
            DeltaOut {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaOut::default()
            },
            None,
        )
    }

    /// Takes one event, appending the chunks to send now to `out`.
    pub fn push(&mut self, event: &Event, out: &mut Vec<Bytes>) {
        match event {
            Event::Start { .. } | Event::BlockStop { .. } => {}
            Event::BlockStart { index, block } => match block {
                BlockStart::ToolCall { id, name } => {
                    let n = self.call(*index);
                    out.push(self.tool_chunk(ToolCallOut {
                        index: n,
                        id: Some(id),
                        kind: Some("function"),
                        function: FunctionOut {
                            name: Some(name),
                            arguments: "",
                        },
                    }));
                }
                BlockStart::Text => self.set(*index, Kind::Text),
                BlockStart::Refusal => self.set(*index, Kind::Refusal),
                BlockStart::Reasoning => self.set(*index, Kind::Reasoning),
                BlockStart::EncryptedReasoning { .. } | BlockStart::Opaque(_) => {
                    self.set(*index, Kind::Silent)
                }
            },
            Event::BlockDelta { index, delta } => self.delta(*index, delta, out),
            Event::Finish { reason, .. } => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    out.push(self.finish(finish_reason(*reason)));
                }
            }
            Event::Usage(u) => self.usage = *u,
        }
    }

    fn delta(&mut self, index: u32, delta: &BlockDelta, out: &mut Vec<Bytes>) {
        let kind = self.kind(index);
        let chunk = match delta {
            BlockDelta::Text(t) | BlockDelta::Refusal(t) if t.is_empty() => return,
            // Text of a refusal block is refusal text (as the assembler reads it).
            BlockDelta::Text(t) if kind != Some(Kind::Refusal) => DeltaOut {
                content: Some(t),
                ..DeltaOut::default()
            },
            BlockDelta::Text(t) | BlockDelta::Refusal(t) => DeltaOut {
                refusal: Some(t),
                ..DeltaOut::default()
            },
            BlockDelta::Reasoning(t) => match self.reasoning_field {
                Some(field) if !t.is_empty() => DeltaOut {
                    reasoning: Some((field, t)),
                    ..DeltaOut::default()
                },
                _ => return,
            },
            BlockDelta::Arguments(fragment) => {
                // A server tool's input (an opaque block) is no call of the client's.
                if fragment.is_empty() || kind == Some(Kind::Silent) {
                    return;
                }
                // Arguments before their call's start: the call is numbered now.
                let n = self.call(index);
                out.push(self.tool_chunk(ToolCallOut {
                    index: n,
                    id: None,
                    kind: None,
                    function: FunctionOut {
                        name: None,
                        arguments: fragment,
                    },
                }));
                return;
            }
            BlockDelta::Signature(_) | BlockDelta::Citation(_) => return,
        };
        out.push(self.choice(chunk, None));
    }

    /// The upstream completed: appends the finish chunk if none went out
    /// and the usage chunk if the client asked for it (not `[DONE]`, which
    /// goes out once the turn is stored).
    pub fn end(&mut self, out: &mut Vec<Bytes>) {
        if !self.finish_sent {
            self.finish_sent = true;
            out.push(self.finish(FinishReason::Stop));
        }
        if self.meta.include_usage {
            let u = encode_usage(&self.usage);
            out.push(self.event(&[], Some(&u)));
        }
    }

    fn kind(&self, index: u32) -> Option<Kind> {
        self.blocks
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, k)| *k)
    }

    fn set(&mut self, index: u32, kind: Kind) {
        match self.blocks.iter_mut().find(|(i, _)| *i == index) {
            Some(b) => b.1 = kind,
            None => self.blocks.push((index, kind)),
        }
    }

    /// The position among tool calls of the call in block `index`.
    fn call(&mut self, index: u32) -> u32 {
        if let Some(Kind::Call(n)) = self.kind(index) {
            return n;
        }
        let n = self.calls;
        self.calls += 1;
        self.set(index, Kind::Call(n));
        n
    }

    fn event(&self, choices: &[ChunkChoice<'_>], usage: Option<&Usage>) -> Bytes {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices,
            usage: self.meta.include_usage.then_some(usage),
        };
        let mut out = b"data: ".to_vec();
        // Serialising these plain structs cannot fail.
        serde_json::to_writer(&mut out, &chunk).unwrap_or_default();
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    fn choice(&self, delta: DeltaOut<'_>, finish: Option<FinishReason>) -> Bytes {
        self.event(
            &[ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            None,
        )
    }

    fn tool_chunk(&self, call: ToolCallOut<'_>) -> Bytes {
        self.choice(
            DeltaOut {
                tool_calls: Some([call]),
                ..DeltaOut::default()
            },
            None,
        )
    }

    fn finish(&self, reason: FinishReason) -> Bytes {
        self.choice(DeltaOut::default(), Some(reason))
    }
}

/// The OpenAI name of a model finish reason.
fn finish_reason(reason: model::FinishReason) -> FinishReason {
    use model::FinishReason as M;
    match reason {
        M::Stop | M::StopSequence | M::Pause => FinishReason::Stop,
        M::Length | M::ContextWindow => FinishReason::Length,
        M::ToolCalls => FinishReason::ToolCalls,
        M::ContentFilter => FinishReason::ContentFilter,
    }
}

/// An OpenAI-style error event carrying a rendered error body, ending a
/// stream that cannot complete.
pub fn error_event(body: &[u8]) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// OpenAI sends `"usage": null` in every chunk but the last when usage was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<FinishReason>,
}

/// A chunk's `delta`; only the fields set are written.
#[derive(Default)]
struct DeltaOut<'a> {
    role: Option<&'static str>,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    /// Reasoning text under the configured field name.
    reasoning: Option<(&'static str, &'a str)>,
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

// Written by hand: the reasoning field's name is chosen at run time.
impl Serialize for DeltaOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(r) = self.role {
            m.serialize_entry("role", r)?;
        }
        if let Some(c) = self.content {
            m.serialize_entry("content", c)?;
        }
        if let Some(r) = self.refusal {
            m.serialize_entry("refusal", r)?;
        }
        if let Some((field, text)) = self.reasoning {
            m.serialize_entry(field, text)?;
        }
        if let Some(t) = &self.tool_calls {
            m.serialize_entry("tool_calls", t)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn encoder(include_usage: bool) -> ChunkEncoder {
        ChunkEncoder::new(ChunkMeta {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "p/m".into(),
            include_usage,
        })
    }

    fn json_of(out: &[Bytes]) -> Vec<Value> {
        out.iter()
            .map(|b| {
                let s = std::str::from_utf8(b).unwrap();
                let s = s
                    .strip_prefix("data: ")
                    .unwrap()
                    .strip_suffix("\n\n")
                    .unwrap();
                serde_json::from_str(s).unwrap()
            })
            .collect()
    }

    fn start(index: u32, block: BlockStart) -> Event {
        Event::BlockStart { index, block }
    }

    fn delta(index: u32, delta: BlockDelta) -> Event {
        Event::BlockDelta { index, delta }
    }

    // Issue 13, point 2: tool calls carry their position among tool calls,
    // not their block index, as OpenAI's `index`.
    #[test]
    fn tool_calls_are_numbered_among_tool_calls() {
        let mut e = encoder(false);
        let mut out = Vec::new();
        for ev in [
            start(0, BlockStart::Text),
            delta(0, BlockDelta::Text("hi".into())),
            start(
                1,
                BlockStart::ToolCall {
                    id: "a".into(),
                    name: "f".into(),
                },
            ),
            delta(1, BlockDelta::Arguments("{}".into())),
            start(
                2,
                BlockStart::ToolCall {
                    id: "b".into(),
                    name: "g".into(),
                },
            ),
            delta(1, BlockDelta::Arguments(String::new())),
        ] {
            e.push(&ev, &mut out);
        }
        let calls: Vec<Value> = json_of(&out)
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls").cloned())
            .collect();
        assert_eq!(
            calls,
            [
                json!([{"index": 0, "id": "a", "type": "function",
                    "function": {"name": "f", "arguments": ""}}]),
                json!([{"index": 0, "function": {"arguments": "{}"}}]),
                json!([{"index": 1, "id": "b", "type": "function",
                    "function": {"name": "g", "arguments": ""}}]),
            ]
        );
    }

    // Issue 13, point 2: model finish reasons map to OpenAI's, and the
    // finish chunk goes out once.
    #[test]
    fn finish_reasons_map_and_go_out_once() {
        use model::FinishReason as M;
        for (reason, name) in [
            (M::Stop, "stop"),
            (M::StopSequence, "stop"),
            (M::Pause, "stop"),
            (M::Length, "length"),
            (M::ContextWindow, "length"),
            (M::ToolCalls, "tool_calls"),
            (M::ContentFilter, "content_filter"),
        ] {
            let mut e = encoder(false);
            let mut out = Vec::new();
            let finish = Event::Finish {
                reason,
                stop_sequence: None,
            };
            e.push(&finish, &mut out);
            e.push(&finish, &mut out);
            e.end(&mut out);
            let chunks = json_of(&out);
            assert_eq!(chunks.len(), 1, "{name}");
            assert_eq!(chunks[0]["choices"][0]["finish_reason"], name);
        }
    }

    // Issue 13, point 2: reasoning has no OpenAI Chat field and is dropped
    // unless a field is configured; signatures and encrypted reasoning never go out.
    #[test]
    fn reasoning_goes_out_only_under_a_configured_field() {
        let events = [
            start(0, BlockStart::Reasoning),
            delta(0, BlockDelta::Reasoning("hmm".into())),
            delta(0, BlockDelta::Signature("sig".into())),
            start(1, BlockStart::EncryptedReasoning { data: "x".into() }),
        ];
        let mut e = encoder(false);
        let mut out = Vec::new();
        events.iter().for_each(|ev| e.push(ev, &mut out));
        assert!(out.is_empty());
        let mut e = encoder(false).with_reasoning_field(Some("reasoning_content"));
        events.iter().for_each(|ev| e.push(ev, &mut out));
        assert_eq!(
            json_of(&out)[0]["choices"][0]["delta"],
            json!({"reasoning_content": "hmm"})
        );
    }

    // Issue 13, point 2: the end writes a stop chunk when no finish came and
    // the usage chunk, with details only where counted, when asked for
    // (issue 14: cache writes as `cache_creation_input_tokens`).
    #[test]
    fn the_end_closes_the_answer_and_reports_usage() {
        let mut e = encoder(true);
        let mut out = Vec::new();
        e.push(
            &Event::Usage(model::Usage {
                input: 10,
                output: 5,
                cache_read: 3,
                cache_write: 2,
                cache_write_1h: 0,
                reasoning: 0,
            }),
            &mut out,
        );
        e.end(&mut out);
        let chunks = json_of(&out);
        assert_eq!(chunks[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[0]["usage"], Value::Null);
        assert_eq!(chunks[1]["choices"], json!([]));
        assert_eq!(
            chunks[1]["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": 3},
                "cache_creation_input_tokens": 2})
        );
        let mut out = Vec::new();
        encoder(false).end(&mut out);
        assert_eq!(out.len(), 1);
        assert!(json_of(&out)[0].get("usage").is_none());
    }

    // Issue 13, point 2: an error event is the rendered body after `data: `.
    #[test]
    fn error_events_wrap_the_body() {
        assert_eq!(
            &error_event(b"{\"error\":{}}")[..],
            b"data: {\"error\":{}}\n\n"
        );
    }
}
