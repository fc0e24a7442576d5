//! OpenAI Chat Completions, also used for every OpenAI-compatible server
//! (Azure OpenAI, Ollama, vLLM, Groq...): same body, configurable base URL,
//! key header and query parameters.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Completion, Provider, ProviderError, ProviderRequest, STREAM_DEADLINE, body_stream, join_url,
    send_json, send_stream,
};
use crate::capped::Caps;
use crate::config::{ProviderConfig, ProviderKind};
use crate::stream::openai::OpenAiStream;
use crate::stream::{DeltaStream, sse};
use crate::wire::{ChatMessage, ChatRequest, FinishReason, Role, Usage};

/// An OpenAI-protocol provider.
pub struct OpenAi {
    name: String,
    client: reqwest::Client,
    url: String,
    auth_header: Option<String>,
    query: Vec<(String, String)>,
    key_required: bool,
    caps: Caps,
}

impl OpenAi {
    /// An adapter for provider `name`.
    pub fn new(name: &str, cfg: &ProviderConfig, client: reqwest::Client, caps: Caps) -> Self {
        Self {
            name: name.into(),
            client,
            url: join_url(
                cfg.base_url.as_deref().unwrap_or_default(),
                "chat/completions",
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
            key_required: cfg.kind == ProviderKind::Openai,
            caps,
        }
    }
}

/// The upstream request body.
pub fn request_body(model: &str, messages: &[ChatMessage], p: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), json!(messages));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    opt("temperature", p.temperature.map(Value::from));
    opt("top_p", p.top_p.map(Value::from));
    opt("max_tokens", p.max_tokens.map(Value::from));
    opt(
        "max_completion_tokens",
        p.max_completion_tokens.map(Value::from),
    );
    opt("stop", p.stop.as_ref().map(|s| json!(s)));
    opt("user", p.user.clone().map(Value::from));
    opt("response_format", p.response_format.clone());
    opt("tools", p.tools.as_ref().map(|t| json!(t)));
    opt("tool_choice", p.tool_choice.clone());
    opt(
        "parallel_tool_calls",
        p.parallel_tool_calls.map(Value::from),
    );
    opt("seed", p.seed.map(Value::from));
    opt("presence_penalty", p.presence_penalty.map(Value::from));
    opt("frequency_penalty", p.frequency_penalty.map(Value::from));
    Value::Object(body)
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<ChoiceOut>,
    #[serde(default)]
    usage: Option<UsageOut>,
}

#[derive(Deserialize)]
struct ChoiceOut {
    message: ChatMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct UsageOut {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<crate::wire::PromptTokensDetails>,
    #[serde(default)]
    completion_tokens_details: Option<crate::wire::CompletionTokensDetails>,
}

/// Maps an OpenAI finish reason.
pub fn finish_reason(s: Option<&str>) -> FinishReason {
    match s {
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// Parses an upstream `chat.completion` body.
pub fn parse_response(provider: &str, v: Value) -> Result<Completion, ProviderError> {
    let bad = |detail: String| ProviderError::BadResponse {
        provider: provider.into(),
        detail,
    };
    let r: Response = serde_json::from_value(v)
        .map_err(|e| bad(format!("unexpected shape: {}", super::json_error(&e))))?;
    let choice = r
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| bad("no choices".into()))?;
    let mut message = choice.message;
    if message.role != Role::Assistant {
        return Err(bad("choice is not an assistant message".into()));
    }
    // Normalise: an empty tool call list is no tool call list.
    if message.tool_calls.as_ref().is_some_and(Vec::is_empty) {
        message.tool_calls = None;
    }
    let usage = r
        .usage
        .map(|u| {
            Usage::new(u.prompt_tokens, u.completion_tokens).with_details(
                u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                u.completion_tokens_details
                    .map_or(0, |d| d.reasoning_tokens),
            )
        })
        .unwrap_or_default();
    Ok(Completion {
        message,
        finish_reason: finish_reason(choice.finish_reason.as_deref()),
        usage,
    })
}

impl OpenAi {
    /// The upstream request, key and query parameters applied.
    fn request(
        &self,
        req: &ProviderRequest<'_>,
        body: &Value,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        if self.key_required && req.api_key.is_none() {
            return Err(ProviderError::MissingKey {
                provider: self.name.clone(),
            });
        }
        let mut http = self.client.post(&self.url).json(body);
        if !self.query.is_empty() {
            http = http.query(&self.query);
        }
        if let Some(key) = req.api_key {
            http = match &self.auth_header {
                Some(header) => http.header(header.as_str(), key),
                None => http.bearer_auth(key),
            };
        }
        Ok(http)
    }
}

/// The upstream body of a streamed request: usage is always asked for, since
/// budgets and storage need it whether or not the client wants it.
pub fn stream_body(model: &str, messages: &[ChatMessage], p: &ChatRequest) -> Value {
    let mut body = request_body(model, messages, p);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body
}

#[async_trait]
impl Provider for OpenAi {
    async fn complete(&self, req: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let http = self.request(&req, &request_body(req.model, req.messages, req.params))?;
        parse_response(
            &self.name,
            send_json(&self.name, http, self.caps.body).await?,
        )
    }

    async fn stream(&self, req: ProviderRequest<'_>) -> Result<DeltaStream, ProviderError> {
        let http = self.request(&req, &stream_body(req.model, req.messages, req.params))?;
        let resp = send_stream(&self.name, http.timeout(STREAM_DEADLINE)).await?;
        Ok(sse::deltas(
            &self.name,
            body_stream(&self.name, resp, self.caps),
            OpenAiStream::new(&self.name),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_every_parameter_given() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model":"x","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"top_p":0.9,
            "max_completion_tokens":7,"stop":"END","user":"u1","response_format":{"type":"json_object"},
            "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","seed":3,
            "parallel_tool_calls":false
        }))
        .unwrap();
        let b = request_body("gpt-4o", &req.messages, &req);
        assert_eq!(b["model"], "gpt-4o");
        assert_eq!(b["messages"][0]["content"], "hi");
        assert_eq!(b["temperature"], 0.5);
        assert_eq!(b["max_completion_tokens"], 7);
        assert!(b.get("max_tokens").is_none());
        assert_eq!(b["stop"], "END");
        assert_eq!(b["tools"][0]["function"]["name"], "f");
        assert_eq!(b["tool_choice"], "required");
        assert_eq!(b["seed"], 3);
        assert_eq!(b["parallel_tool_calls"], false);
        assert!(b.get("n").is_none() && b.get("conversation_id").is_none());
    }

    #[test]
    fn parses_tool_calls_and_usage() {
        let c = parse_response(
            "openai",
            json!({"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,
              "tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
              "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}),
        )
        .unwrap();
        assert_eq!(c.finish_reason, FinishReason::ToolCalls);
        assert_eq!(c.usage, Usage::new(5, 2));
        assert_eq!(
            c.message.tool_calls.unwrap()[0].function.arguments,
            "{\"a\":1}"
        );
        assert!(parse_response("openai", json!({"choices":[]})).is_err());
        assert!(parse_response("openai", json!({"nope":1})).is_err());
    }
}
