//! OpenAI Responses request bodies (`POST /v1/responses`): the shapes the
//! gateway runs, checked before decoding so that each refusal names its
//! field. The input items are checked by the codec's own reading of them
//! ([`decode_items`]), so that what passes here decodes.
//!
//! Refused: `background: true`; hosted tools other than `mcp` (`web_search`,
//! `file_search`, ...); an `mcp` tool asking for approvals; item types other
//! than messages, `function_call`, `function_call_output` and `reasoning`
//! (`item_reference` included); `conversation` together with
//! `previous_response_id`; stored prompts (`prompt`); `include` values
//! other than [`INCLUDABLE`]. An explicit `null` is read as the field left
//! out (OpenAI's SDKs send some).

use serde_json::{Map, Value};

use super::{ValidationError, check_json_body, conversation_id, mcp_servers, range, typed};
use crate::config::Limits;
use crate::wire::openai_responses::{CreateRequest, decode_items};

/// The `include` values accepted: `reasoning.encrypted_content` (reasoning
/// items always carry what the provider gave), `message.output_text.logprobs`
/// (accepted and ignored: no provider's logprobs are passed on) and
/// `message.input_image.image_url` (input images always keep their URL).
pub const INCLUDABLE: [&str; 3] = [
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
    "message.input_image.image_url",
];

/// Most entries in `metadata`, and their key and value lengths (OpenAI's).
const METADATA_ENTRIES: usize = 16;
const METADATA_KEY: usize = 64;
const METADATA_VALUE: usize = 512;

/// A checked create request and ctxgate's own field taken out of it.
#[derive(Debug)]
pub struct Checked {
    /// The request, as the codec decodes it (`mcp_servers` taken out).
    pub request: CreateRequest,
    /// `mcp_servers`, when the body names them.
    pub mcp_servers: Option<Vec<String>>,
}

fn at(param: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::at(param, message)
}

/// Checks a create-response body against `limits`.
pub fn responses_request(body: &[u8], limits: &Limits) -> Result<Checked, ValidationError> {
    let mut value = check_json_body(body)?;
    let obj = value.as_object_mut().ok_or_else(|| ValidationError {
        param: None,
        message: "request body must be a JSON object".into(),
    })?;
    obj.retain(|_, v| !v.is_null());
    match obj.get("model") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::String(_)) => return Err(at("model", "'model' must not be empty")),
        None => return Err(at("model", "'model' is required")),
        Some(_) => return Err(at("model", "'model' must be a string")),
    }
    if obj
        .get("background")
        .is_some_and(|b| b != &Value::Bool(false))
    {
        return Err(at(
            "background",
            "background responses are not supported; leave 'background' out or false",
        ));
    }
    if obj.contains_key("prompt") {
        return Err(at(
            "prompt",
            "stored prompts are not supported; send 'instructions' and 'input'",
        ));
    }
    check_input(obj.get("input"), limits)?;
    if let Some(i) = obj.get("instructions") {
        let t = i
            .as_str()
            .ok_or_else(|| at("instructions", "'instructions' must be a string"))?;
        if t.chars().count() > limits.max_message_chars {
            return Err(at(
                "instructions",
                format!(
                    "'instructions' may hold at most {} characters",
                    limits.max_message_chars
                ),
            ));
        }
    }
    let functions = match obj.get_mut("tools") {
        Some(tools) => check_tools(tools)?,
        None => Vec::new(),
    };
    if let Some(choice) = obj.get("tool_choice") {
        check_tool_choice(choice, &functions)?;
    }
    if let Some(text) = obj.get("text") {
        check_text(text)?;
    }
    if let Some(r) = obj.get("reasoning") {
        check_reasoning(r)?;
    }
    match obj.get("truncation") {
        None => {}
        Some(Value::String(s)) if s == "auto" || s == "disabled" => {}
        Some(_) => {
            return Err(at(
                "truncation",
                "'truncation' must be 'auto' or 'disabled'",
            ));
        }
    }
    if let Some(include) = obj.get("include") {
        check_include(include)?;
    }
    check_state(obj)?;
    if let Some(v) = obj.get("max_output_tokens") {
        match v.as_u64() {
            Some(0) | None => {
                return Err(at(
                    "max_output_tokens",
                    "'max_output_tokens' must be an integer of at least 1",
                ));
            }
            Some(n) if n > u64::from(limits.max_output_tokens) => {
                return Err(at(
                    "max_output_tokens",
                    format!(
                        "'max_output_tokens' may be at most {}",
                        limits.max_output_tokens
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for (name, hi) in [("temperature", 2.0), ("top_p", 1.0)] {
        if let Some(v) = obj.get(name) {
            let x = v
                .as_f64()
                .ok_or_else(|| at(name, format!("'{name}' must be a number")))?;
            range(name, Some(x), 0.0, hi)?;
        }
    }
    if let Some(m) = obj.get("metadata") {
        check_metadata(m)?;
    }
    let servers = match obj.remove("mcp_servers") {
        None => None,
        Some(v) => {
            let names: Vec<String> = serde_json::from_value(v)
                .map_err(|_| at("mcp_servers", "'mcp_servers' must be an array of names"))?;
            mcp_servers(&names)?;
            Some(names)
        }
    };
    let request: CreateRequest = typed(value)?;
    Ok(Checked {
        request,
        mcp_servers: servers,
    })
}

/// `input`: a string, or items the codec reads, within the limits.
fn check_input(input: Option<&Value>, limits: &Limits) -> Result<(), ValidationError> {
    let too_long = |param: String| {
        at(
            param,
            format!(
                "an item may hold at most {} characters",
                limits.max_message_chars
            ),
        )
    };
    let items = match input {
        None => return Err(at("input", "'input' is required")),
        Some(Value::String(s)) => {
            if s.chars().count() > limits.max_message_chars {
                return Err(too_long("input".into()));
            }
            return Ok(());
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(at("input", "'input' must hold at least one item"));
        }
        Some(Value::Array(a)) if a.len() > limits.max_messages => {
            return Err(at(
                "input",
                format!(
                    "at most {} items are accepted in one request",
                    limits.max_messages
                ),
            ));
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(at("input", "'input' must be a string or an array of items"));
        }
    };
    decode_items(items, "input").map_err(|e| at(e.param, e.message))?;
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => {
                if item["call_id"].as_str().is_some_and(str::is_empty) {
                    return Err(at(format!("{path}.call_id"), "'call_id' must not be empty"));
                }
                if item["name"].as_str().is_some_and(str::is_empty) {
                    return Err(at(format!("{path}.name"), "'name' must not be empty"));
                }
                let args = item["arguments"].as_str().unwrap_or_default();
                if serde_json::from_str::<Value>(args).is_err() {
                    return Err(at(
                        format!("{path}.arguments"),
                        "'arguments' must be a JSON text",
                    ));
                }
            }
            Some("function_call_output") if item["call_id"].as_str() == Some("") => {
                return Err(at(format!("{path}.call_id"), "'call_id' must not be empty"));
            }
            _ => {}
        }
        if text_chars(item) > limits.max_message_chars {
            return Err(too_long(path));
        }
    }
    Ok(())
}

/// The characters of an item's text (content, output, arguments, summary).
fn text_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.iter().map(text_chars).sum(),
        Value::Object(o) => [
            "content",
            "text",
            "output",
            "arguments",
            "refusal",
            "summary",
        ]
        .iter()
        .filter_map(|k| o.get(*k))
        .map(text_chars)
        .sum(),
        _ => 0,
    }
}

/// `tools`: function tools and `mcp` tools; returns the function names.
/// Client credentials for an MCP server are dropped: the registry holds the
/// server's, and the request's tools are echoed and may be stored.
fn check_tools(tools: &mut Value) -> Result<Vec<String>, ValidationError> {
    let tools = tools
        .as_array_mut()
        .ok_or_else(|| at("tools", "'tools' must be an array"))?;
    let mut names = Vec::new();
    for (i, t) in tools.iter_mut().enumerate() {
        let path = format!("tools[{i}]");
        let t = t
            .as_object_mut()
            .ok_or_else(|| at(&path, "a tool must be an object"))?;
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = match t.get("name") {
                    Some(Value::String(n)) if !n.is_empty() => n.clone(),
                    _ => {
                        return Err(at(
                            format!("{path}.name"),
                            "a function tool needs a non-empty 'name'",
                        ));
                    }
                };
                if t.get("parameters")
                    .is_some_and(|p| !p.is_object() && !p.is_null())
                {
                    return Err(at(
                        format!("{path}.parameters"),
                        "'parameters' must be a JSON Schema object",
                    ));
                }
                if names.contains(&name) {
                    return Err(at(
                        format!("{path}.name"),
                        format!("tool name '{name}' is given twice"),
                    ));
                }
                names.push(name);
            }
            Some("mcp") => check_mcp_tool(t, &path)?,
            Some(other) => {
                return Err(at(
                    format!("{path}.type"),
                    format!(
                        "tool type '{other}' is not supported: only 'function' tools and 'mcp' tools naming a registered MCP server"
                    ),
                ));
            }
            None => return Err(at(format!("{path}.type"), "a tool needs a string 'type'")),
        }
    }
    Ok(names)
}

fn check_mcp_tool(t: &mut Map<String, Value>, path: &str) -> Result<(), ValidationError> {
    let label = t
        .get("server_label")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            at(
                format!("{path}.server_label"),
                "an mcp tool needs 'server_label', the name of a registered MCP server",
            )
        })?;
    mcp_servers(&[label.to_owned()]).map_err(|e| at(format!("{path}.server_label"), e.message))?;
    match t.get("require_approval") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "never" => {}
        Some(_) => {
            return Err(at(
                format!("{path}.require_approval"),
                "ctxgate runs MCP tools without approvals: 'require_approval' may only be 'never'",
            ));
        }
    }
    match t.get("allowed_tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(Value::Object(o))
            if o.keys().all(|k| k == "tool_names" || k == "read_only")
                && o.get("tool_names").is_none_or(|n| {
                    n.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                }) => {}
        Some(_) => {
            return Err(at(
                format!("{path}.allowed_tools"),
                "'allowed_tools' must be an array of tool names or {\"tool_names\": [...]}",
            ));
        }
    }
    for secret in ["authorization", "headers"] {
        t.remove(secret);
    }
    Ok(())
}

fn check_tool_choice(choice: &Value, functions: &[String]) -> Result<(), ValidationError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "none" | "auto" | "required") => Ok(()),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => match o.get("name").and_then(Value::as_str) {
                Some(n) if functions.iter().any(|f| f == n) => Ok(()),
                Some(n) => Err(at(
                    "tool_choice.name",
                    format!("tool_choice names '{n}', which is not a function tool of the request"),
                )),
                None => Err(at(
                    "tool_choice.name",
                    "a function tool_choice needs 'name'",
                )),
            },
            Some("mcp") => match o.get("server_label") {
                Some(Value::String(_)) => {
                    if o.get("name")
                        .is_some_and(|n| !n.is_string() && !n.is_null())
                    {
                        return Err(at("tool_choice.name", "'name' must be a string"));
                    }
                    Ok(())
                }
                _ => Err(at(
                    "tool_choice.server_label",
                    "an mcp tool_choice needs 'server_label'",
                )),
            },
            _ => Err(at(
                "tool_choice.type",
                "tool_choice must be 'none', 'auto', 'required', a function or an mcp server",
            )),
        },
        _ => Err(at(
            "tool_choice",
            "tool_choice must be 'none', 'auto', 'required' or an object",
        )),
    }
}

fn check_text(text: &Value) -> Result<(), ValidationError> {
    let text = text
        .as_object()
        .ok_or_else(|| at("text", "'text' must be an object"))?;
    if let Some(v) = text.get("verbosity").filter(|v| !v.is_null())
        && !matches!(v.as_str(), Some("low" | "medium" | "high"))
    {
        return Err(at(
            "text.verbosity",
            "'verbosity' must be 'low', 'medium' or 'high'",
        ));
    }
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    let f = format
        .as_object()
        .ok_or_else(|| at("text.format", "'format' must be an object"))?;
    match f.get("type").and_then(Value::as_str) {
        Some("text" | "json_object") => Ok(()),
        Some("json_schema") => {
            let name_ok = f.get("name").and_then(Value::as_str).is_some_and(|n| {
                (1..=64).contains(&n.len())
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !name_ok {
                return Err(at(
                    "text.format.name",
                    "a json_schema format needs a 'name' of 1 to 64 of a-z, A-Z, 0-9, '_' and '-'",
                ));
            }
            if !f.get("schema").is_some_and(Value::is_object) {
                return Err(at(
                    "text.format.schema",
                    "a json_schema format needs a JSON Schema object as 'schema'",
                ));
            }
            if f.get("strict")
                .is_some_and(|s| !s.is_boolean() && !s.is_null())
            {
                return Err(at("text.format.strict", "'strict' must be a boolean"));
            }
            Ok(())
        }
        _ => Err(at(
            "text.format.type",
            "'format.type' must be 'text', 'json_object' or 'json_schema'",
        )),
    }
}

fn check_reasoning(r: &Value) -> Result<(), ValidationError> {
    let r = r
        .as_object()
        .ok_or_else(|| at("reasoning", "'reasoning' must be an object"))?;
    let one_of = |key: &str, allowed: &[&str]| -> Result<(), ValidationError> {
        match r.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
            Some(_) => Err(at(
                format!("reasoning.{key}"),
                format!("'{key}' must be one of {}", allowed.join(", ")),
            )),
        }
    };
    one_of(
        "effort",
        &["none", "minimal", "low", "medium", "high", "xhigh"],
    )?;
    one_of("summary", &["auto", "concise", "detailed"])?;
    one_of("generate_summary", &["auto", "concise", "detailed"])
}

fn check_include(include: &Value) -> Result<(), ValidationError> {
    let a = include
        .as_array()
        .ok_or_else(|| at("include", "'include' must be an array of strings"))?;
    for (i, v) in a.iter().enumerate() {
        match v.as_str() {
            Some(s) if INCLUDABLE.contains(&s) => {}
            Some(s) => {
                return Err(at(
                    format!("include[{i}]"),
                    format!(
                        "'{s}' cannot be included; supported: {}",
                        INCLUDABLE.join(", ")
                    ),
                ));
            }
            None => return Err(at(format!("include[{i}]"), "must be a string")),
        }
    }
    Ok(())
}

/// `conversation` and `previous_response_id`: each well formed, not both.
fn check_state(obj: &Map<String, Value>) -> Result<(), ValidationError> {
    if let Some(p) = obj.get("previous_response_id") {
        match p.as_str() {
            Some(s) if !s.is_empty() && s.len() <= 128 => {}
            _ => {
                return Err(at(
                    "previous_response_id",
                    "'previous_response_id' must be a response id",
                ));
            }
        }
    }
    let Some(c) = obj.get("conversation") else {
        return Ok(());
    };
    match c {
        Value::String(id) => conversation_id(id, "conversation")?,
        Value::Object(o) => match o.get("id") {
            Some(Value::String(id)) => conversation_id(id, "conversation.id")?,
            _ => return Err(at("conversation.id", "'conversation.id' must be a string")),
        },
        _ => {
            return Err(at(
                "conversation",
                "'conversation' must be a conversation id or {\"id\": ...}",
            ));
        }
    }
    if obj.contains_key("previous_response_id") {
        return Err(at(
            "conversation",
            "'conversation' and 'previous_response_id' cannot both be given",
        ));
    }
    Ok(())
}

fn check_metadata(m: &Value) -> Result<(), ValidationError> {
    let m = m
        .as_object()
        .ok_or_else(|| at("metadata", "'metadata' must be an object of strings"))?;
    if m.len() > METADATA_ENTRIES {
        return Err(at(
            "metadata",
            format!("'metadata' may hold at most {METADATA_ENTRIES} entries"),
        ));
    }
    for (k, v) in m {
        let ok = k.chars().count() <= METADATA_KEY
            && v.as_str()
                .is_some_and(|s| s.chars().count() <= METADATA_VALUE);
        if !ok {
            return Err(at(
                format!("metadata.{k}"),
                format!(
                    "metadata keys are at most {METADATA_KEY} characters and values strings of at most {METADATA_VALUE}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(body: Value) -> Result<Checked, ValidationError> {
        responses_request(body.to_string().as_bytes(), &Limits::default())
    }

    fn param(body: Value) -> String {
        let e = check(body.clone()).unwrap_err();
        e.param
            .unwrap_or_else(|| panic!("{body}: no param ({})", e.message))
    }

    fn with(extra: Value) -> Value {
        let mut b = json!({"model": "m", "input": "hi"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    #[test]
    fn accepts_a_full_body() {
        let c = check(json!({
            "model": "gpt-x",
            "input": [
                {"role": "developer", "content": "be brief"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "hi"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "e"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"}
            ],
            "instructions": "x", "stream": true, "store": false,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": null},
                      {"type": "mcp", "server_label": "crm", "server_url": "https://crm",
                       "authorization": "Bearer secret", "headers": {"X-Key": "k"},
                       "require_approval": "never", "allowed_tools": ["a"]}],
            "tool_choice": "auto", "parallel_tool_calls": true,
            "max_output_tokens": 100, "temperature": 1.5, "top_p": 1,
            "metadata": {"a": "b"}, "text": {"format": {"type": "json_schema", "name": "o",
                "schema": {"type": "object"}, "strict": true}, "verbosity": "low"},
            "reasoning": {"effort": "low", "summary": "auto"}, "truncation": "auto",
            "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
            "background": false, "user": "u", "safety_identifier": "s", "prompt_cache_key": "k",
            "previous_response_id": "resp_1", "conversation": null,
            "mcp_servers": ["crm"], "service_tier": "auto"
        }))
        .unwrap();
        assert_eq!(c.mcp_servers, Some(vec!["crm".to_string()]));
        assert_eq!(c.request.mcp_servers, None);
        assert!(c.request.stream() && !c.request.store());
        let tools = serde_json::to_value(&c.request.tools).unwrap();
        assert_eq!(tools[1]["server_url"], "https://crm");
        assert!(tools[1].get("authorization").is_none() && tools[1].get("headers").is_none());
        assert_eq!(c.request.extra["service_tier"], "auto");
        // And it decodes.
        crate::wire::openai_responses::decode_request(&c.request).unwrap();
    }

    #[test]
    fn accepts_a_conversation_by_id_or_object() {
        for conv in [json!("conv_1"), json!({"id": "conv_1"})] {
            let c = check(with(json!({"conversation": conv}))).unwrap();
            assert_eq!(c.request.conversation_id(), Some("conv_1"));
        }
    }

    #[test]
    fn names_the_offending_field() {
        let cases = [
            (json!({"input": "x"}), "model"),
            (json!({"model": "", "input": "x"}), "model"),
            (json!({"model": "m"}), "input"),
            (with(json!({"input": []})), "input"),
            (with(json!({"input": 3})), "input"),
            (with(json!({"background": true})), "background"),
            (with(json!({"prompt": {"id": "p"}})), "prompt"),
            (
                with(
                    json!({"input": [{"role": "user", "content": "a"}, {"type": "web_search_call", "id": "x"}]}),
                ),
                "input[1].type",
            ),
            (
                with(json!({"input": [{"type": "item_reference", "id": "msg_1"}]})),
                "input[0].type",
            ),
            (
                with(json!({"input": [{"role": "user", "content": "a"},
                    {"role": "user", "content": [{"type": "input_image"}]},
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]})),
                "input[1].content[0].image_url",
            ),
            (
                with(json!({"input": [{"role": "user", "content": "a"},
                    {"type": "function_call", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "output": "x"}]})),
                "input[1].call_id",
            ),
            (
                with(
                    json!({"input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                    {"type": "function_call_output", "output": "x"}]}),
                ),
                "input[2].call_id",
            ),
            (
                with(
                    json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]}),
                ),
                "input[0].arguments",
            ),
            (
                with(
                    json!({"input": [{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]}),
                ),
                "input[0].call_id",
            ),
            (
                with(json!({"tools": [{"type": "web_search"}]})),
                "tools[0].type",
            ),
            (
                with(json!({"tools": [{"type": "function"}]})),
                "tools[0].name",
            ),
            (
                with(json!({"tools": [{"type": "function", "name": "f", "parameters": "x"}]})),
                "tools[0].parameters",
            ),
            (
                with(
                    json!({"tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}]}),
                ),
                "tools[1].name",
            ),
            (
                with(json!({"tools": [{"type": "mcp"}]})),
                "tools[0].server_label",
            ),
            (
                with(json!({"tools": [{"type": "mcp", "server_label": "Bad Name"}]})),
                "tools[0].server_label",
            ),
            (
                with(
                    json!({"tools": [{"type": "mcp", "server_label": "crm", "require_approval": "always"}]}),
                ),
                "tools[0].require_approval",
            ),
            (
                with(
                    json!({"tools": [{"type": "mcp", "server_label": "crm", "allowed_tools": 3}]}),
                ),
                "tools[0].allowed_tools",
            ),
            (with(json!({"tool_choice": "sometimes"})), "tool_choice"),
            (
                with(json!({"tool_choice": {"type": "function", "name": "nope"}})),
                "tool_choice.name",
            ),
            (
                with(json!({"tool_choice": {"type": "allowed_tools", "tools": []}})),
                "tool_choice.type",
            ),
            (with(json!({"truncation": "middle"})), "truncation"),
            (
                with(json!({"include": ["file_search_call.results"]})),
                "include[0]",
            ),
            (with(json!({"include": "x"})), "include"),
            (
                with(json!({"conversation": "conv_1", "previous_response_id": "resp_1"})),
                "conversation",
            ),
            (with(json!({"conversation": "a/b"})), "conversation"),
            (with(json!({"conversation": {"id": 3}})), "conversation.id"),
            (
                with(json!({"previous_response_id": ""})),
                "previous_response_id",
            ),
            (
                with(json!({"text": {"format": {"type": "json_schema", "name": "o"}}})),
                "text.format.schema",
            ),
            (
                with(json!({"text": {"format": {"type": "json_schema", "schema": {}}}})),
                "text.format.name",
            ),
            (
                with(json!({"text": {"format": {"type": "xml"}}})),
                "text.format.type",
            ),
            (
                with(json!({"reasoning": {"effort": "max"}})),
                "reasoning.effort",
            ),
            (with(json!({"max_output_tokens": 0})), "max_output_tokens"),
            (
                with(json!({"max_output_tokens": 100_000_000})),
                "max_output_tokens",
            ),
            (with(json!({"temperature": 3})), "temperature"),
            (with(json!({"top_p": "x"})), "top_p"),
            (with(json!({"metadata": {"k": 1}})), "metadata.k"),
            (with(json!({"metadata": []})), "metadata"),
            (with(json!({"mcp_servers": ["Bad"]})), "mcp_servers[0]"),
            (with(json!({"stream": "yes"})), "stream"),
            (with(json!({"store": 1})), "store"),
        ];
        for (body, want) in cases {
            assert_eq!(param(body.clone()), want, "{body}");
        }
    }

    #[test]
    fn long_input_is_refused_at_its_item() {
        let limits = Limits {
            max_message_chars: 10,
            ..Limits::default()
        };
        let body = json!({"model": "m", "input": [{"role": "user", "content": "short"},
            {"type": "function_call_output", "call_id": "c", "output": "far too long output"}]});
        let e = responses_request(body.to_string().as_bytes(), &limits).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[1]"));
        let body = json!({"model": "m", "input": "far too long input"});
        let e = responses_request(body.to_string().as_bytes(), &limits).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
    }
}
