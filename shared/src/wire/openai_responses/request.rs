//! Requests: a client's create request -> the model request.
//!
//! The input items become the request's messages ([`super::decode_items`]);
//! `instructions` come apart ([`Decoded::instructions`]) because they belong
//! to this response only and are never stored or carried over by
//! `previous_response_id`. Function tools go to the model; `mcp` tools are
//! reported by index ([`Decoded::mcp_labels`]) for the door to resolve
//! against the tenant's registered servers. `metadata`, `store`,
//! `conversation`, `include`, `truncation` and `prompt_cache_key` are the
//! door's, not the model's.

use super::items::decode_items;
use super::types::{
    CreateRequest, Input, NamedToolChoice, TextFormat, ToolChoiceMode, ToolChoiceParam, ToolParam,
};
use crate::model::{self, Message, Reasoning, ResponseFormat, Role, Tool, ToolChoice};
use crate::wire::CodecError;
use serde_json::json;

/// A create request as the model sees it, and what the door resolves itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The input as messages, the function tools, tool choice and parameters.
    pub request: model::Request,
    /// `instructions` as one system message; empty when there are none.
    pub instructions: Vec<Message>,
    /// The `mcp` tools: index in `tools` and `server_label`.
    pub mcp_labels: Vec<(usize, String)>,
}

/// Decodes a (validated) create request.
pub fn decode_request(req: &CreateRequest) -> Result<Decoded, CodecError> {
    let messages = match &req.input {
        None => Vec::new(),
        Some(Input::Text(t)) => vec![Message::text(Role::User, t.as_str())],
        Some(Input::Items(items)) => decode_items(items, "input")?,
    };
    let instructions = req
        .instructions
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| Message::text(Role::System, t.as_str()))
        .collect();
    let mut tools = Vec::new();
    let mut mcp_labels = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        match t {
            ToolParam::Function {
                name,
                description,
                parameters,
                strict,
            } => tools.push(Tool::Function {
                name: name.clone(),
                description: description.clone(),
                parameters: parameters.clone(),
                strict: *strict,
                cache: None,
            }),
            ToolParam::Mcp { server_label, .. } => mcp_labels.push((i, server_label.clone())),
        }
    }
    let tool_choice = req.tool_choice.as_ref().map(|c| match c {
        ToolChoiceParam::Mode(ToolChoiceMode::Auto) => ToolChoice::Auto,
        ToolChoiceParam::Mode(ToolChoiceMode::None) => ToolChoice::None,
        ToolChoiceParam::Mode(ToolChoiceMode::Required) => ToolChoice::Required,
        ToolChoiceParam::Named(NamedToolChoice::Function { name }) => {
            ToolChoice::Tool { name: name.clone() }
        }
        // The model's names of an MCP server's tools are the registry's to
        // make; "one of this server's tools" is at least a tool call.
        ToolChoiceParam::Named(NamedToolChoice::Mcp { .. }) => ToolChoice::Required,
    });
    let response_format = req
        .text
        .as_ref()
        .and_then(|t| t.format.as_ref())
        .map(|f| match f {
            TextFormat::Text => ResponseFormat::Text,
            TextFormat::JsonObject => ResponseFormat::JsonObject,
            TextFormat::JsonSchema {
                name,
                schema,
                strict,
                description,
            } => {
                // OpenAI Chat's `json_schema` object, which the model keeps.
                let mut s = json!({"name": name, "schema": schema});
                if let Some(strict) = strict {
                    s["strict"] = json!(strict);
                }
                if let Some(d) = description {
                    s["description"] = json!(d);
                }
                ResponseFormat::JsonSchema { json_schema: s }
            }
        });
    let reasoning = req
        .reasoning
        .as_ref()
        .and_then(|r| r.effort.clone())
        .map(|effort| Reasoning {
            effort: Some(effort),
            ..Reasoning::default()
        });
    Ok(Decoded {
        request: model::Request {
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: req.parallel_tool_calls,
            max_output_tokens: req.max_output_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            user: req.safety_identifier.clone().or_else(|| req.user.clone()),
            response_format,
            reasoning,
            ..model::Request::default()
        },
        instructions,
        mcp_labels,
    })
}
