//! The context manager's settings and the context sizes of models.

use serde::Deserialize;

use super::{Config, ConfigError};

/// What happens to stored turns that no longer fit the context window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Leave them out.
    #[default]
    Truncate,
    /// Fold them into a summary kept on the conversation.
    Summarize,
}

/// The context manager's settings (`[context]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    /// `truncate` or `summarize`.
    pub strategy: Strategy,
    /// Context size of models that have none configured or built in.
    pub default_window: u64,
    /// Tokens kept free for estimate error, as a share of the window.
    pub safety_margin_ratio: f64,
    /// Output tokens reserved when the request sets no cap.
    pub default_output_reserve: u64,
    /// The model that writes summaries (`provider/model` or alias).
    pub summary_model: Option<String>,
    /// Dropped, unsummarised turns that trigger a summary.
    pub summarize_after_turns: u64,
    /// Output cap of a summary.
    pub summary_max_tokens: u32,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Truncate,
            default_window: 128_000,
            safety_margin_ratio: 0.05,
            default_output_reserve: 4096,
            summary_model: None,
            summarize_after_turns: 4,
            summary_max_tokens: 1024,
        }
    }
}

/// Built-in context sizes of current models (tokens).
const BUILTIN_WINDOWS: &[(&str, u64)] = &[
    ("openai/gpt-4.1", 1_047_576),
    ("openai/gpt-4.1-mini", 1_047_576),
    ("openai/gpt-4.1-nano", 1_047_576),
    ("openai/gpt-4o", 128_000),
    ("openai/gpt-4o-mini", 128_000),
    ("openai/o3", 200_000),
    ("openai/o4-mini", 200_000),
    ("openai/gpt-5", 400_000),
    ("openai/gpt-5-mini", 400_000),
    ("anthropic/claude-sonnet-4-5", 200_000),
    ("anthropic/claude-haiku-4-5", 200_000),
    ("anthropic/claude-opus-4-1", 200_000),
    ("anthropic/claude-sonnet-4", 200_000),
    ("anthropic/claude-3-5-haiku-latest", 200_000),
    ("echo", 128_000),
    ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", 200_000),
    ("bedrock/anthropic.claude-haiku-4-5-20251001-v1:0", 200_000),
    ("bedrock/amazon.nova-pro-v1:0", 300_000),
    ("bedrock/amazon.nova-lite-v1:0", 300_000),
    ("bedrock/amazon.nova-micro-v1:0", 128_000),
    ("bedrock/meta.llama3-1-70b-instruct-v1:0", 128_000),
    ("bedrock/meta.llama3-3-70b-instruct-v1:0", 128_000),
    ("bedrock/mistral.mistral-large-2402-v1:0", 32_000),
    ("bedrock/mistral.mistral-large-2407-v1:0", 128_000),
];

impl Config {
    /// The context size of a resolved `provider/model`.
    pub fn context_window(&self, model: &str) -> u64 {
        self.context_windows
            .get(model)
            .copied()
            .or_else(|| {
                // A Bedrock inference profile has its model's window.
                let base;
                let model = match model.strip_prefix("bedrock/") {
                    Some(id) => {
                        base = format!("bedrock/{}", super::bedrock_base_model(id));
                        base.as_str()
                    }
                    None => model,
                };
                BUILTIN_WINDOWS
                    .iter()
                    .find(|(m, _)| *m == model)
                    .map(|(_, w)| *w)
            })
            .unwrap_or(self.context.default_window)
    }

    /// Window sizes, the safety margin, and a summary model that exists.
    pub(super) fn check_context(&self) -> Result<(), ConfigError> {
        let c = &self.context;
        if c.default_window < 1024 || self.context_windows.values().any(|w| *w < 1024) {
            return Err(ConfigError::Invalid(
                "context windows must be at least 1024 tokens".into(),
            ));
        }
        if !(0.0..0.5).contains(&c.safety_margin_ratio) {
            return Err(ConfigError::Invalid(
                "context.safety_margin_ratio must be in [0, 0.5)".into(),
            ));
        }
        if c.strategy == Strategy::Summarize {
            let Some(model) = &c.summary_model else {
                return Err(ConfigError::Invalid(
                    "context.strategy = \"summarize\" needs context.summary_model".into(),
                ));
            };
            let target = self
                .aliases
                .get(model)
                .and_then(|c| c.first())
                .unwrap_or(model);
            if self.split_model(target).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "context.summary_model '{model}' names no configured provider"
                )));
            }
            if c.summary_max_tokens == 0 {
                return Err(ConfigError::Invalid(
                    "context.summary_max_tokens must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}
