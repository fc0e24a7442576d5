//! Request validation: turns a body into a [`ChatRequest`] (or, in
//! [`messages`], an Anthropic Messages request) or an error that names the
//! offending field as a path (`messages[2].role`).

pub mod messages;
pub mod responses;

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::config::Limits;
use crate::ids;
use crate::wire::openai_chat::types::{ChatRequest, Content, ContentPart, Role};

/// A client mistake in the request body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// Field path, when one field is at fault.
    pub param: Option<String>,
    /// What is wrong, for the client.
    pub message: String,
}

impl ValidationError {
    fn at(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            message: message.into(),
        }
    }
}

/// Most messages accepted in one request (owned by `config`, which bounds
/// `limits.max_messages` with it).
pub use crate::config::MAX_MESSAGES_PER_REQUEST;

/// Deepest JSON nesting accepted in a body (a chat request needs about 8).
pub const MAX_DEPTH: usize = 32;

fn body_error(message: impl Into<String>) -> ValidationError {
    ValidationError {
        param: None,
        message: message.into(),
    }
}

/// Refuses what must not be parsed at all: invalid UTF-8, nesting deeper
/// than [`MAX_DEPTH`], duplicate top-level keys (which parsers resolve
/// differently, a classic smuggling vector).
pub fn check_json_body(body: &[u8]) -> Result<Value, ValidationError> {
    let text = checked_text(body)?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| body_error(format!("request body is not valid JSON: {e}")))?;
    if value.is_object() {
        duplicate_keys(text)?;
    }
    Ok(value)
}

/// The body as text, refused when it is not UTF-8 or nests deeper than
/// [`MAX_DEPTH`] (what must be refused before any parser sees it).
fn checked_text(body: &[u8]) -> Result<&str, ValidationError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        body_error(format!(
            "request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(body_error(format!(
                        "request body nests deeper than {MAX_DEPTH} levels"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(text)
}

/// Fails on a repeated top-level key of a JSON object text, naming it.
fn duplicate_keys(text: &str) -> Result<(), ValidationError> {
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de).deserialize_map(DuplicateKeys).map_err(|e| {
        let msg = e.to_string();
        let key = msg.split('`').nth(1).unwrap_or_default().to_owned();
        ValidationError::at(key, "duplicate key in request body")
    })
}

/// A well-formed JSON object body parsed straight into `T`, with
/// [`check_json_body`]'s refusals applied; `None` for anything else (the
/// caller then goes the way that names what is wrong). Most bodies are
/// well-formed, and this spares them a tree parsed only to be converted.
fn typed_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let text = checked_text(body).ok()?;
    // A derived struct would also take an array of its fields.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let typed = serde_json::from_str(text).ok()?;
    duplicate_keys(text).ok()?;
    Some(typed)
}

/// Walks the top-level object's keys only, failing on a repeat.
struct DuplicateKeys;

impl<'de> Visitor<'de> for DuplicateKeys {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Parses and validates a chat completions body against `limits`.
pub fn chat_request(body: &[u8], limits: &Limits) -> Result<ChatRequest, ValidationError> {
    // A body that parses as the typed request and passes the top-level
    // checks below is the common case; any other goes through the tree.
    let req = match typed_object::<ChatRequest>(body) {
        Some(req)
            if !req.model.trim().is_empty()
                && !req.messages.is_empty()
                && req.messages.len() <= limits.max_messages =>
        {
            req
        }
        _ => chat_request_tree(body, limits)?,
    };
    check_semantics(&req, limits)?;
    Ok(req)
}

/// [`chat_request`] without its semantic checks, through a JSON tree so that
/// a missing or empty top-level field is named precisely (serde only knows
/// "missing field" at the parent path).
fn chat_request_tree(body: &[u8], limits: &Limits) -> Result<ChatRequest, ValidationError> {
    let value = check_json_body(body)?;
    let obj = value.as_object().ok_or_else(|| ValidationError {
        param: None,
        message: "request body must be a JSON object".into(),
    })?;
    match obj.get("model") {
        None | Some(Value::Null) => {
            return Err(ValidationError::at("model", "'model' is required"));
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(ValidationError::at("model", "'model' must not be empty"));
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(ValidationError::at("model", "'model' must be a string")),
    }
    match obj.get("messages") {
        None | Some(Value::Null) => {
            return Err(ValidationError::at("messages", "'messages' is required"));
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ValidationError::at(
                "messages",
                "'messages' must contain at least one message",
            ));
        }
        Some(Value::Array(a)) if a.len() > limits.max_messages => {
            return Err(ValidationError::at(
                "messages",
                format!(
                    "at most {} messages are accepted in one request",
                    limits.max_messages
                ),
            ));
        }
        Some(Value::Array(_)) => {}
        Some(_) => {
            return Err(ValidationError::at(
                "messages",
                "'messages' must be an array",
            ));
        }
    }
    typed(value)
}

/// `value` as `T`, a type error named by its path (a missing field by its
/// own name: serde reports it at its parent).
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.inner().to_string();
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            path = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
        }
        ValidationError::at(path, format!("invalid value: {inner}"))
    })
}

fn check_semantics(req: &ChatRequest, limits: &Limits) -> Result<(), ValidationError> {
    if let Some(n) = req.n
        && n != 1
    {
        return Err(ValidationError::at("n", "only n = 1 is supported"));
    }
    if req.stream_options.is_some() && req.stream != Some(true) {
        return Err(ValidationError::at(
            "stream_options",
            "'stream_options' is only allowed with stream: true",
        ));
    }
    range("temperature", req.temperature, 0.0, 2.0)?;
    range("top_p", req.top_p, 0.0, 1.0)?;
    range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    for (name, v) in [
        ("max_tokens", req.max_tokens),
        ("max_completion_tokens", req.max_completion_tokens),
    ] {
        if v == Some(0) {
            return Err(ValidationError::at(
                name,
                format!("'{name}' must be at least 1"),
            ));
        }
        if let Some(v) = v
            && v > limits.max_output_tokens
        {
            return Err(ValidationError::at(
                name,
                format!("'{name}' may be at most {}", limits.max_output_tokens),
            ));
        }
    }
    if let Some(id) = &req.conversation_id {
        conversation_id(id, "conversation_id")?;
    }
    if let Some(servers) = &req.mcp_servers {
        mcp_servers(servers)?;
    }
    if let Some(tools) = &req.tools {
        for (i, t) in tools.iter().enumerate() {
            if t.kind != "function" {
                return Err(ValidationError::at(
                    format!("tools[{i}].type"),
                    "only 'function' tools are supported",
                ));
            }
            if t.function.name.is_empty() {
                return Err(ValidationError::at(
                    format!("tools[{i}].function.name"),
                    "tool name must not be empty",
                ));
            }
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        let chars = m
            .content
            .as_ref()
            .map_or(0, |c| c.joined_text().chars().count());
        if chars > limits.max_message_chars {
            return Err(ValidationError::at(
                format!("messages[{i}].content"),
                format!(
                    "a message may hold at most {} characters",
                    limits.max_message_chars
                ),
            ));
        }
        let has_content = m.content.as_ref().is_some_and(|c| !c.is_empty());
        match m.role {
            Role::System | Role::Developer => {
                if !has_content {
                    return Err(ValidationError::at(
                        format!("messages[{i}].content"),
                        "a system message needs content",
                    ));
                }
                if let Some(Content::Parts(parts)) = &m.content
                    && let Some(j) = parts
                        .iter()
                        .position(|p| !matches!(p, ContentPart::Text { .. }))
                {
                    return Err(ValidationError::at(
                        format!("messages[{i}].content[{j}]"),
                        "system messages may only contain text parts",
                    ));
                }
            }
            Role::User => {
                if !has_content {
                    return Err(ValidationError::at(
                        format!("messages[{i}].content"),
                        "a user message needs content",
                    ));
                }
            }
            Role::Assistant => {
                let has_calls = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
                if !has_content && !has_calls {
                    return Err(ValidationError::at(
                        format!("messages[{i}].content"),
                        "an assistant message needs content or tool_calls",
                    ));
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    if serde_json::from_str::<Value>(&call.function.arguments).is_err() {
                        return Err(ValidationError::at(
                            format!("messages[{i}].tool_calls[{j}].function.arguments"),
                            "tool call arguments must be a JSON text",
                        ));
                    }
                }
            }
            Role::Tool => {
                if m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                    return Err(ValidationError::at(
                        format!("messages[{i}].tool_call_id"),
                        "a tool message needs tool_call_id",
                    ));
                }
                if m.content.is_none() {
                    return Err(ValidationError::at(
                        format!("messages[{i}].content"),
                        "a tool message needs content",
                    ));
                }
            }
        }
    }
    Ok(())
}

fn range(name: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), ValidationError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(ValidationError::at(
            name,
            format!("'{name}' must be between {lo} and {hi}"),
        )),
        _ => Ok(()),
    }
}

/// Most MCP servers one request may name.
pub const MAX_MCP_SERVERS: usize = 16;

/// A request's `mcp_servers`: at most [`MAX_MCP_SERVERS`] server names
/// (`[a-z0-9-]{1,32}`); whether each is registered is the registry's to say.
pub fn mcp_servers(names: &[String]) -> Result<(), ValidationError> {
    if names.len() > MAX_MCP_SERVERS {
        return Err(ValidationError::at(
            "mcp_servers",
            format!("at most {MAX_MCP_SERVERS} MCP servers may be named"),
        ));
    }
    for (i, n) in names.iter().enumerate() {
        let slug = !n.is_empty()
            && n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !slug {
            return Err(ValidationError::at(
                format!("mcp_servers[{i}]"),
                "an MCP server name is 1 to 32 of a-z, 0-9 and '-'",
            ));
        }
    }
    Ok(())
}

/// Checks a client-chosen conversation id; `param` names where it came from.
pub fn conversation_id(id: &str, param: &str) -> Result<(), ValidationError> {
    if ids::is_valid_conversation_id(id) {
        Ok(())
    } else {
        Err(ValidationError::at(
            param,
            "conversation ids are 1-128 characters from A-Z, a-z, 0-9, '.', '_', ':' and '-', and not only dots",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ValidationError {
        chat_request(body.as_bytes(), &Limits::default()).unwrap_err()
    }

    fn param(body: &str) -> Option<String> {
        err(body).param
    }

    #[test]
    fn accepts_a_full_openai_body() {
        let r = chat_request(
            &br#"{"model":"echo","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}],
            "temperature":0.2,"top_p":1,"max_tokens":10,"max_completion_tokens":10,"stop":["x"],"user":"u",
            "response_format":{"type":"json_object"},"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],
            "tool_choice":"auto","seed":7,"n":1,"some_future_field":{"a":1}}"#[..],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(r.messages.len(), 4);
        assert_eq!(
            r.stop,
            Some(crate::wire::openai_chat::types::Stop::Many(vec![
                "x".into()
            ]))
        );
    }

    // Issue 19: the typed parse straight from the text gives what the tree
    // gave, and a body it cannot take still gets the tree's answer.
    #[test]
    fn the_direct_parse_matches_the_tree() {
        let limits = Limits::default();
        for body in [
            r#"{"model":"echo","messages":[{"role":"user","content":"hi"}]}"#,
            r#" {"model":"openai/gpt-4o-mini","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"h\u00e9\n\"i\""},{"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":[1,2.5e3]}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}],
            "temperature":0.2,"top_p":1,"max_tokens":10,"stop":"x","user":"u","seed":-7,
            "response_format":{"type":"json_schema","json_schema":{"z":1,"a":[true,null,1.5]}},
            "tools":[{"type":"function","function":{"name":"f","parameters":{"b":{},"a":1}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}},"n":1,"stream":true,
            "stream_options":{"include_usage":true},"frequency_penalty":-0.5,
            "conversation_id":"c-1","mcp_servers":["crm"],"some_future_field":{"a":1}} "#,
        ] {
            let direct = typed_object::<ChatRequest>(body.as_bytes()).expect("direct");
            let tree = chat_request_tree(body.as_bytes(), &limits).unwrap();
            assert_eq!(format!("{direct:?}"), format!("{tree:?}"));
        }
        // What the direct parse refuses or cannot tell, the tree answers.
        for body in [
            r#"["echo",[{"role":"user","content":"hi"}]]"#,
            r#"{"model":"echo","messages":[{"role":"user","content":"hi"}],"x":1,"x":2}"#,
            r#"{"model":" ","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"echo","messages":[]}"#,
        ] {
            assert!(
                typed_object::<ChatRequest>(body.as_bytes()).is_none_or(|r| r
                    .model
                    .trim()
                    .is_empty()
                    || r.messages.is_empty())
            );
            assert!(chat_request(body.as_bytes(), &limits).is_err(), "{body}");
        }
        assert_eq!(
            err(r#"["echo",[{"role":"user","content":"hi"}]]"#).message,
            "request body must be a JSON object"
        );
        assert_eq!(
            param(r#"{"model":"echo","messages":[{"role":"user","content":"hi"}],"x":1,"x":2}"#)
                .as_deref(),
            Some("x")
        );
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(err("{").param, None);
        assert_eq!(err("[]").param, None);
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(r#"{"model":3,"messages":[{"role":"user","content":"x"}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(param(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(r#"{"model":"m","messages":[]}"#).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":"hi"}"#).as_deref(),
            Some("messages")
        );
        let p = param(
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"wizard","content":"c"}]}"#,
        );
        assert_eq!(p.as_deref(), Some("messages[2].role"));
        assert_eq!(
            param(r#"{"model":"m","messages":[{"content":"a"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#).as_deref(),
            Some("messages[0].content")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"video"}]}]}"#)
                .as_deref(),
            Some("messages[0].content[0].type")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user"}]}"#).as_deref(),
            Some("messages[0].content")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#).as_deref(),
            Some("messages[0].tool_call_id")
        );
        assert_eq!(
            param(
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#
            )
            .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#)
                .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#)
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(param(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"conversation_id":"a b"}"#).as_deref(), Some("conversation_id"));
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}"#).as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
    }

    #[test]
    fn n_of_one_is_fine() {
        assert!(
            chat_request(
                br#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":1}"#,
                &Limits::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn refuses_bodies_that_must_not_be_parsed() {
        let e = chat_request(b"{\"model\":\"m\xff\"}", &Limits::default()).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e:?}");
        let deep = format!(
            "{{\"model\":\"m\",\"x\":{}{}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(err(&deep).message.contains("deeper"));
        // Brackets inside strings do not count.
        let text = "[".repeat(100);
        let ok = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{text}"}}]}}"#);
        assert!(chat_request(ok.as_bytes(), &Limits::default()).is_ok());
        let dup = err(r#"{"model":"a","messages":[{"role":"user","content":"x"}],"model":"b"}"#);
        assert_eq!(dup.param.as_deref(), Some("model"));
        assert!(dup.message.contains("duplicate"));
    }

    #[test]
    fn configured_limits_name_field_and_limit() {
        let limits = Limits {
            max_messages: 2,
            max_message_chars: 5,
            max_output_tokens: 100,
            ..Limits::default()
        };
        let three = r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":"c"}]}"#;
        let e = chat_request(three.as_bytes(), &limits).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.message.contains('2')),
            (Some("messages"), true)
        );
        let long = r#"{"model":"m","messages":[{"role":"user","content":"abcdef"}]}"#;
        assert_eq!(
            chat_request(long.as_bytes(), &limits)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages[0].content")
        );
        let big = r#"{"model":"m","messages":[{"role":"user","content":"a"}],"max_tokens":101}"#;
        let e = chat_request(big.as_bytes(), &limits).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.message.contains("100")),
            (Some("max_tokens"), true)
        );
    }
}
