//! API keys: minting, hashing, and resolving a bearer key to a
//! [`Principal`] (tenant, key id, scopes, models, rate limit).
//!
//! Keys are 256 random bits, shown once, stored only as their SHA-256 (a fast
//! hash is enough for secrets of that entropy). Lookups are cached per
//! process for `key_cache_seconds` (default 30 s): that is how long a
//! revocation can take to bite on a warm function.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sha2::{Digest, Sha256};

use super::{AuthError, DEFAULT_SCOPES, KNOWN_SCOPES, Principal};
use crate::ids;
use crate::read_cache::ReadCache;
use crate::store::{ApiKeyRecord, KeyStore, StoreError};

/// Prefix of every secret key (lets secret scanners recognise them).
pub const KEY_PREFIX: &str = "cgk_";

/// Hex SHA-256 of a secret key.
pub fn hash_key(secret: &str) -> String {
    hex::encode(digest(secret))
}

/// SHA-256 of a secret key: the cache's key (the hex form is the store's,
/// made only on a cache miss).
type Digest32 = [u8; 32];

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
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
/// Concurrent misses of one key share one store read (a fresh Lambda
/// environment serving many invocations at once reads each key once).
pub struct KeyAuth {
    store: Arc<dyn KeyStore>,
    ttl: Duration,
    cache: ReadCache<Digest32, Option<Box<ApiKeyRecord>>, StoreError>,
}

impl KeyAuth {
    /// A resolver caching lookups for `ttl`.
    pub fn new(store: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: ReadCache::new(CACHE_MAX),
        }
    }

    /// Resolves a `cgk_...` key to its principal.
    pub async fn authenticate(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        if token.len() > 128 {
            return Err(AuthError::Invalid);
        }
        let record = *self
            .lookup(digest(token))
            .await?
            .ok_or(AuthError::Invalid)?;
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

    /// Forgets a cached key at once (this process only), e.g. after a
    /// revocation here; a read under way is then not cached either.
    pub fn forget(&self, hash: &str) {
        let mut digest = Digest32::default();
        if hex::decode_to_slice(hash, &mut digest).is_ok() {
            self.cache.forget(&digest);
        }
    }

    async fn lookup(&self, hash: Digest32) -> Result<Option<Box<ApiKeyRecord>>, StoreError> {
        let ttl = |rec: &Option<Box<ApiKeyRecord>>| {
            if rec.is_some() {
                self.ttl
            } else {
                NEGATIVE_TTL
            }
        };
        // The hex form is the store's, made only on a miss.
        let read = || {
            let (store, key) = (self.store.clone(), hex::encode(hash));
            async move { Ok(store.key_by_hash(&key).await?.map(Box::new)) }.boxed()
        };
        self.cache.get(&hash, ttl, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    /// A key store whose reads wait for `open` and are counted.
    #[derive(Default)]
    struct Gated {
        reads: AtomicUsize,
        reading: Notify,
        open: Notify,
        record: Option<ApiKeyRecord>,
    }

    #[async_trait]
    impl KeyStore for Gated {
        async fn put_key(&self, _: &ApiKeyRecord) -> Result<(), StoreError> {
            Ok(())
        }
        async fn key_by_hash(&self, _: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.reading.notify_one();
            self.open.notified().await;
            Ok(self.record.clone())
        }
        async fn list_keys(&self, _: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
            Ok(Vec::new())
        }
        async fn revoke_key(&self, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn get_key(&self, _: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
            Ok(None)
        }
    }

    // Issue 19: a lookup that goes away (its request cancelled) leaves the
    // shared read to those still waiting; it is made once, and cached.
    #[tokio::test]
    async fn a_cancelled_lookup_leaves_the_read_to_the_others() {
        let k = mint_key("acme", "ci", &[], None, 1).unwrap();
        let store = Arc::new(Gated {
            record: Some(k.record.clone()),
            ..Gated::default()
        });
        let auth = Arc::new(KeyAuth::new(store.clone(), Duration::from_secs(30)));
        let lookup = |auth: &Arc<KeyAuth>| {
            let (auth, secret) = (auth.clone(), k.secret.clone());
            tokio::spawn(async move { auth.authenticate(&secret, 2).await })
        };
        let first = lookup(&auth);
        store.reading.notified().await;
        let second = lookup(&auth);
        // Until the second waits on the same read: the slot, then two
        // handles per waiter (its own and the one it awaits).
        let hash = digest(&k.secret);
        while auth.cache.sharing(&hash) < 5 {
            tokio::task::yield_now().await;
        }
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        store.open.notify_one();
        assert_eq!(second.await.unwrap().unwrap().tenant, "acme");
        assert_eq!(
            auth.authenticate(&k.secret, 2).await.unwrap().tenant,
            "acme"
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        // Cached under the digest; forgotten by the hex hash the store and
        // the admin API know it by, so the next lookup reads again.
        auth.forget(&hash_key(&k.secret));
        store.open.notify_one();
        auth.authenticate(&k.secret, 3).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

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
