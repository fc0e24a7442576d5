//! OIDC bearer tokens: signatures checked against the issuer's JWKS
//! (fetched over HTTPS, cached, refetched on an unknown `kid`), then `iss`,
//! `aud`, `exp` and `nbf` with a small leeway. Only asymmetric algorithms
//! are accepted, so neither `alg: none` nor an HMAC key confusion can pass.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, Principal, SCOPE_SUPERADMIN};
use crate::config::JwtConfig;
use crate::ids;

/// Algorithms a token may be signed with.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

struct Keys {
    fetched: Instant,
    by_kid: HashMap<String, DecodingKey>,
}

/// Verifies JWTs from one issuer.
pub struct JwtVerifier {
    config: JwtConfig,
    url: String,
    client: reqwest::Client,
    keys: RwLock<Option<Keys>>,
    fetching: Mutex<Option<Instant>>,
}

impl JwtVerifier {
    /// A verifier; nothing is fetched until the first token.
    pub fn new(config: JwtConfig, client: reqwest::Client) -> Self {
        Self {
            url: config.jwks_url(),
            config,
            client,
            keys: RwLock::new(None),
            fetching: Mutex::new(None),
        }
    }

    /// Verifies a token and maps its claims to a principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
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
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audience);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
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
        })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let ttl = Duration::from_secs(self.config.jwks_cache_seconds);
        {
            let keys = self.keys.read().await;
            if let Some(k) = keys.as_ref()
                && k.fetched.elapsed() < ttl
                && let Some(key) = k.by_kid.get(kid)
            {
                return Ok(key.clone());
            }
        }
        // One fetch at a time; an unknown kid refetches at most once per interval.
        let mut last = self.fetching.lock().await;
        let stale = self
            .keys
            .read()
            .await
            .as_ref()
            .is_none_or(|k| k.fetched.elapsed() >= ttl);
        let interval = Duration::from_secs(self.config.jwks_refetch_seconds);
        let may_refetch = last.is_none_or(|t| t.elapsed() >= interval);
        if stale || may_refetch {
            *last = Some(Instant::now());
            match self.fetch().await {
                Ok(by_kid) => {
                    *self.keys.write().await = Some(Keys {
                        fetched: Instant::now(),
                        by_kid,
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS fetch failed");
                    // Keep serving the keys we have, even past their TTL.
                    if self.keys.read().await.is_none() {
                        return Err(AuthError::JwksUnavailable);
                    }
                }
            }
        }
        drop(last);
        let keys = self.keys.read().await;
        keys.as_ref()
            .and_then(|k| k.by_kid.get(kid).cloned())
            .ok_or_else(|| AuthError::Token("unknown signing key".into()))
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let set: JwkSet = resp.json().await.map_err(|e| e.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                // Symmetric keys never verify tokens here.
                if matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
                ) {
                    return None;
                }
                DecodingKey::from_jwk(jwk).ok().map(|k| (kid, k))
            })
            .collect())
    }
}
