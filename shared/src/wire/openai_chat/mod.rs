//! OpenAI Chat Completions: the client-facing types ([`types`]) and, in
//! time, the codec between them and the model.

pub mod chunk;
pub mod stream;
pub mod types;
