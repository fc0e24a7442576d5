//! Typed configuration: environment variables (the public contract in the
//! README) plus an optional TOML file named by `CTXGATE_CONFIG`. Validated
//! once per cold start; a bad config stops the process with a clear message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
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
        }
    }
}

/// A model listed by `GET /v1/models`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `provider/model`.
    pub id: String,
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    max_body_bytes: Option<usize>,
    retention_days: Option<u32>,
    key_cache_seconds: Option<u64>,
    secrets_cache_seconds: Option<u64>,
    upstream_timeout_seconds: Option<u64>,
    #[serde(default)]
    providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    models: Option<Vec<ModelConfig>>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
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
    /// Deadline for one upstream call.
    pub upstream_timeout: Duration,
    /// Providers by name (always includes `openai`, `anthropic`, `echo`).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Models listed by `/v1/models`.
    pub models: Vec<String>,
    /// Alias -> `provider/model`.
    pub aliases: BTreeMap<String, String>,
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

impl Config {
    /// Reads the environment (and the file `CTXGATE_CONFIG` names).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Like [`Config::from_env`] with an explicit variable source (tests).
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match env("CTXGATE_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path,
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let in_lambda = env("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let store = match env("CTXGATE_STORE").as_deref() {
            Some("embedded") => StoreKind::Embedded,
            Some("dynamodb") => StoreKind::Dynamodb,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "CTXGATE_STORE must be 'embedded' or 'dynamodb', not '{other}'"
                )));
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
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::Invalid(format!(
                        "provider '{name}' needs an http(s) base_url"
                    )));
                }
            }
        }

        let models: Vec<String> = match file.models {
            Some(m) => m.into_iter().map(|m| m.id).collect(),
            None => DEFAULT_MODELS.iter().map(|s| s.to_string()).collect(),
        };
        let cfg = Config {
            store,
            data_dir: PathBuf::from(env("CTXGATE_DATA_DIR").unwrap_or_else(|| "./.ctxgate".into())),
            table: env("CTXGATE_TABLE").unwrap_or_else(|| "ctxgate".into()),
            endpoint_url: env("AWS_ENDPOINT_URL"),
            secret_id: env("CTXGATE_SECRET_ID"),
            listen: env("CTXGATE_LISTEN").unwrap_or_else(|| "127.0.0.1:8787".into()),
            max_body_bytes: file.max_body_bytes.unwrap_or(1024 * 1024),
            retention_days: file.retention_days.unwrap_or(30),
            key_cache_ttl: Duration::from_secs(file.key_cache_seconds.unwrap_or(30)),
            secrets_cache_ttl: Duration::from_secs(file.secrets_cache_seconds.unwrap_or(300)),
            upstream_timeout: Duration::from_secs(file.upstream_timeout_seconds.unwrap_or(60)),
            providers,
            models,
            aliases: file.aliases,
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
        if self.upstream_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "upstream_timeout_seconds must be at least 1".into(),
            ));
        }
        for (alias, target) in &self.aliases {
            if alias.contains('/') {
                return Err(ConfigError::Invalid(format!(
                    "alias '{alias}' must not contain '/'"
                )));
            }
            if self.split_model(target).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "alias '{alias}' points to '{target}', which names no configured provider"
                )));
            }
        }
        for m in &self.models {
            if self.split_model(m).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "model '{m}' names no configured provider"
                )));
            }
        }
        Ok(())
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

    /// Retention as seconds, `None` when messages are kept forever.
    pub fn retention_secs(&self) -> Option<i64> {
        (self.retention_days > 0).then(|| i64::from(self.retention_days) * 86_400)
    }
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
            cfg(&[("AWS_LAMBDA_FUNCTION_NAME", "f")]).unwrap().store,
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
        assert_eq!(c.aliases["fast"], "groq/llama");
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
}
