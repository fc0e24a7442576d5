//! What applies per tenant: daily quotas and the redaction policy.

use serde::Deserialize;

use super::{Config, ConfigError};

/// A tenant's daily quotas (absent: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Tokens (prompt + completion) per UTC day.
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// Estimated cost per UTC day, in USD.
    #[serde(default)]
    pub cost_per_day_usd: Option<f64>,
}

/// One tenant's settings: quotas and, optionally, its own redaction policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tokens per UTC day.
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// Estimated USD per UTC day.
    #[serde(default)]
    pub cost_per_day_usd: Option<f64>,
    /// Redaction policy replacing the default one for this tenant.
    #[serde(default)]
    pub redaction: Option<crate::redact::Policy>,
    /// Prompt-cache settings of this tenant (over the models' and `[prompt_cache]`).
    #[serde(default)]
    pub prompt_cache: Option<super::PromptCacheSettings>,
    /// MCP servers declared in the config file, by name (local runs).
    #[serde(default)]
    pub mcp_servers: std::collections::BTreeMap<String, super::McpServerConfig>,
}

impl TenantConfig {
    /// The tenant's quotas.
    pub fn quotas(&self) -> Quotas {
        Quotas {
            tokens_per_day: self.tokens_per_day,
            cost_per_day_usd: self.cost_per_day_usd,
        }
    }
}

/// The redaction policy used when none is configured: secrets and personal
/// data are redacted in responses and in what is stored; what goes to the
/// provider is left as sent.
pub fn default_redaction() -> crate::redact::Policy {
    use crate::redact::{Action, Policy};
    Policy {
        response: Action::Redact,
        stored: Action::Redact,
        upstream: Action::Off,
        ..Policy::default()
    }
}

impl Config {
    /// The quotas that apply to `tenant`.
    pub fn quotas(&self, tenant: &str) -> Quotas {
        self.tenants
            .get(tenant)
            .map_or_else(|| self.default_quotas.clone(), TenantConfig::quotas)
    }

    /// Cost quotas are non-negative numbers.
    pub(super) fn check_quotas(&self) -> Result<(), ConfigError> {
        let tenant_quotas: Vec<(&str, Quotas)> = self
            .tenants
            .iter()
            .map(|(k, v)| (k.as_str(), v.quotas()))
            .collect();
        for (name, q) in std::iter::once(("quotas", &self.default_quotas))
            .chain(tenant_quotas.iter().map(|(k, v)| (*k, v)))
        {
            if q.cost_per_day_usd
                .is_some_and(|c| !(c.is_finite() && c >= 0.0))
            {
                return Err(ConfigError::Invalid(format!(
                    "{name}: cost_per_day_usd must be a non-negative number"
                )));
            }
        }
        Ok(())
    }
}
