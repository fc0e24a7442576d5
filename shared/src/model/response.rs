//! What a model answers.

use serde::{Deserialize, Serialize};

use super::Message;

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// A stop sequence matched.
    StopSequence,
    /// The output cap was reached.
    Length,
    /// The model called tools and waits for their results.
    ToolCalls,
    /// The provider filtered or the model refused the answer.
    ContentFilter,
    /// The provider paused a long turn, to be continued (Anthropic `pause_turn`).
    Pause,
    /// The model's context window was exhausted.
    ContextWindow,
}

/// Token usage of one model call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every input token: uncached, read from the cache and written to it.
    pub input: u64,
    /// Every output token, reasoning included.
    pub output: u64,
    /// Input tokens read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read: u64,
    /// Input tokens written to the provider's prompt cache, whatever the TTL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write: u64,
    /// The part of `cache_write` written with the 1-hour TTL (Anthropic bills
    /// it at 2x the input price, the 5-minute TTL at 1.25x).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_1h: u64,
    /// Output tokens spent on reasoning.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Usage from the two totals.
    pub fn new(input: u64, output: u64) -> Self {
        Self {
            input,
            output,
            ..Self::default()
        }
    }

    /// Adds the cache-read and reasoning counts.
    pub fn with_details(mut self, cache_read: u64, reasoning: u64) -> Self {
        self.cache_read = cache_read;
        self.reasoning = reasoning;
        self
    }

    /// Adds another answer's counts to these.
    pub fn add(&mut self, other: &Usage) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.cache_write_1h += other.cache_write_1h;
        self.reasoning += other.reasoning;
    }

    /// Input plus output.
    pub fn total(&self) -> u64 {
        self.input + self.output
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A model's complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The provider's id for it, where it gave one.
    pub id: Option<String>,
    /// The upstream model that answered, as the provider named it.
    pub model: Option<String>,
    /// The assistant message.
    pub message: Message,
    /// Why generation stopped.
    pub finish: FinishReason,
    /// The stop sequence that matched, if one did.
    pub stop_sequence: Option<String>,
    /// Token usage (zero where the provider reported none; see `usage_reported`).
    pub usage: Usage,
    /// Whether the provider reported usage.
    pub usage_reported: bool,
}
