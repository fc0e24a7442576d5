//! The LLM interface: one [`Provider`] trait speaking the provider-neutral
//! [`model`](crate::model), one module per provider (`openai/`, `anthropic/`, `bedrock/`,
//! `echo.rs`) with its stream translator inside, and [`Providers`], which
//! resolves a model name and calls the right provider with the right key.
//! What differs between providers is asked of them ([`Capabilities`]).

pub mod anthropic;
pub mod bedrock;
pub mod echo;
pub mod http;
pub mod keep_alive;
pub mod openai;
pub mod prompt_cache;
pub mod resilience;
pub mod sse;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::Stream;

use crate::config::{Config, ModelCache, ProviderKind};
use crate::model::{Event, Request, Response};
use crate::secrets::{KeySource, SecretsError};
use crate::wire::CodecError;

pub(crate) use http::{Endpoint, body_stream, parse_json, send_body, send_json, send_stream};

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
    /// The provider does not serve the model to the gateway: unknown there
    /// (`status` 404), or access not granted (403). Names the model and what
    /// is missing, never the provider's own message (AWS's carries account
    /// ids and ARNs).
    #[error("provider {provider} cannot serve model {model}: {missing}")]
    ModelUnavailable {
        /// Provider name.
        provider: String,
        /// The upstream model id.
        model: String,
        /// 404 (not found) or 403 (access denied).
        status: u16,
        /// What the operator must fix.
        missing: String,
    },
    /// Upstream refused one field of the request (Bedrock's
    /// `ValidationException`); the field is named, the provider's message is not kept.
    #[error("provider {provider} refused the request's {param}")]
    RejectedField {
        /// Provider name.
        provider: String,
        /// The offending field, in the provider's terms (`inferenceConfig.maxTokens`).
        param: String,
        /// Why, in ctxgate's words.
        message: String,
    },
    /// The provider cannot be called as deployed (no AWS credentials or
    /// region resolve); names the missing setting.
    #[error("provider {provider} is not configured: {missing}")]
    NotConfigured {
        /// Provider name.
        provider: String,
        /// The missing setting, in words.
        missing: String,
    },
}

/// Overall deadline of a streamed upstream call (Lambda's own limit); the
/// configured upstream timeout applies to silences between events instead.
pub const STREAM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A provider's answer as it arrives; an error ends it. Dropping it cancels
/// the upstream request.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, ProviderError>> + Send>>;

/// What one call asks of a provider.
pub struct Call<'a> {
    /// The upstream model name (without the provider prefix).
    pub model: &'a str,
    /// The whole request: instructions, history, new messages, parameters.
    pub request: &'a Request,
    /// The provider key, if one is configured.
    pub api_key: Option<&'a str>,
    /// How the model uses its provider's prompt cache; `None` when off.
    pub cache: Option<ModelCache>,
}

/// What differs between providers, asked of them instead of matched on
/// their kind elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether the provider takes a key, and whether it must have one.
    pub key: KeyUse,
    /// The provider takes prompt-cache breakpoints on blocks (Anthropic
    /// `cache_control`, Bedrock `cachePoint`); others cache on their own or not at all.
    pub cache_breakpoints: bool,
    /// Whole answers carry tool arguments parsed, so a streamed answer's
    /// arguments are re-serialised the same way to store the same text.
    pub canonical_tool_arguments: bool,
    /// The output cap the provider sends when the request has none (the
    /// Anthropic API requires one), which bounds what an uncapped answer costs.
    pub default_output_cap: Option<u32>,
    /// Tool results may carry images (Anthropic); others take text only there
    /// (OpenAI refuses image parts outside user messages).
    pub tool_result_images: bool,
}

/// How a provider uses a key from the provider-keys secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// It takes none (echo).
    None,
    /// It sends one when configured (OpenAI-compatible servers, often keyless).
    Optional,
    /// A call without one fails before anything is sent.
    Required,
}

/// One provider: a wire protocol at a base URL.
#[async_trait]
pub trait Provider: Send + Sync {
    /// What this provider needs and supports.
    fn capabilities(&self) -> Capabilities;

    /// Completes a request, answering whole.
    async fn complete(&self, call: Call<'_>) -> Result<Response, ProviderError>;

    /// Starts a streamed completion. Failures before the answer starts (HTTP
    /// errors, refused requests) come back here; later ones end the stream.
    async fn stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError>;

    /// The request's input tokens as the provider counts them, where it has
    /// an API for that; `None`: it has none (the gateway estimates).
    async fn count_tokens(&self, _call: Call<'_>) -> Result<Option<u64>, ProviderError> {
        Ok(None)
    }
}

impl ProviderError {
    /// A request this provider cannot take, from its codec.
    pub fn invalid(e: CodecError) -> Self {
        ProviderError::Invalid {
            param: e.param,
            message: e.message,
        }
    }

    /// An answer that is not the expected shape, from its codec (no content).
    pub fn unreadable(provider: &str, e: CodecError) -> Self {
        ProviderError::BadResponse {
            provider: provider.to_owned(),
            detail: e.message,
        }
    }
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
    aws: Arc<bedrock::AwsCredentials>,
}

impl Providers {
    /// Builds one provider per configured entry, all sharing `client` (and,
    /// for Bedrock entries, the process's AWS credentials).
    pub fn new(config: Arc<Config>, client: reqwest::Client, keys: Arc<dyn KeySource>) -> Self {
        let caps = config.upstream_caps;
        // One credential cache per process; the first Bedrock entry's region
        // serves the chain's own calls (STS), the environment's otherwise.
        let region = config
            .providers
            .values()
            .find(|p| p.kind == ProviderKind::Bedrock && p.region.is_some())
            .and_then(|p| p.region.clone());
        let aws = Arc::new(bedrock::AwsCredentials::default_chain(region));
        let adapters = config
            .providers
            .iter()
            .map(|(name, p)| {
                // The one place a provider's kind is looked at.
                let adapter: Arc<dyn Provider> = match p.kind {
                    ProviderKind::Echo => Arc::new(echo::Echo),
                    ProviderKind::Anthropic => {
                        Arc::new(anthropic::Anthropic::new(name, p, client.clone(), caps))
                    }
                    ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                        Arc::new(openai::OpenAi::new(name, p, client.clone(), caps))
                    }
                    ProviderKind::Bedrock => Arc::new(bedrock::Bedrock::new(
                        name,
                        p,
                        client.clone(),
                        caps,
                        aws.clone(),
                    )),
                };
                (name.clone(), adapter)
            })
            .collect();
        Self {
            config,
            adapters,
            keys,
            aws,
        }
    }

    /// The AWS credentials Bedrock providers sign with: the default chain
    /// (environment, profile, the Lambda role), resolved on first use and
    /// cached until shortly before they expire. The readiness report probes
    /// them; tests replace their source ([`bedrock::AwsCredentials::set_source`]).
    pub fn aws_credentials(&self) -> &bedrock::AwsCredentials {
        &self.aws
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

    /// Most output tokens one answer of `model` can cost when the request
    /// sets no cap: the configured or built-in limit of the model, bounded by
    /// the cap its provider sends by default, else `limits.max_output_tokens`.
    pub fn max_output(&self, model: &ResolvedModel) -> u32 {
        let provider_default = self
            .capabilities(&model.provider)
            .and_then(|c| c.default_output_cap);
        [self.config.model_max_output(&model.id), provider_default]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.config.limits.max_output_tokens)
    }

    /// What the named provider needs and supports.
    pub fn capabilities(&self, provider: &str) -> Option<Capabilities> {
        self.adapters.get(provider).map(|a| a.capabilities())
    }

    /// Completes on the first model of `chain` that answers, retrying each per
    /// its policy, all within `deadline`; see [`resilience`].
    pub async fn complete_routed(
        &self,
        chain: &[ResolvedModel],
        request: &Request,
        deadline: Instant,
    ) -> Result<resilience::Routed<Response>, ProviderError> {
        resilience::run(
            chain,
            |m| self.config.retry_policy(&m.provider, &m.id),
            deadline,
            |m| async move { self.complete(&m, request).await },
        )
        .await
    }

    /// Opens a stream on the first model of `chain` that answers, retrying
    /// each per its policy, all within `deadline`: only before the first
    /// event, since what went out to the client cannot be taken back.
    pub async fn stream_routed(
        &self,
        chain: &[ResolvedModel],
        request: &Request,
        deadline: Instant,
    ) -> Result<resilience::Routed<EventStream>, ProviderError> {
        resilience::run(
            chain,
            |m| self.config.retry_policy(&m.provider, &m.id),
            deadline,
            |m| async move { self.stream(&m, request).await },
        )
        .await
    }

    /// Calls the model's provider with the configured key.
    pub async fn complete(
        &self,
        model: &ResolvedModel,
        request: &Request,
    ) -> Result<Response, ProviderError> {
        let adapter = &self.adapters[&model.provider];
        let key = self.key(model, adapter.capabilities()).await?;
        adapter
            .complete(Call {
                model: &model.upstream,
                request,
                api_key: key.as_deref(),
                cache: self.config.model_cache(&model.id),
            })
            .await
    }

    /// Starts a streamed call to the model's provider with the configured key.
    pub async fn stream(
        &self,
        model: &ResolvedModel,
        request: &Request,
    ) -> Result<EventStream, ProviderError> {
        let adapter = &self.adapters[&model.provider];
        let key = self.key(model, adapter.capabilities()).await?;
        let started = adapter.stream(Call {
            model: &model.upstream,
            request,
            api_key: key.as_deref(),
            cache: self.config.model_cache(&model.id),
        });
        // The stream's own deadline is long; the answer must still start in time.
        tokio::time::timeout(self.config.upstream_timeout, started)
            .await
            .map_err(|_| ProviderError::Timeout {
                provider: model.provider.clone(),
            })?
    }

    /// The request's input tokens as `model`'s provider counts them; `None`
    /// when it cannot.
    pub async fn count_tokens(
        &self,
        model: &ResolvedModel,
        request: &Request,
    ) -> Result<Option<u64>, ProviderError> {
        let adapter = &self.adapters[&model.provider];
        let key = self.key(model, adapter.capabilities()).await?;
        let counting = adapter.count_tokens(Call {
            model: &model.upstream,
            request,
            api_key: key.as_deref(),
            cache: None,
        });
        tokio::time::timeout(self.config.upstream_timeout, counting)
            .await
            .map_err(|_| ProviderError::Timeout {
                provider: model.provider.clone(),
            })?
    }

    /// The provider key for `model`: none for a provider that needs none;
    /// missing where one is needed.
    async fn key(
        &self,
        model: &ResolvedModel,
        caps: Capabilities,
    ) -> Result<Option<String>, ProviderError> {
        if caps.key == KeyUse::None {
            return Ok(None);
        }
        let cfg = &self.config.providers[&model.provider];
        let key = self
            .keys
            .key(cfg.secret_field.as_deref().unwrap_or(&model.provider))
            .await?;
        if key.is_none() && caps.key == KeyUse::Required {
            return Err(ProviderError::MissingKey {
                provider: model.provider.clone(),
            });
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::EnvKeys;

    fn providers(toml: &str) -> Providers {
        let config = Arc::new(Config::from_toml(toml, |_| None).unwrap());
        let keys = Arc::new(EnvKeys::from_config(&config, |_| None));
        Providers::new(config, crate::tls::test_client(), keys)
    }

    // Issue 12, point 3 (moved with issue 13, point 5): what an uncapped
    // request may cost: the model's limit, bounded by the cap its provider
    // sends by default, which is asked of the provider.
    #[test]
    fn max_outputs_come_from_the_model_and_its_provider() {
        let p = providers("[[models]]\nid = \"openai/custom\"\nmax_output_tokens = 777\n");
        let m = |id: &str| p.resolve(id).unwrap();
        assert_eq!(p.max_output(&m("openai/custom")), 777);
        assert_eq!(p.max_output(&m("openai/gpt-4o")), 16_384);
        assert_eq!(p.max_output(&m("anthropic/claude-sonnet-4-5")), 4096);
        assert_eq!(
            p.max_output(&m("openai/unknown")),
            p.config.limits.max_output_tokens
        );
        let caps = |name: &str| p.capabilities(name).unwrap();
        assert_eq!(caps("anthropic").default_output_cap, Some(4096));
        assert_eq!(caps("openai").key, KeyUse::Required);
        assert_eq!(caps("echo").key, KeyUse::None);
        assert!(caps("anthropic").cache_breakpoints && !caps("openai").cache_breakpoints);
    }
}
