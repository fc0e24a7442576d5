//! ctxgate's own MCP tools (`chat`, conversations, usage) and its
//! conversations as resources. Each tool runs the same code as its HTTP
//! route (the turn pipeline, `conversations`, `usage`) and needs the same
//! scope; a failure is an `isError` result naming the offending argument.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde_json::{Value, json};

use super::TurnNote;
use crate::auth::{
    Principal, SCOPE_ADMIN, SCOPE_CHAT, SCOPE_CONVERSATIONS_READ, SCOPE_CONVERSATIONS_WRITE,
    SCOPE_USAGE_READ,
};
use crate::http::{conversations, usage};
use crate::turn::{self, Input};
use crate::wire::openai_chat as codec;
use crate::{ApiError, AppState, validate};

/// The URI scheme and path of a conversation resource.
pub const CONVERSATION_URI: &str = "ctxgate://conversations/";

/// The tool that runs a turn.
pub const CHAT: &str = "chat";

/// The tool names, in the order `tools/list` gives them.
const NAMES: &[&str] = &[
    CHAT,
    "list_conversations",
    "get_conversation",
    "delete_conversation",
    "get_usage",
];

/// Whether `name` is one of ctxgate's own tools.
pub fn is_own(name: &str) -> bool {
    NAMES.contains(&name)
}

fn schema(properties: Value, required: &[&str]) -> Arc<JsonObject> {
    let v = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    match v {
        Value::Object(o) => Arc::new(o),
        _ => Arc::new(JsonObject::new()),
    }
}

const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,128}$";

/// ctxgate's own tools with their input schemas, in a stable order.
pub fn tools() -> Vec<Tool> {
    let id = json!({"type": "string", "pattern": ID_PATTERN,
        "description": "A conversation id (letters, digits, '_' and '-')."});
    vec![
        Tool::new(
            "chat",
            "Send one user message to a model and get its answer. With conversation_id the \
             turn continues (or starts) that stored conversation, so the model sees its history.",
            schema(
                json!({
                    "model": {"type": "string", "minLength": 1,
                        "description": "A model id or alias, as GET /v1/models lists them."},
                    "message": {"type": "string", "minLength": 1,
                        "description": "The user's message."},
                    "conversation_id": id,
                    "system": {"type": "string",
                        "description": "A system prompt for this turn."},
                    "mcp_servers": {"type": "array", "items": {"type": "string"},
                        "description": "Registered MCP servers whose tools the model may call."},
                }),
                &["model", "message"],
            ),
        ),
        Tool::new(
            "list_conversations",
            "List the stored conversations, most recently updated first.",
            schema(
                json!({
                    "limit": {"type": "integer", "minimum": 1, "maximum": conversations::MAX_LIMIT},
                    "cursor": {"type": "string",
                        "description": "next_cursor of the previous page."},
                }),
                &[],
            ),
        ),
        Tool::new(
            "get_conversation",
            "Read one stored conversation and its messages, oldest first.",
            schema(
                json!({
                    "conversation_id": id,
                    "limit": {"type": "integer", "minimum": 1, "maximum": conversations::MAX_LIMIT},
                }),
                &["conversation_id"],
            ),
        ),
        Tool::new(
            "delete_conversation",
            "Delete one stored conversation and all its messages.",
            schema(json!({"conversation_id": id}), &["conversation_id"]),
        ),
        Tool::new(
            "get_usage",
            "Tokens and estimated cost per day and model (default: the last 30 days).",
            schema(
                json!({
                    "from": {"type": "string", "format": "date", "description": "YYYY-MM-DD"},
                    "to": {"type": "string", "format": "date", "description": "YYYY-MM-DD"},
                }),
                &[],
            ),
        ),
    ]
}

/// Runs one of ctxgate's own tools; `None` when `name` is not one.
pub async fn call(
    state: &Arc<AppState>,
    principal: &Principal,
    name: &str,
    arguments: Option<JsonObject>,
    note: &TurnNote,
) -> Option<CallToolResult> {
    if !is_own(name) {
        return None;
    }
    let args = arguments.unwrap_or_default();
    let result = match name {
        CHAT => chat(state, principal, &args, note).await,
        "list_conversations" => list_conversations(state, principal, &args).await,
        "get_conversation" => get_conversation(state, principal, &args).await,
        "delete_conversation" => delete_conversation(state, principal, &args).await,
        _ => get_usage(state, principal, &args).await,
    };
    Some(result.unwrap_or_else(|e| failure(&e)))
}

/// A failed call: the message as text, the error (code and field) as
/// structured content.
pub fn failure(e: &ApiError) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(match &e.param {
        Some(p) => format!("{} (field: {p})", e.message),
        None => e.message.clone(),
    })]);
    r.structured_content = Some(json!({"error": {
        "code": e.code, "message": e.message, "field": e.param,
    }}));
    r
}

/// A successful call: the JSON as text and as structured content.
fn success(v: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(v.to_string())]);
    r.structured_content = Some(v);
    r
}

/// Refuses an argument the tool does not take.
fn only(args: &JsonObject, allowed: &[&str]) -> Result<(), ApiError> {
    match args.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(
            k,
            format!(
                "unknown argument '{k}'; this tool takes {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn string(args: &JsonObject, name: &str, required: bool) -> Result<Option<String>, ApiError> {
    match args.get(name) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) if !(required && s.is_empty()) => Ok(Some(s.clone())),
        None | Some(Value::Null) => Err(ApiError::invalid(name, format!("'{name}' is required"))),
        Some(_) => Err(ApiError::invalid(
            name,
            format!("'{name}' must be a non-empty string"),
        )),
    }
}

fn integer(args: &JsonObject, name: &str) -> Result<Option<String>, ApiError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::invalid(
            name,
            format!("'{name}' must be a positive integer"),
        )),
    }
}

/// The arguments as the query string of the HTTP route.
fn query(pairs: &[(&str, Option<String>)]) -> HashMap<String, String> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| ((*k).to_owned(), v)))
        .collect()
}

fn conversation_id(args: &JsonObject) -> Result<String, ApiError> {
    let id = string(args, "conversation_id", true)?.unwrap_or_default();
    validate::conversation_id(&id, "conversation_id")?;
    Ok(id)
}

async fn chat(
    state: &Arc<AppState>,
    p: &Principal,
    args: &JsonObject,
    note: &TurnNote,
) -> Result<CallToolResult, ApiError> {
    // The request's rate count rides in the turn's reservation (one write);
    // a call refused before its turn counts it alone, and a refusal by the
    // rate limit is the request's 429.
    let rate = note.take_rate();
    let refused = |e: ApiError| {
        if e.code == RATE_LIMITED {
            note.rate_refused(e.clone());
        }
        e
    };
    let input = match chat_input(state, p, args) {
        Ok(input) => input,
        Err(e) => {
            if let Some(rate) = rate {
                rate.count(&*state.store)
                    .await
                    .map_err(|e| refused(e.into()))?;
            }
            return Err(e);
        }
    };
    let fail = |e: turn::TurnError| e.into_api("text", "text");
    let prepared = turn::prepare(state, p, input, rate)
        .await
        .map_err(refused)?;
    let mut answering = turn::generate(prepared, false).await?;
    let sent = answering.assemble().await.map_err(fail)?;
    let done = answering.done().await.map_err(fail)?;
    let usage = done.usage();
    let answer = sent.finish();
    let text = answer.message.text_content();
    let conversation = done.conversation().map(str::to_owned);
    let model = done.model().id.clone();
    done.commit(None).await.map_err(fail)?;
    note.set(model.clone(), usage);
    let mut r = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
    r.structured_content = Some(json!({
        "conversation_id": conversation,
        "model": model,
        "text": text,
        "usage": {"input_tokens": usage.input, "output_tokens": usage.output},
    }));
    Ok(r)
}

/// The code of a refusal by the rate limit.
const RATE_LIMITED: &str = "rate_limit_exceeded";

/// The `chat` tool's arguments as a turn's input, checked as the OpenAI
/// front door checks its requests.
fn chat_input(state: &AppState, p: &Principal, args: &JsonObject) -> Result<Input, ApiError> {
    p.require(SCOPE_CHAT)?;
    only(
        args,
        &[
            "model",
            "message",
            "conversation_id",
            "system",
            "mcp_servers",
        ],
    )?;
    let model = string(args, "model", true)?.unwrap_or_default();
    let message = string(args, "message", true)?.unwrap_or_default();
    let system = string(args, "system", false)?;
    let conversation = match args.get("conversation_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(conversation_id(args)?),
    };
    let mcp_servers = match args.get("mcp_servers") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::invalid("mcp_servers", "'mcp_servers' must be a list of names")
                })?,
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                "mcp_servers",
                "'mcp_servers' must be a list of names",
            ));
        }
    };
    // The same request the OpenAI front door takes, through the same
    // validation; its field paths are renamed to this tool's arguments.
    let mut messages = Vec::new();
    if let Some(s) = &system {
        messages.push(json!({"role": "system", "content": s}));
    }
    messages.push(json!({"role": "user", "content": message}));
    let mut body = json!({"model": model, "messages": messages});
    if let Some(names) = &mcp_servers {
        body["mcp_servers"] = json!(names);
    }
    let bytes = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
    let req = validate::chat_request(&bytes, &state.config.limits).map_err(|e| {
        let mut e = ApiError::from(e);
        e.param = e.param.map(|f| rename_field(&f, system.is_some()));
        e
    })?;
    Ok(Input {
        model: req.model.clone(),
        request: codec::decode_request(&req),
        conversation,
        claim: None,
        mcp_servers,
        continuation: Default::default(),
    })
}

/// `messages[0].content` of the built request is `system` (when given) or
/// `message`; any other message field is the message's.
fn rename_field(field: &str, has_system: bool) -> String {
    match field.strip_prefix("messages") {
        Some(rest) if has_system && rest.starts_with("[0]") => "system".into(),
        Some(_) => "message".into(),
        None => field.to_owned(),
    }
}

async fn list_conversations(
    state: &Arc<AppState>,
    p: &Principal,
    args: &JsonObject,
) -> Result<CallToolResult, ApiError> {
    p.require(SCOPE_CONVERSATIONS_READ)?;
    only(args, &["limit", "cursor"])?;
    let q = query(&[
        ("limit", integer(args, "limit")?),
        ("cursor", string(args, "cursor", false)?),
    ]);
    Ok(success(conversations::list_page(state, p, &q).await?))
}

async fn get_conversation(
    state: &Arc<AppState>,
    p: &Principal,
    args: &JsonObject,
) -> Result<CallToolResult, ApiError> {
    p.require(SCOPE_CONVERSATIONS_READ)?;
    only(args, &["conversation_id", "limit"])?;
    let id = conversation_id(args)?;
    let q = query(&[("limit", integer(args, "limit")?)]);
    Ok(success(
        conversations::read(state, p, &id, &q)
            .await
            .map_err(|mut e| {
                if e.param.as_deref() == Some("id") {
                    e.param = Some("conversation_id".into());
                }
                e
            })?,
    ))
}

async fn delete_conversation(
    state: &Arc<AppState>,
    p: &Principal,
    args: &JsonObject,
) -> Result<CallToolResult, ApiError> {
    p.require(SCOPE_CONVERSATIONS_WRITE)?;
    only(args, &["conversation_id"])?;
    let id = conversation_id(args)?;
    conversations::remove(state, p, &id).await?;
    Ok(success(json!({"deleted": true, "conversation_id": id})))
}

async fn get_usage(
    state: &Arc<AppState>,
    p: &Principal,
    args: &JsonObject,
) -> Result<CallToolResult, ApiError> {
    if !p.has(SCOPE_ADMIN) {
        p.require(SCOPE_USAGE_READ)?;
    }
    only(args, &["from", "to"])?;
    let q = query(&[
        ("from", string(args, "from", false)?),
        ("to", string(args, "to", false)?),
    ]);
    Ok(success(usage::report(state, p, &q).await?))
}

/// The id in a conversation resource's URI.
pub fn conversation_of(uri: &str) -> Option<&str> {
    uri.strip_prefix(CONVERSATION_URI)
        .filter(|id| validate::conversation_id(id, "uri").is_ok())
}

/// The tenant's recent conversations as resource entries, and the cursor of
/// the next page.
pub async fn conversation_resources(
    state: &AppState,
    p: &Principal,
    cursor: Option<String>,
) -> Result<(Vec<rmcp::model::Resource>, Option<String>), ApiError> {
    p.require(SCOPE_CONVERSATIONS_READ)?;
    let page = conversations::list_page(state, p, &query(&[("cursor", cursor)])).await?;
    let resources = page["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let id = c["id"].as_str()?;
            let mut r = rmcp::model::Resource::new(
                format!("{CONVERSATION_URI}{id}"),
                c["title"].as_str().unwrap_or(id).to_owned(),
            );
            r.mime_type = Some("application/json".into());
            Some(r)
        })
        .collect();
    Ok((resources, page["next_cursor"].as_str().map(str::to_owned)))
}

/// One conversation (header and its first 100 messages) as JSON text.
pub async fn conversation_text(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<String, ApiError> {
    p.require(SCOPE_CONVERSATIONS_READ)?;
    let q = query(&[("limit", Some(conversations::MAX_LIMIT.to_string()))]);
    Ok(conversations::read(state, p, id, &q).await?.to_string())
}
