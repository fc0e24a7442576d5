//! API keys: minting, hashing, and resolving a bearer key to a
//! [`Principal`] (tenant, key id, scopes, models, rate limit).
//!
//! Keys are 256 random bits, shown once, stored only as their SHA-256 (a fast
//! hash is enough for secrets of that entropy). Lookups are cached per
//! process for `key_cache_seconds` (default 30 s): that is how long a
//! revocation can take to bite on a warm function.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{AuthError, DEFAULT_SCOPES, KNOWN_SCOPES, Principal};
use crate::ids;
use crate::store::{ApiKeyRecord, KeyStore, StoreError};

/// Prefix of every secret key (lets secret scanners recognise them).
pub const KEY_PREFIX: &str = "cgk_";

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

/// What a new key grants.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Scopes (empty: the defaults).
    pub scopes: Vec<String>,
    /// Allowed models (empty: all).
    pub models: Vec<String>,
    /// Requests per minute (None: the configured default).
    pub rpm: Option<u32>,
    /// Expiry, Unix seconds.
    pub valid_until: Option<i64>,
    /// Default MCP servers of chat requests (each a server name).
    pub mcp_servers: Vec<String>,
    /// Globs over the federated tools the key may use through `/mcp` (empty: all).
    pub mcp_tools: Vec<String>,
}

/// Mints a key for `tenant` with default models and limits.
pub fn mint_key(
    tenant: &str,
    name: &str,
    scopes: &[String],
    valid_until: Option<i64>,
    now: i64,
) -> Result<NewKey, String> {
    mint(
        &KeySpec {
            tenant: tenant.into(),
            name: name.into(),
            scopes: scopes.to_vec(),
            valid_until,
            ..KeySpec::default()
        },
        now,
    )
}

/// Mints a key from a spec; checks the tenant id, name and scopes.
pub fn mint(spec: &KeySpec, now: i64) -> Result<NewKey, String> {
    if !ids::is_valid_id(&spec.tenant, ids::MAX_TENANT_ID) {
        return Err(
            "tenant ids are 1-64 characters from A-Z, a-z, 0-9, '.', '_', ':' and '-'".into(),
        );
    }
    // Format characters (zero-width, bidi controls) would let a name read as
    // another one in a listing or a log.
    if spec.name.is_empty()
        || spec.name.chars().count() > 128
        || spec
            .name
            .chars()
            .any(|c| c.is_control() || crate::redact::is_format_char(c))
    {
        return Err(
            "key names are 1-128 printable characters, without control, bidi or zero-width characters"
                .into(),
        );
    }
    if let Some(bad) = spec
        .scopes
        .iter()
        .find(|s| !KNOWN_SCOPES.contains(&s.as_str()))
    {
        return Err(format!(
            "unknown scope '{bad}' (known: {})",
            KNOWN_SCOPES.join(", ")
        ));
    }
    let scopes = if spec.scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
    } else {
        spec.scopes.clone()
    };
    let secret = ids::random_token::<32>(KEY_PREFIX);
    let record = ApiKeyRecord {
        key_id: format!("key_{}", hex::encode(ids::random_bytes::<8>())),
        hash: hash_key(&secret),
        tenant: spec.tenant.clone(),
        name: spec.name.clone(),
        scopes,
        created: now,
        revoked: false,
        valid_until: spec.valid_until,
        models: spec.models.clone(),
        rpm: spec.rpm,
        mcp_servers: spec.mcp_servers.clone(),
        mcp_tools: spec.mcp_tools.clone(),
    };
    Ok(NewKey { secret, record })
}

/// Cached lookups are dropped wholesale past this many entries (a bound on
/// memory under a flood of random keys).
const CACHE_MAX: usize = 10_000;
/// Unknown keys are remembered briefly so a flood of bad keys does not hit the store.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Resolves API keys against the store, with a short in-process cache.
pub struct KeyAuth {
    store: Arc<dyn KeyStore>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<ApiKeyRecord>)>>,
}

impl KeyAuth {
    /// A resolver caching lookups for `ttl`.
    pub fn new(store: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves a `cgk_...` key to its principal.
    pub async fn authenticate(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        if token.len() > 128 {
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
            models: record.models,
            rpm: record.rpm,
            expires_at: record.valid_until,
            mcp_servers: record.mcp_servers,
            mcp_tools: record.mcp_tools,
        })
    }

    /// Forgets a cached key at once (this process only), e.g. after a revocation here.
    pub fn forget(&self, hash: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
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
}
