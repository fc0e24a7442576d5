//! A streamed answer as provider-neutral events. Blocks are numbered by
//! their position in the answer's content; a non-streamed answer is the same
//! events assembled ([`super::Assembler`]).

use serde_json::Value;

use super::{FinishReason, Opaque, Usage};

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The answer begins: the provider's id and model, where it sent them.
    Start {
        /// The provider's id for the answer.
        id: Option<String>,
        /// The upstream model, as the provider named it.
        model: Option<String>,
    },
    /// A content block opens.
    BlockStart {
        /// Its position in the answer's content.
        index: u32,
        /// What kind of block.
        block: BlockStart,
    },
    /// More of an open block.
    BlockDelta {
        /// The block's position.
        index: u32,
        /// What to append.
        delta: BlockDelta,
    },
    /// A block is complete.
    BlockStop {
        /// The block's position.
        index: u32,
    },
    /// Why generation stopped.
    Finish {
        /// The reason.
        reason: FinishReason,
        /// The stop sequence that matched, if one did.
        stop_sequence: Option<String>,
    },
    /// Usage of the whole answer so far (each report replaces the last).
    Usage(Usage),
}

/// The kind of a block that opens.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockStart {
    /// Text.
    Text,
    /// A tool call; its arguments follow as [`BlockDelta::Arguments`].
    ToolCall {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
    /// Visible reasoning; text and then a signature follow.
    Reasoning,
    /// Encrypted reasoning, whole.
    EncryptedReasoning {
        /// The encrypted content.
        data: String,
    },
    /// A refusal; its text follows.
    Refusal,
    /// A block of one wire format with no model type, whole.
    Opaque(Opaque),
}

/// A piece of an open block.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockDelta {
    /// Text (of a text block).
    Text(String),
    /// A fragment of a tool call's JSON arguments.
    Arguments(String),
    /// Reasoning text.
    Reasoning(String),
    /// The reasoning block's signature.
    Signature(String),
    /// Refusal text.
    Refusal(String),
    /// A citation attached to a text block (kept as sent).
    Citation(Value),
}
