//! Anthropic Messages. Bodies are written and read by the
//! [`anthropic`](crate::wire::anthropic) codec; the stream translator is
//! [`stream`].

pub mod stream;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Call, Capabilities, Endpoint, EventStream, KeyUse, Provider, ProviderError, STREAM_DEADLINE,
    body_stream, prompt_cache, send_json, send_stream, sse,
};
use crate::capped::Caps;
use crate::config::{ANTHROPIC_DEFAULT_MAX_TOKENS, ProviderConfig};
use crate::model::Response;
use crate::wire::anthropic::{self as codec, UpstreamOptions};

/// The API version this provider speaks.
pub const API_VERSION: &str = "2023-06-01";
/// The header naming the API betas a request opts into.
pub const BETA_HEADER: &str = "anthropic-beta";

/// The Anthropic provider.
pub struct Anthropic {
    name: String,
    client: reqwest::Client,
    url: Endpoint,
    count_url: Endpoint,
    default_max_tokens: u32,
    caps: Caps,
}

impl Anthropic {
    /// A provider named `name`.
    pub fn new(name: &str, cfg: &ProviderConfig, client: reqwest::Client, caps: Caps) -> Self {
        Self {
            name: name.into(),
            client,
            url: Endpoint::new(cfg.base_url.as_deref().unwrap_or_default(), "v1/messages"),
            count_url: Endpoint::new(
                cfg.base_url.as_deref().unwrap_or_default(),
                "v1/messages/count_tokens",
            ),
            default_max_tokens: cfg
                .default_max_tokens
                .unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS),
            caps,
        }
    }

    /// The upstream request with the key and API version headers.
    fn request(
        &self,
        call: &Call<'_>,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        self.request_to(&self.url, call, stream, true)
    }

    /// A request to `url`; without `generation`, the body leaves out what
    /// only generating takes (the count endpoint refuses those fields).
    fn request_to(
        &self,
        url: &Endpoint,
        call: &Call<'_>,
        stream: bool,
        generation: bool,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let breakpoints = call
            .cache
            .map(|c| prompt_cache::plan(call.request, &c))
            .unwrap_or_default();
        let opts = UpstreamOptions {
            default_max_tokens: self.default_max_tokens,
            stream,
            breakpoints: &breakpoints,
        };
        let body: Value = codec::encode_request(call.request, call.model, &opts)
            .map_err(ProviderError::invalid)?;
        let key = call.api_key.ok_or_else(|| ProviderError::MissingKey {
            provider: self.name.clone(),
        })?;
        let mut http = url
            .post(&self.client)
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION);
        // Betas the client opted into through the Anthropic front door.
        for (name, value) in &call.request.extensions.headers {
            if name == BETA_HEADER {
                http = http.header(BETA_HEADER, value);
            }
        }
        if !generation {
            let mut body = body;
            if let Some(o) = body.as_object_mut() {
                for k in [
                    "max_tokens",
                    "stream",
                    "temperature",
                    "top_p",
                    "top_k",
                    "stop_sequences",
                    "metadata",
                ] {
                    o.remove(k);
                }
            }
            return Ok(http.json(&body));
        }
        Ok(http.json(&body))
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            key: KeyUse::Required,
            cache_breakpoints: true,
            canonical_tool_arguments: true,
            default_output_cap: Some(self.default_max_tokens),
            tool_result_images: true,
        }
    }

    async fn complete(&self, call: Call<'_>) -> Result<Response, ProviderError> {
        let http = self.request(&call, false)?;
        let answer = send_json(&self.name, http, self.caps.body).await?;
        codec::decode_response(answer).map_err(|e| ProviderError::unreadable(&self.name, e))
    }

    async fn count_tokens(&self, call: Call<'_>) -> Result<Option<u64>, ProviderError> {
        let http = self.request_to(&self.count_url, &call, false, false)?;
        let answer = send_json(&self.name, http, self.caps.body).await?;
        answer["input_tokens"]
            .as_u64()
            .map(Some)
            .ok_or_else(|| ProviderError::BadResponse {
                provider: self.name.clone(),
                detail: "count_tokens answered without input_tokens".into(),
            })
    }

    async fn stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let http = self.request(&call, true)?;
        let resp = send_stream(&self.name, http.timeout(STREAM_DEADLINE)).await?;
        Ok(sse::events(
            &self.name,
            body_stream(&self.name, resp, self.caps),
            stream::EventDecoder::new(),
        ))
    }
}
