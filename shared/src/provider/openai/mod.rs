//! OpenAI Chat Completions, also used for every OpenAI-compatible server
//! (Azure OpenAI, Ollama, vLLM, Groq...): same body, configurable base URL,
//! key header and query parameters. Bodies are written and read by the
//! [`openai_chat`](crate::wire::openai_chat) codec; the stream translator
//! is [`stream`]. A provider configured `api = "responses"` calls OpenAI's
//! Responses API instead ([`responses`]).

pub mod responses;
pub mod stream;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Call, Capabilities, Endpoint, EventStream, KeyUse, Provider, ProviderError, STREAM_DEADLINE,
    body_stream, parse_json, send_body, send_stream, sse,
};
use crate::capped::Caps;
use crate::config::{OpenaiApi, ProviderConfig, ProviderKind};
use crate::model::Response;
use crate::wire::openai_chat::{self, MaxTokensField, UpstreamOptions};

/// An OpenAI-protocol provider.
pub struct OpenAi {
    name: String,
    client: reqwest::Client,
    url: Endpoint,
    auth_header: Option<String>,
    query: Vec<(String, String)>,
    /// OpenAI itself: a key is required and the output cap is
    /// `max_completion_tokens`; compatible servers may be keyless and know
    /// `max_tokens`.
    official: bool,
    /// Whether requests name their conversation's cache (`prompt_cache_key`).
    cache_key: bool,
    /// Chat Completions or Responses.
    api: OpenaiApi,
    caps: Caps,
}

impl OpenAi {
    /// A provider named `name`.
    pub fn new(name: &str, cfg: &ProviderConfig, client: reqwest::Client, caps: Caps) -> Self {
        Self {
            name: name.into(),
            client,
            url: Endpoint::new(
                cfg.base_url.as_deref().unwrap_or_default(),
                match cfg.api {
                    OpenaiApi::Chat => "chat/completions",
                    OpenaiApi::Responses => "responses",
                },
            ),
            auth_header: cfg
                .auth_header
                .clone()
                .filter(|h| !h.eq_ignore_ascii_case("authorization")),
            query: cfg
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            official: cfg.kind == ProviderKind::Openai,
            cache_key: cfg.sends_prompt_cache_key(),
            api: cfg.api,
            caps,
        }
    }

    /// The upstream body of `call`.
    fn body(&self, call: &Call<'_>, stream: bool) -> Result<Value, ProviderError> {
        let prompt_cache_key = call
            .request
            .stable
            .as_ref()
            .filter(|_| self.cache_key && call.cache.is_some())
            .map(|s| s.key.as_str());
        if self.api == OpenaiApi::Responses {
            return responses::body(call, stream, prompt_cache_key);
        }
        let opts = UpstreamOptions {
            stream,
            max_tokens_field: if self.official {
                MaxTokensField::MaxCompletionTokens
            } else {
                MaxTokensField::MaxTokens
            },
            prompt_cache_key,
        };
        openai_chat::encode_request(call.request, call.model, &opts).map_err(ProviderError::invalid)
    }

    /// The upstream request, key and query parameters applied (whether a
    /// key is required is `Providers`' to check, from the capabilities).
    fn request(&self, call: &Call<'_>, body: &Value) -> reqwest::RequestBuilder {
        let mut http = self.url.post(&self.client).json(body);
        if !self.query.is_empty() {
            http = http.query(&self.query);
        }
        if let Some(key) = call.api_key {
            http = match &self.auth_header {
                Some(header) => http.header(header.as_str(), key),
                None => http.bearer_auth(key),
            };
        }
        http
    }
}

#[async_trait]
impl Provider for OpenAi {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            key: if self.official {
                KeyUse::Required
            } else {
                KeyUse::Optional
            },
            cache_breakpoints: false,
            canonical_tool_arguments: false,
            default_output_cap: None,
            tool_result_images: false,
        }
    }

    async fn complete(&self, call: Call<'_>) -> Result<Response, ProviderError> {
        let body = self.body(&call, false)?;
        let http = self.request(&call, &body);
        let body = send_body(&self.name, http, self.caps.body).await?;
        if self.api == OpenaiApi::Responses {
            return responses::decode(&self.name, parse_json(&self.name, &body)?);
        }
        // Straight from the bytes; a body that does not fit goes through the
        // tree, which says what is wrong with it.
        let answer = match openai_chat::decode_response_bytes(&body) {
            Some(answer) => answer,
            None => openai_chat::decode_response(parse_json(&self.name, &body)?),
        };
        answer.map_err(|e| ProviderError::unreadable(&self.name, e))
    }

    async fn stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let body = self.body(&call, true)?;
        let http = self.request(&call, &body);
        let resp = send_stream(&self.name, http.timeout(STREAM_DEADLINE)).await?;
        let body = body_stream(&self.name, resp, self.caps);
        if self.api == OpenaiApi::Responses {
            return Ok(sse::events(&self.name, body, responses::decoder()));
        }
        Ok(sse::events(&self.name, body, stream::ChunkDecoder::new()))
    }
}
