//! Amazon Bedrock's Converse API, as ctxgate speaks it to Bedrock: the
//! request body of `Converse` / `ConverseStream` from a model request
//! ([`request`]), a whole answer and the stream events' pieces back into the
//! model ([`response`]). No front door speaks Converse, so there is no
//! client side. The binary event-stream framing is the provider's
//! (`provider/bedrock/stream.rs`).

pub mod request;
pub mod response;

pub use request::{UpstreamOptions, encode_request};
pub use response::{decode_response, finish_reason, usage};

#[cfg(test)]
mod tests;
