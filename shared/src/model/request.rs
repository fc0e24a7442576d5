//! What a turn asks of a model.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{CacheHint, CacheTtl, Message};

/// A wire format ctxgate speaks, at a front door or to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    /// OpenAI Chat Completions.
    OpenaiChat,
    /// Anthropic Messages.
    Anthropic,
}

/// A request to a model, whichever front door it came through.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    /// The prompt: instructions, history and the new messages, in order.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// How the model must use them.
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one answer.
    pub parallel_tool_calls: Option<bool>,
    /// Output cap in tokens.
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Best-effort determinism.
    pub seed: Option<i64>,
    /// Presence penalty.
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f64>,
    /// End-user id, passed on to the provider.
    pub user: Option<String>,
    /// The shape the answer must take.
    pub response_format: Option<ResponseFormat>,
    /// Reasoning (thinking) settings.
    pub reasoning: Option<Reasoning>,
    /// Fields of the front door's format that the model has no place for.
    pub extensions: Extensions,
    /// Where the prompt stays the same from one turn of its conversation to
    /// the next, for providers' prompt caches; `None` without a stored
    /// conversation or with caching off.
    pub stable: Option<StablePrefix>,
}

/// A prompt-cache hint ctxgate adds to a request as it goes upstream: on
/// block `block` of message `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breakpoint {
    /// Index into the request's messages.
    pub message: usize,
    /// Index into that message's blocks.
    pub block: usize,
    /// The hint to write there.
    pub hint: CacheHint,
}

/// The part of a stored conversation's prompt that the next turn sends
/// again unchanged: the instructions and summary, then the stored history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StablePrefix {
    /// How many leading messages are instructions (the summary included).
    pub instructions: usize,
    /// How many leading messages are instructions or stored history.
    pub history: usize,
    /// Names the conversation without revealing it, for providers that
    /// route requests to their cache by a key (OpenAI `prompt_cache_key`).
    pub key: String,
    /// The cache lifetime the tenant asked for, over the model's.
    pub ttl: Option<CacheTtl>,
}

impl Request {
    /// The instruction messages' text, in order.
    pub fn instructions(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter().filter(|m| m.role.is_instruction())
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    /// A function the caller (or ctxgate's tool loop) runs.
    Function {
        /// Name.
        name: String,
        /// What it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// JSON Schema of the arguments.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parameters: Option<Value>,
        /// Strict schema adherence (OpenAI).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
        /// Cache hint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<CacheHint>,
    },
    /// A tool of one format that the model has no type for (a provider's
    /// server tool), kept as sent.
    Opaque(super::Opaque),
}

impl Tool {
    /// The tool's name, where it has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Tool::Function { name, .. } => Some(name),
            Tool::Opaque(o) => o.value.get("name").and_then(Value::as_str),
        }
    }
}

/// How the model must use its tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This tool.
    Tool {
        /// Its name.
        name: String,
    },
    /// A choice of one format the model has no type for, kept as sent.
    Opaque(super::Opaque),
}

/// The shape an answer must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema (OpenAI's `json_schema` object, as sent).
    JsonSchema {
        /// `{"name", "schema", "strict"?, "description"?}`.
        json_schema: Value,
    },
}

/// Reasoning settings, in whichever terms the front door used.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reasoning {
    /// `low`, `medium`, `high`, ... (OpenAI `reasoning_effort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Anthropic `thinking.type`: `enabled`, `disabled`, `adaptive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Anthropic `thinking.budget_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
}

/// Top-level fields of one wire format that the model has no place for
/// (OpenAI `logit_bias`, `metadata`, `store`...): a provider speaking the
/// same format gets them back; others never see them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extensions {
    /// The format they belong to.
    pub format: Option<WireFormat>,
    /// The fields, as sent.
    pub fields: Map<String, Value>,
    /// Headers of the format's API that its provider should see too
    /// (Anthropic's `anthropic-beta`), lower-case names; never credentials.
    pub headers: Vec<(String, String)>,
}

impl Extensions {
    /// The fields, if they belong to `format`.
    pub fn for_format(&self, format: WireFormat) -> Option<&Map<String, Value>> {
        (self.format == Some(format)).then_some(&self.fields)
    }
}
