//! Streaming: every provider's event stream is translated into one sequence
//! of [`Delta`]s, which a [`Session`](session::Session) turns into OpenAI
//! `chat.completion.chunk` SSE events (redacting text on the way) while
//! assembling the complete answer for storage.

pub mod anthropic;
pub mod assemble;
pub mod chunk;
pub mod keep_alive;
pub mod openai;
pub mod redact;
pub mod session;
pub mod sse;

use std::pin::Pin;

use futures_util::Stream;

use crate::provider::ProviderError;
use crate::wire::{FinishReason, Usage};

/// One normalised piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// Assistant text.
    Text(String),
    /// A tool call begins.
    ToolCall {
        /// Position among the answer's tool calls (not content blocks).
        index: u32,
        /// Call id.
        id: String,
        /// Function name.
        name: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolArguments {
        /// The call's position, as in [`Delta::ToolCall`].
        index: u32,
        /// The fragment, to be appended.
        fragment: String,
    },
    /// Why generation stopped.
    Finish(FinishReason),
    /// Token usage of the whole answer.
    Usage(Usage),
}

/// A provider's answer as it arrives; an error ends it.
pub type DeltaStream = Pin<Box<dyn Stream<Item = Result<Delta, ProviderError>> + Send>>;
