//! Wire formats as codecs at the edge: one module per format converts its
//! requests, answers and stream events to and from the provider-neutral
//! [`model`](crate::model). Front doors decode client requests with them;
//! providers encode upstream requests and decode upstream answers with them.

pub mod anthropic;
pub mod bedrock;
pub mod openai_chat;
pub mod openai_responses;

/// A request or answer that cannot be expressed in a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CodecError {
    /// The offending field, as a path in the format being read or written
    /// (`messages[2].content[0]`).
    pub param: String,
    /// Why.
    pub message: String,
}

impl CodecError {
    /// An error on `param`.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// What a stream decoder wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    More,
    /// The answer is complete; stop reading.
    Done,
}

/// Why an upstream stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The stream is not what the format promises (no content in the detail).
    #[error("{0}")]
    Malformed(String),
    /// The provider reported an error mid-stream; its error type, never content.
    #[error("provider reported a {0} mid-stream")]
    Reported(String),
}

/// The meaning of one format's stream events (the SSE framing is parsed
/// before): each event becomes provider-neutral [`Event`](crate::model::Event)s.
pub trait StreamDecoder: Send + 'static {
    /// Handles one event (`event` is empty for unnamed events), appending model events.
    fn event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<crate::model::Event>,
    ) -> Result<Step, DecodeError>;

    /// The body ended before [`Step::Done`]: whether that is a complete answer.
    fn end(&mut self, out: &mut Vec<crate::model::Event>) -> Result<(), DecodeError>;
}

/// Where a JSON document failed to parse, without quoting it: serde's
/// message can echo upstream values (a key, a prompt).
pub fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Whether `s` reads like a provider's error type or code
/// (`invalid_request_error`, `overloaded_error`, `429`) and not like a key
/// echoed back: at most 48 characters of `[a-z0-9_.-]`, no run of letters
/// and digits longer than 24.
pub fn is_reason(s: &str) -> bool {
    (1..=48).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
        && s.split(['_', '.', '-']).all(|run| run.len() <= 24)
}

#[cfg(test)]
mod tests;
