//! The LLM interface: one [`Provider`] trait, an adapter per wire protocol,
//! and [`Providers`], which resolves a model name and calls the right adapter
//! with the right key.

pub mod anthropic;
pub mod echo;
pub mod openai;
pub mod resilience;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{Config, ProviderKind};
use crate::secrets::{KeySource, SecretsError};
use crate::stream::DeltaStream;
use crate::wire::{ChatMessage, ChatRequest, FinishReason, Usage};

/// A provider call that failed, classified for the client.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Upstream refused our key (401/403).
    #[error("provider {provider} rejected the gateway's credentials")]
    Auth {
        /// Provider name.
        provider: String,
    },
    /// No key is configured for the provider.
    #[error("no key configured for provider {provider}")]
    MissingKey {
        /// Provider name.
        provider: String,
    },
    /// Upstream rate limit (429).
    #[error("provider {provider} rate limited the request")]
    RateLimited {
        /// Provider name.
        provider: String,
        /// Upstream `Retry-After`, passed on.
        retry_after: Option<String>,
        /// How long upstream asked to wait, if it said.
        wait: Option<Duration>,
    },
    /// Upstream 5xx (or another status configured as transient).
    #[error("provider {provider} failed with {status}")]
    Unavailable {
        /// Provider name.
        provider: String,
        /// Upstream status.
        status: u16,
        /// How long upstream asked to wait, if it said.
        wait: Option<Duration>,
    },
    /// The request's overall deadline passed (retries and fallbacks included).
    #[error("no provider answered within the request deadline")]
    Deadline,
    /// No answer within the deadline.
    #[error("provider {provider} timed out")]
    Timeout {
        /// Provider name.
        provider: String,
    },
    /// Could not connect.
    #[error("provider {provider} unreachable")]
    Connect {
        /// Provider name.
        provider: String,
    },
    /// A 2xx body that is not the expected shape.
    #[error("provider {provider} sent an unreadable response: {detail}")]
    BadResponse {
        /// Provider name.
        provider: String,
        /// What was wrong (no content).
        detail: String,
    },
    /// The provider reported an error in the middle of a stream.
    #[error("provider {provider} reported a {kind} mid-stream")]
    Stream {
        /// Provider name.
        provider: String,
        /// The provider's error type (`overloaded_error`, ...), never content.
        kind: String,
    },
    /// Upstream refused the request itself (4xx other than auth and 429).
    /// Nothing of its body is kept: it may echo the prompt or the key.
    #[error("provider {provider} rejected the request with HTTP {status}")]
    Rejected {
        /// Provider name.
        provider: String,
        /// Upstream status.
        status: u16,
    },
    /// Upstream answered with a redirect, which is never followed: the
    /// provider key and the prompt only go to the configured base URL.
    #[error("provider {provider} answered with a redirect (HTTP {status})")]
    Redirected {
        /// Provider name.
        provider: String,
        /// Upstream status.
        status: u16,
    },
    /// The request cannot be translated for this provider.
    #[error("{message}")]
    Invalid {
        /// Offending field.
        param: String,
        /// Why.
        message: String,
    },
    /// Reading the provider key failed.
    #[error("provider key lookup failed: {0}")]
    Secrets(#[from] SecretsError),
}

/// Overall deadline of a streamed upstream call (Lambda's own limit); the
/// configured upstream timeout applies to silences between events instead.
pub const STREAM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What an adapter is asked to complete.
pub struct ProviderRequest<'a> {
    /// The upstream model name (without the provider prefix).
    pub model: &'a str,
    /// The full prompt: system prompt, stored history, new messages.
    pub messages: &'a [ChatMessage],
    /// Sampling and tool parameters (its `model` and `messages` are not used).
    pub params: &'a ChatRequest,
    /// The provider key, if one is configured.
    pub api_key: Option<&'a str>,
}

/// A provider's answer, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The assistant message.
    pub message: ChatMessage,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Token usage as the provider reported it.
    pub usage: Usage,
}

/// One wire protocol.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Completes a prompt.
    async fn complete(&self, req: ProviderRequest<'_>) -> Result<Completion, ProviderError>;

    /// Starts a streamed completion. Failures before the answer starts (HTTP
    /// errors, refused requests) come back here; later ones end the stream.
    /// Dropping the stream cancels the upstream request.
    async fn stream(&self, req: ProviderRequest<'_>) -> Result<DeltaStream, ProviderError>;
}

/// A model name resolved to its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// `provider/model` (or `echo`), as reported back to the client.
    pub id: String,
    /// Provider name.
    pub provider: String,
    /// Upstream model name.
    pub upstream: String,
}

/// Every configured provider, with the key source.
pub struct Providers {
    config: Arc<Config>,
    adapters: HashMap<String, Arc<dyn Provider>>,
    keys: Arc<dyn KeySource>,
}

impl Providers {
    /// Builds one adapter per configured provider, all sharing `client`.
    pub fn new(config: Arc<Config>, client: reqwest::Client, keys: Arc<dyn KeySource>) -> Self {
        let caps = config.upstream_caps;
        let adapters = config
            .providers
            .iter()
            .map(|(name, p)| {
                let adapter: Arc<dyn Provider> = match p.kind {
                    ProviderKind::Echo => Arc::new(echo::Echo),
                    ProviderKind::Anthropic => {
                        Arc::new(anthropic::Anthropic::new(name, p, client.clone(), caps))
                    }
                    ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                        Arc::new(openai::OpenAi::new(name, p, client.clone(), caps))
                    }
                };
                (name.clone(), adapter)
            })
            .collect();
        Self {
            config,
            adapters,
            keys,
        }
    }

    /// Resolves an alias or `provider/model`; `None` for an unknown model.
    /// For a fallback chain, its first model.
    pub fn resolve(&self, model: &str) -> Option<ResolvedModel> {
        self.route(model)?.into_iter().next()
    }

    /// Resolves an alias (possibly a fallback chain) or `provider/model` to the
    /// models to try in order; `None` for an unknown model.
    pub fn route(&self, model: &str) -> Option<Vec<ResolvedModel>> {
        let one = |id: &str| {
            let (provider, upstream) = self.config.split_model(id)?;
            Some(ResolvedModel {
                id: id.to_owned(),
                provider: provider.to_owned(),
                upstream: upstream.to_owned(),
            })
        };
        match self.config.aliases.get(model) {
            Some(chain) => chain.iter().map(|id| one(id)).collect(),
            None => Some(vec![one(model)?]),
        }
    }

    /// Completes on the first model of `chain` that answers, retrying each per
    /// its policy, all within `deadline`; see [`resilience`].
    pub async fn complete_routed(
        &self,
        chain: &[ResolvedModel],
        messages: &[ChatMessage],
        params: &ChatRequest,
        deadline: Instant,
    ) -> Result<resilience::Routed<Completion>, ProviderError> {
        resilience::run(
            chain,
            |m| self.config.retry_policy(&m.provider, &m.id),
            deadline,
            |m| async move { self.complete(&m, messages, params).await },
        )
        .await
    }

    /// Calls the model's provider with the configured key.
    pub async fn complete(
        &self,
        model: &ResolvedModel,
        messages: &[ChatMessage],
        params: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        let key = self.key(model).await?;
        self.adapters[&model.provider]
            .complete(ProviderRequest {
                model: &model.upstream,
                messages,
                params,
                api_key: key.as_deref(),
            })
            .await
    }

    /// Starts a streamed call to the model's provider with the configured key.
    pub async fn stream(
        &self,
        model: &ResolvedModel,
        messages: &[ChatMessage],
        params: &ChatRequest,
    ) -> Result<DeltaStream, ProviderError> {
        let key = self.key(model).await?;
        let started = self.adapters[&model.provider].stream(ProviderRequest {
            model: &model.upstream,
            messages,
            params,
            api_key: key.as_deref(),
        });
        // The stream's own deadline is long; the answer must still start in time.
        tokio::time::timeout(self.config.upstream_timeout, started)
            .await
            .map_err(|_| ProviderError::Timeout {
                provider: model.provider.clone(),
            })?
    }

    /// The wire protocol of a resolved model's provider.
    pub fn kind(&self, model: &ResolvedModel) -> ProviderKind {
        self.config.providers[&model.provider].kind
    }

    /// The provider key for `model` (none for echo); missing where required.
    async fn key(&self, model: &ResolvedModel) -> Result<Option<String>, ProviderError> {
        let cfg = &self.config.providers[&model.provider];
        let key = match cfg.kind {
            ProviderKind::Echo => None,
            _ => {
                self.keys
                    .key(cfg.secret_field.as_deref().unwrap_or(&model.provider))
                    .await?
            }
        };
        if key.is_none() && matches!(cfg.kind, ProviderKind::Openai | ProviderKind::Anthropic) {
            return Err(ProviderError::MissingKey {
                provider: model.provider.clone(),
            });
        }
        Ok(key)
    }
}

/// Sends an upstream request and returns its parsed JSON body, classifying
/// every failure the same way for all adapters.
pub(crate) async fn send_json(
    provider: &str,
    req: reqwest::RequestBuilder,
    cap: usize,
) -> Result<Value, ProviderError> {
    let resp = send(provider, req).await?;
    let body = crate::capped::read(resp, cap)
        .await
        .map_err(|e| body_error(provider, e))?;
    serde_json::from_slice(&body).map_err(|e| ProviderError::BadResponse {
        provider: provider.to_owned(),
        detail: format!("invalid JSON: {}", json_error(&e)),
    })
}

/// A capped body that could not be read, as a provider failure.
fn body_error(provider: &str, e: crate::capped::BodyError) -> ProviderError {
    match e {
        crate::capped::BodyError::Read("timeout") => ProviderError::Timeout {
            provider: provider.to_owned(),
        },
        e => ProviderError::BadResponse {
            provider: provider.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// A JSON error without the text it quotes (serde quotes offending values,
/// and upstream values may be content): its category and position only.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// A short, harmless token from an upstream error body, for logs only: the
/// provider's error `type` or `code` when it is a [reason token](is_reason), else nothing.
pub(crate) fn safe_reason(v: &Value) -> Option<String> {
    let err = v.get("error").unwrap_or(v);
    [&err["type"], &err["code"]].into_iter().find_map(|f| {
        let s = match f {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        is_reason(&s).then_some(s)
    })
}

/// Whether `s` reads like a provider's error type or code
/// (`invalid_request_error`, `overloaded_error`, `429`) and not like a key
/// echoed back: at most 48 characters of `[a-z0-9_.-]`, no run of letters
/// and digits longer than 24.
pub(crate) fn is_reason(s: &str) -> bool {
    (1..=48).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
        && s.split(['_', '.', '-']).all(|run| run.len() <= 24)
}

/// Whether `s` is 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn is_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Sends an upstream request and returns the response once its status is a
/// success (its body unread, so it can be streamed); errors are classified.
pub(crate) async fn send(
    provider: &str,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let p = || provider.to_owned();
    let resp = req
        .send()
        .await
        .map_err(|e| classify_send_error(provider, &e))?;
    let status = resp.status().as_u16();
    if (200..=299).contains(&status) {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64)
        .map(str::to_owned);
    let wait = resilience::wait_hint(resp.headers());
    if (300..=399).contains(&status) {
        tracing::warn!(provider, status, "upstream redirect refused");
        return Err(ProviderError::Redirected {
            provider: p(),
            status,
        });
    }
    // The body may echo the prompt or the key: only a short error type or
    // code from it reaches the log, and nothing reaches the client.
    let reason = match crate::capped::read(resp, crate::capped::MAX_ERROR_BODY).await {
        Ok(body) => serde_json::from_slice::<Value>(&body)
            .ok()
            .as_ref()
            .and_then(safe_reason),
        Err(_) => None,
    };
    tracing::warn!(
        provider,
        status,
        reason = reason.as_deref().unwrap_or("-"),
        "upstream error"
    );
    match status {
        401 | 403 => Err(ProviderError::Auth { provider: p() }),
        429 => Err(ProviderError::RateLimited {
            provider: p(),
            retry_after,
            wait,
        }),
        400..=499 => Err(ProviderError::Rejected {
            provider: p(),
            status,
        }),
        _ => Err(ProviderError::Unavailable {
            provider: p(),
            status,
            wait,
        }),
    }
}

/// Sends a streaming request: like [`send`], and the answer must be an event
/// stream, so a provider answering otherwise fails before the client gets a
/// byte (and can be retried or fall back).
pub(crate) async fn send_stream(
    provider: &str,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let resp = send(provider, req).await?;
    let ctype = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.trim_start().starts_with("text/event-stream") {
        return Err(ProviderError::BadResponse {
            provider: provider.to_owned(),
            detail: format!(
                "expected an event stream, got '{}'",
                ctype.chars().take(64).collect::<String>()
            ),
        });
    }
    Ok(resp)
}

/// A successful upstream response's body as a stream of byte chunks, as
/// they arrive, capped per event and in total; dropping it closes the connection.
pub(crate) fn body_stream(
    provider: &str,
    resp: reqwest::Response,
    caps: crate::capped::Caps,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, ProviderError>> + Send + 'static {
    let name = provider.to_owned();
    crate::capped::sse(raw_body_stream(provider, resp), caps, move |cap| {
        ProviderError::BadResponse {
            provider: name.clone(),
            detail: format!("event stream passed the {cap}-byte cap"),
        }
    })
}

fn raw_body_stream(
    provider: &str,
    resp: reqwest::Response,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, ProviderError>> + Send + 'static {
    let provider = provider.to_owned();
    futures_util::stream::unfold(Some(resp), move |resp| {
        let provider = provider.clone();
        async move {
            let mut resp = resp?;
            match resp.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(resp))),
                Ok(None) => None,
                Err(e) => Some((Err(classify_send_error(&provider, &e)), None)),
            }
        }
    })
}

fn classify_send_error(provider: &str, e: &reqwest::Error) -> ProviderError {
    let provider = provider.to_owned();
    if e.is_timeout() {
        ProviderError::Timeout { provider }
    } else if e.is_connect() {
        ProviderError::Connect { provider }
    } else if e.is_decode() || e.is_body() {
        ProviderError::BadResponse {
            provider,
            detail: "body could not be read".into(),
        }
    } else {
        ProviderError::Connect { provider }
    }
}

/// Joins a base URL and a path without doubling or dropping the slash.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Issue 12, point 6: of an upstream error body, only a short token
    // (`type` or `code`) may reach the log.
    #[test]
    fn only_short_tokens_of_an_error_body_are_kept() {
        let reason = |v: Value| safe_reason(&v);
        assert_eq!(
            reason(json!({"error": {"type": "invalid_request_error", "message": "sk-x"}})),
            Some("invalid_request_error".into())
        );
        assert_eq!(
            reason(json!({"error": {"code": 1234}})),
            Some("1234".into())
        );
        assert_eq!(
            reason(json!({"type": "overloaded_error"})),
            Some("overloaded_error".into())
        );
        assert_eq!(
            reason(json!({"error": {"type": "Not A Token", "code": "model_not_found"}})),
            Some("model_not_found".into())
        );
        for bad in [
            json!({"error": {"type": "has space", "message": "x"}}),
            json!({"error": {"code": "sk-proj-Abc123"}}),
            json!({"error": {"code": "sk-abcdefghijklmnopqrstuvwxyz0123456789"}}),
            json!({"error": {"type": "x".repeat(65)}}),
            json!({"error": {"type": "new\nline"}}),
            json!({"error": {"message": "only a message"}}),
            json!("a string"),
        ] {
            assert_eq!(reason(bad.clone()), None, "{bad}");
        }
    }

    // Issue 12, point 6: a JSON error names where, never the value it quotes.
    #[test]
    fn json_errors_do_not_quote_upstream_values() {
        let e = serde_json::from_str::<u64>("\"sk-proj-SECRET\"").unwrap_err();
        assert!(e.to_string().contains("SECRET"), "serde quotes it");
        assert!(!json_error(&e).contains("SECRET"));
    }

    // Issue 12, point 6: bodies are read up to the cap and no further.
    #[tokio::test]
    async fn bodies_are_read_up_to_the_cap() {
        let resp = |n: usize| reqwest::Response::from(http::Response::new(vec![b'a'; n]));
        assert_eq!(
            crate::capped::read(resp(100), 100).await.unwrap().len(),
            100
        );
        assert!(matches!(
            crate::capped::read(resp(101), 100).await,
            Err(crate::capped::BodyError::TooLarge(100))
        ));
    }
}
