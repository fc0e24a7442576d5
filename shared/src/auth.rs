//! API keys: minting, hashing, and authenticating a request to a
//! [`Principal`] (tenant, key id, scopes).
//!
//! Keys are 256 random bits, shown once, stored only as their SHA-256 (a fast
//! hash is enough for secrets of that entropy). Lookups are cached per
//! process for `key_cache_seconds` (default 30 s): that is how long a
//! revocation can take to bite on a warm function.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::ids;
use crate::store::{ApiKeyRecord, Store, StoreError};

/// Scope needed to call chat completions.
pub const SCOPE_CHAT: &str = "chat";
/// Scope needed to read stored conversations.
pub const SCOPE_CONVERSATIONS_READ: &str = "conversations:read";
/// Scope needed to change stored conversations.
pub const SCOPE_CONVERSATIONS_WRITE: &str = "conversations:write";
/// Scope needed to manage keys.
pub const SCOPE_ADMIN: &str = "admin";
/// Scopes a key gets when none are named.
pub const DEFAULT_SCOPES: &[&str] = &[
    SCOPE_CHAT,
    SCOPE_CONVERSATIONS_READ,
    SCOPE_CONVERSATIONS_WRITE,
];
/// Every scope a key may carry.
pub const KNOWN_SCOPES: &[&str] = &[
    SCOPE_CHAT,
    SCOPE_CONVERSATIONS_READ,
    SCOPE_CONVERSATIONS_WRITE,
    SCOPE_ADMIN,
];

/// Prefix of every secret key (lets secret scanners recognise them).
pub const KEY_PREFIX: &str = "cgk_";

/// Why a request is not authenticated or not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token.
    #[error("missing API key: send 'Authorization: Bearer <key>'")]
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
    /// The key lacks a scope the route needs.
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Tenant every stored item is scoped to.
    pub tenant: String,
    /// The key's public id.
    pub key_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Fails with 403 unless the principal holds `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), AuthError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }
}

/// Hex SHA-256 of a secret key.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A freshly minted key: the secret (show once) and what is stored.
pub struct NewKey {
    /// The secret to hand to the user; never stored.
    pub secret: String,
    /// The stored record.
    pub record: ApiKeyRecord,
}

/// Mints a key for `tenant`; checks the tenant id and scopes.
pub fn mint_key(
    tenant: &str,
    name: &str,
    scopes: &[String],
    valid_until: Option<i64>,
    now: i64,
) -> Result<NewKey, String> {
    if !ids::is_valid_id(tenant, ids::MAX_TENANT_ID) {
        return Err(
            "tenant ids are 1-64 characters from A-Z, a-z, 0-9, '.', '_', ':' and '-'".into(),
        );
    }
    if let Some(bad) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(format!(
            "unknown scope '{bad}' (known: {})",
            KNOWN_SCOPES.join(", ")
        ));
    }
    let scopes = if scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
    } else {
        scopes.to_vec()
    };
    let secret = ids::random_token::<32>(KEY_PREFIX);
    let record = ApiKeyRecord {
        key_id: format!("key_{}", hex::encode(ids::random_bytes::<8>())),
        hash: hash_key(&secret),
        tenant: tenant.into(),
        name: name.into(),
        scopes,
        created: now,
        revoked: false,
        valid_until,
    };
    Ok(NewKey { secret, record })
}

/// Cached lookups are dropped wholesale past this many entries (a bound on
/// memory under a flood of random keys).
const CACHE_MAX: usize = 10_000;
/// Unknown keys are remembered briefly so a flood of bad keys does not hit the store.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Authenticates bearer keys against the store, with a short in-process cache.
pub struct Authenticator {
    store: Arc<dyn Store>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<ApiKeyRecord>)>>,
}

impl Authenticator {
    /// An authenticator caching lookups for `ttl`.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves an `Authorization` header value to a principal.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let token = token.trim();
        if !token.starts_with(KEY_PREFIX) || token.len() > 128 {
            return Err(AuthError::Invalid);
        }
        let hash = hash_key(token);
        let record = self.lookup(&hash).await?.ok_or(AuthError::Invalid)?;
        if record.revoked {
            return Err(AuthError::Revoked);
        }
        if record.valid_until.is_some_and(|v| v <= now) {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            tenant: record.tenant,
            key_id: record.key_id,
            scopes: record.scopes,
        })
    }

    async fn lookup(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, rec)) = cache.get(hash) {
                let ttl = if rec.is_some() {
                    self.ttl
                } else {
                    NEGATIVE_TTL
                };
                if at.elapsed() < ttl {
                    return Ok(rec.clone());
                }
            }
        }
        let rec = self.store.key_by_hash(hash).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash.to_owned(), (Instant::now(), rec.clone()));
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_checks_input_and_hashes() {
        let k = mint_key("acme", "ci", &[], None, 1).unwrap();
        assert!(k.secret.starts_with(KEY_PREFIX));
        assert_eq!(k.record.hash, hash_key(&k.secret));
        assert_ne!(k.record.hash, k.secret);
        assert_eq!(k.record.scopes.len(), DEFAULT_SCOPES.len());
        assert!(mint_key("a#b", "x", &[], None, 1).is_err());
        assert!(mint_key("acme", "x", &["root".into()], None, 1).is_err());
    }

    #[test]
    fn scopes_are_checked() {
        let p = Principal {
            tenant: "t".into(),
            key_id: "k".into(),
            scopes: vec!["chat".into()],
        };
        assert!(p.require(SCOPE_CHAT).is_ok());
        assert!(matches!(
            p.require(SCOPE_ADMIN),
            Err(AuthError::MissingScope("admin"))
        ));
    }
}
