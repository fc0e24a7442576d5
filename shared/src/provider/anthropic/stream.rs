//! The Anthropic stream translator (moves here from the codec once the
//! codec work settles).

pub use crate::wire::anthropic::EventDecoder;
