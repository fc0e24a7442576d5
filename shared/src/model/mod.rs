//! The provider-neutral model: what a turn is made of, whatever wire format
//! it came in on or goes out in. Front doors decode into it, providers encode
//! from it, the turn pipeline and the store speak only it.
//!
//! It holds everything OpenAI Chat Completions and Anthropic Messages carry:
//! content blocks (text, images, documents, audio, tool calls and results,
//! reasoning with its signature, refusals), per-block cache hints, tools,
//! generation parameters, usage and finish reasons, and a stream of events.
//! What one format has and the model has no field for travels in an
//! [`Opaque`] block or the request's [`Extensions`], tagged with its format,
//! so that a round trip through the same format loses nothing.

mod assemble;
mod event;
mod message;
mod request;
mod response;

pub use assemble::{Assembler, events_of};
pub use event::{BlockDelta, BlockStart, Event};
pub use message::{
    Block, CacheHint, CacheTtl, Document, Image, MediaSource, Message, Opaque, Role, ToolCall,
    ToolResult, ToolResultPart,
};
pub use request::{
    Breakpoint, Extensions, Reasoning, Request, ResponseFormat, StablePrefix, Tool, ToolChoice,
    WireFormat,
};
pub use response::{FinishReason, Response, Usage};
