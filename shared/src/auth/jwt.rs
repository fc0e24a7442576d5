//! OIDC bearer tokens: signatures checked against the issuer's JWKS
//! (fetched over HTTPS, cached, refetched on an unknown `kid`), then `iss`,
//! `aud`, `exp` and `nbf` with a small leeway. Only asymmetric algorithms
//! are accepted, so neither `alg: none` nor an HMAC key confusion can pass,
//! and a key that declares its `alg` verifies only tokens of that `alg`.
//! Refetches go through [`Cached`]: one at a time, with backoff while the
//! issuer fails, the last keys served for a bounded time past their TTL.
//! Signatures are checked on ring ([`super::jwt_ring`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::{AuthError, Principal, SCOPE_SUPERADMIN};
use crate::config::JwtConfig;
use crate::ids;
use crate::refresh::{Cached, Clock, RefreshPolicy, SystemClock, Want};

/// Largest JWKS document read (real ones are a few KB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Algorithms a token may be signed with.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A verification key and the one algorithm it is bound to, if it declares one.
struct Key {
    key: DecodingKey,
    alg: Option<Algorithm>,
}

type Keys = HashMap<String, Arc<Key>>;

/// Verifies JWTs from one issuer.
pub struct JwtVerifier {
    config: JwtConfig,
    url: String,
    client: reqwest::Client,
    keys: Cached<Keys>,
}

impl JwtVerifier {
    /// A verifier; nothing is fetched until the first token.
    pub fn new(config: JwtConfig, client: reqwest::Client) -> Self {
        Self::with_clock(config, client, Arc::new(SystemClock))
    }

    /// A verifier whose cache reads time from `clock` (tests move it by hand).
    pub fn with_clock(config: JwtConfig, client: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        super::jwt_ring::install();
        let policy = RefreshPolicy::new(
            Duration::from_secs(config.jwks_cache_seconds),
            Duration::from_secs(config.jwks_max_stale_seconds),
            Duration::from_secs(config.jwks_refetch_seconds),
        );
        Self {
            url: config.jwks_url(),
            config,
            client,
            keys: Cached::new(policy, clock),
        }
    }

    /// Verifies a token and maps its claims to a principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_for(token, None).await
    }

    /// [`Self::verify`], with `audience` (when given) the only accepted `aud`
    /// instead of the configured ones: a resource's own tokens (RFC 8707).
    pub async fn verify_for(
        &self,
        token: &str,
        audience: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let header =
            decode_header(token).map_err(|_| AuthError::Token("malformed token header".into()))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(AuthError::Token(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Token("token has no kid".into()))?;
        let key = self.key(&kid).await?;
        // A key that names its algorithm verifies nothing else (RFC 7517 4.4).
        if key.alg.is_some_and(|alg| alg != header.alg) {
            return Err(AuthError::Token(
                "token algorithm does not match its signing key".into(),
            ));
        }
        let key = &key.key;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.config.issuer]);
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.set_audience(&self.config.audience),
        }
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Map<String, Value>>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthError::Token(
                match e.kind() {
                    K::ExpiredSignature => "token expired",
                    K::ImmatureSignature => "token not yet valid",
                    K::InvalidAudience => "wrong audience",
                    K::InvalidIssuer => "wrong issuer",
                    K::InvalidSignature => "bad signature",
                    K::MissingRequiredClaim(_) => "a required claim is missing",
                    _ => "token rejected",
                }
                .into(),
            )
        })?;
        self.principal(&data.claims)
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let tenant = claims
            .get(&self.config.tenant_claim)
            .and_then(Value::as_str)
            .filter(|t| ids::is_valid_id(t, ids::MAX_TENANT_ID))
            .ok_or_else(|| {
                AuthError::Token(format!("no valid '{}' claim", self.config.tenant_claim))
            })?;
        let mut scopes: Vec<String> = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => {
                s.split_whitespace().map(str::to_owned).collect()
            }
            (None, Some(Value::Array(a))) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        // Cross-tenant power is only ever granted by the CLI.
        scopes.retain(|s| s != SCOPE_SUPERADMIN);
        let models = match self
            .config
            .models_claim
            .as_deref()
            .and_then(|c| claims.get(c))
        {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("anonymous");
        Ok(Principal {
            tenant: tenant.to_owned(),
            key_id: format!("jwt:{subject}"),
            scopes,
            models,
            rpm: None,
            // `exp` is a NumericDate: integer or not.
            expires_at: claims
                .get("exp")
                .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))),
            // Tokens carry no default MCP servers: requests name their own.
            mcp_servers: Vec::new(),
            mcp_tools: match claims.get(&self.config.mcp_tools_claim) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
                _ => Vec::new(),
            },
        })
    }

    /// The key for `kid`: from the cache, or refetched (an unknown `kid`
    /// refetches at most once per `jwks_refetch_seconds`).
    async fn key(&self, kid: &str) -> Result<Arc<Key>, AuthError> {
        for want in [Want::Fresh, Want::Newer] {
            let keys = self
                .keys
                .get(want, || self.fetch())
                .await
                .map_err(|_| AuthError::JwksUnavailable)?;
            if let Some(key) = keys.get(kid) {
                return Ok(key.clone());
            }
        }
        Err(AuthError::Token("unknown signing key".into()))
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("JWKS request failed: {}", crate::capped::error_kind(&e)))?;
        if !resp.status().is_success() {
            return Err(format!(
                "JWKS fetch answered HTTP {}",
                resp.status().as_u16()
            ));
        }
        let body = crate::capped::read(resp, MAX_JWKS_BYTES)
            .await
            .map_err(|e| format!("JWKS body: {e}"))?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|_| "JWKS is not a JSON key set".to_owned())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                // Symmetric keys never verify tokens here; nor do encryption keys.
                if matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
                ) || jwk.common.public_key_use == Some(PublicKeyUse::Encryption)
                {
                    return None;
                }
                let alg = match jwk.common.key_algorithm {
                    None => None,
                    // A declared algorithm we do not accept disables the key.
                    Some(a) => Some(
                        Algorithm::try_from(a)
                            .ok()
                            .filter(|a| ALLOWED.contains(a))?,
                    ),
                };
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, Arc::new(Key { key, alg })))
            })
            .collect())
    }
}
