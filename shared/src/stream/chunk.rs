//! OpenAI `chat.completion.chunk` events as SSE bytes (`data: {...}\n\n`),
//! field order as OpenAI sends them.

use bytes::Bytes;
use serde::Serialize;

use crate::ApiError;
use crate::wire::{FinishReason, Usage};

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

#[derive(Default, Serialize)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
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

impl ChunkMeta {
    fn event(&self, choices: &[ChunkChoice<'_>], usage: Option<&Usage>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage: self.include_usage.then_some(usage),
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

    /// The first chunk: the assistant role and empty content.
    pub fn role(&self) -> Bytes {
        self.choice(
            DeltaOut {
                role: Some("assistant"),
                content: Some(""),
                tool_calls: None,
            },
            None,
        )
    }

    /// A content chunk.
    pub fn text(&self, text: &str) -> Bytes {
        self.choice(
            DeltaOut {
                content: Some(text),
                ..DeltaOut::default()
            },
            None,
        )
    }

    /// The first chunk of a tool call: id, type, name and empty arguments.
    pub fn tool_call(&self, index: u32, id: &str, name: &str) -> Bytes {
        self.tool_chunk(ToolCallOut {
            index,
            id: Some(id),
            kind: Some("function"),
            function: FunctionOut {
                name: Some(name),
                arguments: "",
            },
        })
    }

    /// A fragment of a tool call's arguments.
    pub fn tool_arguments(&self, index: u32, fragment: &str) -> Bytes {
        self.tool_chunk(ToolCallOut {
            index,
            id: None,
            kind: None,
            function: FunctionOut {
                name: None,
                arguments: fragment,
            },
        })
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

    /// The chunk carrying the finish reason, with an empty delta.
    pub fn finish(&self, reason: FinishReason) -> Bytes {
        self.choice(DeltaOut::default(), Some(reason))
    }

    /// The usage chunk (no choices); `None` unless the client asked for it.
    pub fn usage(&self, usage: &Usage) -> Option<Bytes> {
        self.include_usage.then(|| self.event(&[], Some(usage)))
    }
}

/// An OpenAI-style error event, ending a stream that cannot complete.
pub fn error_event(e: &ApiError) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(&e.body());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
