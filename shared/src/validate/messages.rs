//! Anthropic Messages request bodies (`POST /v1/messages` and its
//! `count_tokens`): the shapes the Messages API requires, checked before
//! decoding so that each refusal names its field. Block types the gateway
//! does not know (newer server tools, future blocks) pass as sent; a known
//! block in the wrong place, or a `tool_result` answering no call, is refused
//! (in the first message, only when no stored conversation precedes it).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{ValidationError, check_json_body, conversation_id, mcp_servers, range, typed};
use crate::config::Limits;
use crate::wire::anthropic::MessagesRequest;

/// A checked Messages request and ctxgate's own fields taken out of it (so
/// that they never travel upstream).
#[derive(Debug)]
pub struct Checked {
    /// The request, as the codec decodes it.
    pub request: MessagesRequest,
    /// `conversation_id`, when the body names one.
    pub conversation_id: Option<String>,
    /// `mcp_servers`, when the body names them.
    pub mcp_servers: Option<Vec<String>>,
    /// The refusal of a `tool_result` in the first message, which answers no
    /// call of this request: it stands unless the request continues a stored
    /// conversation, whose last assistant message made the call.
    pub unanswered: Option<ValidationError>,
}

/// Which request: a turn needs `max_tokens`, a token count does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `POST /v1/messages`.
    Turn,
    /// `POST /v1/messages/count_tokens`.
    Count,
}

fn at(param: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::at(param, message)
}

/// Checks a Messages body for `purpose` against `limits`.
pub fn messages_request(
    body: &[u8],
    limits: &Limits,
    purpose: Purpose,
) -> Result<Checked, ValidationError> {
    let mut value = check_json_body(body)?;
    let obj = value.as_object_mut().ok_or_else(|| ValidationError {
        param: None,
        message: "request body must be a JSON object".into(),
    })?;
    // An optional field is given or left out; `null` is neither.
    if let Some((k, _)) = obj.iter().find(|(_, v)| v.is_null()) {
        return Err(at(
            k.as_str(),
            format!("'{k}' must not be null; leave it out"),
        ));
    }
    match obj.get("model") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::String(_)) => return Err(at("model", "'model' must not be empty")),
        None | Some(Value::Null) => return Err(at("model", "'model' is required")),
        Some(_) => return Err(at("model", "'model' must be a string")),
    }
    match obj.get("max_tokens") {
        None | Some(Value::Null) if purpose == Purpose::Turn => {
            return Err(at("max_tokens", "'max_tokens' is required"));
        }
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(0) | None => {
                return Err(at(
                    "max_tokens",
                    "'max_tokens' must be an integer of at least 1",
                ));
            }
            Some(n) if n > u64::from(limits.max_output_tokens) => {
                return Err(at(
                    "max_tokens",
                    format!("'max_tokens' may be at most {}", limits.max_output_tokens),
                ));
            }
            Some(_) => {}
        },
    }
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => return Err(at("messages", "'messages' is required")),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(at(
                "messages",
                "'messages' must contain at least one message",
            ));
        }
        Some(Value::Array(a)) if a.len() > limits.max_messages => {
            return Err(at(
                "messages",
                format!(
                    "at most {} messages are accepted in one request",
                    limits.max_messages
                ),
            ));
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err(at("messages", "'messages' must be an array")),
    };
    let unanswered = check_messages(messages, limits)?;
    if let Some(system) = obj.get("system") {
        check_system(system)?;
    }
    if let Some(tools) = obj.get("tools") {
        check_tools(tools)?;
    }
    if let Some(choice) = obj.get("tool_choice") {
        check_tool_choice(choice)?;
    }
    if let Some(thinking) = obj.get("thinking") {
        check_thinking(thinking, obj.get("max_tokens").and_then(Value::as_u64))?;
    }
    for (name, hi) in [("temperature", 1.0), ("top_p", 1.0)] {
        if let Some(v) = obj.get(name).filter(|v| !v.is_null()) {
            let x = v
                .as_f64()
                .ok_or_else(|| at(name, format!("'{name}' must be a number")))?;
            range(name, Some(x), 0.0, hi)?;
        }
    }
    if obj
        .get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
        return Err(at("metadata", "'metadata' must be an object"));
    }
    // ctxgate's own fields.
    let conversation = match obj.remove("conversation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => {
            conversation_id(&id, "conversation_id")?;
            Some(id)
        }
        Some(_) => return Err(at("conversation_id", "'conversation_id' must be a string")),
    };
    let servers = match obj.remove("mcp_servers") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let names: Vec<String> = serde_json::from_value(v)
                .map_err(|_| at("mcp_servers", "'mcp_servers' must be an array of names"))?;
            mcp_servers(&names)?;
            Some(names)
        }
    };
    let request: MessagesRequest = typed(value)?;
    Ok(Checked {
        request,
        conversation_id: conversation,
        mcp_servers: servers,
        unanswered,
    })
}

/// Where a known block type may appear.
fn allowed(kind: &str, assistant: bool) -> Option<bool> {
    let ok = match kind {
        "text" => true,
        "image" | "document" | "tool_result" | "search_result" => !assistant,
        "tool_use" | "thinking" | "redacted_thinking" => assistant,
        _ => return None,
    };
    Some(ok)
}

/// Checks the messages; returns the deferred refusal of a first message's
/// `tool_result` (see [`Checked::unanswered`]).
fn check_messages(
    messages: &[Value],
    limits: &Limits,
) -> Result<Option<ValidationError>, ValidationError> {
    // The calls the previous assistant message made, for its tool results.
    let mut open_calls: HashSet<String> = HashSet::new();
    let mut unanswered = None;
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = m
            .as_object()
            .ok_or_else(|| at(&path, "a message must be an object"))?;
        let assistant = match m.get("role").and_then(Value::as_str) {
            Some("user") => false,
            Some("assistant") => true,
            Some(other) => {
                return Err(at(
                    format!("{path}.role"),
                    format!(
                        "role '{other}' is not one of 'user' and 'assistant' (the system prompt is the top-level 'system')"
                    ),
                ));
            }
            None => return Err(at(format!("{path}.role"), "'role' is required")),
        };
        if i == 0 && assistant {
            return Err(at(
                format!("{path}.role"),
                "the first message must be the user's",
            ));
        }
        let mut chars = 0usize;
        let mut calls = HashSet::new();
        match m.get("content") {
            Some(Value::String(t)) => chars += t.chars().count(),
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    let bpath = format!("{path}.content[{j}]");
                    chars += check_block(b, &bpath, assistant)?;
                    let kind = b.get("type").and_then(Value::as_str).unwrap_or_default();
                    if kind == "tool_use" {
                        calls.insert(b["id"].as_str().unwrap_or_default().to_owned());
                    }
                    if kind == "tool_result" {
                        let id = b["tool_use_id"].as_str().unwrap_or_default();
                        if !open_calls.contains(id) {
                            let e = at(
                                format!("{bpath}.tool_use_id"),
                                format!(
                                    "tool_result '{id}' answers no tool_use of the previous assistant message"
                                ),
                            );
                            // The first message's previous one may be stored.
                            if i > 0 {
                                return Err(e);
                            }
                            unanswered.get_or_insert(e);
                        }
                    }
                }
            }
            None | Some(Value::Null) => {
                return Err(at(format!("{path}.content"), "'content' is required"));
            }
            Some(_) => {
                return Err(at(
                    format!("{path}.content"),
                    "'content' must be a string or an array of content blocks",
                ));
            }
        }
        if chars > limits.max_message_chars {
            return Err(at(
                format!("{path}.content"),
                format!(
                    "a message may hold at most {} characters",
                    limits.max_message_chars
                ),
            ));
        }
        if assistant {
            open_calls = calls;
        } else {
            open_calls.clear();
        }
    }
    Ok(unanswered)
}

fn string_field<'a>(
    b: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<&'a str, ValidationError> {
    b.get(field).and_then(Value::as_str).ok_or_else(|| {
        at(
            format!("{path}.{field}"),
            format!("'{field}' must be a string"),
        )
    })
}

/// Checks one block; returns its text's length in characters.
fn check_block(b: &Value, path: &str, assistant: bool) -> Result<usize, ValidationError> {
    let b = b
        .as_object()
        .ok_or_else(|| at(path, "a content block must be an object"))?;
    let kind = b.get("type").and_then(Value::as_str).ok_or_else(|| {
        at(
            format!("{path}.type"),
            "a content block needs a string 'type'",
        )
    })?;
    match allowed(kind, assistant) {
        Some(false) => {
            let role = if assistant { "an assistant" } else { "a user" };
            return Err(at(
                format!("{path}.type"),
                format!("a '{kind}' block may not appear in {role} message"),
            ));
        }
        // A block type this gateway does not know passes as sent.
        None => return Ok(0),
        Some(true) => {}
    }
    match kind {
        "text" => Ok(string_field(b, "text", path)?.chars().count()),
        "image" | "document" => {
            let source = b
                .get("source")
                .and_then(Value::as_object)
                .ok_or_else(|| at(format!("{path}.source"), "'source' must be an object"))?;
            string_field(source, "type", &format!("{path}.source"))?;
            Ok(0)
        }
        "tool_use" => {
            string_field(b, "id", path)?;
            if string_field(b, "name", path)?.is_empty() {
                return Err(at(format!("{path}.name"), "'name' must not be empty"));
            }
            if !b.get("input").is_some_and(Value::is_object) {
                return Err(at(format!("{path}.input"), "'input' must be an object"));
            }
            Ok(0)
        }
        "tool_result" => {
            string_field(b, "tool_use_id", path)?;
            match b.get("content") {
                None | Some(Value::Null) => Ok(0),
                Some(Value::String(t)) => Ok(t.chars().count()),
                Some(Value::Array(parts)) => {
                    let mut n = 0;
                    for (k, p) in parts.iter().enumerate() {
                        n += check_block(p, &format!("{path}.content[{k}]"), false)?;
                    }
                    Ok(n)
                }
                Some(_) => Err(at(
                    format!("{path}.content"),
                    "'content' must be a string or an array of content blocks",
                )),
            }
        }
        "thinking" => {
            string_field(b, "thinking", path)?;
            string_field(b, "signature", path)?;
            Ok(0)
        }
        "redacted_thinking" => {
            string_field(b, "data", path)?;
            Ok(0)
        }
        _ => Ok(0),
    }
}

fn check_system(system: &Value) -> Result<(), ValidationError> {
    match system {
        Value::Null | Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (j, b) in blocks.iter().enumerate() {
                let path = format!("system[{j}]");
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(at(
                        format!("{path}.type"),
                        "system blocks must be 'text' blocks",
                    ));
                }
                check_block(b, &path, false)?;
            }
            Ok(())
        }
        _ => Err(at(
            "system",
            "'system' must be a string or an array of text blocks",
        )),
    }
}

fn check_tools(tools: &Value) -> Result<(), ValidationError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| at("tools", "'tools' must be an array"))?;
    let mut names = HashSet::new();
    for (i, t) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let t = t
            .as_object()
            .ok_or_else(|| at(&path, "a tool must be an object"))?;
        let custom = matches!(t.get("type").and_then(Value::as_str), None | Some("custom"));
        let name = string_field(t, "name", &path)?;
        if name.is_empty() {
            return Err(at(format!("{path}.name"), "'name' must not be empty"));
        }
        if !names.insert(name.to_owned()) {
            return Err(at(
                format!("{path}.name"),
                format!("tool name '{name}' is used twice"),
            ));
        }
        if custom && !t.get("input_schema").is_some_and(Value::is_object) {
            return Err(at(
                format!("{path}.input_schema"),
                "a custom tool needs an 'input_schema' object",
            ));
        }
    }
    Ok(())
}

fn check_tool_choice(choice: &Value) -> Result<(), ValidationError> {
    let c = choice
        .as_object()
        .ok_or_else(|| at("tool_choice", "'tool_choice' must be an object"))?;
    match c.get("type").and_then(Value::as_str) {
        Some("auto" | "any" | "none") => Ok(()),
        Some("tool") => string_field(c, "name", "tool_choice").map(|_| ()),
        _ => Err(at(
            "tool_choice.type",
            "'type' must be one of 'auto', 'any', 'tool' and 'none'",
        )),
    }
}

fn check_thinking(thinking: &Value, max_tokens: Option<u64>) -> Result<(), ValidationError> {
    let t = thinking
        .as_object()
        .ok_or_else(|| at("thinking", "'thinking' must be an object"))?;
    if t.get("type").and_then(Value::as_str) == Some("enabled") {
        let budget = t
            .get("budget_tokens")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                at(
                    "thinking.budget_tokens",
                    "'budget_tokens' must be an integer",
                )
            })?;
        if budget < 1024 {
            return Err(at(
                "thinking.budget_tokens",
                "'budget_tokens' must be at least 1024",
            ));
        }
        if max_tokens.is_some_and(|m| budget >= m) {
            return Err(at(
                "thinking.budget_tokens",
                "'budget_tokens' must be less than 'max_tokens'",
            ));
        }
    }
    Ok(())
}
