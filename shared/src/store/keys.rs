//! API key records.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public key id (`key_...`).
    pub key_id: String,
    /// Hex SHA-256 of the secret key.
    pub hash: String,
    /// Tenant the key belongs to.
    pub tenant: String,
    /// Human label.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// Revoked keys stay listed but no longer authenticate.
    pub revoked: bool,
    /// Optional expiry (Unix seconds).
    #[serde(default)]
    pub valid_until: Option<i64>,
    /// Models the key may use (`provider/model` or alias); empty: all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requests per minute allowed for this key (None: the configured default).
    #[serde(default)]
    pub rpm: Option<u32>,
    /// MCP servers a chat request uses when it names none (`mcp_servers`).
    #[serde(default)]
    pub mcp_servers: Vec<String>,
    /// Globs over federated tool names (`{server}__{tool}`) the key may use
    /// through `/mcp` (`mcp_tools`); empty: every federated tool.
    #[serde(default)]
    pub mcp_tools: Vec<String>,
}

/// API key records.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key.
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// Finds a key by the hash of its secret.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Lists keys, of one tenant or all.
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes a key by id; `false` if there is no such key.
    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError>;

    /// Finds a key by id.
    async fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
}
