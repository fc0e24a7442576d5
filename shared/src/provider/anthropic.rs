//! Anthropic Messages API: system prompt lifted out, consecutive same-role
//! messages merged, `max_tokens` defaulted, tool calls and results translated
//! to `tool_use`/`tool_result` blocks and back, stop reasons and usage mapped.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{
    Completion, Provider, ProviderError, ProviderRequest, STREAM_DEADLINE, body_stream, join_url,
    send_json, send_stream,
};
use crate::capped::Caps;
use crate::config::ProviderConfig;
use crate::stream::anthropic::AnthropicStream;
use crate::stream::{DeltaStream, sse};
use crate::wire::{
    ChatMessage, ChatRequest, Content, ContentPart, FinishReason, FunctionCall, Role, ToolCall,
    Usage,
};

/// The API version this adapter speaks.
pub const API_VERSION: &str = "2023-06-01";
/// Output cap when the client sets none (the Messages API requires one);
/// owned by `config`, which bounds budget reservations with it.
pub use crate::config::ANTHROPIC_DEFAULT_MAX_TOKENS as DEFAULT_MAX_TOKENS;

/// The Anthropic adapter.
pub struct Anthropic {
    name: String,
    client: reqwest::Client,
    url: String,
    default_max_tokens: u32,
    caps: Caps,
}

impl Anthropic {
    /// An adapter for provider `name`.
    pub fn new(name: &str, cfg: &ProviderConfig, client: reqwest::Client, caps: Caps) -> Self {
        Self {
            name: name.into(),
            client,
            url: join_url(cfg.base_url.as_deref().unwrap_or_default(), "v1/messages"),
            default_max_tokens: cfg.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            caps,
        }
    }
}

fn invalid(param: String, message: &str) -> ProviderError {
    ProviderError::Invalid {
        param,
        message: message.into(),
    }
}

fn content_blocks(content: Option<&Content>, i: usize) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![json!({"type": "text", "text": t})]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p {
                ContentPart::Text { text } => Ok(json!({"type": "text", "text": text})),
                ContentPart::Refusal { refusal } => Ok(json!({"type": "text", "text": refusal})),
                ContentPart::ImageUrl { image_url } => {
                    image_block(&image_url.url).ok_or_else(|| {
                        invalid(
                            format!("messages[{i}].content[{j}].image_url.url"),
                            "not an http(s) or base64 data URL",
                        )
                    })
                }
                _ => Err(invalid(
                    format!("messages[{i}].content[{j}]"),
                    "this content part is not supported by Anthropic models",
                )),
            })
            .collect(),
    }
}

fn image_block(url: &str) -> Option<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,")?;
        return Some(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        );
    }
    (url.starts_with("https://") || url.starts_with("http://"))
        .then(|| json!({"type": "image", "source": {"type": "url", "url": url}}))
}

/// Translates OpenAI messages to `(system, messages)` for the Messages API.
pub fn translate_messages(
    messages: &[ChatMessage],
) -> Result<(Option<String>, Vec<Value>), ProviderError> {
    let mut system: Vec<String> = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                system.push(m.text_content());
                continue;
            }
            Role::User => ("user", content_blocks(m.content.as_ref(), i)?),
            Role::Assistant => {
                let mut blocks = content_blocks(m.content.as_ref(), i)?;
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let input: Value =
                        serde_json::from_str(&call.function.arguments).map_err(|_| {
                            invalid(
                                format!("messages[{i}].tool_calls[{j}].function.arguments"),
                                "tool call arguments must be JSON",
                            )
                        })?;
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
                }
                ("assistant", blocks)
            }
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                (
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": id, "content": m.text_content()}),
                    ],
                )
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // The Messages API wants strictly alternating roles: merge neighbours.
        match out.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((
        system,
        out.into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect(),
    ))
}

fn tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Option<Value> {
    let mut tc = match choice {
        None => {
            if parallel != Some(false) {
                return None;
            }
            json!({"type": "auto"})
        }
        Some(Value::String(s)) => match s.as_str() {
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            _ => json!({"type": "auto"}),
        },
        Some(v) => match v["function"]["name"].as_str() {
            Some(name) => json!({"type": "tool", "name": name}),
            None => json!({"type": "auto"}),
        },
    };
    if parallel == Some(false) && tc["type"] != "none" {
        tc["disable_parallel_tool_use"] = json!(true);
    }
    Some(tc)
}

/// The upstream request body.
pub fn request_body(
    model: &str,
    messages: &[ChatMessage],
    p: &ChatRequest,
    default_max_tokens: u32,
) -> Result<Value, ProviderError> {
    let (system, msgs) = translate_messages(messages)?;
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(
            p.max_completion_tokens
                .or(p.max_tokens)
                .unwrap_or(default_max_tokens)
        ),
    );
    body.insert("messages".into(), Value::Array(msgs));
    if let Some(system) = system {
        body.insert("system".into(), json!(system));
    }
    if let Some(t) = p.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(t) = p.top_p {
        body.insert("top_p".into(), json!(t));
    }
    if let Some(stop) = &p.stop {
        body.insert("stop_sequences".into(), json!(stop.to_vec()));
    }
    if let Some(user) = &p.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(tools) = &p.tools {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut v = json!({
                    "name": t.function.name,
                    "input_schema": t.function.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
                if let Some(d) = &t.function.description {
                    v["description"] = json!(d);
                }
                v
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = tool_choice(p.tool_choice.as_ref(), p.parallel_tool_calls) {
        body.insert("tool_choice".into(), tc);
    }
    Ok(Value::Object(body))
}

/// Maps a Messages API stop reason to an OpenAI finish reason.
pub fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// Parses a Messages API response into an OpenAI-shaped completion.
pub fn parse_response(provider: &str, v: Value) -> Result<Completion, ProviderError> {
    let bad = |detail: &str| ProviderError::BadResponse {
        provider: provider.into(),
        detail: detail.into(),
    };
    let blocks = v["content"]
        .as_array()
        .ok_or_else(|| bad("no content array"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(
                b["text"]
                    .as_str()
                    .ok_or_else(|| bad("text block without text"))?,
            ),
            Some("tool_use") => calls.push(ToolCall {
                id: b["id"]
                    .as_str()
                    .ok_or_else(|| bad("tool_use without id"))?
                    .into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: b["name"]
                        .as_str()
                        .ok_or_else(|| bad("tool_use without name"))?
                        .into(),
                    arguments: serde_json::to_string(&b["input"]).unwrap_or_else(|_| "{}".into()),
                },
            }),
            // Thinking and other block kinds have no Chat Completions counterpart.
            _ => {}
        }
    }
    let u = &v["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let prompt =
        n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens");
    let message = ChatMessage {
        role: Role::Assistant,
        content: (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text)),
        name: None,
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
        refusal: None,
    };
    Ok(Completion {
        message,
        finish_reason: finish_reason(v["stop_reason"].as_str()),
        usage: Usage::new(prompt, n("output_tokens")).with_details(n("cache_read_input_tokens"), 0),
    })
}

impl Anthropic {
    /// The upstream request with the key and API version headers.
    fn request(
        &self,
        req: &ProviderRequest<'_>,
        body: &Value,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let key = req.api_key.ok_or_else(|| ProviderError::MissingKey {
            provider: self.name.clone(),
        })?;
        Ok(self
            .client
            .post(&self.url)
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION)
            .json(body))
    }
}

#[async_trait]
impl Provider for Anthropic {
    async fn complete(&self, req: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let body = request_body(req.model, req.messages, req.params, self.default_max_tokens)?;
        let http = self.request(&req, &body)?;
        parse_response(
            &self.name,
            send_json(&self.name, http, self.caps.body).await?,
        )
    }

    async fn stream(&self, req: ProviderRequest<'_>) -> Result<DeltaStream, ProviderError> {
        let mut body = request_body(req.model, req.messages, req.params, self.default_max_tokens)?;
        body["stream"] = json!(true);
        let http = self.request(&req, &body)?;
        let resp = send_stream(&self.name, http.timeout(STREAM_DEADLINE)).await?;
        Ok(sse::deltas(
            &self.name,
            body_stream(&self.name, resp, self.caps),
            AnthropicStream::new(&self.name),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn lifts_system_merges_roles_and_translates_tools() {
        let r = req(json!({"model":"m","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":"a"},
            {"role":"user","content":[{"type":"text","text":"b"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}}]},
            {"role":"assistant","content":"calling","tool_calls":[
                {"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},
                {"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"one"},
            {"role":"tool","tool_call_id":"c2","content":"two"},
            {"role":"developer","content":"and polite"}
        ], "stop":"X", "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}],
           "tool_choice":"required","parallel_tool_calls":false,"user":"u"}));
        let b = request_body("claude", &r.messages, &r, 4096).unwrap();
        assert_eq!(b["system"], "be brief\n\nand polite");
        assert_eq!(b["max_tokens"], 4096);
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0]["role"], "user");
        assert_eq!(m[0]["content"].as_array().unwrap().len(), 3);
        assert_eq!(m[0]["content"][2]["source"]["media_type"], "image/png");
        assert_eq!(m[1]["content"][1]["type"], "tool_use");
        assert_eq!(m[1]["content"][1]["input"]["x"], 1);
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][1]["tool_use_id"], "c2");
        assert_eq!(b["stop_sequences"], json!(["X"]));
        assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(
            b["tool_choice"],
            json!({"type":"any","disable_parallel_tool_use":true})
        );
        assert_eq!(b["metadata"]["user_id"], "u");
    }

    #[test]
    fn max_tokens_from_client_wins() {
        let r = req(json!({"model":"m","messages":[{"role":"user","content":"a"}],"max_tokens":9}));
        assert_eq!(
            request_body("c", &r.messages, &r, 4096).unwrap()["max_tokens"],
            9
        );
    }

    #[test]
    fn parses_text_tools_stop_reason_and_usage() {
        let c = parse_response(
            "anthropic",
            json!({"type":"message","role":"assistant","content":[
                {"type":"text","text":"let me check"},
                {"type":"tool_use","id":"tu1","name":"weather","input":{"city":"Oslo"}}],
              "stop_reason":"tool_use","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}}),
        )
        .unwrap();
        assert_eq!(c.finish_reason, FinishReason::ToolCalls);
        assert_eq!(c.usage, Usage::new(15, 3).with_details(5, 0));
        assert_eq!(c.message.text_content(), "let me check");
        let call = &c.message.tool_calls.unwrap()[0];
        assert_eq!(call.id, "tu1");
        assert_eq!(
            serde_json::from_str::<Value>(&call.function.arguments).unwrap(),
            json!({"city":"Oslo"})
        );
        assert_eq!(finish_reason(Some("max_tokens")), FinishReason::Length);
        assert_eq!(finish_reason(Some("end_turn")), FinishReason::Stop);
        assert!(parse_response("anthropic", json!({"oops":1})).is_err());
    }
}
