//! Builds the complete answer from a stream's deltas, exactly as the
//! non-streamed translation of the same answer would look.

use super::Delta;
use crate::provider::Completion;
use crate::wire::{ChatMessage, Content, FinishReason, FunctionCall, Role, ToolCall, Usage};

/// Accumulates deltas into a [`Completion`].
#[derive(Debug, Default)]
pub struct Assembler {
    text: String,
    calls: Vec<(u32, ToolCall)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    canonical_arguments: bool,
}

impl Assembler {
    /// An empty assembler. With `canonical_arguments`, tool arguments are
    /// re-serialised compactly, as the non-streamed Anthropic translation
    /// produces them from the parsed `input`.
    pub fn new(canonical_arguments: bool) -> Self {
        Self {
            canonical_arguments,
            ..Self::default()
        }
    }

    /// Adds one delta.
    pub fn push(&mut self, delta: &Delta) {
        match delta {
            Delta::Text(t) => self.text.push_str(t),
            Delta::ToolCall { index, id, name } => self.calls.push((
                *index,
                ToolCall {
                    id: id.clone(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: name.clone(),
                        arguments: String::new(),
                    },
                },
            )),
            Delta::ToolArguments { index, fragment } => {
                if let Some((_, call)) = self.calls.iter_mut().find(|(i, _)| i == index) {
                    call.function.arguments.push_str(fragment);
                }
            }
            Delta::Finish(f) => self.finish = Some(*f),
            Delta::Usage(u) => self.usage = Some(*u),
        }
    }

    /// Whether the provider reported usage.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The text generated so far (for estimating a cut stream's cost).
    pub fn generated_chars(&self) -> String {
        let mut s = self.text.clone();
        for (_, c) in &self.calls {
            s.push_str(&c.function.arguments);
        }
        s
    }

    /// The complete answer.
    pub fn finish(self) -> Completion {
        let mut calls = self.calls;
        calls.sort_by_key(|(i, _)| *i);
        let mut calls: Vec<ToolCall> = calls.into_iter().map(|(_, c)| c).collect();
        if self.canonical_arguments {
            for c in &mut calls {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&c.function.arguments) {
                    c.function.arguments = v.to_string();
                }
            }
        }
        let message = ChatMessage {
            role: Role::Assistant,
            content: (!self.text.is_empty() || calls.is_empty())
                .then_some(Content::Text(self.text)),
            name: None,
            tool_calls: (!calls.is_empty()).then_some(calls),
            tool_call_id: None,
            refusal: None,
        };
        Completion {
            message,
            finish_reason: self.finish.unwrap_or(FinishReason::Stop),
            usage: self.usage.unwrap_or_default(),
        }
    }
}
