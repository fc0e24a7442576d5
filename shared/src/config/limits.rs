//! Per-request limits, and the output limits of models (what a request
//! without `max_tokens` may cost at most).

use serde::Deserialize;

use super::{Config, ConfigError, undated};

/// Most messages accepted in one request: a turn is written in one
/// DynamoDB transaction (100 items): the messages, the conversation header,
/// the answer, up to two usage rows (answer and summary) and the idempotency
/// record.
pub const MAX_MESSAGES_PER_REQUEST: usize = 95;

/// Built-in output limits of current models (tokens): what a request without
/// `max_tokens` may cost at most.
const BUILTIN_MAX_OUTPUTS: &[(&str, u32)] = &[
    ("openai/gpt-4.1", 32_768),
    ("openai/gpt-4.1-mini", 32_768),
    ("openai/gpt-4.1-nano", 32_768),
    ("openai/gpt-4o", 16_384),
    ("openai/gpt-4o-mini", 16_384),
    ("openai/o3", 100_000),
    ("openai/o4-mini", 100_000),
    ("openai/gpt-5", 128_000),
    ("openai/gpt-5-mini", 128_000),
    ("anthropic/claude-sonnet-4-5", 64_000),
    ("anthropic/claude-haiku-4-5", 64_000),
    ("anthropic/claude-opus-4-1", 32_000),
    ("anthropic/claude-sonnet-4", 64_000),
    ("anthropic/claude-3-5-haiku-latest", 8_192),
];

/// Per-request limits; every refusal names the field and the limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most messages in one request (at most 95: a turn is one transaction).
    pub max_messages: usize,
    /// Most characters in one message's text.
    pub max_message_chars: usize,
    /// Largest `max_tokens` / `max_completion_tokens` a client may ask for.
    pub max_output_tokens: u32,
    /// Largest estimated prompt (stored history included), in tokens.
    pub max_prompt_tokens: u64,
    /// Requests per minute for keys that set none (0: unlimited).
    pub requests_per_minute: u32,
    /// How far past a daily token or cost budget one turn may take its
    /// tenant, as a share of that budget (0: not at all).
    pub budget_tolerance: f64,
    /// Most conversations a tenant may store at once (0: unlimited).
    pub max_conversations_per_tenant: u64,
}

impl Limits {
    /// The per-tenant cap on stored conversations, if any.
    pub fn conversation_cap(&self) -> Option<u64> {
        (self.max_conversations_per_tenant > 0).then_some(self.max_conversations_per_tenant)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_messages: MAX_MESSAGES_PER_REQUEST,
            max_message_chars: 400_000,
            max_output_tokens: 128_000,
            max_prompt_tokens: 2_000_000,
            requests_per_minute: 0,
            budget_tolerance: 0.0,
            max_conversations_per_tenant: 100_000,
        }
    }
}

impl Config {
    /// The output limit configured (or built in) for `model` (resolved),
    /// if any; see `provider::Providers::max_output` for the whole rule.
    pub fn model_max_output(&self, model: &str) -> Option<u32> {
        self.max_outputs.get(model).copied().or_else(|| {
            BUILTIN_MAX_OUTPUTS
                .iter()
                .find(|(m, _)| *m == model || undated(model) == Some(*m))
                .map(|(_, n)| *n)
        })
    }

    /// Message count, budget tolerance and output limits in range.
    pub(super) fn check_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_messages == 0 || l.max_messages > MAX_MESSAGES_PER_REQUEST {
            return Err(ConfigError::Invalid(format!(
                "limits.max_messages must be 1..={MAX_MESSAGES_PER_REQUEST}"
            )));
        }
        if !(0.0..=1.0).contains(&l.budget_tolerance) {
            return Err(ConfigError::Invalid(
                "limits.budget_tolerance must be in [0, 1]".into(),
            ));
        }
        if self.max_outputs.values().any(|n| *n == 0) {
            return Err(ConfigError::Invalid(
                "models: max_output_tokens must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::toml;

    #[test]
    fn max_outputs_come_from_the_config_table() {
        // Issue 12, point 3: what an uncapped request may cost.
        let c = toml(
            "[[models]]\nid = \"openai/custom\"\nmax_output_tokens = 777\n[[models]]\nid = \"openai/gpt-4o\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.model_max_output("openai/custom"), Some(777));
        assert_eq!(c.model_max_output("openai/gpt-4o"), Some(16_384));
        assert_eq!(c.model_max_output("openai/gpt-4o-2024-08-06"), Some(16_384));
        assert_eq!(c.model_max_output("openai/unknown"), None);
        for bad in [
            "[limits]\nbudget_tolerance = 1.5\n",
            "[limits]\nbudget_tolerance = -0.1\n",
            "[[models]]\nid = \"openai/x\"\nmax_output_tokens = 0\n",
            "[prices]\nversion = \"v\"\nmodels = {}\ndefault = { input = -1.0, output = 1.0 }\n",
        ] {
            assert!(toml(bad, &[]).is_err(), "{bad}");
        }
    }
}
