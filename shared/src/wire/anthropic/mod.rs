//! Anthropic Messages: the codec between its requests, answers and stream
//! events and the model. The Anthropic provider encodes upstream requests and
//! decodes answers with it (its stream translator, `provider/anthropic/
//! stream.rs`, shares the answer's block and usage mapping); the Anthropic
//! front door will decode client requests and encode answers and streams
//! ([`EventEncoder`]) with it.
//!
//! A request decoded here is marked as Anthropic's (`extensions.format`), and
//! encoding it back loses nothing; a request from another front door is
//! translated as the Anthropic provider always has (instructions lifted and
//! joined, neighbouring same-role messages merged).

mod blocks;
mod request;
pub(crate) mod response;
mod stream;
pub mod types;

pub use request::{UpstreamOptions, decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::EventEncoder;
pub use types::{MessageContent, MessageParam, MessageRole, MessagesRequest, SystemPrompt};

#[cfg(test)]
mod tests;
