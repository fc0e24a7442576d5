//! Authentication and authorization: a bearer credential (an API key, or a
//! JWT from the configured OIDC issuer) becomes a [`Principal`]; routes then
//! check the scope they need and, for chat, the model.

pub mod grant;
pub mod jwt;
pub mod jwt_ring;
pub mod keys;

use std::sync::Arc;

use crate::config::Config;
use crate::store::{KeyStore, StoreError};

pub use keys::{KEY_PREFIX, KeyAuth, KeySpec, NewKey, hash_key, mint, mint_key};

/// Scope needed to call chat completions.
pub const SCOPE_CHAT: &str = "chat";
/// Scope needed to read stored conversations.
pub const SCOPE_CONVERSATIONS_READ: &str = "conversations:read";
/// Scope needed to change stored conversations.
pub const SCOPE_CONVERSATIONS_WRITE: &str = "conversations:write";
/// Scope needed to read the tenant's usage.
pub const SCOPE_USAGE_READ: &str = "usage:read";
/// Scope needed to call the MCP endpoint (`/mcp`), besides each tool's own.
pub const SCOPE_MCP: &str = "mcp";
/// Scope needed to manage the tenant's keys.
pub const SCOPE_ADMIN: &str = "admin";
/// Cross-tenant key management; only the CLI can grant it.
pub const SCOPE_SUPERADMIN: &str = "superadmin";
/// Scopes a key gets when none are named.
pub const DEFAULT_SCOPES: &[&str] = &[
    SCOPE_CHAT,
    SCOPE_CONVERSATIONS_READ,
    SCOPE_CONVERSATIONS_WRITE,
    SCOPE_USAGE_READ,
];
/// Every scope a key may carry.
pub const KNOWN_SCOPES: &[&str] = &[
    SCOPE_CHAT,
    SCOPE_CONVERSATIONS_READ,
    SCOPE_CONVERSATIONS_WRITE,
    SCOPE_USAGE_READ,
    SCOPE_MCP,
    SCOPE_ADMIN,
    SCOPE_SUPERADMIN,
];

/// Why a request is not authenticated or not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer credential.
    #[error("missing credentials: send 'Authorization: Bearer <key or token>'")]
    Missing,
    /// Unknown or malformed key.
    #[error("invalid API key")]
    Invalid,
    /// The key was revoked.
    #[error("this API key has been revoked")]
    Revoked,
    /// The key is past its expiry.
    #[error("this API key has expired")]
    Expired,
    /// A JWT that does not verify; the reason is safe to show.
    #[error("invalid token: {0}")]
    Token(String),
    /// The issuer's signing keys could not be fetched.
    #[error("the identity provider's signing keys are unavailable")]
    JwksUnavailable,
    /// The principal lacks a scope the route needs.
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    /// The principal may not use this model.
    #[error("this credential may not use the model '{0}'")]
    ModelNotAllowed(String),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Tenant every stored item is scoped to.
    pub tenant: String,
    /// The key's id, or `jwt:{sub}` for a token (the rate-limit identity).
    pub key_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Models allowed (empty: all).
    pub models: Vec<String>,
    /// Requests per minute (None: the configured default).
    pub rpm: Option<u32>,
    /// When the credential stops working (the key's expiry, the token's
    /// `exp`), Unix seconds; keys it mints may not outlive it.
    pub expires_at: Option<i64>,
    /// MCP servers a chat request uses when it names none (a key's
    /// default; empty for tokens).
    pub mcp_servers: Vec<String>,
    /// Globs over federated tool names (`{server}__{tool}`) the principal
    /// may list and call through `/mcp`; empty: every federated tool.
    pub mcp_tools: Vec<String>,
}

impl Principal {
    /// Whether the principal holds `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Fails with 403 unless the principal holds `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), AuthError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }

    /// Fails with 403 unless the model (as requested, or as resolved) is allowed.
    pub fn require_model(&self, requested: &str, resolved: &str) -> Result<(), AuthError> {
        if self.models.is_empty() || self.models.iter().any(|m| m == requested || m == resolved) {
            Ok(())
        } else {
            Err(AuthError::ModelNotAllowed(requested.to_owned()))
        }
    }
}

/// Authenticates requests by API key or, when configured, by JWT.
pub struct Authenticator {
    /// API keys.
    pub keys: KeyAuth,
    jwt: Option<jwt::JwtVerifier>,
}

impl Authenticator {
    /// Builds the authenticator for a config; `client` fetches JWKS.
    pub fn new(store: Arc<dyn KeyStore>, config: &Config, client: reqwest::Client) -> Self {
        Self {
            keys: KeyAuth::new(store, config.key_cache_ttl),
            jwt: config.jwt.clone().map(|c| jwt::JwtVerifier::new(c, client)),
        }
    }

    /// Resolves an `Authorization` header value to a principal.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        self.authenticate_for(authorization, now, None).await
    }

    /// [`Self::authenticate`], where a JWT must name `audience` (when given)
    /// as its `aud`; API keys are not audience-bound.
    pub async fn authenticate_for(
        &self,
        authorization: Option<&str>,
        now: i64,
        audience: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let token = token.trim();
        if token.starts_with(KEY_PREFIX) {
            return self.keys.authenticate(token, now).await;
        }
        match &self.jwt {
            Some(verifier) if token.bytes().filter(|b| *b == b'.').count() == 2 => {
                verifier.verify_for(token, audience).await
            }
            _ => Err(AuthError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_models_are_checked() {
        let p = Principal {
            tenant: "t".into(),
            key_id: "k".into(),
            scopes: vec!["chat".into()],
            models: vec!["fast".into(), "openai/gpt-4o".into()],
            rpm: None,
            expires_at: None,
            mcp_servers: Vec::new(),
            mcp_tools: Vec::new(),
        };
        assert!(p.require(SCOPE_CHAT).is_ok());
        assert!(matches!(
            p.require(SCOPE_ADMIN),
            Err(AuthError::MissingScope("admin"))
        ));
        assert!(p.require_model("fast", "openai/gpt-4o-mini").is_ok());
        assert!(p.require_model("openai/gpt-4o", "openai/gpt-4o").is_ok());
        assert!(matches!(
            p.require_model("echo", "echo"),
            Err(AuthError::ModelNotAllowed(_))
        ));
    }
}
