//! HTTP to providers: sending a request on the shared client, classifying
//! every failure the same way for all providers, and reading bodies under
//! their caps. Nothing of an upstream error body reaches a client or a log
//! beyond a short reason token.

use serde_json::Value;

use super::{ProviderError, resilience};
use crate::wire::{is_reason, json_error};

/// Sends an upstream request and returns its parsed JSON body, classifying
/// every failure the same way for all adapters.
pub(crate) async fn send_json(
    provider: &str,
    req: reqwest::RequestBuilder,
    cap: usize,
) -> Result<Value, ProviderError> {
    let body = send_body(provider, req, cap).await?;
    parse_json(provider, &body)
}

/// Sends an upstream request and returns its body unparsed (a caller that
/// parses it straight into a typed shape skips the tree of [`send_json`]).
pub(crate) async fn send_body(
    provider: &str,
    req: reqwest::RequestBuilder,
    cap: usize,
) -> Result<bytes::Bytes, ProviderError> {
    let resp = send(provider, req).await?;
    crate::capped::read(resp, cap)
        .await
        .map_err(|e| body_error(provider, e))
}

/// An upstream body as JSON, or the provider failure [`send_json`] reports.
pub(crate) fn parse_json(provider: &str, body: &[u8]) -> Result<Value, ProviderError> {
    serde_json::from_slice(body).map_err(|e| ProviderError::BadResponse {
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

/// Sends an upstream request and returns the response once its status is a
/// success (its body unread, so it can be streamed); errors are classified.
pub(crate) async fn send(
    provider: &str,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let p = || provider.to_owned();
    let resp = crate::trace::propagate(req)
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

/// A successful response's body as it arrives, uncapped (callers cap it).
pub(crate) fn raw_body_stream(
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

/// A transport failure (no answer) as a provider failure.
pub(crate) fn classify_send_error(provider: &str, e: &reqwest::Error) -> ProviderError {
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

/// An upstream URL, parsed once when the provider is built: reqwest would
/// parse the text again on every request (a few percent of a turn's CPU).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    text: String,
    parsed: Option<reqwest::Url>,
}

impl Endpoint {
    /// `path` under `base` (see [`join_url`]).
    pub(crate) fn new(base: &str, path: &str) -> Self {
        let text = join_url(base, path);
        let parsed = reqwest::Url::parse(&text).ok();
        Self { text, parsed }
    }

    /// A POST to this URL; text that does not parse fails when sent, as
    /// reqwest reports it.
    pub(crate) fn post(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        match &self.parsed {
            Some(url) => client.post(url.clone()),
            None => client.post(self.text.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::json_error;
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
