//! The OpenAI Chat Completions wire types: what clients send and receive,
//! and what OpenAI-protocol providers take and answer. The codec beside
//! this module converts them to and from the model.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `POST /v1/chat/completions` body. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatRequest {
    /// `provider/model` or an alias.
    pub model: String,
    /// The new messages of this turn (with a conversation) or the whole prompt.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Legacy output cap.
    pub max_tokens: Option<u32>,
    /// Output cap (newer name).
    pub max_completion_tokens: Option<u32>,
    /// Stop sequences.
    pub stop: Option<Stop>,
    /// End-user id, passed on to the provider.
    pub user: Option<String>,
    /// `{"type":"json_object"}` or a JSON schema.
    pub response_format: Option<Value>,
    /// Tools the model may call.
    pub tools: Option<Vec<Tool>>,
    /// `auto`, `none`, `required` or a named function.
    pub tool_choice: Option<Value>,
    /// Whether several tool calls may come in one answer.
    pub parallel_tool_calls: Option<bool>,
    /// Best-effort determinism.
    pub seed: Option<i64>,
    /// Number of choices; only 1 is supported.
    pub n: Option<u32>,
    /// Presence penalty.
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f64>,
    /// Streaming flag.
    pub stream: Option<bool>,
    /// Streaming options; only valid with `stream: true`.
    pub stream_options: Option<StreamOptions>,
    /// ctxgate extension: stored conversation to continue.
    pub conversation_id: Option<String>,
    /// OpenAI's prompt-cache routing key; ctxgate sets one per stored
    /// conversation when the client sends none.
    pub prompt_cache_key: Option<String>,
    /// ctxgate extension: the tenant's MCP servers whose tools the model may
    /// use (the key's default when absent; `[]`: none).
    pub mcp_servers: Option<Vec<String>>,
}

/// `stream_options` of a streamed request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk carrying the usage of the whole answer.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The stop sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

/// A message role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// Instructions (newer OpenAI name for system).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

impl Role {
    /// Whether the message is an instruction (system or developer).
    pub fn is_instruction(self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// Text or content parts; absent on an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by the assistant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a tool message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A refusal from the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            refusal: None,
        }
    }

    /// The message's text parts joined, ignoring images and other media.
    pub fn text_content(&self) -> String {
        self.content
            .as_ref()
            .map(Content::joined_text)
            .unwrap_or_default()
    }
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts (text, images, ...).
    Parts(Vec<ContentPart>),
}

impl Content {
    /// All text parts joined with newlines.
    pub fn joined_text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Whether there is no text and no part at all.
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(s) => s.is_empty(),
            Content::Parts(p) => p.is_empty(),
        }
    }
}

// Hand-written so that errors inside a part keep their path
// (`messages[0].content[1].type`) instead of serde's generic
// "did not match any variant of untagged enum".
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(p) = seq.next_element::<ContentPart>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

/// Anthropic's `cache_control` on a text part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheControl {
    /// Always `ephemeral`.
    #[serde(rename = "type")]
    pub kind: CacheKind,
    /// `5m` or `1h`; the provider's default (5m) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<crate::model::CacheTtl>,
}

/// The kinds of `cache_control` (one so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// A cache entry that lives for its TTL after last use.
    Ephemeral,
}

/// One typed content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// A prompt-cache breakpoint after this text, for Anthropic models
        /// (the spelling OpenAI-compatible gateways take); never sent to
        /// OpenAI-protocol upstreams.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// An image by URL or data URL.
    ImageUrl {
        /// The image reference.
        image_url: ImageUrl,
    },
    /// Audio input (passed through to providers that take it).
    InputAudio {
        /// Provider-defined audio object.
        input_audio: Value,
    },
    /// A file (passed through to providers that take it).
    File {
        /// Provider-defined file object.
        file: Value,
    },
    /// A refusal part in an assistant message.
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

/// An image reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id, echoed by the tool message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// Which function with which arguments.
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

/// A function invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON text.
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's declaration.
    pub function: FunctionDef,
}

/// A function declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// Name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// Token usage of one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, including cached ones.
    pub prompt_tokens: u64,
    /// Output tokens, including reasoning ones.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
    /// Input detail: how many prompt tokens were served from the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Output detail: how many completion tokens were reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Prompt tokens written to the provider's prompt cache (billed above the
    /// input price by Anthropic). Not OpenAI's own field: LiteLLM's name and
    /// place for it, which OpenAI-compatible clients already read; absent
    /// when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_creation_input_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Breakdown of prompt tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the provider's prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
}

/// Breakdown of completion tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Completion tokens spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Usage from the two counts.
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..Self::default()
        }
    }

    /// Adds cached and reasoning detail where the provider reported it.
    pub fn with_details(mut self, cached: u64, reasoning: u64) -> Self {
        if cached > 0 {
            self.prompt_tokens_details = Some(PromptTokensDetails {
                cached_tokens: cached,
            });
        }
        if reasoning > 0 {
            self.completion_tokens_details = Some(CompletionTokensDetails {
                reasoning_tokens: reasoning,
            });
        }
        self
    }

    /// Cached prompt tokens (0 when not reported).
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }

    /// Reasoning tokens (0 when not reported).
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .map_or(0, |d| d.reasoning_tokens)
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// Output cap reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Filtered by the provider.
    ContentFilter,
}

/// A `chat.completion` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered, as `provider/model`.
    pub model: String,
    /// Exactly one choice.
    pub choices: Vec<Choice>,
    /// Token usage.
    pub usage: Usage,
    /// The stored conversation this turn belongs to (ctxgate extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Values the response processor replaced, per place and category (ctxgate extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redactions:
        Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>>,
}

/// One choice of a completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    /// Always 0.
    pub index: u32,
    /// The assistant's message.
    pub message: ChatMessage,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Never produced by the gateway.
    pub logprobs: Option<Value>,
}

/// An OpenAI list (`GET /v1/models`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelEntry>,
}

/// One model in the list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Model id clients send.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds (the gateway's start; providers do not share theirs).
    pub created: i64,
    /// Provider name, or `ctxgate` for aliases.
    pub owned_by: String,
}
