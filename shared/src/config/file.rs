//! The TOML file's shape (`CTXGATE_CONFIG`, or text given to
//! [`Config::from_toml`](super::Config::from_toml)).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    ConfigError, ContextConfig, JwtConfig, Limits, ModelConfig, PriceTable, PromptCacheConfig,
    ProviderConfig, Quotas, RetrySettings, TenantConfig,
};

/// An alias: one model, or a fallback chain tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum AliasTarget {
    One(String),
    Chain(Vec<String>),
}

impl AliasTarget {
    /// The models tried in order.
    pub(super) fn into_chain(self) -> Vec<String> {
        match self {
            AliasTarget::One(m) => vec![m],
            AliasTarget::Chain(c) => c,
        }
    }
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) max_body_bytes: Option<usize>,
    pub(super) retention_days: Option<u32>,
    pub(super) key_cache_seconds: Option<u64>,
    pub(super) secrets_cache_seconds: Option<u64>,
    pub(super) secrets_max_stale_seconds: Option<u64>,
    pub(super) usage_flush_ms: Option<u64>,
    pub(super) embedded_fsync: Option<super::EmbeddedFsync>,
    pub(super) upstream_timeout_seconds: Option<u64>,
    pub(super) max_upstream_body_bytes: Option<usize>,
    pub(super) max_upstream_event_bytes: Option<usize>,
    pub(super) max_upstream_stream_bytes: Option<usize>,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub(super) models: Option<Vec<ModelConfig>>,
    #[serde(default)]
    pub(super) aliases: BTreeMap<String, AliasTarget>,
    pub(super) deadline_seconds: Option<u64>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) first_byte_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub(super) retry: Option<RetrySettings>,
    #[serde(default)]
    pub(super) limits: Option<Limits>,
    #[serde(default)]
    pub(super) quotas: Option<Quotas>,
    #[serde(default)]
    pub(super) tenants: BTreeMap<String, TenantConfig>,
    #[serde(default)]
    pub(super) redaction: Option<crate::redact::Policy>,
    #[serde(default)]
    pub(super) jwt: Option<JwtConfig>,
    #[serde(default)]
    pub(super) prices: Option<PriceTable>,
    #[serde(default)]
    pub(super) cors_origins: Option<Vec<String>>,
    #[serde(default)]
    pub(super) context: Option<ContextConfig>,
    #[serde(default)]
    pub(super) prompt_cache: Option<PromptCacheConfig>,
    #[serde(default)]
    pub(super) mcp: Option<super::McpConfig>,
    #[serde(default)]
    pub(super) mcp_server: Option<super::McpEndpointConfig>,
}

/// Parses the file's text; `path` names it in the error.
pub(super) fn parse_file(text: &str, path: String) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
        path,
        message: e.to_string(),
    })
}
