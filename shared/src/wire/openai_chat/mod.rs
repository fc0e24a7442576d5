//! OpenAI Chat Completions: the client-facing types ([`types`]) and the
//! codec between them and the model: requests and messages ([`request`]),
//! answers ([`response`]) and the client's chunk stream ([`chunk`]). The
//! upstream chunk stream is read by the OpenAI provider's own translator
//! (`provider/openai/stream.rs`).

pub mod chunk;
pub mod request;
pub mod response;
pub mod types;

pub use request::{
    MaxTokensField, UpstreamOptions, decode_message, decode_request, encode_messages,
    encode_request,
};
pub use response::{
    ResponseMeta, decode_finish, decode_response, decode_response_bytes, decode_usage,
    encode_answer, encode_finish, encode_response, encode_usage,
};

#[cfg(test)]
mod tests;
