//! The AWS credentials Bedrock calls are signed with: [`crate::aws::credentials`]
//! (locally the SDK's default chain; on Lambda the function's role),
//! built once per process on first use and resolved again only shortly
//! before what it gave expires. The SDK's own identity cache needs the SDK
//! client runtime around it; this is the same rule for signed `reqwest` calls.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

/// Credentials are resolved again this long before they expire (the SDK's buffer).
const EXPIRY_BUFFER: Duration = Duration::from_secs(300);

/// Where Bedrock providers get their AWS credentials, cached.
#[derive(Debug)]
pub struct AwsCredentials {
    /// The source; `None` until the default chain is first needed.
    source: RwLock<Option<SharedCredentialsProvider>>,
    /// The region the default chain's own calls (STS, SSO) use.
    region: Option<String>,
    cached: Mutex<Option<Credentials>>,
    /// One resolution at a time: concurrent callers wait for it.
    refresh: tokio::sync::Mutex<()>,
}

/// Why no credentials could be had (the chain's reason is logged, not shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no AWS credentials resolved (environment variables, profile, or the function's role)")]
pub struct NoCredentials;

impl AwsCredentials {
    /// The default chain, built on first use; `region` is the one its own
    /// calls use (the environment's when `None`).
    pub fn default_chain(region: Option<String>) -> Self {
        Self {
            source: RwLock::new(None),
            region,
            cached: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Replaces where credentials come from (tests, or a caller with an
    /// `SdkConfig` already loaded), dropping what was cached.
    pub fn set_source(&self, source: SharedCredentialsProvider) {
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn fresh(&self) -> Option<Credentials> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|c| usable(c, SystemTime::now()))
            .cloned()
    }

    /// Credentials to sign with: cached ones while they have more than five
    /// minutes left, else freshly resolved.
    pub async fn resolve(&self) -> Result<Credentials, NoCredentials> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _one = self.refresh.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let source = self
            .source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let source = match source {
            Some(s) => s,
            None => {
                let region = self.region.clone().map(aws_config::Region::new);
                let built = crate::aws::credentials(region).await;
                *self.source.write().unwrap_or_else(|e| e.into_inner()) = Some(built.clone());
                built
            }
        };
        match source.provide_credentials().await {
            Ok(c) => {
                *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                // The chain's reasons name providers and files, not secrets.
                tracing::warn!(error = %e, "AWS credentials did not resolve");
                Err(NoCredentials)
            }
        }
    }
}

/// Whether `c` may still sign at `now`.
fn usable(c: &Credentials, now: SystemTime) -> bool {
    c.expiry().is_none_or(|at| at > now + EXPIRY_BUFFER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_before_they_expire() {
        let now = SystemTime::now();
        let with = |expiry| Credentials::new("AKID", "secret", None, expiry, "test");
        assert!(usable(&with(None), now));
        assert!(usable(&with(Some(now + Duration::from_secs(3600))), now));
        assert!(!usable(&with(Some(now + Duration::from_secs(60))), now));
    }

    #[tokio::test]
    async fn a_set_source_is_used_and_cached() {
        let creds = AwsCredentials::default_chain(Some("us-east-1".into()));
        creds.set_source(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        )));
        assert_eq!(creds.resolve().await.unwrap().access_key_id(), "AKIDTEST");
        assert!(creds.fresh().is_some());
    }
}
