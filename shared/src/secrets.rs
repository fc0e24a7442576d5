//! Provider keys: from Secrets Manager (a JSON object, cached in-process
//! with a TTL) when `CTXGATE_SECRET_ID` is set, else from the environment.
//! Key material never appears in errors or logs. While Secrets Manager
//! fails, refetches back off and the last keys are served for a bounded
//! time ([`crate::refresh`]).
//!
//! The cache is ours rather than `aws_secretsmanager_caching`: that crate
//! turns on the SDK's legacy TLS stack (hyper 0.14, rustls 0.21, ring), which
//! added megabytes to every function for a few lines of caching.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::config::Config;
use crate::refresh::{Cached, Clock, RefreshPolicy, SystemClock, Want};

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
    cache: Cached<HashMap<String, String>>,
}

/// How long past their TTL keys are served while Secrets Manager fails, by default.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);

impl SecretsManagerKeys {
    /// Wraps an SDK client (built once per cold start); nothing is fetched until first use.
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
    ) -> Result<Self, SecretsError> {
        let policy = RefreshPolicy::new(ttl, DEFAULT_MAX_STALE, Duration::ZERO);
        Self::with_policy(client, secret_id, policy, Arc::new(SystemClock))
    }

    /// Like [`SecretsManagerKeys::new`] with an explicit refresh policy and clock.
    pub fn with_policy(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        policy: RefreshPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SecretsError> {
        Ok(Self {
            client,
            secret_id,
            cache: Cached::new(policy, clock),
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
                detail: fetch_failure(&e),
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
        let map = self
            .cache
            .get(Want::Fresh, || self.fetch())
            .await
            .map_err(|e| {
                e.unwrap_or_else(|| SecretsError::Fetch {
                    secret_id: self.secret_id.clone(),
                    detail: "backing off after failed fetches".into(),
                })
            })?;
        Ok(map.get(field).filter(|k| !k.is_empty()).cloned())
    }
}

/// What failed, bounded: the service's error code when it is a short
/// token, else the kind of failure (the service's message text is not kept).
fn fetch_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> String {
    if let Some(code) = e.code().filter(|c| crate::ids::is_token(c)) {
        return format!("service error {code}");
    }
    match e {
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(_) => "could not reach the service",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ServiceError(_) => "service error",
        _ => "request not sent",
    }
    .into()
}
