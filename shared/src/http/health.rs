//! Liveness and readiness. `GET /health` answers without touching any
//! dependency, so a load balancer never takes the gateway out of service for
//! a store hiccup. `GET /v1/admin/ready` (scope `admin`) checks what a request
//! needs: the store answers a cheap read, the provider-key source is readable,
//! and which providers are configured with a key (never the key itself).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::{RequestLog, caller, with_log};
use crate::auth::SCOPE_ADMIN;
use crate::config::ProviderKind;
use crate::provider::KeyUse;
use crate::{ApiError, AppState};

/// How long one dependency check may take before it counts as failed: a
/// readiness probe must answer even when a dependency hangs.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Key id read by the store probe; no key can have it (ids are `key_...`),
/// so the read always finds nothing and costs one point lookup.
const PROBE_KEY_ID: &str = "readiness-probe";

/// `GET /health`: liveness only.
pub async fn health() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// One dependency's state.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Whether the dependency answered.
    pub ok: bool,
    /// What was checked, or why it failed (never key material or store keys).
    pub detail: String,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
}

/// One configured provider.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderStatus {
    /// Provider name, as used in `provider/model`.
    pub name: String,
    /// Wire protocol (`openai`, `anthropic`, `openai_compatible`, `bedrock`, `echo`).
    pub kind: &'static str,
    /// Whether calls fail without a key (OpenAI and Anthropic).
    pub key_required: bool,
    /// Whether the key source holds a key for it.
    pub key_present: bool,
    /// Bedrock providers that sign with SigV4 (a region, no API key):
    /// whether the AWS credentials resolve. Like a missing key, a failure is
    /// reported without making the gateway unready: only that provider's
    /// requests fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_credentials: Option<bool>,
}

/// The readiness report.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `ready` when every check passed, else `not_ready`.
    pub status: &'static str,
    /// The store and the provider-key source.
    pub checks: Checks,
    /// Every configured provider.
    pub providers: Vec<ProviderStatus>,
}

/// The dependency checks.
#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    /// A point read on the store.
    pub store: Check,
    /// Reading provider keys (Secrets Manager or the environment).
    pub secrets: Check,
}

impl Readiness {
    /// Whether every check passed.
    pub fn is_ready(&self) -> bool {
        self.checks.store.ok && self.checks.secrets.ok
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn check_store(state: &AppState) -> Check {
    let started = Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, state.store.get_key(PROBE_KEY_ID)).await;
    let (ok, detail) = match result {
        Ok(Ok(_)) => (true, "read ok".to_owned()),
        Ok(Err(e)) => {
            // The detail may name tables or endpoints: log it, do not show it.
            tracing::warn!(error = %e, "readiness: store read failed");
            (false, "the store could not be read".to_owned())
        }
        Err(_) => (false, "the store did not answer in time".to_owned()),
    };
    Check {
        ok,
        detail,
        latency_ms: millis(started.elapsed()),
    }
}

/// Reads every keyed provider's key once; the source caches, so this is one
/// Secrets Manager call at most per cache period.
async fn check_secrets(state: &AppState) -> (Check, Vec<ProviderStatus>) {
    let started = Instant::now();
    let source = if state.config.secret_id.is_some() {
        "Secrets Manager"
    } else {
        "the environment"
    };
    let mut failure = None;
    let mut providers = Vec::new();
    for (name, p) in &state.config.providers {
        let key = state
            .providers
            .capabilities(name)
            .map_or(KeyUse::None, |c| c.key);
        let key_required = key == KeyUse::Required;
        let mut key_present = false;
        if key != KeyUse::None && failure.is_none() {
            let field = p.secret_field.as_deref().unwrap_or(name);
            match tokio::time::timeout(CHECK_TIMEOUT, state.keys.key(field)).await {
                Ok(Ok(key)) => key_present = key.is_some(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "readiness: provider keys unreadable");
                    failure = Some(format!("provider keys could not be read from {source}"));
                }
                Err(_) => {
                    failure = Some(format!("{source} did not answer in time"));
                }
            }
        }
        providers.push(ProviderStatus {
            name: name.clone(),
            kind: p.kind.as_str(),
            key_required,
            key_present,
            aws_credentials: None,
        });
    }
    let check = Check {
        ok: failure.is_none(),
        detail: failure.unwrap_or_else(|| format!("provider keys readable from {source}")),
        latency_ms: millis(started.elapsed()),
    };
    (check, providers)
}

/// Resolves the AWS credentials once for the Bedrock providers that sign
/// with them (an endpoint, no API key) and marks each with the outcome; the
/// chain's reason goes to the log, the credentials nowhere.
async fn check_aws(state: &AppState, providers: &mut [ProviderStatus]) {
    let signing = |p: &ProviderStatus| {
        p.kind == ProviderKind::Bedrock.as_str()
            && !p.key_present
            && state
                .config
                .providers
                .get(&p.name)
                .is_some_and(|c| c.base_url.is_some())
    };
    if !providers.iter().any(signing) {
        return;
    }
    let resolved =
        tokio::time::timeout(CHECK_TIMEOUT, state.providers.aws_credentials().resolve()).await;
    let ok = matches!(resolved, Ok(Ok(_)));
    if !ok {
        tracing::warn!("readiness: AWS credentials for Bedrock did not resolve");
    }
    for p in providers.iter_mut().filter(|p| signing(p)) {
        p.aws_credentials = Some(ok);
    }
}

/// Runs every readiness check (store and key source concurrently, then
/// whether Bedrock providers' AWS credentials resolve).
pub async fn readiness(state: &AppState) -> Readiness {
    let (store, (secrets, mut providers)) = tokio::join!(check_store(state), check_secrets(state));
    check_aws(state, &mut providers).await;
    let mut r = Readiness {
        status: "ready",
        checks: Checks { store, secrets },
        providers,
    };
    if !r.is_ready() {
        r.status = "not_ready";
    }
    r
}

/// `GET /v1/admin/ready`: 200 with the report when ready; 503 with the error
/// envelope (code `not_ready`) plus the same report fields when not.
pub async fn ready(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut log = RequestLog::default();
    let resp = async {
        caller(&state, &headers, SCOPE_ADMIN, &mut log).await?;
        let report = readiness(&state).await;
        let mut body = serde_json::to_value(&report).map_err(|_| ApiError::internal())?;
        if report.is_ready() {
            return Ok::<_, ApiError>(Json(body).into_response());
        }
        let failed: Vec<&str> = [
            ("store", report.checks.store.ok),
            ("secrets", report.checks.secrets.ok),
        ]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
        let err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "not_ready",
            format!("not ready: {} check failed", failed.join(" and ")),
        );
        let envelope: serde_json::Value =
            serde_json::from_slice(&err.body()).map_err(|_| ApiError::internal())?;
        body["error"] = envelope["error"].clone();
        let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        resp.extensions_mut()
            .insert(crate::error::ErrorCode("not_ready"));
        Ok(resp)
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    with_log(resp, log)
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};

    use super::*;
    use crate::config::Config;
    use crate::secrets::EnvKeys;

    /// A credential source that never has any.
    #[derive(Debug)]
    struct Nothing;

    impl ProvideCredentials for Nothing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("none here")))
        }
    }

    fn state(toml: &str, dir: &std::path::Path) -> Arc<AppState> {
        let config = Config::from_toml(toml, |_| None).unwrap();
        let keys = Arc::new(EnvKeys::from_config(&config, |_| None));
        let store = Arc::new(crate::store::embedded::EmbeddedStore::open(dir).unwrap());
        AppState::from_parts(config, store, keys, crate::tls::test_client()).unwrap()
    }

    fn bedrock(r: &Readiness) -> &ProviderStatus {
        r.providers.iter().find(|p| p.name == "bedrock").unwrap()
    }

    // Issue 20, point 7: the readiness report says whether the AWS
    // credentials a Bedrock provider signs with resolve; like a missing key,
    // failing credentials do not make the gateway unready. Without a region
    // (nothing to sign for) there is no answer.
    #[tokio::test]
    async fn readiness_reports_whether_aws_credentials_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let plain = state("", &dir.path().join("a"));
        let r = readiness(&plain).await;
        assert_eq!(bedrock(&r).kind, "bedrock");
        assert_eq!(bedrock(&r).aws_credentials, None);
        assert!(r.is_ready());

        let s = state(
            "[providers.bedrock]\nkind = \"bedrock\"\nregion = \"us-east-1\"\n",
            &dir.path().join("b"),
        );
        s.providers
            .aws_credentials()
            .set_source(SharedCredentialsProvider::new(Credentials::new(
                "AKIDREADY",
                "ready-secret",
                None,
                None,
                "test",
            )));
        let r = readiness(&s).await;
        assert_eq!(bedrock(&r).aws_credentials, Some(true));
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("AKIDREADY") && !text.contains("ready-secret"));
        assert!(text.contains(r#""aws_credentials":true"#), "{text}");

        s.providers
            .aws_credentials()
            .set_source(SharedCredentialsProvider::new(Nothing));
        let r = readiness(&s).await;
        assert_eq!(bedrock(&r).aws_credentials, Some(false));
        assert!(r.is_ready());
    }
}
