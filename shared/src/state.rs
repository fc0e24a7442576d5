//! Everything a handler needs, built once per cold start and shared by every
//! invocation: config, store, authenticator, providers (one HTTP client).

use std::sync::Arc;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::auth::Authenticator;
use crate::config::{Config, ConfigError, StoreKind};
use crate::processor::Redactors;
use crate::provider::Providers;
use crate::secrets::{EnvKeys, KeySource, SecretsError, SecretsManagerKeys};
use crate::store::dynamo::DynamoStore;
use crate::store::{Store, StoreError};

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secrets client could not be built.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Shared per-process state.
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Conversation and key store.
    pub store: Arc<dyn Store>,
    /// API key authentication with its cache.
    pub auth: Authenticator,
    /// Model routing and provider adapters.
    pub providers: Providers,
    /// Compiled redaction policies.
    pub redactors: Redactors,
    /// Where provider keys come from (also probed by the readiness check).
    pub keys: Arc<dyn KeySource>,
    /// Unix seconds the process started (reported as models' `created`).
    pub started: i64,
}

impl AppState {
    /// Builds the state from the environment: the path every binary takes.
    pub async fn from_env() -> Result<Arc<Self>, StartupError> {
        let config = Config::from_env()?;
        Self::build(config, |k| std::env::var(k).ok().filter(|v| !v.is_empty())).await
    }

    /// Builds the state from a config; `env` supplies provider keys for local runs.
    pub async fn build(
        config: Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<Self>, StartupError> {
        let needs_aws = config.store == StoreKind::Dynamodb || config.secret_id.is_some();
        let aws = if needs_aws {
            Some(aws_sdk_config(&config).await)
        } else {
            None
        };
        let store: Arc<dyn Store> = match (config.store, &aws) {
            (StoreKind::Dynamodb, Some(aws)) => Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.table.clone(),
            )),
            _ => embedded_store(&config)?,
        };
        let keys: Arc<dyn KeySource> = match (&config.secret_id, &aws) {
            (Some(id), Some(aws)) => Arc::new(SecretsManagerKeys::new(
                aws_sdk_secretsmanager::Client::new(aws),
                id.clone(),
                config.secrets_cache_ttl,
            )?),
            _ => Arc::new(EnvKeys::from_config(&config, env)),
        };
        let client = http_client(&config)?;
        Self::from_parts(config, store, keys, client)
    }

    /// Assembles the state from parts (tests inject their own store or keys).
    pub fn from_parts(
        config: Config,
        store: Arc<dyn Store>,
        keys: Arc<dyn KeySource>,
        client: reqwest::Client,
    ) -> Result<Arc<Self>, StartupError> {
        let redactors = Redactors::from_config(&config)?;
        let config = Arc::new(config);
        Ok(Arc::new(Self {
            redactors,
            auth: Authenticator::new(store.clone(), &config, client.clone()),
            providers: Providers::new(config.clone(), client, keys.clone()),
            keys,
            store,
            config,
            started: crate::now_secs(),
        }))
    }
}

#[cfg(feature = "embedded")]
fn embedded_store(config: &Config) -> Result<Arc<dyn Store>, StartupError> {
    Ok(Arc::new(crate::store::embedded::EmbeddedStore::open(
        &config.data_dir,
    )?))
}

#[cfg(not(feature = "embedded"))]
fn embedded_store(_: &Config) -> Result<Arc<dyn Store>, StartupError> {
    Err(
        ConfigError::Invalid("this build has no embedded store; set CTXGATE_STORE=dynamodb".into())
            .into(),
    )
}

/// AWS SDK configuration: region from the environment (default `us-east-1`),
/// endpoint from `AWS_ENDPOINT_URL` when set (emulators). No network is used
/// here; credentials resolve lazily on the first call.
pub async fn aws_sdk_config(config: &Config) -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The one upstream HTTP client: rustls, pooled connections, bounded connect time.
pub fn http_client(config: &Config) -> Result<reqwest::Client, StartupError> {
    reqwest::Client::builder()
        .timeout(config.upstream_timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(concat!("ctxgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StartupError::Http(e.to_string()))
}
