//! Everything a handler needs, built once per cold start and shared by every
//! invocation: config, store, authenticator, providers (one HTTP client).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::config::{Config, ConfigError, StoreKind};
use crate::mcp::credentials::{
    Credentials, FileCredentials, MemoryCredentials, SecretsManagerCredentials,
};
use crate::processor::Redactors;
use crate::provider::Providers;
use crate::secrets::{EnvKeys, KeySource, SecretsError, SecretsManagerKeys};
use crate::store::dynamo::DynamoStore;
use crate::store::{KeyStore, Store, StoreError};

/// Why the process could not start.
#[derive(thiserror::Error)]
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
    /// The MCP credentials store could not be opened.
    #[error(transparent)]
    Credentials(#[from] crate::mcp::credentials::CredentialsError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// A function's `main` returns this error, and Rust prints it with `Debug` as
/// its last words (`Error: ...`): one readable line naming the cause (for
/// configuration, the variable), which is what Lambda's init log then shows.
impl std::fmt::Debug for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.to_string().replace(['\n', '\r'], " ");
        write!(f, "cold start failed: {text}")
    }
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
    /// Tenants' MCP servers: registry, credentials, clients.
    pub mcp: crate::mcp::Mcp,
    /// Unix seconds the process started (reported as models' `created`).
    pub started: i64,
    /// Usage rows and budget settlements, written in batches off the
    /// critical path (flush it before the process exits).
    pub usage: Arc<crate::usage::flush::UsageBatcher>,
    /// Request metrics: EMF records on Lambda, the local server's registry.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// Builds the state from the environment: the path every binary takes.
    /// On Lambda it also arranges for usage to be flushed on SIGTERM
    /// ([`crate::shutdown::on_lambda_shutdown`], during the Init phase).
    pub async fn from_env() -> Result<Arc<Self>, StartupError> {
        let config = Config::from_env()?;
        let state =
            Self::build(config, |k| std::env::var(k).ok().filter(|v| !v.is_empty())).await?;
        crate::shutdown::on_lambda_shutdown(state.usage.clone()).await;
        Ok(state)
    }

    /// Builds the state from a config; `env` supplies provider keys for local runs.
    pub async fn build(
        config: Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<Self>, StartupError> {
        let needs_aws = config.store == StoreKind::Dynamodb || config.secret_id.is_some();
        let aws = if needs_aws {
            Some(crate::aws::sdk_config(&config).await)
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
            (Some(id), Some(aws)) => Arc::new(SecretsManagerKeys::with_policy(
                aws_sdk_secretsmanager::Client::new(aws),
                id.clone(),
                crate::refresh::RefreshPolicy::new(
                    config.secrets_cache_ttl,
                    config.secrets_max_stale,
                    Duration::ZERO,
                ),
                Arc::new(crate::refresh::SystemClock),
            )?),
            _ => Arc::new(EnvKeys::from_config(&config, env)),
        };
        // MCP servers' header values live beside the store: Secrets Manager
        // with DynamoDB, an owner-only file of the data directory otherwise.
        let credentials: Arc<dyn Credentials> = match (config.store, &aws) {
            (StoreKind::Dynamodb, Some(aws)) => Arc::new(SecretsManagerCredentials::new(
                aws_sdk_secretsmanager::Client::new(aws),
                config.mcp.secret_prefix.clone(),
            )),
            _ => Arc::new(FileCredentials::open(&config.data_dir)?),
        };
        let client = http_client(&config)?;
        Self::from_parts_with(config, store, keys, client, credentials)
    }

    /// Assembles the state from parts (tests inject their own store or
    /// keys); MCP header values are kept in memory.
    pub fn from_parts(
        config: Config,
        store: Arc<dyn Store>,
        keys: Arc<dyn KeySource>,
        client: reqwest::Client,
    ) -> Result<Arc<Self>, StartupError> {
        Self::from_parts_with(
            config,
            store,
            keys,
            client,
            Arc::new(MemoryCredentials::default()),
        )
    }

    /// [`AppState::from_parts`] with the place MCP header values are kept.
    pub fn from_parts_with(
        config: Config,
        store: Arc<dyn Store>,
        keys: Arc<dyn KeySource>,
        client: reqwest::Client,
        credentials: Arc<dyn Credentials>,
    ) -> Result<Arc<Self>, StartupError> {
        // Config-declared MCP servers meet the registration rules (the
        // rules live in `mcp`, which `config` cannot use).
        crate::mcp::registry::check_declared(&config)?;
        let redactors = Redactors::from_config(&config)?;
        let config = Arc::new(config);
        let mcp = crate::mcp::Mcp::new(
            config.clone(),
            store.clone(),
            credentials,
            crate::mcp::client::Clients::new(&config),
        );
        let usage = crate::usage::flush::UsageBatcher::new(
            store.clone(),
            config.usage_flush_interval,
            config.usage_flush_after_response,
        );
        Ok(Arc::new(Self {
            metrics: Arc::new(crate::metrics::Metrics::new(&config)),
            usage,
            mcp,
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
    use crate::config::EmbeddedFsync;
    use crate::store::embedded::{Answer, EmbeddedStore};
    let answer = match config.embedded_fsync {
        EmbeddedFsync::BeforeAnswer => Answer::WhenDurable,
        EmbeddedFsync::AfterAnswer => Answer::WhenCommitted,
    };
    Ok(Arc::new(EmbeddedStore::open_with(
        &config.data_dir,
        answer,
    )?))
}

/// The key store the admin CLI writes: the table with DynamoDB, the key file
/// locally (shared with a running server, which holds the rest of the store).
pub async fn key_store(config: &Config) -> Result<Arc<dyn KeyStore>, StartupError> {
    if config.store == StoreKind::Dynamodb {
        let aws = crate::aws::sdk_config(config).await;
        return Ok(Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            config.table.clone(),
        )));
    }
    embedded_keys(config)
}

#[cfg(feature = "embedded")]
fn embedded_keys(config: &Config) -> Result<Arc<dyn KeyStore>, StartupError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StoreError::Backend(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    Ok(Arc::new(
        crate::store::embedded::keys::KeyFile::open_for_admin(&config.data_dir)?,
    ))
}

#[cfg(not(feature = "embedded"))]
fn embedded_keys(_: &Config) -> Result<Arc<dyn KeyStore>, StartupError> {
    Err(
        ConfigError::Invalid("this build has no embedded store; set CTXGATE_STORE=dynamodb".into())
            .into(),
    )
}

#[cfg(not(feature = "embedded"))]
fn embedded_store(_: &Config) -> Result<Arc<dyn Store>, StartupError> {
    Err(
        ConfigError::Invalid("this build has no embedded store; set CTXGATE_STORE=dynamodb".into())
            .into(),
    )
}

/// The one upstream HTTP client (providers, JWKS): rustls ([`crate::tls`]), pooled
/// connections, bounded connect time, and no redirects followed, so a
/// provider key or a prompt never goes to a host other than the configured one.
pub fn http_client(config: &Config) -> Result<reqwest::Client, StartupError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::client_config())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.upstream_timeout)
        .connect_timeout(config.connect_timeout)
        // Between reads: the first byte of an answer, then each chunk of it.
        .read_timeout(config.first_byte_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(concat!("ctxgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StartupError::Http(e.to_string()))
}
