//! Provider keys: from Secrets Manager (a JSON object, cached in-process by
//! AWS's caching client) when `CTXGATE_SECRET_ID` is set, else from the
//! environment. Key material never appears in errors or logs.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use async_trait::async_trait;
use aws_secretsmanager_caching::SecretsManagerCachingClient;

use crate::config::Config;

/// A failure to read provider keys (never contains key material).
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Secrets Manager could not be read.
    #[error("cannot read secret {secret_id}: {detail}")]
    Fetch {
        /// The secret.
        secret_id: String,
        /// What failed.
        detail: String,
    },
    /// The secret is not a JSON object of strings.
    #[error("secret {0} is not a JSON object of strings")]
    Shape(String),
}

/// Where provider keys come from.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The key stored under `field` (usually the provider's name), if any.
    async fn key(&self, field: &str) -> Result<Option<String>, SecretsError>;
}

/// Keys read from environment variables once, at cold start.
pub struct EnvKeys {
    keys: HashMap<String, String>,
}

impl EnvKeys {
    /// Reads each provider's `api_key_env` variable.
    pub fn from_config(config: &Config, env: impl Fn(&str) -> Option<String>) -> Self {
        let keys = config
            .providers
            .iter()
            .filter_map(|(name, p)| {
                let var = p.api_key_env.as_deref()?;
                let field = p.secret_field.clone().unwrap_or_else(|| name.clone());
                Some((field, env(var)?))
            })
            .collect();
        Self { keys }
    }
}

#[async_trait]
impl KeySource for EnvKeys {
    async fn key(&self, field: &str) -> Result<Option<String>, SecretsError> {
        Ok(self.keys.get(field).cloned())
    }
}

/// Keys from one Secrets Manager secret holding `{"openai": "...", ...}`.
pub struct SecretsManagerKeys {
    client: SecretsManagerCachingClient,
    secret_id: String,
}

impl SecretsManagerKeys {
    /// Wraps an SDK client (built once per cold start); nothing is fetched until first use.
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
    ) -> Result<Self, SecretsError> {
        let client = SecretsManagerCachingClient::new(client, NonZeroUsize::MIN, ttl, true)
            .map_err(|e| SecretsError::Fetch {
                secret_id: secret_id.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self { client, secret_id })
    }
}

#[async_trait]
impl KeySource for SecretsManagerKeys {
    async fn key(&self, field: &str) -> Result<Option<String>, SecretsError> {
        let value = self
            .client
            .get_secret_value(&self.secret_id, None, None, false)
            .await
            .map_err(|e| SecretsError::Fetch {
                secret_id: self.secret_id.clone(),
                detail: e.to_string(),
            })?;
        let text = value
            .secret_string
            .ok_or_else(|| SecretsError::Shape(self.secret_id.clone()))?;
        let map: HashMap<String, String> =
            serde_json::from_str(&text).map_err(|_| SecretsError::Shape(self.secret_id.clone()))?;
        Ok(map.get(field).filter(|k| !k.is_empty()).cloned())
    }
}
