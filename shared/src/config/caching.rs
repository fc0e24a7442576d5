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

/// Bedrock models that take `cachePoint` blocks (model id prefixes, after
/// any inference-profile prefix), with the smallest prefix they cache; a
/// Claude model Anthropic lists in [`ANTHROPIC_MIN_TOKENS`] takes that minimum.
const BEDROCK_CACHING: &[(&str, u64)] = &[
    ("anthropic.claude-3-5-haiku", 2048),
    ("anthropic.claude-3-7-sonnet", 1024),
    ("anthropic.claude-sonnet-4", 1024),
    ("anthropic.claude-opus-4", 1024),
    ("anthropic.claude-haiku-4", 4096),
    ("amazon.nova-", 1000),
];

/// A Bedrock model id without its inference-profile prefix
/// (`us.anthropic.claude-...` -> `anthropic.claude-...`).
pub fn bedrock_base_model(id: &str) -> &str {
    match id.split_once('.') {
        Some((profile, rest))
            if rest.contains('.')
                && matches!(
                    profile,
                    "us" | "eu" | "apac" | "jp" | "au" | "ca" | "us-gov" | "global"
                ) =>
        {
            rest
        }
        _ => id,
    }
}

/// The smallest prefix a Bedrock model caches; `None` when it takes no
/// `cachePoint` (Llama, Mistral, older Claude models).
fn bedrock_min_tokens(upstream: &str) -> Option<u64> {
    let id = bedrock_base_model(upstream);
    let (_, n) = BEDROCK_CACHING.iter().find(|(p, _)| id.starts_with(p))?;
    let claude = id
        .strip_prefix("anthropic.")
        .and_then(|c| ANTHROPIC_MIN_TOKENS.iter().find(|(p, _)| c.starts_with(p)));
    Some(claude.map_or(*n, |(_, m)| *m))
}

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
            ProviderKind::Bedrock => bedrock_min_tokens(upstream)?,
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

    // Issue 20, point 3: Bedrock models that take `cachePoint` (Claude
    // 3.5 Haiku, 3.7 and 4.x, Nova) cache, through any inference profile,
    // with their family's minimum; others (Llama, Mistral) do not.
    #[test]
    fn bedrock_models_that_cache() {
        let c = toml("", &[("AWS_REGION", "us-east-1")]).unwrap();
        let min = |m: &str| c.model_cache(m).map(|c| c.min_tokens);
        assert_eq!(
            min("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(1024)
        );
        assert_eq!(
            min("bedrock/global.anthropic.claude-haiku-4-5-20251001-v1:0"),
            Some(4096)
        );
        assert_eq!(min("bedrock/us.amazon.nova-pro-v1:0"), Some(1000));
        assert_eq!(min("bedrock/meta.llama3-3-70b-instruct-v1:0"), None);
        assert_eq!(min("bedrock/mistral.mistral-large-2407-v1:0"), None);
        assert_eq!(min("bedrock/anthropic.claude-3-haiku-20240307-v1:0"), None);
        assert_eq!(
            bedrock_base_model("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(
            bedrock_base_model("amazon.nova-pro-v1:0"),
            "amazon.nova-pro-v1:0"
        );
        // Priced, cache reads and writes included, and windows known.
        let sonnet = c
            .prices
            .get("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0")
            .unwrap();
        assert!(
            (sonnet.input - 3.3).abs() < 1e-9 && (sonnet.cache_read_price() - 0.33).abs() < 1e-9
        );
        let global = c
            .prices
            .get("bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0")
            .unwrap();
        assert!((global.output - 15.0).abs() < 1e-9);
        assert!(c.prices.get("bedrock/amazon.nova-micro-v1:0").is_some());
        assert_eq!(c.context_window("bedrock/us.amazon.nova-pro-v1:0"), 300_000);
    }
}
