//! The AWS SDK configuration (DynamoDB, Secrets Manager) and the credential
//! chain Bedrock calls are signed with.
//!
//! The local server and CLI (`cli` feature) use the SDK's default chains:
//! environment, profile files, SSO, web identity, container and instance
//! credentials, as every AWS tool does on a developer's machine. A Lambda
//! function reads what Lambda gives it: the region and the role's credentials
//! from the environment, or a container credentials endpoint where Lambda
//! hands credentials that way. Nothing else can be configured on Lambda, and
//! leaving the profile parser, STS, SSO and the instance-metadata client out
//! keeps the function binaries within issue 19's 10 MB (docs/benchmarks.md).

use std::time::Duration;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::config::Config;

pub mod transport;

pub use transport::sdk_http_client;

/// The region when nothing names one.
const FALLBACK_REGION: &str = "us-east-1";

/// The SDK's retries: throttling and transient failures, 4 attempts with
/// jittered backoff from 50 ms.
fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(4)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(1))
}

/// Each attempt and each call time-bounded, so a stalled store cannot eat the
/// request's deadline.
fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// The credential providers' own calls (container endpoint, STS, instance
/// metadata) go through the process's one SDK HTTPS client.
fn provider_config() -> ProviderConfig {
    ProviderConfig::default().with_http_client(sdk_http_client())
}

/// AWS SDK configuration: region from the environment (default `us-east-1`),
/// endpoint from `AWS_ENDPOINT_URL` when set (emulators). No network is used
/// here; credentials resolve lazily on the first call.
///
/// What still fails after the SDK's retries reaches the client as a 503 with
/// `Retry-After`.
#[cfg(feature = "cli")]
pub async fn sdk_config(config: &Config) -> SdkConfig {
    use aws_config::BehaviorVersion;
    use aws_config::imds::region::ImdsRegionProvider;
    use aws_config::profile::ProfileFileRegionProvider;
    let providers = provider_config();
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(
            ProfileFileRegionProvider::builder()
                .configure(&providers)
                .build(),
        )
        .or_else(ImdsRegionProvider::builder().configure(&providers).build())
        .or_else(Region::new(FALLBACK_REGION));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(sdk_http_client())
        .region(region)
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// AWS SDK configuration on Lambda: as above, from the environment alone
/// (Lambda sets `AWS_REGION`); per-service endpoint variables
/// (`AWS_ENDPOINT_URL_DYNAMODB`) are not read, `AWS_ENDPOINT_URL` is.
#[cfg(not(feature = "cli"))]
pub async fn sdk_config(config: &Config) -> SdkConfig {
    use aws_config::BehaviorVersion;
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(Region::new(FALLBACK_REGION))
        .region()
        .await;
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.clone())
        .http_client(sdk_http_client())
        .credentials_provider(credentials(region).await)
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    builder.build()
}

/// The credential chain: the SDK's default one locally (its own calls, to STS
/// or SSO, in `region`, else the environment's).
#[cfg(feature = "cli")]
pub async fn credentials(region: Option<Region>) -> SharedCredentialsProvider {
    use aws_config::default_provider::credentials::DefaultCredentialsChain;
    let mut chain = DefaultCredentialsChain::builder().configure(provider_config());
    chain.set_region(region);
    SharedCredentialsProvider::new(chain.build().await)
}

/// The credential chain on Lambda: the role's credentials from the
/// environment, else from the container credentials endpoint. `region` is
/// unused: neither source makes a regional call.
#[cfg(not(feature = "cli"))]
pub async fn credentials(_region: Option<Region>) -> SharedCredentialsProvider {
    use aws_config::ecs::EcsCredentialsProvider;
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::meta::credentials::CredentialsProviderChain;
    let container = EcsCredentialsProvider::builder()
        .configure(&provider_config())
        .build();
    SharedCredentialsProvider::new(
        CredentialsProviderChain::first_try(
            "Environment",
            EnvironmentVariableCredentialsProvider::new(),
        )
        .or_else("Container", container),
    )
}
