//! The Responses API as serde types: the create request, the response
//! object and the items both carry. Input items stay JSON values in the
//! request (the validator names the field at fault, [`super::decode_items`]
//! reads them); everything ctxgate writes is typed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A `POST /v1/responses` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The model asked for.
    pub model: String,
    /// The new input: a string (one user message) or items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// A system (developer) message for this response only: not carried
    /// over by `previous_response_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Function tools and `mcp` tools naming a registered server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolParam>>,
    /// How the model must use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoiceParam>,
    /// Whether to stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Whether to store the response (default true); see [`CreateRequest::store`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// The stored response this one continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// The conversation this response belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationRef>,
    /// Output cap in tokens (reasoning included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Up to 16 string pairs, echoed on the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Whether several tool calls may come in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The shape of the text output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// Reasoning settings, for models that take them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    /// What to do with input longer than the context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<Truncation>,
    /// Extra output data asked for (see `validate::responses` for the accepted values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// Run in the background (refused by the validator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    /// End-user id (deprecated by OpenAI for `safety_identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// End-user id for abuse detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    /// OpenAI's prompt-cache routing key (ctxgate keys its own caching per conversation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    /// ctxgate: the registered MCP servers whose tools the turn may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<String>>,
    /// Every other top-level field (`service_tier`, `top_logprobs`...), as
    /// sent; none of them reaches a provider.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CreateRequest {
    /// Whether the response is stored (`store` defaults to true).
    pub fn store(&self) -> bool {
        self.store.unwrap_or(true)
    }

    /// Whether the answer streams.
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The conversation id named, if any.
    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation.as_ref().map(ConversationRef::id)
    }
}

/// The request's `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message of text.
    Text(String),
    /// Input items (messages, `function_call`, `function_call_output`,
    /// `reasoning`), as sent.
    Items(Vec<Value>),
}

/// A conversation named by id or by `{"id": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConversationRef {
    /// The id.
    Id(String),
    /// `{"id": ...}`.
    Object {
        /// The id.
        id: String,
    },
}

impl ConversationRef {
    /// The conversation id.
    pub fn id(&self) -> &str {
        match self {
            ConversationRef::Id(id) | ConversationRef::Object { id } => id,
        }
    }
}

/// A tool of the request, as echoed on the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolParam {
    /// A function the caller runs.
    Function {
        /// Name.
        name: String,
        /// What it does.
        #[serde(default)]
        description: Option<String>,
        /// JSON Schema of the arguments.
        #[serde(default)]
        parameters: Option<Value>,
        /// Strict schema adherence.
        #[serde(default)]
        strict: Option<bool>,
    },
    /// A remote MCP server: ctxgate maps `server_label` onto the tenant's
    /// registered server of that name and runs its tools in the turn.
    Mcp {
        /// The registered server's name.
        server_label: String,
        /// Which of its tools (a list of names, or `{"tool_names": [...]}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allowed_tools: Option<Value>,
        /// `never` (the only mode ctxgate runs; the validator checks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        require_approval: Option<Value>,
        /// What else the client sent (`server_url`, `headers`...): never used,
        /// the registry holds the server's address and credentials.
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
}

/// `tool_choice`: a mode or a named tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoiceParam {
    /// `none`, `auto` or `required`.
    Mode(ToolChoiceMode),
    /// A named tool.
    Named(NamedToolChoice),
}

/// The three `tool_choice` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    /// No tool calls.
    None,
    /// The model decides.
    Auto,
    /// At least one tool call.
    Required,
}

/// A `tool_choice` naming one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NamedToolChoice {
    /// This function.
    Function {
        /// Its name.
        name: String,
    },
    /// A tool of this MCP server (any of them when `name` is absent).
    Mcp {
        /// The server's label.
        server_label: String,
        /// The tool's name on that server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

/// `text`: the shape of the text output.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TextConfig {
    /// Free text, any JSON object, or JSON matching a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    /// `low`, `medium` or `high` (echoed; not passed on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
}

/// `text.format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching `schema`.
    JsonSchema {
        /// The format's name.
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Strict adherence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
        /// What the format is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
}

/// `reasoning`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReasoningConfig {
    /// `none`, `minimal`, `low`, `medium`, `high`, `xhigh`.
    #[serde(default)]
    pub effort: Option<String>,
    /// `auto`, `concise` or `detailed` (echoed; a provider's visible
    /// reasoning is the summary whatever it says).
    #[serde(default)]
    pub summary: Option<String>,
}

/// `truncation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Drop what does not fit (ctxgate's window and summaries).
    Auto,
    /// Refuse input that does not fit.
    #[default]
    Disabled,
}

/// The `response` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseObject {
    /// `resp_...`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Where the response is.
    pub status: Status,
    /// Why it failed, when it did.
    pub error: Option<ResponseError>,
    /// Why it is incomplete, when it is.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's `instructions`.
    pub instructions: Option<String>,
    /// The request's output cap.
    pub max_output_tokens: Option<u32>,
    /// The model.
    pub model: String,
    /// The output items.
    pub output: Vec<Item>,
    /// Whether parallel tool calls were allowed.
    pub parallel_tool_calls: bool,
    /// The response this one continues.
    pub previous_response_id: Option<String>,
    /// The reasoning settings.
    pub reasoning: ReasoningConfig,
    /// Whether it is stored.
    pub store: bool,
    /// The request's temperature.
    pub temperature: Option<f64>,
    /// The text settings.
    pub text: TextConfig,
    /// The request's tool choice (`auto` when it set none).
    pub tool_choice: ToolChoiceParam,
    /// The request's tools.
    pub tools: Vec<ToolParam>,
    /// The request's nucleus sampling.
    pub top_p: Option<f64>,
    /// The truncation strategy.
    pub truncation: Truncation,
    /// Token usage, once known.
    pub usage: Option<ResponseUsage>,
    /// The request's end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The request's metadata.
    pub metadata: BTreeMap<String, String>,
    /// The conversation it belongs to, when the request named one.
    pub conversation: Option<ConversationId>,
    /// Always false (background mode is refused).
    pub background: bool,
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Complete.
    Completed,
    /// Failed: see `error`.
    Failed,
    /// Being generated.
    InProgress,
    /// Cancelled.
    Cancelled,
    /// Waiting to run.
    Queued,
    /// Stopped early: see `incomplete_details`.
    Incomplete,
}

/// A response's `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// `server_error`, `rate_limit_exceeded`...
    pub code: String,
    /// What went wrong (never content).
    pub message: String,
}

/// A response's `incomplete_details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: String,
}

/// `{"id": ...}` of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationId {
    /// The conversation id.
    pub id: String,
}

/// A response's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseUsage {
    /// Every input token.
    pub input_tokens: u64,
    /// The cached part.
    pub input_tokens_details: InputTokensDetails,
    /// Every output token, reasoning included.
    pub output_tokens: u64,
    /// The reasoning part.
    pub output_tokens_details: OutputTokensDetails,
    /// Input plus output.
    pub total_tokens: u64,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Input tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to it.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

/// An item: of a response's output, of a stored response's input, of a
/// conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A message.
    Message(MessageItem),
    /// A function call the model made.
    FunctionCall(FunctionCallItem),
    /// The output of a function call.
    FunctionCallOutput(FunctionCallOutputItem),
    /// The model's reasoning.
    Reasoning(ReasoningItem),
}

impl Item {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            Item::Message(m) => &m.id,
            Item::FunctionCall(c) => &c.id,
            Item::FunctionCallOutput(o) => &o.id,
            Item::Reasoning(r) => &r.id,
        }
    }
}

/// Where an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Being generated.
    InProgress,
    /// Complete.
    Completed,
    /// Cut short (the output cap, a filter).
    Incomplete,
}

/// A message's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemRole {
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// Instructions.
    System,
    /// Instructions (OpenAI's newer name).
    Developer,
}

/// A `message` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// `msg_...`.
    pub id: String,
    /// Who said it.
    pub role: ItemRole,
    /// Its parts.
    pub content: Vec<ContentPart>,
    /// Where it is.
    pub status: ItemStatus,
}

/// A part of a message's content (or of a function call's output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text from the user or the instructions.
    InputText {
        /// The text.
        text: String,
    },
    /// An image.
    InputImage {
        /// An http(s) or data URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        /// A file uploaded to OpenAI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        /// `low`, `high` or `auto`.
        detail: String,
    },
    /// A file.
    InputFile {
        /// A file uploaded to OpenAI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        /// The content, as a base64 data URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_data: Option<String>,
        /// A URL to fetch it from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_url: Option<String>,
        /// Its name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// Audio.
    InputAudio {
        /// `{"data": base64, "format": "wav" | "mp3"}`.
        input_audio: AudioData,
    },
    /// Text from the model.
    OutputText {
        /// The text.
        text: String,
        /// Citations (kept as the provider gave them).
        annotations: Vec<Value>,
    },
    /// The model declined.
    Refusal {
        /// Its explanation.
        refusal: String,
    },
}

/// `input_audio.input_audio`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioData {
    /// Base64 data.
    pub data: String,
    /// `wav` or `mp3`.
    pub format: String,
}

/// A `function_call` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCallItem {
    /// `fc_...`.
    pub id: String,
    /// The call id its output answers.
    pub call_id: String,
    /// The function.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
    /// Where it is.
    pub status: ItemStatus,
}

/// A `function_call_output` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutputItem {
    /// `fco_...`.
    pub id: String,
    /// The call it answers.
    pub call_id: String,
    /// What the function returned.
    pub output: ToolOutput,
    /// Where it is.
    pub status: ItemStatus,
}

/// A function call's output: text, or input parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolOutput {
    /// Text.
    Text(String),
    /// `input_text`, `input_image` and `input_file` parts.
    Parts(Vec<ContentPart>),
}

/// A `reasoning` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasoningItem {
    /// `rs_...`.
    pub id: String,
    /// The visible reasoning, as summary parts.
    pub summary: Vec<SummaryPart>,
    /// The provider's opaque reasoning state, carried back on the next turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
    /// Where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
}

/// A part of a reasoning summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SummaryPart {
    /// Summary text.
    SummaryText {
        /// The text.
        text: String,
    },
}
