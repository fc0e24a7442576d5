//! Typed configuration: environment variables (the public contract in
//! docs/configuration.md) plus an optional TOML file named by `CTXGATE_CONFIG`, or TOML
//! text given directly ([`Config::from_toml`]). Validated once per cold start; a bad config
//! stops the process with a clear message.
//!
//! One submodule per concern; this module holds [`Config`] itself and its loading. It uses
//! only leaf modules of the crate (`capped`, `ids`, `model`, `redact`): the modules that read the
//! config depend on it, never the other way round.

mod caching;
mod context;
mod env;
mod file;
mod jwt;
mod limits;
mod mcp;
mod mcp_server;
mod prices;
mod providers;
mod tenants;
mod upstream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use file::{FileConfig, parse_file};

pub use caching::{
    ModelCache, PromptCacheConfig, PromptCacheSettings, TenantCache, bedrock_base_model,
};
pub use context::{ContextConfig, Strategy};
pub use env::ENV_VARS;
pub use jwt::JwtConfig;
pub use limits::{Limits, MAX_MESSAGES_PER_REQUEST};
pub use mcp::{McpConfig, McpServerConfig};
pub use mcp_server::McpEndpointConfig;
pub use prices::{Price, PriceTable, undated};
pub use providers::{
    ANTHROPIC_DEFAULT_MAX_TOKENS, BEDROCK_API_KEY_ENV, ModelConfig, OpenaiApi, ProviderConfig,
    ProviderKind, RetryPolicy, RetrySettings,
};
pub use tenants::{Quotas, TenantConfig, default_redaction};
pub use upstream::check_upstream_url;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable is missing or has an invalid value.
    #[error("environment variable {var} {problem}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The TOML file is malformed.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Which store backs the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A file-backed store under `CTXGATE_DATA_DIR`.
    Embedded,
    /// DynamoDB (or any DynamoDB API endpoint).
    Dynamodb,
}

/// When the embedded store answers a write: once it is on disk (the
/// default), or once it is committed, with the fsync right after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddedFsync {
    /// A write is answered once an fsync has made it durable.
    #[default]
    BeforeAnswer,
    /// A write is answered once committed (readers see it); the fsync
    /// follows at once, so a crash can lose what was answered within it.
    AfterAnswer,
}

/// The gateway's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Store backend.
    pub store: StoreKind,
    /// Embedded store directory.
    pub data_dir: PathBuf,
    /// When the embedded store answers a write (`embedded_fsync`).
    pub embedded_fsync: EmbeddedFsync,
    /// DynamoDB table.
    pub table: String,
    /// AWS endpoint override (emulators).
    pub endpoint_url: Option<String>,
    /// Secrets Manager secret with provider keys.
    pub secret_id: Option<String>,
    /// Local server address.
    pub listen: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Days a stored message is kept after it was written; 0 keeps it forever.
    pub retention_days: u32,
    /// How long an API key lookup is cached (bounds how late a revocation bites).
    pub key_cache_ttl: Duration,
    /// How long provider keys from Secrets Manager are cached.
    pub secrets_cache_ttl: Duration,
    /// How often usage rows and budget settlements aggregated in memory are
    /// written (`usage_flush_ms`; `/v1/usage` lags by at most this much).
    pub usage_flush_interval: Duration,
    /// Whether usage is also written after every streamed response, within
    /// its invocation (Lambda, where a process may freeze between them).
    pub usage_flush_after_response: bool,
    /// How long past their TTL cached provider keys are still used while
    /// Secrets Manager fails.
    pub secrets_max_stale: Duration,
    /// Size caps of upstream answers (a whole answer, one streamed event, a whole stream).
    pub upstream_caps: crate::capped::Caps,
    /// Longest single upstream attempt.
    pub upstream_timeout: Duration,
    /// Overall deadline of a non-streamed request: retries and fallbacks included.
    pub deadline: Duration,
    /// Longest wait for an upstream connection.
    pub connect_timeout: Duration,
    /// Longest silence from upstream before a byte arrives (and between reads).
    pub first_byte_timeout: Duration,
    /// Retry defaults.
    pub retry: RetryPolicy,
    /// Retry settings of models that have their own.
    pub model_retry: BTreeMap<String, RetrySettings>,
    /// Providers by name (always includes `openai`, `anthropic`, `echo`).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Models listed by `/v1/models`.
    pub models: Vec<String>,
    /// Context sizes set in the config file, by model.
    pub context_windows: BTreeMap<String, u64>,
    /// Output limits set in the config file, by model.
    pub max_outputs: BTreeMap<String, u32>,
    /// Context manager settings.
    pub context: ContextConfig,
    /// Prompt-caching defaults.
    pub prompt_cache: PromptCacheConfig,
    /// MCP servers as tool sources: reaching them, the tool loop.
    pub mcp: McpConfig,
    /// ctxgate's own MCP endpoint (`/mcp`).
    pub mcp_server: McpEndpointConfig,
    /// Models' own prompt-cache settings.
    pub model_caches: BTreeMap<String, PromptCacheSettings>,
    /// Alias -> `provider/model`, or a fallback chain of them.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Per-request limits.
    pub limits: Limits,
    /// Quotas for tenants without their own entry.
    pub default_quotas: Quotas,
    /// Per-tenant settings.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Redaction policy for tenants without their own.
    pub redaction: crate::redact::Policy,
    /// Accepted JWT issuer, if any.
    pub jwt: Option<JwtConfig>,
    /// Prices for cost accounting.
    pub prices: PriceTable,
    /// Origins allowed by CORS (none by default).
    pub cors_origins: Vec<String>,
    /// Where request metrics go (`CTXGATE_METRICS`).
    pub metrics: MetricsSink,
    /// The Lambda function's name (`AWS_LAMBDA_FUNCTION_NAME`), when in one.
    pub lambda_function: Option<String>,
}

/// Where request metrics go: CloudWatch EMF records on stdout (the Lambda
/// default), the local server's Prometheus `/metrics` (its default), or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSink {
    /// One CloudWatch Embedded Metric Format record per request, on stdout.
    Emf,
    /// Kept in memory for `GET /metrics` (the local server only).
    Prometheus,
    /// Not recorded.
    Off,
}

impl Config {
    /// Reads the environment (and the file `CTXGATE_CONFIG` names).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Like [`Config::from_env`] with an explicit variable source (tests).
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match env("CTXGATE_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Env {
                    var: "CTXGATE_CONFIG",
                    problem: format!("names {path}, which cannot be read: {e}"),
                })?;
                parse_file(&text, path)?
            }
            None => FileConfig::default(),
        };
        Self::build(file, env)
    }

    /// A config from TOML text (what a `CTXGATE_CONFIG` file would hold) and
    /// a variable source, with no file on disk; `CTXGATE_CONFIG` itself is
    /// not consulted.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = parse_file(text, "<inline TOML>".into())?;
        Self::build(file, |k| if k == "CTXGATE_CONFIG" { None } else { env(k) })
    }

    fn build(file: FileConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let in_lambda = env("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let store = match env("CTXGATE_STORE").as_deref() {
            Some("embedded") => StoreKind::Embedded,
            Some("dynamodb") => StoreKind::Dynamodb,
            Some(other) => {
                return Err(ConfigError::Env {
                    var: "CTXGATE_STORE",
                    problem: format!("must be 'embedded' or 'dynamodb', not '{other}'"),
                });
            }
            None if in_lambda => StoreKind::Dynamodb,
            None => StoreKind::Embedded,
        };
        let providers = providers::providers(file.providers, &env)?;
        let metrics = env::metrics(env("CTXGATE_METRICS"), in_lambda)?;

        let mut context_windows = BTreeMap::new();
        let mut max_outputs = BTreeMap::new();
        let mut model_retry = BTreeMap::new();
        let mut model_caches = BTreeMap::new();
        let models: Vec<String> = match file.models {
            Some(m) => m
                .into_iter()
                .map(|m| {
                    if let Some(w) = m.context_window {
                        context_windows.insert(m.id.clone(), w);
                    }
                    if let Some(r) = m.retry {
                        model_retry.insert(m.id.clone(), r);
                    }
                    if let Some(n) = m.max_output_tokens {
                        max_outputs.insert(m.id.clone(), n);
                    }
                    if let Some(c) = m.prompt_cache {
                        model_caches.insert(m.id.clone(), c);
                    }
                    m.id
                })
                .collect(),
            None => providers::DEFAULT_MODELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let cfg = Config {
            store,
            data_dir: PathBuf::from(env("CTXGATE_DATA_DIR").unwrap_or_else(|| "./.ctxgate".into())),
            embedded_fsync: file.embedded_fsync.unwrap_or_default(),
            table: env::table_name(
                env("CTXGATE_TABLE"),
                in_lambda && store == StoreKind::Dynamodb,
            )?,
            endpoint_url: env("AWS_ENDPOINT_URL"),
            secret_id: env("CTXGATE_SECRET_ID").map(env::secret_id).transpose()?,
            listen: env("CTXGATE_LISTEN").unwrap_or_else(|| "127.0.0.1:8787".into()),
            max_body_bytes: file.max_body_bytes.unwrap_or(1024 * 1024),
            retention_days: file.retention_days.unwrap_or(30),
            key_cache_ttl: Duration::from_secs(file.key_cache_seconds.unwrap_or(30)),
            secrets_cache_ttl: Duration::from_secs(file.secrets_cache_seconds.unwrap_or(300)),
            usage_flush_interval: Duration::from_millis(file.usage_flush_ms.unwrap_or(1000).max(1)),
            usage_flush_after_response: in_lambda,
            secrets_max_stale: Duration::from_secs(
                file.secrets_max_stale_seconds
                    .unwrap_or(jwt::default_max_stale()),
            ),
            // 16 MiB holds the largest answer a provider produces (100k+
            // output tokens) with room to spare; a stream carries ~100 bytes
            // of framing per token, hence 64 MiB.
            upstream_caps: crate::capped::Caps {
                body: file.max_upstream_body_bytes.unwrap_or(16 << 20),
                event: file.max_upstream_event_bytes.unwrap_or(1 << 20),
                stream: file.max_upstream_stream_bytes.unwrap_or(64 << 20),
            },
            upstream_timeout: Duration::from_secs(file.upstream_timeout_seconds.unwrap_or(60)),
            deadline: Duration::from_secs(file.deadline_seconds.unwrap_or(25)),
            connect_timeout: Duration::from_millis(file.connect_timeout_ms.unwrap_or(3000)),
            first_byte_timeout: Duration::from_secs(file.first_byte_timeout_seconds.unwrap_or(60)),
            retry: {
                let retry = file.retry.unwrap_or_default();
                providers::check_retry("retry", &retry)?;
                RetryPolicy::default().merged(&retry)
            },
            model_retry,
            providers,
            models,
            context_windows,
            max_outputs,
            context: file.context.unwrap_or_default(),
            prompt_cache: file.prompt_cache.unwrap_or_default(),
            mcp: file.mcp.unwrap_or_default(),
            mcp_server: file
                .mcp_server
                .unwrap_or_default()
                .resolve(env("CTXGATE_MCP_ALLOWED_HOSTS"), in_lambda)?,
            model_caches,
            aliases: file
                .aliases
                .into_iter()
                .map(|(k, v)| (k, v.into_chain()))
                .collect(),
            limits: file.limits.unwrap_or_default(),
            default_quotas: file.quotas.unwrap_or_default(),
            tenants: file.tenants,
            redaction: file.redaction.unwrap_or_else(default_redaction),
            jwt: jwt::jwt_config(file.jwt, &env)?,
            prices: file.prices.unwrap_or_default(),
            cors_origins: match env("CTXGATE_CORS_ORIGINS") {
                Some(list) => env::cors_origins(&list)?,
                None => file.cors_origins.unwrap_or_default(),
            },
            metrics,
            lambda_function: env("AWS_LAMBDA_FUNCTION_NAME"),
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Every rule that spans fields, concern by concern (each submodule
    /// checks its own).
    fn check(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        self.check_upstream()?;
        self.check_providers()?;
        self.check_context()?;
        self.check_limits()?;
        self.check_prompt_cache()?;
        self.check_quotas()?;
        self.prices.check()?;
        if let Some(jwt) = &self.jwt {
            jwt.check()?;
        }
        if self.cors_origins.iter().any(|o| o == "*") {
            tracing::warn!("CORS allows every origin ('*')");
        }
        Ok(())
    }

    /// Retention as seconds, `None` when messages are kept forever.
    pub fn retention_secs(&self) -> Option<i64> {
        (self.retention_days > 0).then(|| i64::from(self.retention_days) * 86_400)
    }
}

/// Loading helpers for the tests of this module and its submodules.
#[cfg(test)]
mod testing {
    use std::collections::HashMap;

    use super::{Config, ConfigError};

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// A config from these variables (and the file `CTXGATE_CONFIG` names).
    pub(super) fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(lookup(vars))
    }

    /// A config from TOML text and these variables.
    pub(super) fn toml(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml(text, lookup(vars))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{cfg, toml};
    use super::*;

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.store, StoreKind::Embedded);
        assert_eq!(c.listen, "127.0.0.1:8787");
        assert_eq!(c.table, "ctxgate");
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.split_model("openai/gpt-4o"), Some(("openai", "gpt-4o")));
        assert_eq!(c.split_model("nope/x"), None);
        assert_eq!(c.split_model("echo"), Some(("echo", "echo")));
        assert_eq!(
            cfg(&[("AWS_LAMBDA_FUNCTION_NAME", "f"), ("CTXGATE_TABLE", "t-1")])
                .unwrap()
                .store,
            StoreKind::Dynamodb
        );
    }

    #[test]
    fn embedded_fsync_is_before_the_answer_unless_set() {
        let get = |text: &str| Config::from_toml(text, |_| None).map(|c| c.embedded_fsync);
        assert_eq!(get("").unwrap(), EmbeddedFsync::BeforeAnswer);
        assert_eq!(
            get("embedded_fsync = \"after-answer\"").unwrap(),
            EmbeddedFsync::AfterAnswer
        );
        let e = get("embedded_fsync = \"never\"").unwrap_err().to_string();
        assert!(e.contains("embedded_fsync"), "{e}");
    }

    // Issue 13, point 7: a config from TOML text is the config the same
    // text gives as a file, with no file written. The one test here that
    // writes a file: loading from a file is what it checks.
    #[test]
    fn inline_toml_is_the_same_config_as_a_file() {
        let text =
            "deadline_seconds = 20\n[aliases]\nfast = [\"echo\"]\n[limits]\nmax_messages = 10\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let from_file = cfg(&[("CTXGATE_CONFIG", path.to_str().unwrap())]).unwrap();
        let env = |k: &str| (k == "CTXGATE_CONFIG").then(|| "/nonexistent.toml".to_owned());
        let inline = Config::from_toml(text, env).unwrap();
        assert_eq!(format!("{inline:?}"), format!("{from_file:?}"));
        assert!(Config::from_toml("deadline_seconds = \"soon\"", |_| None).is_err());
    }

    #[test]
    fn rejects_bad_config() {
        assert!(cfg(&[("CTXGATE_STORE", "postgres")]).is_err());
        assert!(toml("[aliases]\nfast = \"nowhere/x\"\n", &[]).is_err());
        assert!(toml("unknown_key = 1\n", &[]).is_err());
    }
}
