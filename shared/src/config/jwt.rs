//! The OIDC issuer whose JWTs are accepted as bearer tokens.

use serde::Deserialize;

use super::{ConfigError, check_upstream_url};

/// An OIDC issuer whose JWTs are accepted as bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audience: Vec<String>,
    /// JWKS location (default: `{issuer}/.well-known/jwks.json`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Claim naming the tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Optional claim listing the models the token may use.
    #[serde(default)]
    pub models_claim: Option<String>,
    /// Claim listing globs over the federated MCP tools (`{server}__{tool}`)
    /// the token may use through `/mcp` (default `mcp_tools`; absent or
    /// empty in the token: every tool).
    #[serde(default = "default_mcp_tools_claim")]
    pub mcp_tools_claim: String,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// How long fetched signing keys are trusted before a refetch, seconds.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_cache_seconds: u64,
    /// Least time between two refetches caused by an unknown `kid`, seconds
    /// (so forged kids cannot hammer the issuer).
    #[serde(default = "default_refetch")]
    pub jwks_refetch_seconds: u64,
    /// How long past `jwks_cache_seconds` the last keys are still used while
    /// the issuer fails, seconds (then tokens are refused with a 503).
    #[serde(default = "default_max_stale")]
    pub jwks_max_stale_seconds: u64,
}

fn default_refetch() -> u64 {
    10
}
pub(super) fn default_max_stale() -> u64 {
    3600
}

fn default_mcp_tools_claim() -> String {
    "mcp_tools".into()
}

fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_ttl() -> u64 {
    3600
}

impl JwtConfig {
    /// The JWKS URL passes the upstream rule; at least one audience.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Err(problem) = check_upstream_url(&self.jwks_url()) {
            return Err(ConfigError::Invalid(format!(
                "jwt.jwks_url (or CTXGATE_JWT_JWKS_URL) {problem}"
            )));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::Invalid(
                "jwt.audience (or CTXGATE_JWT_AUDIENCE) must name at least one audience".into(),
            ));
        }
        Ok(())
    }

    /// The JWKS URL, explicit or derived from the issuer.
    pub fn jwks_url(&self) -> String {
        self.jwks_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/jwks.json",
                self.issuer.trim_end_matches('/')
            )
        })
    }
}

/// The JWT issuer from the file, with `CTXGATE_JWT_ISSUER` / `CTXGATE_JWT_AUDIENCE`
/// (comma-separated) / `CTXGATE_JWT_JWKS_URL` taking precedence (the SAM
/// template passes them as environment).
pub(super) fn jwt_config(
    file: Option<JwtConfig>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<JwtConfig>, ConfigError> {
    let issuer = env("CTXGATE_JWT_ISSUER");
    let audience = env("CTXGATE_JWT_AUDIENCE");
    let mut jwt = match (file, issuer) {
        (Some(mut f), Some(iss)) => {
            f.issuer = iss;
            f
        }
        (Some(f), None) => f,
        (None, Some(iss)) => JwtConfig {
            issuer: iss,
            audience: Vec::new(),
            jwks_url: None,
            tenant_claim: default_tenant_claim(),
            models_claim: None,
            mcp_tools_claim: default_mcp_tools_claim(),
            leeway_seconds: default_leeway(),
            jwks_cache_seconds: default_jwks_ttl(),
            jwks_refetch_seconds: default_refetch(),
            jwks_max_stale_seconds: default_max_stale(),
        },
        (None, None) => {
            if audience.is_some() {
                return Err(ConfigError::Env {
                    var: "CTXGATE_JWT_AUDIENCE",
                    problem: "is set without CTXGATE_JWT_ISSUER".into(),
                });
            }
            return Ok(None);
        }
    };
    if let Some(aud) = audience {
        jwt.audience = aud
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
    }
    if let Some(url) = env("CTXGATE_JWT_JWKS_URL") {
        jwt.jwks_url = Some(url);
    }
    Ok(Some(jwt))
}
