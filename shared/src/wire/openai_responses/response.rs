//! Answers: a model response -> the `response` object.
//!
//! Everything the answer does not hold (the id, the echoed request
//! parameters, the conversation) comes in a [`ResponseHead`] the door builds
//! once per turn, usually with [`ResponseHead::new`]. The status follows the
//! finish reason: the output cap (or the context window) gives `incomplete`
//! with `max_output_tokens`, a filter `incomplete` with `content_filter`;
//! anything else is `completed`.

use std::collections::BTreeMap;

use super::items::{ItemIds, encode_items};
use super::types::{
    ConversationId, CreateRequest, IncompleteDetails, InputTokensDetails, Item,
    OutputTokensDetails, ReasoningConfig, ResponseError, ResponseObject, ResponseUsage, Status,
    TextConfig, TextFormat, ToolChoiceMode, ToolChoiceParam, ToolParam, Truncation,
};
use crate::model::{self, FinishReason, Message, Usage};

/// What a response object holds besides the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHead {
    /// `resp_...`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model, as the client named it.
    pub model: String,
    /// The request's `instructions`.
    pub instructions: Option<String>,
    /// The request's output cap.
    pub max_output_tokens: Option<u32>,
    /// Whether parallel tool calls were allowed (default true).
    pub parallel_tool_calls: bool,
    /// The response this one continues.
    pub previous_response_id: Option<String>,
    /// The request's reasoning settings.
    pub reasoning: ReasoningConfig,
    /// Whether the response is stored.
    pub store: bool,
    /// The request's temperature.
    pub temperature: Option<f64>,
    /// The request's text settings (`{"format": {"type": "text"}}` by default).
    pub text: TextConfig,
    /// The request's tool choice (`auto` by default).
    pub tool_choice: ToolChoiceParam,
    /// The request's tools.
    pub tools: Vec<ToolParam>,
    /// The request's nucleus sampling.
    pub top_p: Option<f64>,
    /// The request's truncation (`disabled` by default).
    pub truncation: Truncation,
    /// The request's end-user id.
    pub user: Option<String>,
    /// The request's metadata.
    pub metadata: BTreeMap<String, String>,
    /// The conversation the response belongs to, when the request named one.
    pub conversation: Option<String>,
}

impl ResponseHead {
    /// The head of the response `id` to `req`, echoing its parameters with
    /// OpenAI's defaults; `previous_response_id` and `conversation` as the
    /// request gave them (the door may set them otherwise).
    pub fn new(id: impl Into<String>, created_at: u64, req: &CreateRequest) -> Self {
        let mut text = req.text.clone().unwrap_or_default();
        text.format.get_or_insert(TextFormat::Text);
        Self {
            id: id.into(),
            created_at,
            model: req.model.clone(),
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            previous_response_id: req.previous_response_id.clone(),
            reasoning: req.reasoning.clone().unwrap_or_default(),
            store: req.store(),
            temperature: req.temperature,
            text,
            tool_choice: req
                .tool_choice
                .clone()
                .unwrap_or(ToolChoiceParam::Mode(ToolChoiceMode::Auto)),
            tools: req.tools.clone().unwrap_or_default(),
            top_p: req.top_p,
            truncation: req.truncation.unwrap_or_default(),
            user: req.user.clone(),
            metadata: req.metadata.clone().unwrap_or_default(),
            conversation: req.conversation_id().map(str::to_owned),
        }
    }

    /// The response object with `status` and `output`, no usage, no error.
    pub fn object(&self, status: Status, output: Vec<Item>) -> ResponseObject {
        ResponseObject {
            id: self.id.clone(),
            object: "response".into(),
            created_at: self.created_at,
            status,
            error: None,
            incomplete_details: None,
            instructions: self.instructions.clone(),
            max_output_tokens: self.max_output_tokens,
            model: self.model.clone(),
            output,
            parallel_tool_calls: self.parallel_tool_calls,
            previous_response_id: self.previous_response_id.clone(),
            reasoning: self.reasoning.clone(),
            store: self.store,
            temperature: self.temperature,
            text: self.text.clone(),
            tool_choice: self.tool_choice.clone(),
            tools: self.tools.clone(),
            top_p: self.top_p,
            truncation: self.truncation,
            usage: None,
            user: self.user.clone(),
            metadata: self.metadata.clone(),
            conversation: self
                .conversation
                .as_ref()
                .map(|id| ConversationId { id: id.clone() }),
            background: false,
        }
    }

    /// A finished response: `output`, the status and incomplete details of
    /// `finish`, and `usage`.
    pub fn finished(
        &self,
        finish: FinishReason,
        output: Vec<Item>,
        usage: &Usage,
    ) -> ResponseObject {
        let (status, reason) = status_of(finish);
        let mut o = self.object(status, output);
        o.incomplete_details = reason.map(|r| IncompleteDetails { reason: r.into() });
        o.usage = Some(encode_usage(usage));
        o
    }

    /// A failed response: the output so far and the error (`code` such as
    /// `server_error`; `message` never holds content).
    pub fn failed(&self, code: &str, message: &str, output: Vec<Item>) -> ResponseObject {
        let mut o = self.object(Status::Failed, output);
        o.error = Some(ResponseError {
            code: code.into(),
            message: message.into(),
        });
        o
    }
}

/// The status and incomplete reason of a finish reason.
pub fn status_of(finish: FinishReason) -> (Status, Option<&'static str>) {
    match finish {
        FinishReason::Length | FinishReason::ContextWindow => {
            (Status::Incomplete, Some("max_output_tokens"))
        }
        FinishReason::ContentFilter => (Status::Incomplete, Some("content_filter")),
        FinishReason::Stop
        | FinishReason::StopSequence
        | FinishReason::ToolCalls
        | FinishReason::Pause => (Status::Completed, None),
    }
}

/// The Responses `usage` of model usage.
pub fn encode_usage(u: &Usage) -> ResponseUsage {
    ResponseUsage {
        input_tokens: u.input,
        input_tokens_details: InputTokensDetails {
            cached_tokens: u.cache_read,
            cache_write_tokens: u.cache_write,
        },
        output_tokens: u.output,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: u.reasoning,
        },
        total_tokens: u.total(),
    }
}

/// An answer's output items: reasoning, messages of `output_text` and
/// `refusal` parts, function calls; ids as [`encode_items`] gives them for
/// the stored answer.
pub fn output_items(message: &Message, ids: &ItemIds) -> Vec<Item> {
    encode_items(message, ids)
}

/// The response object of a complete answer.
pub fn encode_response(
    answer: &model::Response,
    head: &ResponseHead,
    ids: &ItemIds,
) -> ResponseObject {
    head.finished(
        answer.finish,
        output_items(&answer.message, ids),
        &answer.usage,
    )
}
