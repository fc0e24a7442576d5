//! MCP servers' header values (credentials): write-only through the admin
//! API, kept outside the table.

use std::collections::BTreeMap;

use async_trait::async_trait;

/// A failure to read or write header values (never contains a value).
#[derive(Debug, thiserror::Error)]
#[error("credentials store failed: {0}")]
pub struct CredentialsError(pub String);

/// Where servers' header values are kept.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// Stores (replaces) the values of `tenant`'s server `server`.
    async fn put(
        &self,
        tenant: &str,
        server: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CredentialsError>;
    /// The values of `tenant`'s server `server` (empty when none are kept).
    async fn get(
        &self,
        tenant: &str,
        server: &str,
    ) -> Result<BTreeMap<String, String>, CredentialsError>;
    /// Forgets them.
    async fn delete(&self, tenant: &str, server: &str) -> Result<(), CredentialsError>;
}

/// Values kept in memory (tests, and processes with no place to keep them).
#[derive(Default)]
pub struct MemoryCredentials {
    values: std::sync::Mutex<BTreeMap<(String, String), BTreeMap<String, String>>>,
}

#[async_trait]
impl Credentials for MemoryCredentials {
    async fn put(
        &self,
        tenant: &str,
        server: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CredentialsError> {
        let mut m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        m.insert((tenant.to_owned(), server.to_owned()), values.clone());
        Ok(())
    }

    async fn get(
        &self,
        tenant: &str,
        server: &str,
    ) -> Result<BTreeMap<String, String>, CredentialsError> {
        let m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.get(&(tenant.to_owned(), server.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    async fn delete(&self, tenant: &str, server: &str) -> Result<(), CredentialsError> {
        let mut m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(tenant.to_owned(), server.to_owned()));
        Ok(())
    }
}
