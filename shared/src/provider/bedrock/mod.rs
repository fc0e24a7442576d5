//! Amazon Bedrock through the Converse and ConverseStream APIs, so that
//! every Bedrock chat model works with one translation
//! ([`wire::bedrock`](crate::wire::bedrock)). Calls are signed with SigV4
//! (`aws-sigv4`, service `bedrock`, over the exact body bytes sent) with the
//! process's AWS credentials ([`credentials`]), or carry a Bedrock API key
//! as a bearer when one is configured. A client's credential is never sent:
//! the request is built here from the model request alone.

pub mod credentials;
pub mod errors;
pub mod stream;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use credentials::{AwsCredentials, NoCredentials};

use super::http::join_url;
use super::{
    Call, Capabilities, EventStream, KeyUse, Provider, ProviderError, STREAM_DEADLINE, prompt_cache,
};
use crate::capped::Caps;
use crate::config::{ProviderConfig, bedrock_base_model};
use crate::model::Response;
use crate::wire::bedrock::{self as codec, UpstreamOptions};

/// The SigV4 signing name of Bedrock Runtime.
pub const SIGNING_NAME: &str = "bedrock";

/// What a model id keeps unescaped in a URL path (RFC 3986's unreserved
/// characters); `:` and `/` (of ARNs) are escaped, as the SDKs do.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The Bedrock provider.
pub struct Bedrock {
    name: String,
    client: reqwest::Client,
    /// The endpoint, resolved by the config; `None` when no region resolved.
    base_url: Option<String>,
    region: Option<String>,
    default_max_tokens: Option<u32>,
    caps: Caps,
    aws: Arc<AwsCredentials>,
}

impl Bedrock {
    /// A provider named `name`, signing with `aws` unless a key is configured.
    pub fn new(
        name: &str,
        cfg: &ProviderConfig,
        client: reqwest::Client,
        caps: Caps,
        aws: Arc<AwsCredentials>,
    ) -> Self {
        Self {
            name: name.into(),
            client,
            base_url: cfg.base_url.clone(),
            region: cfg.region.clone(),
            default_max_tokens: cfg.default_max_tokens,
            caps,
            aws,
        }
    }

    fn not_configured(&self, missing: String) -> ProviderError {
        ProviderError::NotConfigured {
            provider: self.name.clone(),
            missing,
        }
    }

    /// The URL of `model`'s Converse (or ConverseStream) operation.
    pub fn url(&self, model: &str, stream: bool) -> Result<String, ProviderError> {
        let base = self.base_url.as_deref().ok_or_else(|| {
            self.not_configured(format!(
                "no AWS region: set providers.{}.region, or AWS_REGION",
                self.name
            ))
        })?;
        let op = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        let id = utf8_percent_encode(model, PATH_SEGMENT);
        Ok(join_url(base, &format!("model/{id}/{op}")))
    }

    /// The signed (or bearer) upstream request.
    async fn request(
        &self,
        call: &Call<'_>,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let url = self.url(call.model, stream)?;
        let breakpoints = call
            .cache
            .map(|c| prompt_cache::plan(call.request, &c))
            .unwrap_or_default();
        let opts = UpstreamOptions {
            breakpoints: &breakpoints,
            default_max_tokens: self.default_max_tokens,
            claude: bedrock_base_model(call.model).starts_with("anthropic."),
        };
        let body = codec::encode_request(call.request, &opts).map_err(ProviderError::invalid)?;
        let body = serde_json::to_vec(&body).map_err(|_| ProviderError::Invalid {
            param: "messages".into(),
            message: "the request could not be serialised".into(),
        })?;
        let accept = if stream {
            stream::CONTENT_TYPE
        } else {
            "application/json"
        };
        let headers = [("content-type", "application/json"), ("accept", accept)];
        let mut http = self.client.post(&url);
        for (name, value) in headers {
            http = http.header(name, value);
        }
        if let Some(key) = call.api_key {
            return Ok(http.bearer_auth(key).body(body));
        }
        let region = self.region.as_deref().ok_or_else(|| {
            self.not_configured(format!(
                "no AWS region to sign for: set providers.{}.region, or AWS_REGION",
                self.name
            ))
        })?;
        let creds = self
            .aws
            .resolve()
            .await
            .map_err(|e| self.not_configured(e.to_string()))?;
        let identity: Identity = creds.into();
        let signed = (|| {
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(region)
                .name(SIGNING_NAME)
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .ok()?
                .into();
            let signable = SignableRequest::new(
                "POST",
                &url,
                headers.into_iter(),
                SignableBody::Bytes(&body),
            )
            .ok()?;
            Some(sign(signable, &params).ok()?.into_parts().0)
        })();
        let instructions = signed.ok_or_else(|| ProviderError::Invalid {
            param: "model".into(),
            message: format!("the request for model '{}' could not be signed", call.model),
        })?;
        for (name, value) in instructions.headers() {
            http = http.header(name, value);
        }
        Ok(http.body(body))
    }

    /// Sends a request; an error answer is classified by its AWS exception type.
    async fn send(
        &self,
        http: reqwest::RequestBuilder,
        model: &str,
    ) -> Result<reqwest::Response, ProviderError> {
        let resp = http
            .send()
            .await
            .map_err(|e| super::http::classify_send_error(&self.name, &e))?;
        let status = resp.status().as_u16();
        if (200..=299).contains(&status) {
            return Ok(resp);
        }
        if (300..=399).contains(&status) {
            tracing::warn!(provider = %self.name, status, "upstream redirect refused");
            return Err(ProviderError::Redirected {
                provider: self.name.clone(),
                status,
            });
        }
        let headers = resp.headers().clone();
        let body = crate::capped::read(resp, crate::capped::MAX_ERROR_BODY)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Err(errors::classify(
            &self.name,
            model,
            self.region.as_deref().unwrap_or("its region"),
            status,
            &headers,
            body.as_ref(),
        ))
    }
}

/// A stream failure before any event, as the failure of the call itself, so
/// that it is retried or falls back like the same error as an HTTP status.
fn before_first_event(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Stream { provider, kind } if kind == "rate_limit_error" => {
            ProviderError::RateLimited {
                provider,
                retry_after: None,
                wait: None,
            }
        }
        ProviderError::Stream { provider, kind } if kind == "overloaded_error" => {
            ProviderError::Unavailable {
                provider,
                status: 503,
                wait: None,
            }
        }
        e => e,
    }
}

#[async_trait]
impl Provider for Bedrock {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            key: KeyUse::Optional,
            cache_breakpoints: true,
            canonical_tool_arguments: true,
            default_output_cap: self.default_max_tokens,
            tool_result_images: true,
        }
    }

    async fn complete(&self, call: Call<'_>) -> Result<Response, ProviderError> {
        let http = self.request(&call, false).await?;
        let resp = self.send(http, call.model).await?;
        let body = crate::capped::read(resp, self.caps.body)
            .await
            .map_err(|e| ProviderError::BadResponse {
                provider: self.name.clone(),
                detail: e.to_string(),
            })?;
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ProviderError::BadResponse {
                provider: self.name.clone(),
                detail: format!("invalid JSON: {}", crate::wire::json_error(&e)),
            })?;
        codec::decode_response(&answer).map_err(|e| ProviderError::unreadable(&self.name, e))
    }

    async fn stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        let http = self.request(&call, true).await?;
        let resp = self.send(http.timeout(STREAM_DEADLINE), call.model).await?;
        let ctype = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ctype.trim_start().starts_with(stream::CONTENT_TYPE) {
            return Err(ProviderError::BadResponse {
                provider: self.name.clone(),
                detail: format!(
                    "expected an event stream, got '{}'",
                    ctype.chars().take(64).collect::<String>()
                ),
            });
        }
        let mut events = stream::events(
            &self.name,
            super::http::raw_body_stream(&self.name, resp),
            self.caps,
            stream::EventDecoder::new(),
        );
        // An exception in place of the first event (throttling, most often)
        // fails the call, where retries and fallbacks can still act on it.
        match events.next().await {
            Some(Err(e)) => Err(before_first_event(e)),
            Some(Ok(first)) => Ok(Box::pin(
                futures_util::stream::once(async move { Ok(first) }).chain(events),
            )),
            None => Ok(events),
        }
    }
}

#[cfg(test)]
mod tests;
