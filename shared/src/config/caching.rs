//! Provider prompt caching: whether it is on, for how long entries live, and
//! the smallest prefix a model caches, globally (`[prompt_cache]`), per
//! model (`[[models]] prompt_cache`) and per tenant (`[tenants.X] prompt_cache`).

use serde::Deserialize;

use super::{Config, ConfigError, ProviderKind, undated};
use crate::model::CacheTtl;

/// `[prompt_cache]`: the defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptCacheConfig {
    /// Whether ctxgate asks providers to cache the stable prefix.
    pub enabled: bool,
    /// Lifetime of the entries ctxgate asks for.
    pub ttl: CacheTtl,
    /// When a conversation outgrows its window, the share of the history
    /// budget dropped at once, so that the window's start (and with it the
    /// cached prefix) then holds for several turns instead of moving every turn.
    pub window_slack_ratio: f64,
}

impl Default for PromptCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: CacheTtl::FiveMinutes,
            window_slack_ratio: 0.2,
        }
    }
}

/// A model's or a tenant's own prompt-cache settings; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptCacheSettings {
    /// On or off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Entry lifetime.
    #[serde(default)]
    pub ttl: Option<CacheTtl>,
    /// Smallest prefix, in tokens, the model caches (models only).
    #[serde(default)]
    pub min_tokens: Option<u64>,
}

/// How one model's prompt cache is used on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCache {
    /// Entry lifetime (the tenant's, when the request carries one, wins).
    pub ttl: CacheTtl,
    /// Below this many tokens a prefix is not cached, so no breakpoint is set.
    pub min_tokens: u64,
}

/// What a tenant's turns ask of prompt caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantCache {
    /// Whether the tenant's turns use prompt caches at all.
    pub enabled: bool,
    /// The tenant's own lifetime, over the models'.
    pub ttl: Option<CacheTtl>,
}

/// Anthropic's smallest cacheable prefixes by model family (upstream name
/// prefixes, first match wins); other Claude models cache from 1024 tokens.
const ANTHROPIC_MIN_TOKENS: &[(&str, u64)] = &[
    ("claude-opus-4-5", 4096),
    ("claude-opus-4-6", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-opus-4-7", 2048),
    ("claude-sonnet-4-6", 2048),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
];

/// The smallest prefix providers of OpenAI's protocol cache.
const OPENAI_MIN_TOKENS: u64 = 1024;

impl Config {
    /// How `model` (`provider/model`) uses its provider's prompt cache;
    /// `None` when caching is off for it (or its provider has no cache).
    pub fn model_cache(&self, model: &str) -> Option<ModelCache> {
        let (provider, upstream) = self.split_model(model)?;
        let own = self
            .model_caches
            .get(model)
            .or_else(|| undated(model).and_then(|m| self.model_caches.get(m)));
        let g = &self.prompt_cache;
        if !own.and_then(|o| o.enabled).unwrap_or(g.enabled) {
            return None;
        }
        let builtin = match self.providers.get(provider)?.kind {
            ProviderKind::Echo => return None,
            ProviderKind::Anthropic => ANTHROPIC_MIN_TOKENS
                .iter()
                .find(|(p, _)| upstream.starts_with(p))
                .map_or(1024, |(_, n)| *n),
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => OPENAI_MIN_TOKENS,
        };
        Some(ModelCache {
            ttl: own.and_then(|o| o.ttl).unwrap_or(g.ttl),
            min_tokens: own.and_then(|o| o.min_tokens).unwrap_or(builtin),
        })
    }

    /// What `tenant`'s turns ask of prompt caches.
    pub fn tenant_cache(&self, tenant: &str) -> TenantCache {
        let own = self
            .tenants
            .get(tenant)
            .and_then(|t| t.prompt_cache.as_ref());
        TenantCache {
            enabled: own
                .and_then(|o| o.enabled)
                .unwrap_or(self.prompt_cache.enabled),
            ttl: own.and_then(|o| o.ttl),
        }
    }

    /// The slack ratio is a share; tenants set no model's minimum.
    pub(super) fn check_prompt_cache(&self) -> Result<(), ConfigError> {
        let r = self.prompt_cache.window_slack_ratio;
        if !(0.0..0.9).contains(&r) {
            return Err(ConfigError::Invalid(
                "prompt_cache.window_slack_ratio must be in [0, 0.9)".into(),
            ));
        }
        for (name, t) in &self.tenants {
            if t.prompt_cache
                .as_ref()
                .is_some_and(|c| c.min_tokens.is_some())
            {
                return Err(ConfigError::Invalid(format!(
                    "tenants.{name}.prompt_cache.min_tokens: the smallest cacheable prefix is a model's, set it under [[models]]"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::toml;
    use super::*;

    #[test]
    fn models_and_tenants_override_the_defaults() {
        let c = toml(
            r#"
[prompt_cache]
ttl = "1h"

[[models]]
id = "anthropic/claude-sonnet-4-5"
prompt_cache = { ttl = "5m", min_tokens = 3000 }

[[models]]
id = "openai/gpt-4o"
prompt_cache = { enabled = false }

[tenants.quiet]
prompt_cache = { enabled = false }

[tenants.long]
prompt_cache = { ttl = "1h" }
"#,
            &[],
        )
        .unwrap();
        let sonnet = c.model_cache("anthropic/claude-sonnet-4-5").unwrap();
        assert_eq!(
            (sonnet.ttl, sonnet.min_tokens),
            (CacheTtl::FiveMinutes, 3000)
        );
        // A dated name takes its family's settings.
        assert_eq!(
            c.model_cache("anthropic/claude-sonnet-4-5-20250929")
                .unwrap()
                .min_tokens,
            3000
        );
        let haiku = c.model_cache("anthropic/claude-haiku-4-5").unwrap();
        assert_eq!((haiku.ttl, haiku.min_tokens), (CacheTtl::OneHour, 4096));
        assert_eq!(
            c.model_cache("anthropic/claude-opus-4-1")
                .unwrap()
                .min_tokens,
            1024
        );
        assert_eq!(c.model_cache("openai/gpt-4o"), None);
        assert_eq!(c.model_cache("openai/gpt-4.1").unwrap().min_tokens, 1024);
        assert_eq!(c.model_cache("echo"), None);
        assert!(!c.tenant_cache("quiet").enabled);
        assert_eq!(c.tenant_cache("long").ttl, Some(CacheTtl::OneHour));
        assert_eq!(c.tenant_cache("anyone").ttl, None);
        assert!(c.tenant_cache("anyone").enabled);
    }

    #[test]
    fn the_switch_turns_every_model_off() {
        let c = toml("[prompt_cache]\nenabled = false\n", &[]).unwrap();
        assert_eq!(c.model_cache("anthropic/claude-sonnet-4-5"), None);
        assert!(!c.tenant_cache("t").enabled);
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            "[prompt_cache]\nttl = \"2h\"\n",
            "[prompt_cache]\nwindow_slack_ratio = 0.95\n",
            "[tenants.t]\nprompt_cache = { min_tokens = 10 }\n",
        ] {
            assert!(toml(bad, &[]).is_err(), "{bad}");
        }
    }
}
