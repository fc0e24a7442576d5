//! Typed configuration: environment variables (the public contract in
//! docs/configuration.md) plus an optional TOML file named by `CTXGATE_CONFIG`. Validated
//! once per cold start; a bad config stops the process with a clear message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Every environment variable the gateway reads (the library, its cold start
/// and its logging), besides the `api_key_env` names a config file adds for
/// local runs. The deployment template sets each one or documents why it need
/// not (checked by `tests/tests/deploy_template.rs`); a unit test checks that
/// configuration loading reads no other name.
pub const ENV_VARS: &[&str] = &[
    "CTXGATE_STORE",
    "CTXGATE_DATA_DIR",
    "CTXGATE_TABLE",
    "CTXGATE_SECRET_ID",
    "CTXGATE_CONFIG",
    "CTXGATE_LISTEN",
    "CTXGATE_CORS_ORIGINS",
    "CTXGATE_JWT_ISSUER",
    "CTXGATE_JWT_AUDIENCE",
    "CTXGATE_JWT_JWKS_URL",
    "AWS_ENDPOINT_URL",
    "AWS_LAMBDA_FUNCTION_NAME",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "RUST_LOG",
];

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

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI's Chat Completions API.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Any server speaking Chat Completions (Azure OpenAI, Ollama, vLLM, Groq...).
    OpenaiCompatible,
    /// The built-in deterministic test model.
    Echo,
}

/// One provider's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL (OpenAI style includes `/v1`; Anthropic style does not).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the key for local runs.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Field of the Secrets Manager JSON holding the key (default: the provider's name).
    #[serde(default)]
    pub secret_field: Option<String>,
    /// Header carrying the key: `authorization` (Bearer, default) or e.g. `api-key` for Azure.
    #[serde(default)]
    pub auth_header: Option<String>,
    /// Query parameters added to every call (e.g. Azure's `api-version`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Output cap sent when the client gives none (Anthropic requires one).
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    /// Retry settings for this provider's models (over `[retry]`).
    #[serde(default)]
    pub retry: Option<RetrySettings>,
}

impl ProviderConfig {
    fn builtin(kind: ProviderKind, base_url: &str, key_env: &str) -> Self {
        Self {
            kind,
            base_url: Some(base_url.into()),
            api_key_env: (!key_env.is_empty()).then(|| key_env.into()),
            secret_field: None,
            auth_header: None,
            query: BTreeMap::new(),
            default_max_tokens: None,
            retry: None,
        }
    }
}

/// A model listed by `GET /v1/models`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `provider/model`.
    pub id: String,
    /// Context size in tokens (default: the built-in table, else `context.default_window`).
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Retry settings for this model (over its provider's and `[retry]`).
    #[serde(default)]
    pub retry: Option<RetrySettings>,
    /// Most output tokens the model can produce in one answer (default: the
    /// built-in table, else `limits.max_output_tokens`); budgets reserve it
    /// when a request sets no cap.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}

/// Retry settings as written in the config; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts per model, the first included.
    pub attempts: Option<u32>,
    /// Backoff ceiling of the first retry (doubles each time; full jitter).
    pub base_delay_ms: Option<u64>,
    /// Largest backoff.
    pub max_delay_ms: Option<u64>,
    /// Upstream statuses that are retried.
    pub on_status: Option<Vec<u16>>,
    /// Whether failed connections are retried.
    pub on_connect: Option<bool>,
    /// Whether timeouts are retried.
    pub on_timeout: Option<bool>,
}

/// How one model's failures are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts, the first included.
    pub attempts: u32,
    /// Backoff ceiling of the first retry.
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
    /// Upstream statuses that are retried.
    pub on_status: Vec<u16>,
    /// Whether failed connections are retried.
    pub on_connect: bool,
    /// Whether timeouts are retried.
    pub on_timeout: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            on_status: vec![429, 500, 502, 503, 504, 529],
            on_connect: true,
            on_timeout: true,
        }
    }
}

impl RetryPolicy {
    /// This policy with `s`'s fields set over it.
    pub fn merged(&self, s: &RetrySettings) -> RetryPolicy {
        RetryPolicy {
            attempts: s.attempts.unwrap_or(self.attempts),
            base_delay: s
                .base_delay_ms
                .map_or(self.base_delay, Duration::from_millis),
            max_delay: s.max_delay_ms.map_or(self.max_delay, Duration::from_millis),
            on_status: s
                .on_status
                .clone()
                .unwrap_or_else(|| self.on_status.clone()),
            on_connect: s.on_connect.unwrap_or(self.on_connect),
            on_timeout: s.on_timeout.unwrap_or(self.on_timeout),
        }
    }
}

/// Statuses that mean the request itself is wrong: retrying cannot help.
const NEVER_RETRIED: [u16; 5] = [400, 401, 403, 404, 422];

fn check_retry(name: &str, s: &RetrySettings) -> Result<(), ConfigError> {
    if s.attempts.is_some_and(|a| !(1..=10).contains(&a)) {
        return Err(ConfigError::Invalid(format!(
            "{name}: retry.attempts must be 1..=10"
        )));
    }
    if let Some(bad) = s
        .on_status
        .iter()
        .flatten()
        .find(|c| NEVER_RETRIED.contains(c) || !(100..=599).contains(*c))
    {
        return Err(ConfigError::Invalid(format!(
            "{name}: retry.on_status cannot include {bad} (400, 401, 403, 404 and 422 are never retried)"
        )));
    }
    Ok(())
}

/// An alias: one model, or a fallback chain tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum AliasTarget {
    One(String),
    Chain(Vec<String>),
}

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
];

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

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    max_body_bytes: Option<usize>,
    retention_days: Option<u32>,
    key_cache_seconds: Option<u64>,
    secrets_cache_seconds: Option<u64>,
    secrets_max_stale_seconds: Option<u64>,
    upstream_timeout_seconds: Option<u64>,
    max_upstream_body_bytes: Option<usize>,
    max_upstream_event_bytes: Option<usize>,
    max_upstream_stream_bytes: Option<usize>,
    #[serde(default)]
    providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    models: Option<Vec<ModelConfig>>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasTarget>,
    deadline_seconds: Option<u64>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_seconds: Option<u64>,
    #[serde(default)]
    retry: Option<RetrySettings>,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    quotas: Option<Quotas>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantConfig>,
    #[serde(default)]
    redaction: Option<crate::redact::Policy>,
    #[serde(default)]
    jwt: Option<JwtConfig>,
    #[serde(default)]
    prices: Option<PriceTable>,
    #[serde(default)]
    cors_origins: Option<Vec<String>>,
    #[serde(default)]
    context: Option<ContextConfig>,
}

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
            max_messages: crate::validate::MAX_MESSAGES_PER_REQUEST,
            max_message_chars: 400_000,
            max_output_tokens: 128_000,
            max_prompt_tokens: 2_000_000,
            requests_per_minute: 0,
            budget_tolerance: 0.0,
            max_conversations_per_tenant: 100_000,
        }
    }
}

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

/// An OIDC issuer whose JWTs are accepted as bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audience: Vec<String>,
    /// JWKS location (default: `{issuer}/.well-known/jwks.json`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Claim naming the tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Optional claim listing the models the token may use.
    #[serde(default)]
    pub models_claim: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// How long fetched signing keys are trusted before a refetch, seconds.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_cache_seconds: u64,
    /// Least time between two refetches caused by an unknown `kid`, seconds
    /// (so forged kids cannot hammer the issuer).
    #[serde(default = "default_refetch")]
    pub jwks_refetch_seconds: u64,
    /// How long past `jwks_cache_seconds` the last keys are still used while
    /// the issuer fails, seconds (then tokens are refused with a 503).
    #[serde(default = "default_max_stale")]
    pub jwks_max_stale_seconds: u64,
}

fn default_refetch() -> u64 {
    10
}
fn default_max_stale() -> u64 {
    3600
}

fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_ttl() -> u64 {
    3600
}

impl JwtConfig {
    /// The JWKS URL, explicit or derived from the issuer.
    pub fn jwks_url(&self) -> String {
        self.jwks_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/jwks.json",
                self.issuer.trim_end_matches('/')
            )
        })
    }
}

/// Model prices, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens (reasoning included).
    pub output: f64,
    /// Cached input tokens (default: the input price).
    #[serde(default)]
    pub cached_input: Option<f64>,
}

/// A versioned price table; the version is recorded with every usage row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Table version, e.g. `2025-08`.
    pub version: String,
    /// `provider/model` -> price.
    pub models: BTreeMap<String, Price>,
    /// Price of models the table does not match (see [`PriceTable::get`]);
    /// unset, such models are refused to tenants with a cost budget.
    #[serde(default)]
    pub default: Option<Price>,
}

impl PriceTable {
    /// The price of `model`: its own entry, else the entry of its undated
    /// name (`openai/gpt-4o-2024-08-06` as `openai/gpt-4o`,
    /// `anthropic/claude-sonnet-4-5-20250929` as `anthropic/claude-sonnet-4-5`),
    /// else the configured default.
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.models
            .get(model)
            .or_else(|| undated(model).and_then(|m| self.models.get(m)))
            .or(self.default.as_ref())
    }
}

/// `model` without a trailing date (`-YYYY-MM-DD` or `-YYYYMMDD`), if it has one.
pub fn undated(model: &str) -> Option<&str> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (head, tail) = model.rsplit_once('-')?;
    if tail.len() == 8 && digits(tail) && tail.starts_with("20") {
        return Some(head);
    }
    // `-YYYY-MM-DD`: the last three dash-separated parts.
    let (head, month) = head.rsplit_once('-')?;
    let (head, year) = head.rsplit_once('-')?;
    let dated = year.len() == 4
        && year.starts_with("20")
        && month.len() == 2
        && tail.len() == 2
        && [year, month, tail].iter().all(|p| digits(p));
    dated.then_some(head)
}

impl Default for PriceTable {
    fn default() -> Self {
        let p = |input, output, cached| Price {
            input,
            output,
            cached_input: Some(cached),
        };
        Self {
            version: "builtin-2025-08".into(),
            models: [
                ("openai/gpt-4.1", p(2.0, 8.0, 0.5)),
                ("openai/gpt-4.1-mini", p(0.4, 1.6, 0.1)),
                ("openai/gpt-4o", p(2.5, 10.0, 1.25)),
                ("openai/gpt-4o-mini", p(0.15, 0.6, 0.075)),
                ("anthropic/claude-sonnet-4-5", p(3.0, 15.0, 0.3)),
                ("anthropic/claude-haiku-4-5", p(1.0, 5.0, 0.1)),
                ("anthropic/claude-opus-4-1", p(15.0, 75.0, 1.5)),
                ("echo", p(0.0, 0.0, 0.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            default: None,
        }
    }
}

/// The gateway's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Store backend.
    pub store: StoreKind,
    /// Embedded store directory.
    pub data_dir: PathBuf,
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
}

/// Models listed when the config file names none.
const DEFAULT_MODELS: &[&str] = &[
    "openai/gpt-4.1",
    "openai/gpt-4.1-mini",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "anthropic/claude-sonnet-4-5",
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-opus-4-1",
    "echo",
];

fn parse_file(text: &str, path: String) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
        path,
        message: e.to_string(),
    })
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

        let mut providers = BTreeMap::new();
        providers.insert(
            "openai".into(),
            ProviderConfig::builtin(
                ProviderKind::Openai,
                "https://api.openai.com/v1",
                "OPENAI_API_KEY",
            ),
        );
        providers.insert(
            "anthropic".into(),
            ProviderConfig::builtin(
                ProviderKind::Anthropic,
                "https://api.anthropic.com",
                "ANTHROPIC_API_KEY",
            ),
        );
        providers.insert(
            "echo".into(),
            ProviderConfig::builtin(ProviderKind::Echo, "", ""),
        );
        for (name, p) in file.providers {
            if !crate::ids::is_valid_id(&name, 64) || name.contains(['/', ':']) {
                return Err(ConfigError::Invalid(format!(
                    "provider name '{name}' must be letters, digits, '.', '_' or '-'"
                )));
            }
            providers.insert(name, p);
        }
        // The SDKs' own variables win over the file, so a deployment (or a
        // test) can point at another endpoint without editing the config.
        for (name, var) in [
            ("openai", "OPENAI_BASE_URL"),
            ("anthropic", "ANTHROPIC_BASE_URL"),
        ] {
            if let (Some(url), Some(p)) = (env(var), providers.get_mut(name)) {
                p.base_url = Some(url);
            }
        }
        for (name, p) in &providers {
            if p.kind != ProviderKind::Echo {
                let url = p.base_url.as_deref().unwrap_or("");
                if let Err(problem) = check_upstream_url(url) {
                    return Err(ConfigError::Invalid(format!(
                        "provider '{name}' base_url {problem}"
                    )));
                }
            }
        }

        let mut context_windows = BTreeMap::new();
        let mut max_outputs = BTreeMap::new();
        let mut model_retry = BTreeMap::new();
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
                    m.id
                })
                .collect(),
            None => DEFAULT_MODELS.iter().map(|s| s.to_string()).collect(),
        };
        let cfg = Config {
            store,
            data_dir: PathBuf::from(env("CTXGATE_DATA_DIR").unwrap_or_else(|| "./.ctxgate".into())),
            table: table_name(
                env("CTXGATE_TABLE"),
                in_lambda && store == StoreKind::Dynamodb,
            )?,
            endpoint_url: env("AWS_ENDPOINT_URL"),
            secret_id: env("CTXGATE_SECRET_ID").map(secret_id).transpose()?,
            listen: env("CTXGATE_LISTEN").unwrap_or_else(|| "127.0.0.1:8787".into()),
            max_body_bytes: file.max_body_bytes.unwrap_or(1024 * 1024),
            retention_days: file.retention_days.unwrap_or(30),
            key_cache_ttl: Duration::from_secs(file.key_cache_seconds.unwrap_or(30)),
            secrets_cache_ttl: Duration::from_secs(file.secrets_cache_seconds.unwrap_or(300)),
            secrets_max_stale: Duration::from_secs(
                file.secrets_max_stale_seconds
                    .unwrap_or(default_max_stale()),
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
                check_retry("retry", &retry)?;
                RetryPolicy::default().merged(&retry)
            },
            model_retry,
            providers,
            models,
            context_windows,
            max_outputs,
            context: file.context.unwrap_or_default(),
            aliases: file
                .aliases
                .into_iter()
                .map(|(k, v)| {
                    let chain = match v {
                        AliasTarget::One(m) => vec![m],
                        AliasTarget::Chain(c) => c,
                    };
                    (k, chain)
                })
                .collect(),
            limits: file.limits.unwrap_or_default(),
            default_quotas: file.quotas.unwrap_or_default(),
            tenants: file.tenants,
            redaction: file.redaction.unwrap_or_else(default_redaction),
            jwt: jwt_config(file.jwt, &env)?,
            prices: file.prices.unwrap_or_default(),
            cors_origins: match env("CTXGATE_CORS_ORIGINS") {
                Some(list) => cors_origins(&list)?,
                None => file.cors_origins.unwrap_or_default(),
            },
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        let caps = &self.upstream_caps;
        if caps.body < 1024 || caps.event < 1024 || caps.stream < caps.event {
            return Err(ConfigError::Invalid(
                "max_upstream_body_bytes and max_upstream_event_bytes must be at least 1024, max_upstream_stream_bytes at least max_upstream_event_bytes".into(),
            ));
        }
        if self.upstream_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "upstream_timeout_seconds must be at least 1".into(),
            ));
        }
        for (alias, chain) in &self.aliases {
            if alias.contains('/') {
                return Err(ConfigError::Invalid(format!(
                    "alias '{alias}' must not contain '/'"
                )));
            }
            if chain.is_empty() || chain.len() > 8 {
                return Err(ConfigError::Invalid(format!(
                    "alias '{alias}' must name 1 to 8 models"
                )));
            }
            if let Some(target) = chain.iter().find(|t| self.split_model(t).is_none()) {
                return Err(ConfigError::Invalid(format!(
                    "alias '{alias}' points to '{target}', which names no configured provider"
                )));
            }
        }
        if self.deadline.is_zero()
            || self.connect_timeout.is_zero()
            || self.first_byte_timeout.is_zero()
        {
            return Err(ConfigError::Invalid(
                "deadline_seconds, connect_timeout_ms and first_byte_timeout_seconds must be at least 1"
                    .into(),
            ));
        }
        for (name, p) in &self.providers {
            if let Some(r) = &p.retry {
                check_retry(&format!("providers.{name}"), r)?;
            }
        }
        for (model, r) in &self.model_retry {
            check_retry(&format!("models.{model}"), r)?;
        }
        for m in &self.models {
            if self.split_model(m).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "model '{m}' names no configured provider"
                )));
            }
        }
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
        let l = &self.limits;
        if l.max_messages == 0 || l.max_messages > crate::validate::MAX_MESSAGES_PER_REQUEST {
            return Err(ConfigError::Invalid(format!(
                "limits.max_messages must be 1..={}",
                crate::validate::MAX_MESSAGES_PER_REQUEST
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
        let default_price = self.prices.default.iter().map(|p| ("default", p));
        for (model, p) in self
            .prices
            .models
            .iter()
            .map(|(m, p)| (m.as_str(), p))
            .chain(default_price)
        {
            if [p.input, p.output, p.cached_input.unwrap_or(0.0)]
                .iter()
                .any(|v| !(v.is_finite() && *v >= 0.0))
            {
                return Err(ConfigError::Invalid(format!(
                    "prices.models.\"{model}\": prices must be non-negative numbers"
                )));
            }
        }
        if let Some(jwt) = &self.jwt {
            if let Err(problem) = check_upstream_url(&jwt.jwks_url()) {
                return Err(ConfigError::Invalid(format!(
                    "jwt.jwks_url (or CTXGATE_JWT_JWKS_URL) {problem}"
                )));
            }
            if jwt.audience.is_empty() {
                return Err(ConfigError::Invalid(
                    "jwt.audience (or CTXGATE_JWT_AUDIENCE) must name at least one audience".into(),
                ));
            }
        }
        if self.cors_origins.iter().any(|o| o == "*") {
            tracing::warn!("CORS allows every origin ('*')");
        }
        Ok(())
    }

    /// The quotas that apply to `tenant`.
    pub fn quotas(&self, tenant: &str) -> Quotas {
        self.tenants
            .get(tenant)
            .map_or_else(|| self.default_quotas.clone(), TenantConfig::quotas)
    }

    /// Splits `provider/model` into its provider name and upstream model,
    /// if the provider is configured. `echo` alone is the echo model.
    pub fn split_model<'a>(&self, id: &'a str) -> Option<(&'a str, &'a str)> {
        if id == "echo" {
            return Some(("echo", "echo"));
        }
        let (provider, model) = id.split_once('/')?;
        (!model.is_empty() && self.providers.contains_key(provider)).then_some((provider, model))
    }

    /// The retry policy of `provider/model`: defaults, then the provider's
    /// settings, then the model's.
    pub fn retry_policy(&self, provider: &str, model: &str) -> RetryPolicy {
        let mut policy = self.retry.clone();
        if let Some(r) = self.providers.get(provider).and_then(|p| p.retry.as_ref()) {
            policy = policy.merged(r);
        }
        if let Some(r) = self.model_retry.get(model) {
            policy = policy.merged(r);
        }
        policy
    }

    /// The context size of a resolved `provider/model`.
    pub fn context_window(&self, model: &str) -> u64 {
        self.context_windows
            .get(model)
            .copied()
            .or_else(|| {
                BUILTIN_WINDOWS
                    .iter()
                    .find(|(m, _)| *m == model)
                    .map(|(_, w)| *w)
            })
            .unwrap_or(self.context.default_window)
    }

    /// Most output tokens one answer of `model` (resolved) can cost when the
    /// request sets no cap: the configured or built-in limit, bounded by the
    /// cap its provider sends by default, else `limits.max_output_tokens`.
    pub fn max_output(&self, model: &str) -> u32 {
        let own = self.max_outputs.get(model).copied().or_else(|| {
            BUILTIN_MAX_OUTPUTS
                .iter()
                .find(|(m, _)| *m == model || undated(model) == Some(*m))
                .map(|(_, n)| *n)
        });
        let provider_default = self.split_model(model).and_then(|(p, _)| {
            let p = self.providers.get(p)?;
            match p.kind {
                ProviderKind::Anthropic => Some(
                    p.default_max_tokens
                        .unwrap_or(crate::provider::anthropic::DEFAULT_MAX_TOKENS),
                ),
                // Only the Anthropic provider sends a cap of its own.
                _ => None,
            }
        });
        [own, provider_default]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.limits.max_output_tokens)
    }

    /// Retention as seconds, `None` when messages are kept forever.
    pub fn retention_secs(&self) -> Option<i64> {
        (self.retention_days > 0).then(|| i64::from(self.retention_days) * 86_400)
    }
}

/// `CTXGATE_TABLE`, checked against DynamoDB's naming rules. In Lambda on
/// DynamoDB it is required: a silent default would point at the wrong table.
fn table_name(value: Option<String>, required: bool) -> Result<String, ConfigError> {
    let Some(name) = value else {
        if required {
            return Err(ConfigError::Env {
                var: "CTXGATE_TABLE",
                problem: "is not set; it must name the DynamoDB table".into(),
            });
        }
        return Ok("ctxgate".into());
    };
    let valid = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(ConfigError::Env {
            var: "CTXGATE_TABLE",
            problem: format!(
                "is '{name}', not a DynamoDB table name (3-255 letters, digits, '_', '-', '.')"
            ),
        });
    }
    Ok(name)
}

/// `CTXGATE_SECRET_ID`: a Secrets Manager secret name or ARN.
fn secret_id(id: String) -> Result<String, ConfigError> {
    let valid = id.len() <= 2048
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@:-".contains(&b));
    if !valid {
        return Err(ConfigError::Env {
            var: "CTXGATE_SECRET_ID",
            problem: "must be a Secrets Manager secret name or ARN (letters, digits, /_+=.@:-)"
                .into(),
        });
    }
    Ok(id)
}

/// An upstream URL (provider base URL, JWKS, MCP server): parsed, not
/// prefix-matched. `https`, or `http` only when the host is a loopback IP
/// or exactly `localhost`; no user info (`user@host` hides the real host
/// from a reader), no fragment. The error completes "<field> ...".
pub fn check_upstream_url(url: &str) -> Result<(), String> {
    use url::{Host, Url};
    // The URL itself is not echoed: it may carry credentials.
    let parsed = Url::parse(url).map_err(|_| "is not a valid URL".to_owned())?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain user info (user@host)".into());
    }
    if parsed.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    let loopback = match parsed.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err("has no host".into()),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("must be https (plain http only on a loopback host)".into()),
        _ => Err("must be an http(s) URL".into()),
    }
}

/// `CTXGATE_CORS_ORIGINS`: comma-separated `*` or `http(s)://host[:port]` origins.
fn cors_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    let origins: Vec<String> = list
        .split(',')
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    for o in &origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let valid =
            o == "*" || rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', ' ', '?', '#']));
        if !valid || http::HeaderValue::from_str(o).is_err() {
            return Err(ConfigError::Env {
                var: "CTXGATE_CORS_ORIGINS",
                problem: format!("has '{o}', not an origin ('*' or scheme://host[:port], no path)"),
            });
        }
    }
    Ok(origins)
}

/// The JWT issuer from the file, with `CTXGATE_JWT_ISSUER` / `CTXGATE_JWT_AUDIENCE`
/// (comma-separated) / `CTXGATE_JWT_JWKS_URL` taking precedence (the SAM
/// template passes them as environment).
fn jwt_config(
    file: Option<JwtConfig>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<JwtConfig>, ConfigError> {
    let issuer = env("CTXGATE_JWT_ISSUER");
    let audience = env("CTXGATE_JWT_AUDIENCE");
    let mut jwt = match (file, issuer) {
        (Some(mut f), Some(iss)) => {
            f.issuer = iss;
            f
        }
        (Some(f), None) => f,
        (None, Some(iss)) => JwtConfig {
            issuer: iss,
            audience: Vec::new(),
            jwks_url: None,
            tenant_claim: default_tenant_claim(),
            models_claim: None,
            leeway_seconds: default_leeway(),
            jwks_cache_seconds: default_jwks_ttl(),
            jwks_refetch_seconds: default_refetch(),
            jwks_max_stale_seconds: default_max_stale(),
        },
        (None, None) => {
            if audience.is_some() {
                return Err(ConfigError::Env {
                    var: "CTXGATE_JWT_AUDIENCE",
                    problem: "is set without CTXGATE_JWT_ISSUER".into(),
                });
            }
            return Ok(None);
        }
    };
    if let Some(aud) = audience {
        jwt.audience = aud
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
    }
    if let Some(url) = env("CTXGATE_JWT_JWKS_URL") {
        jwt.jwks_url = Some(url);
    }
    Ok(Some(jwt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

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
    fn env_base_urls_win_and_file_adds_providers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
            [providers.openai]
            kind = "openai"
            base_url = "https://file.example/v1"
            [providers.groq]
            kind = "openai_compatible"
            base_url = "https://api.groq.com/openai/v1"
            api_key_env = "GROQ_API_KEY"
            [aliases]
            fast = "groq/llama"
            "#,
        )
        .unwrap();
        let c = cfg(&[
            ("CTXGATE_CONFIG", path.to_str().unwrap()),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ])
        .unwrap();
        assert_eq!(
            c.providers["openai"].base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(c.providers["groq"].kind, ProviderKind::OpenaiCompatible);
        assert_eq!(c.aliases["fast"], ["groq/llama"]);
    }

    // Issue 13, point 7: a config from TOML text is the config the same
    // text gives as a file, with no file written.
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
    fn fallback_chains_and_retry_policies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
            deadline_seconds = 20
            [retry]
            attempts = 4
            [providers.anthropic]
            kind = "anthropic"
            base_url = "https://api.anthropic.com"
            retry = { attempts = 2, on_status = [529] }
            [[models]]
            id = "anthropic/claude-haiku-4-5"
            retry = { base_delay_ms = 5 }
            [aliases]
            smart = ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1"]
            fast = "openai/gpt-4o-mini"
            "#,
        )
        .unwrap();
        let c = cfg(&[("CTXGATE_CONFIG", path.to_str().unwrap())]).unwrap();
        assert_eq!(c.aliases["smart"].len(), 2);
        assert_eq!(c.aliases["fast"], ["openai/gpt-4o-mini"]);
        assert_eq!(c.deadline, Duration::from_secs(20));
        assert_eq!(c.retry_policy("openai", "openai/gpt-4o").attempts, 4);
        let haiku = c.retry_policy("anthropic", "anthropic/claude-haiku-4-5");
        assert_eq!(haiku.attempts, 2);
        assert_eq!(haiku.on_status, [529]);
        assert_eq!(haiku.base_delay, Duration::from_millis(5));
        for bad in [
            "[retry]\non_status = [500, 401]\n",
            "[retry]\nattempts = 0\n",
            "[aliases]\nx = []\n",
            "[aliases]\nx = [\"openai/a\", \"nowhere/b\"]\n",
            "deadline_seconds = 0\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                cfg(&[("CTXGATE_CONFIG", path.to_str().unwrap())]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_only_the_declared_environment() {
        use std::sync::Mutex;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "").unwrap();
        let path = path.to_str().unwrap().to_owned();
        let read = Mutex::new(Vec::new());
        // Two runs cover both branches: local defaults, and Lambda with every variable set.
        for lambda in [false, true] {
            let lookup = |k: &str| {
                read.lock().unwrap().push(k.to_owned());
                match k {
                    "AWS_LAMBDA_FUNCTION_NAME" if lambda => Some("f".to_owned()),
                    "CTXGATE_TABLE" if lambda => Some("ctxgate-prod".to_owned()),
                    "CTXGATE_CONFIG" if lambda => Some(path.clone()),
                    "CTXGATE_JWT_ISSUER" if lambda => Some("https://issuer.example".to_owned()),
                    "CTXGATE_JWT_AUDIENCE" if lambda => Some("api".to_owned()),
                    _ => None,
                }
            };
            Config::from_lookup(lookup).unwrap();
        }
        for name in read.into_inner().unwrap() {
            assert!(
                ENV_VARS.contains(&name.as_str()),
                "{name} is read but not in ENV_VARS"
            );
        }
    }

    #[test]
    fn lambda_cold_start_names_the_bad_variable() {
        let lambda = [("AWS_LAMBDA_FUNCTION_NAME", "f")];
        let err = cfg(&lambda).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Env {
                    var: "CTXGATE_TABLE",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("environment variable CTXGATE_TABLE is not set")
        );
        // The local server keeps its default table.
        assert_eq!(cfg(&[]).unwrap().table, "ctxgate");

        let with = |extra: (&'static str, &'static str)| {
            cfg(&[lambda[0], ("CTXGATE_TABLE", "ctxgate-prod"), extra])
        };
        for (var, value) in [
            ("CTXGATE_TABLE", "a b"),
            ("CTXGATE_TABLE", "x"),
            ("CTXGATE_SECRET_ID", "name with spaces"),
            ("CTXGATE_CORS_ORIGINS", "app.example.com"),
            ("CTXGATE_CORS_ORIGINS", "https://app.example.com/path"),
            ("CTXGATE_STORE", "postgres"),
            ("CTXGATE_CONFIG", "/nonexistent/ctxgate.toml"),
            ("CTXGATE_JWT_AUDIENCE", "api"),
        ] {
            let err = with((var, value)).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Env { var: v, .. } if *v == var),
                "{var}={value}: {err}"
            );
            assert!(err.to_string().contains(var), "{err}");
        }
        let ok = with((
            "CTXGATE_SECRET_ID",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ctxgate-AbCdEf",
        ))
        .unwrap();
        assert!(ok.secret_id.is_some());
        let ok = with((
            "CTXGATE_CORS_ORIGINS",
            "https://a.example, http://localhost:3000",
        ))
        .unwrap();
        assert_eq!(
            ok.cors_origins,
            ["https://a.example", "http://localhost:3000"]
        );
    }

    #[test]
    fn max_outputs_come_from_config_table_and_provider() {
        // Issue 12, point 3: what an uncapped request may cost.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[models]]\nid = \"openai/custom\"\nmax_output_tokens = 777\n[[models]]\nid = \"openai/gpt-4o\"\n",
        )
        .unwrap();
        let c = cfg(&[("CTXGATE_CONFIG", path.to_str().unwrap())]).unwrap();
        assert_eq!(c.max_output("openai/custom"), 777);
        assert_eq!(c.max_output("openai/gpt-4o"), 16_384);
        assert_eq!(c.max_output("openai/gpt-4o-2024-08-06"), 16_384);
        // Anthropic models are sent the provider's default cap.
        assert_eq!(c.max_output("anthropic/claude-sonnet-4-5"), 4096);
        assert_eq!(c.max_output("openai/unknown"), c.limits.max_output_tokens);
        for bad in [
            "[limits]\nbudget_tolerance = 1.5\n",
            "[limits]\nbudget_tolerance = -0.1\n",
            "[[models]]\nid = \"openai/x\"\nmax_output_tokens = 0\n",
            "[prices]\nversion = \"v\"\nmodels = {}\ndefault = { input = -1.0, output = 1.0 }\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                cfg(&[("CTXGATE_CONFIG", path.to_str().unwrap())]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_bad_config() {
        assert!(cfg(&[("CTXGATE_STORE", "postgres")]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[aliases]\nfast = \"nowhere/x\"\n").unwrap();
        assert!(cfg(&[("CTXGATE_CONFIG", path.to_str().unwrap())]).is_err());
        std::fs::write(&path, "unknown_key = 1\n").unwrap();
        assert!(cfg(&[("CTXGATE_CONFIG", path.to_str().unwrap())]).is_err());
    }

    // Issue 12, point 11: "http only on loopback" parses the URL and checks
    // the host; prefixes, user info and look-alike hosts are refused.
    #[test]
    fn upstream_urls_are_parsed_not_prefix_matched() {
        for ok in [
            "https://api.openai.com/v1",
            "https://user-less.example:8443/x?y=1",
            "http://127.0.0.1:9/v1",
            "http://127.8.9.10",
            "http://localhost:11434/v1",
            "http://LOCALHOST/",
            "http://[::1]:8080/jwks.json",
        ] {
            assert_eq!(check_upstream_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/v1",
            "http://localhost@evil.example/v1",
            "http://127.0.0.1@evil.example",
            "http://127.0.0.1.nip.io/v1",
            "http://[::1].evil.example",
            "http://evil.example#@127.0.0.1",
            "http://evil.example/?@localhost",
            "https://user:pass@api.openai.com/v1",
            "https://user@api.openai.com/v1",
            "http://10.0.0.5/v1",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "localhost:8080",
            "http://",
            "",
        ] {
            assert!(check_upstream_url(bad).is_err(), "{bad}");
        }
        // The same rule at every place that takes a URL.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let path = path.to_str().unwrap();
        for file in [
            "[providers.x]\nkind = \"openai_compatible\"\nbase_url = \"http://localhost.evil.example/v1\"\n",
            "[jwt]\nissuer = \"https://id.example\"\naudience = [\"a\"]\njwks_url = \"http://localhost@evil.example/jwks\"\n",
        ] {
            std::fs::write(path, file).unwrap();
            assert!(cfg(&[("CTXGATE_CONFIG", path)]).is_err(), "{file}");
        }
        assert!(cfg(&[("OPENAI_BASE_URL", "http://127.0.0.1.nip.io/v1")]).is_err());
        assert!(cfg(&[("OPENAI_BASE_URL", "http://[::1]:9/v1")]).is_ok());
    }
}
