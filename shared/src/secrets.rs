//! Provider keys: from Secrets Manager (a JSON object, cached in-process
//! with a TTL) when `CTXGATE_SECRET_ID` is set, else from the environment.
//! Key material never appears in errors or logs.
//!
//! The cache is ours rather than `aws_secretsmanager_caching`: that crate
//! turns on the SDK's legacy TLS stack (hyper 0.14, rustls 0.21, ring), which
//! added megabytes to every function for a few lines of caching.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use tokio::sync::Mutex;

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
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    cache: Mutex<Option<(Instant, HashMap<String, String>)>>,
}

impl SecretsManagerKeys {
    /// Wraps an SDK client (built once per cold start); nothing is fetched until first use.
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
    ) -> Result<Self, SecretsError> {
        Ok(Self {
            client,
            secret_id,
            ttl,
            cache: Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<HashMap<String, String>, SecretsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretsError::Fetch {
                secret_id: self.secret_id.clone(),
                detail: DisplayErrorContext(&e).to_string(),
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| SecretsError::Shape(self.secret_id.clone()))?;
        serde_json::from_str(text).map_err(|_| SecretsError::Shape(self.secret_id.clone()))
    }
}

#[async_trait]
impl KeySource for SecretsManagerKeys {
    async fn key(&self, field: &str) -> Result<Option<String>, SecretsError> {
        // Held across the fetch so concurrent first requests make one call.
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < self.ttl);
        if !fresh {
            match self.fetch().await {
                Ok(map) => *cache = Some((Instant::now(), map)),
                // A transient failure keeps serving the last good value.
                Err(e) if cache.is_some() => {
                    tracing::warn!(error = %e, "secret refresh failed; using the cached value")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cache
            .as_ref()
            .and_then(|(_, map)| map.get(field))
            .filter(|k| !k.is_empty())
            .cloned())
    }
}
