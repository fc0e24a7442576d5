//! Providers, the models they serve, aliases (fallback chains) and retry
//! policies; splitting `provider/model`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigError, check_upstream_url};

/// Output cap the Anthropic provider sends when the client sets none (the
/// Messages API requires one) and its config sets no `default_max_tokens`.
pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 4096;

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
    /// Amazon Bedrock's Converse API, signed with SigV4 (or a Bedrock API key).
    Bedrock,
    /// The built-in deterministic test model.
    Echo,
}

impl ProviderKind {
    /// The kind as the configuration names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenaiCompatible => "openai_compatible",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Echo => "echo",
        }
    }
}

/// Which OpenAI API an OpenAI-protocol provider is called through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenaiApi {
    /// Chat Completions (`{base_url}/chat/completions`): what every
    /// OpenAI-compatible server speaks.
    #[default]
    Chat,
    /// Responses (`{base_url}/responses`), stateless (`store: false`), with
    /// the model's encrypted reasoning carried from one turn to the next.
    Responses,
}

/// One provider's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL (OpenAI style includes `/v1`; Anthropic style does not). For
    /// Bedrock, resolved at load: this, else `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`,
    /// else `AWS_ENDPOINT_URL`, else the region's endpoint; `None` when no
    /// region resolves either (a call then fails with a 503 naming it).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Bedrock: the AWS region calls are signed for (default `AWS_REGION`,
    /// then `AWS_DEFAULT_REGION`: the function's region on Lambda).
    #[serde(default)]
    pub region: Option<String>,
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
    /// Whether to send OpenAI's `prompt_cache_key` (default: for `kind = "openai"`
    /// only, since other servers of the protocol may refuse unknown fields).
    #[serde(default)]
    pub prompt_cache_key: Option<bool>,
    /// OpenAI-protocol providers: the API called, `chat` (default) or `responses`.
    #[serde(default)]
    pub api: OpenaiApi,
}

impl ProviderConfig {
    /// Whether calls carry OpenAI's `prompt_cache_key`.
    pub fn sends_prompt_cache_key(&self) -> bool {
        self.prompt_cache_key
            .unwrap_or(self.kind == ProviderKind::Openai)
    }

    fn builtin(kind: ProviderKind, base_url: &str, key_env: &str) -> Self {
        Self {
            kind,
            base_url: (!base_url.is_empty()).then(|| base_url.into()),
            region: None,
            api_key_env: (!key_env.is_empty()).then(|| key_env.into()),
            secret_field: None,
            auth_header: None,
            query: BTreeMap::new(),
            default_max_tokens: None,
            retry: None,
            prompt_cache_key: None,
            api: OpenaiApi::Chat,
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
    /// Prompt-cache settings of this model (over `[prompt_cache]`).
    #[serde(default)]
    pub prompt_cache: Option<super::PromptCacheSettings>,
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

/// Refuses retry settings that could only do harm.
pub(super) fn check_retry(name: &str, s: &RetrySettings) -> Result<(), ConfigError> {
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

/// Models listed when the config file names none.
pub(super) const DEFAULT_MODELS: &[&str] = &[
    "openai/gpt-4.1",
    "openai/gpt-4.1-mini",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "anthropic/claude-sonnet-4-5",
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-opus-4-1",
    "echo",
];

/// The variable a Bedrock API key (bearer) is read from for local runs, as
/// the AWS SDKs name it.
pub const BEDROCK_API_KEY_ENV: &str = "AWS_BEARER_TOKEN_BEDROCK";

/// The built-in providers (`openai`, `anthropic`, `bedrock`, `echo`) with
/// the file's added or replacing them; `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL`
/// win over both. Bedrock entries get their region and endpoint resolved
/// ([`resolve_bedrock`]). Every base URL passes [`check_upstream_url`].
pub(super) fn providers(
    file: BTreeMap<String, ProviderConfig>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, ProviderConfig>, ConfigError> {
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
        "bedrock".into(),
        ProviderConfig::builtin(ProviderKind::Bedrock, "", BEDROCK_API_KEY_ENV),
    );
    providers.insert(
        "echo".into(),
        ProviderConfig::builtin(ProviderKind::Echo, "", ""),
    );
    let declared: Vec<String> = file
        .iter()
        .filter(|(_, p)| p.kind == ProviderKind::Bedrock)
        .map(|(name, _)| name.clone())
        .collect();
    for (name, p) in file {
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
    for (name, p) in providers.iter_mut() {
        if p.kind == ProviderKind::Bedrock {
            resolve_bedrock(name, p, declared.contains(name), env)?;
        }
    }
    for (name, p) in &providers {
        // A Bedrock entry without a region has no URL yet: its calls fail
        // with a 503 naming the setting (a declared one failed above).
        let unresolved = p.kind == ProviderKind::Bedrock && p.base_url.is_none();
        if p.kind != ProviderKind::Echo && !unresolved {
            let url = p.base_url.as_deref().unwrap_or("");
            if let Err(problem) = check_upstream_url(url) {
                return Err(ConfigError::Invalid(format!(
                    "provider '{name}' base_url {problem}"
                )));
            }
        }
    }
    Ok(providers)
}

/// A Bedrock entry's region (its own, else `AWS_REGION`, else
/// `AWS_DEFAULT_REGION`) and endpoint (its `base_url`, else
/// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, else `AWS_ENDPOINT_URL`, else the
/// region's public endpoint), as the AWS SDKs resolve them. An entry the
/// file declares must have a region: SigV4 signs for one.
fn resolve_bedrock(
    name: &str,
    p: &mut ProviderConfig,
    declared: bool,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if p.region.is_none() {
        p.region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
    }
    if let Some(r) = &p.region {
        let valid = (1..=32).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(ConfigError::Invalid(format!(
                "providers.{name}.region is not an AWS region name (like us-east-1)"
            )));
        }
    }
    if p.base_url.is_none() {
        p.base_url = env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| {
                p.region
                    .as_ref()
                    .map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"))
            });
    }
    if declared && p.region.is_none() {
        return Err(ConfigError::Invalid(format!(
            "providers.{name}: no AWS region: set providers.{name}.region, or AWS_REGION"
        )));
    }
    Ok(())
}

impl Config {
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

    /// Aliases, retry settings and listed models name configured providers.
    pub(super) fn check_providers(&self) -> Result<(), ConfigError> {
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
        for (name, p) in &self.providers {
            let openai_protocol = matches!(
                p.kind,
                ProviderKind::Openai | ProviderKind::OpenaiCompatible
            );
            if p.api == OpenaiApi::Responses && !openai_protocol {
                return Err(ConfigError::Invalid(format!(
                    "providers.{name}: api = \"responses\" is for the openai and openai_compatible kinds"
                )));
            }
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
        // A Bedrock model the file lists or an alias names needs a region
        // now, not at its first call.
        let named = self.models.iter().chain(self.aliases.values().flatten());
        for m in named {
            if let Some((provider, _)) = self.split_model(m)
                && let Some(p) = self.providers.get(provider)
                && p.kind == ProviderKind::Bedrock
                && p.region.is_none()
            {
                return Err(ConfigError::Invalid(format!(
                    "model '{m}': no AWS region for provider '{provider}': set providers.{provider}.region, or AWS_REGION"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::testing::toml;

    #[test]
    fn env_base_urls_win_and_file_adds_providers() {
        let c = toml(
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
            &[("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")],
        )
        .unwrap();
        assert_eq!(
            c.providers["openai"].base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(c.providers["groq"].kind, ProviderKind::OpenaiCompatible);
        assert_eq!(c.providers["groq"].api, OpenaiApi::Chat);
        assert_eq!(c.aliases["fast"], ["groq/llama"]);
    }

    #[test]
    fn fallback_chains_and_retry_policies() {
        let c = toml(
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
            &[],
        )
        .unwrap();
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
            "[providers.anthropic]\nkind = \"anthropic\"\nbase_url = \"https://api.anthropic.com\"\napi = \"responses\"\n",
            "[providers.openai]\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\napi = \"assistants\"\n",
        ] {
            assert!(toml(bad, &[]).is_err(), "{bad}");
        }
    }

    // Issue 20, point 2: a Bedrock entry's region defaults to the
    // function's (`AWS_REGION`, then `AWS_DEFAULT_REGION`); its endpoint is
    // `base_url`, else `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, else
    // `AWS_ENDPOINT_URL`, else the region's; a declared entry (or a listed
    // model) with no region fails the cold start naming the setting.
    #[test]
    fn bedrock_region_and_endpoint_resolve_as_the_sdks_do() {
        let builtin = toml("", &[("AWS_DEFAULT_REGION", "eu-west-3")]).unwrap();
        let b = &builtin.providers["bedrock"];
        assert_eq!(b.kind, ProviderKind::Bedrock);
        assert_eq!(b.region.as_deref(), Some("eu-west-3"));
        assert_eq!(
            b.base_url.as_deref(),
            Some("https://bedrock-runtime.eu-west-3.amazonaws.com")
        );
        assert_eq!(b.api_key_env.as_deref(), Some(BEDROCK_API_KEY_ENV));
        // Without any region the built-in entry loads, unresolved.
        assert!(
            toml("", &[]).unwrap().providers["bedrock"]
                .base_url
                .is_none()
        );

        let vars = [
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:2"),
        ];
        let c = toml(
            r#"
            [providers.bedrock]
            kind = "bedrock"
            [providers.frankfurt]
            kind = "bedrock"
            region = "eu-central-1"
            base_url = "http://127.0.0.1:3"
            "#,
            &vars,
        )
        .unwrap();
        assert_eq!(c.providers["bedrock"].region.as_deref(), Some("us-west-2"));
        assert_eq!(
            c.providers["bedrock"].base_url.as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(
            c.providers["frankfurt"].base_url.as_deref(),
            Some("http://127.0.0.1:3")
        );
        let c = toml("", &vars[..3]).unwrap();
        assert_eq!(
            c.providers["bedrock"].base_url.as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(
            c.split_model("bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0"),
            Some(("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0"))
        );

        for (bad, names) in [
            (
                "[providers.aws]\nkind = \"bedrock\"\n",
                "providers.aws.region",
            ),
            (
                "[[models]]\nid = \"bedrock/amazon.nova-pro-v1:0\"\n",
                "providers.bedrock.region",
            ),
            (
                "[aliases]\nsmart = [\"anthropic/claude-sonnet-4-5\", \"bedrock/amazon.nova-pro-v1:0\"]\n",
                "AWS_REGION",
            ),
            (
                "[providers.aws]\nkind = \"bedrock\"\nregion = \"us east 1\"\n",
                "providers.aws.region",
            ),
        ] {
            let e = toml(bad, &[]).unwrap_err().to_string();
            assert!(e.contains(names), "{bad}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
