//! The conversations API: list, create, read (with messages), update and
//! delete stored conversations. Everything is scoped to the caller's tenant;
//! reads need `conversations:read`, changes `conversations:write`.
//!
//! Cursors are opaque to clients: base64url JSON holding only a position
//! (never a store key) and a tag of the tenant (and conversation) it belongs
//! to. The store key is always rebuilt from the caller's own tenant, so a
//! forged cursor can at worst skip around the caller's own data, and a cursor
//! from another tenant or conversation is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{PathId, QueryMap, RequestLog, caller, read_json_body};
use crate::auth::{Principal, SCOPE_CONVERSATIONS_READ, SCOPE_CONVERSATIONS_WRITE};
use crate::context;
use crate::model::{Message, Role};
use crate::processor::{self, Counts};
use crate::redact::Place;
use crate::store::{ConversationMeta, ListPosition, Order, StoredMessage};
use crate::wire::openai_chat as codec;
use crate::{ApiError, AppState, ids, now_secs, validate};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page size.
pub const MAX_LIMIT: usize = 100;
/// Longest title.
pub const MAX_TITLE_CHARS: usize = 256;
/// Most metadata pairs, and their key and value lengths (as OpenAI's).
pub const MAX_METADATA: (usize, usize, usize) = (16, 64, 512);
/// Longest retention override, in days.
pub const MAX_RETENTION_DAYS: i64 = 3650;
/// Largest request body of this API.
const MAX_BODY: usize = 512 * 1024;

pub(super) fn check_id(id: &str) -> Result<(), ApiError> {
    Ok(validate::conversation_id(id, "id")?)
}

/// A header too large to store is the system prompt's doing (title and
/// metadata are small): name it.
fn name_header_field(e: ApiError) -> ApiError {
    if e.code == "item_too_large" {
        e.with_param("system_prompt")
    } else {
        e
    }
}

pub(super) fn not_found(id: &str) -> ApiError {
    let mut e = ApiError::not_found("id", format!("no conversation '{id}'"));
    e.code = "conversation_not_found";
    e
}

// ---- cursors ----------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// Tag of the tenant (and conversation) the cursor belongs to.
    t: String,
    /// Listing position: updated, id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<(i64, String)>,
    /// Message position: seq and order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<(u64, bool)>,
}

fn tag(tenant: &str, conversation: Option<&str>) -> String {
    super::cursor::tag("ctxgate-cursor", &[tenant, conversation.unwrap_or("")])
}

fn encode_cursor(c: &Cursor) -> String {
    super::cursor::encode(c)
}

fn decode_cursor(raw: &str, expected_tag: &str) -> Result<Cursor, ApiError> {
    let c: Cursor = super::cursor::decode(raw)?;
    if c.t != expected_tag {
        return Err(super::cursor::invalid());
    }
    Ok(c)
}

fn page_limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    super::cursor::page_limit(q, DEFAULT_LIMIT, MAX_LIMIT)
}

// ---- views ------------------------------------------------------------------

/// A conversation as the API shows it.
pub(super) fn conversation_view(id: &str, m: &ConversationMeta, full: bool) -> Map<String, Value> {
    let mut v = Map::new();
    v.insert("id".into(), json!(id));
    v.insert("object".into(), json!("conversation"));
    v.insert("title".into(), json!(m.title));
    // `created_at` is OpenAI's name; `created` stays for existing clients.
    v.insert("created_at".into(), json!(m.created));
    v.insert("created".into(), json!(m.created));
    v.insert("updated".into(), json!(m.updated));
    v.insert("turns".into(), json!(m.turns));
    v.insert("tokens".into(), json!(m.tokens));
    v.insert("expires_at".into(), json!(m.expires_at));
    v.insert("metadata".into(), json!(m.metadata));
    v.insert(
        "retention_days".into(),
        json!(m.retention_secs.map(|s| s / 86_400)),
    );
    if full {
        let system: Vec<String> = m.system.iter().map(Message::text_content).collect();
        v.insert(
            "system_prompt".into(),
            json!((!system.is_empty()).then(|| system.join("\n"))),
        );
        v.insert(
            "summary".into(),
            json!(m.summary.as_ref().map(|s| json!({
                "text": s.text, "through_seq": s.through_seq, "tokens": s.tokens,
                "model": s.model, "created": s.created,
            }))),
        );
    }
    v
}

/// A stored message as the API shows it: in OpenAI Chat's shape, as the
/// conversations API has always shown it (an answer as `chat.completion`
/// shows it; a request message as it was sent).
fn message_view(m: &StoredMessage) -> Value {
    let shown = match &m.turn {
        Some(_) => Some(codec::encode_answer(&m.message)),
        None => codec::encode_messages(std::slice::from_ref(&m.message))
            .ok()
            .and_then(|v| v.into_iter().next()),
    };
    let mut v = match shown.map(serde_json::to_value) {
        Some(Ok(Value::Object(o))) => o,
        _ => Map::new(),
    };
    v.insert("seq".into(), json!(m.seq));
    v.insert("created".into(), json!(m.created));
    v.insert("tokens".into(), json!(m.tokens));
    if let Some(model) = &m.model {
        v.insert("model".into(), json!(model));
    }
    if let Some(t) = &m.turn {
        v.insert("provider".into(), json!(t.provider));
        v.insert(
            "finish_reason".into(),
            json!(t.finish_reason.map(codec::encode_finish)),
        );
        v.insert("usage".into(), json!(codec::encode_usage(&t.usage)));
        v.insert("latency_ms".into(), json!(t.latency_ms));
        v.insert("redactions".into(), json!(t.redactions));
    }
    if let Some(t) = &m.tool {
        v.insert("tool".into(), json!(t));
    }
    Value::Object(v)
}

// ---- list -------------------------------------------------------------------

/// `GET /v1/conversations?limit=&cursor=`: newest-updated first.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryMap(q): QueryMap,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_READ, &mut log).await?;
        Ok(Json(list_page(&state, &p, &q).await?).into_response())
    }
    .await;
    super::logged(result, log)
}

/// A page of the tenant's conversations (`limit`, `cursor` as in the
/// query string), newest-updated first; the caller checked the scope.
pub async fn list_page(
    state: &AppState,
    p: &Principal,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let limit = page_limit(q)?;
    let tag = tag(&p.tenant, None);
    let after = match q.get("cursor") {
        None => None,
        Some(raw) => {
            let c = decode_cursor(raw, &tag)?;
            let (updated, id) =
                c.u.ok_or_else(|| ApiError::invalid("cursor", "invalid cursor"))?;
            check_id(&id).map_err(|_| ApiError::invalid("cursor", "invalid cursor"))?;
            Some(ListPosition { updated, id })
        }
    };
    let page = state
        .store
        .list_conversations(&p.tenant, now_secs(), after.as_ref(), limit)
        .await?;
    let data: Vec<Value> = page
        .conversations
        .iter()
        .map(|(id, m)| Value::Object(conversation_view(id, m, false)))
        .collect();
    let next = page.next.map(|pos| {
        encode_cursor(&Cursor {
            t: tag.clone(),
            u: Some((pos.updated, pos.id)),
            m: None,
        })
    });
    Ok(json!({
        "object": "list", "data": data, "has_more": next.is_some(), "next_cursor": next,
    }))
}

// ---- read -------------------------------------------------------------------

/// `GET /v1/conversations/{id}?limit=&cursor=&order=asc|desc`: the header and
/// a page of messages (oldest first by default).
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_READ, &mut log).await?;
        Ok(Json(read(&state, &p, &id, &q).await?).into_response())
    }
    .await;
    super::logged(result, log)
}

/// One conversation with a page of its messages (`limit`, `cursor`, `order`
/// as in the query string); the caller checked the scope.
pub async fn read(
    state: &AppState,
    p: &Principal,
    id: &str,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    check_id(id)?;
    let limit = page_limit(q)?;
    let order = match q.get("order").map(String::as_str) {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(_) => {
            return Err(ApiError::invalid(
                "order",
                "'order' must be 'asc' or 'desc'",
            ));
        }
    };
    let tag = tag(&p.tenant, Some(id));
    let after = match q.get("cursor") {
        None => None,
        Some(raw) => {
            let (seq, asc) = decode_cursor(raw, &tag)?
                .m
                .ok_or_else(|| ApiError::invalid("cursor", "invalid cursor"))?;
            if asc != (order == Order::Asc) {
                return Err(ApiError::invalid(
                    "cursor",
                    "this cursor belongs to the other order",
                ));
            }
            Some(seq)
        }
    };
    let page = state
        .store
        .message_page(&p.tenant, id, now_secs(), order, after, limit)
        .await?;
    let meta = page.meta.ok_or_else(|| not_found(id))?;
    let next = page
        .has_more
        .then(|| page.messages.last())
        .flatten()
        .map(|m| {
            encode_cursor(&Cursor {
                t: tag.clone(),
                u: None,
                m: Some((m.seq, order == Order::Asc)),
            })
        });
    let mut view = conversation_view(id, &meta, true);
    view.insert(
        "messages".into(),
        json!({
            "object": "list",
            "data": page.messages.iter().map(message_view).collect::<Vec<_>>(),
            "has_more": next.is_some(),
            "next_cursor": next,
        }),
    );
    Ok(Value::Object(view))
}

// ---- create and update ------------------------------------------------------

/// The settable fields; in a PATCH, `Some(None)` clears one.
#[derive(Default)]
struct Fields {
    title: Option<Option<String>>,
    system_prompt: Option<Option<String>>,
    metadata: Option<BTreeMap<String, String>>,
    retention_days: Option<Option<i64>>,
}

fn parse_fields(
    obj: &Map<String, Value>,
    allowed_extra: &[&str],
    max_chars: usize,
) -> Result<Fields, ApiError> {
    let mut f = Fields::default();
    for (k, v) in obj {
        match k.as_str() {
            "title" => {
                f.title = Some(match v {
                    Value::Null => None,
                    Value::String(s) if s.chars().count() <= MAX_TITLE_CHARS => Some(s.clone()),
                    _ => {
                        return Err(ApiError::invalid(
                            "title",
                            format!(
                                "'title' must be a string of at most {MAX_TITLE_CHARS} characters or null"
                            ),
                        ));
                    }
                })
            }
            "system_prompt" => {
                f.system_prompt = Some(match v {
                    Value::Null => None,
                    Value::String(s) if s.chars().count() <= max_chars => Some(s.clone()),
                    _ => {
                        return Err(ApiError::invalid(
                            "system_prompt",
                            format!(
                                "'system_prompt' must be a string of at most {max_chars} characters or null"
                            ),
                        ));
                    }
                })
            }
            "metadata" => f.metadata = Some(parse_metadata(v)?),
            "retention_days" => {
                f.retention_days = Some(match v {
                    Value::Null => None,
                    Value::Number(n) => match n.as_i64() {
                        Some(d) if (0..=MAX_RETENTION_DAYS).contains(&d) => Some(d),
                        _ => return Err(retention_error()),
                    },
                    _ => return Err(retention_error()),
                })
            }
            other if allowed_extra.contains(&other) => {}
            other => {
                return Err(ApiError::invalid(other, format!("unknown field '{other}'")));
            }
        }
    }
    Ok(f)
}

fn retention_error() -> ApiError {
    ApiError::invalid(
        "retention_days",
        format!(
            "'retention_days' must be an integer 0..={MAX_RETENTION_DAYS} (0 keeps the conversation forever) or null"
        ),
    )
}

fn parse_metadata(v: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let (max_pairs, max_key, max_value) = MAX_METADATA;
    let obj = match v {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(o) => o,
        _ => {
            return Err(ApiError::invalid(
                "metadata",
                "'metadata' must be an object of strings",
            ));
        }
    };
    if obj.len() > max_pairs {
        return Err(ApiError::invalid(
            "metadata",
            format!("'metadata' holds at most {max_pairs} pairs"),
        ));
    }
    obj.iter()
        .map(|(k, v)| {
            let param = format!("metadata.{k}");
            if k.is_empty() || k.chars().count() > max_key {
                return Err(ApiError::invalid(
                    param,
                    format!("metadata keys are 1-{max_key} characters"),
                ));
            }
            match v {
                Value::String(s) if s.chars().count() <= max_value => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::invalid(
                    param,
                    format!("metadata values are strings of at most {max_value} characters"),
                )),
            }
        })
        .collect()
}

pub(super) async fn body_object(
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_json_body(headers, body, MAX_BODY).await?;
    match validate::check_json_body(&bytes)? {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::invalid("body", "the body must be a JSON object")),
    }
}

/// The system prompt as stored: one system message, redacted per the
/// tenant's stored-data policy.
fn system_messages(
    state: &AppState,
    tenant: &str,
    prompt: Option<String>,
) -> Result<Vec<Message>, ApiError> {
    let Some(text) = prompt.filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut msgs = vec![Message::text(Role::System, text)];
    processor::apply(
        state.redactors.for_tenant(tenant),
        &mut msgs,
        Place::Stored,
        &mut Counts::default(),
    )
    .map_err(|b| ApiError::blocked(&b, "system_prompt"))?;
    Ok(msgs)
}

/// Title and metadata values are stored text too: the tenant's stored-data
/// policy redacts or blocks them as it does message content.
fn redact_fields(state: &AppState, tenant: &str, f: &mut Fields) -> Result<(), ApiError> {
    let redactor = state.redactors.for_tenant(tenant);
    let stored = |text: &mut String, param: &str| -> Result<(), ApiError> {
        let out = redactor
            .apply(text, Place::Stored)
            .map_err(|b| ApiError::blocked(&b, param))?;
        if !out.counts.is_empty() {
            *text = out.text.into_owned();
        }
        Ok(())
    };
    if let Some(Some(title)) = f.title.as_mut() {
        stored(title, "title")?;
    }
    if let Some(metadata) = f.metadata.as_mut() {
        for (k, v) in metadata.iter_mut() {
            stored(v, &format!("metadata.{k}"))?;
        }
    }
    Ok(())
}

fn apply_fields(meta: &mut ConversationMeta, f: &Fields, system: &Option<Vec<Message>>) {
    if let Some(t) = &f.title {
        meta.title = t.clone();
    }
    if let Some(s) = system {
        meta.system = s.clone();
    }
    if let Some(m) = &f.metadata {
        meta.metadata = m.clone();
    }
    if let Some(r) = f.retention_days {
        meta.retention_secs = r.map(|d| d * 86_400);
    }
}

/// `POST /v1/conversations`: creates one, with an optional client-chosen id
/// and OpenAI's optional initial `items`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_WRITE, &mut log).await?;
        let obj = body_object(&headers, body).await?;
        let mut fields = parse_fields(
            &obj,
            &["id", "items"],
            state.config.limits.max_message_chars,
        )?;
        redact_fields(&state, &p.tenant, &mut fields)?;
        // OpenAI's initial items: stored as the conversation's first messages.
        let messages = match obj.get("items") {
            None | Some(Value::Null) => Vec::new(),
            Some(items) => {
                super::conversation_items::stored_messages(&state, &p.tenant, items, "items")?
            }
        };
        let id = match obj.get("id") {
            None | Some(Value::Null) => ids::random_token::<12>("conv_"),
            Some(Value::String(id)) => {
                check_id(id)?;
                id.clone()
            }
            Some(_) => return Err(ApiError::invalid("id", "'id' must be a string")),
        };
        let system = Some(system_messages(
            &state,
            &p.tenant,
            fields.system_prompt.clone().flatten(),
        )?);
        let now = now_secs();
        let meta = context::append_messages(
            &*state.store,
            &p.tenant,
            &id,
            now,
            (
                state.config.retention_secs(),
                state.config.limits.conversation_cap(),
            ),
            &messages,
            |meta, live| {
                if live {
                    let mut e = ApiError::new(
                        StatusCode::CONFLICT,
                        "invalid_request_error",
                        "conversation_exists",
                        format!("a conversation '{id}' already exists"),
                    );
                    e.param = Some("id".into());
                    return Err(e);
                }
                apply_fields(meta, &fields, &system);
                Ok(())
            },
        )
        .await
        .map_err(name_header_field)?;
        Ok((
            StatusCode::CREATED,
            Json(Value::Object(conversation_view(&id, &meta, true))),
        )
            .into_response())
    }
    .await;
    super::logged(result, log)
}

/// `PATCH /v1/conversations/{id}` (and `POST`, OpenAI's verb): title, system
/// prompt, metadata, retention.
pub async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_WRITE, &mut log).await?;
        check_id(&id)?;
        let obj = body_object(&headers, body).await?;
        let mut fields = parse_fields(&obj, &[], state.config.limits.max_message_chars)?;
        redact_fields(&state, &p.tenant, &mut fields)?;
        let system = match &fields.system_prompt {
            None => None,
            Some(prompt) => Some(system_messages(&state, &p.tenant, prompt.clone())?),
        };
        let meta = context::update_meta(
            &*state.store,
            &p.tenant,
            &id,
            now_secs(),
            state.config.retention_secs(),
            state.config.limits.conversation_cap(),
            |meta, live| {
                if !live {
                    return Err(not_found(&id));
                }
                apply_fields(meta, &fields, &system);
                Ok(())
            },
        )
        .await
        .map_err(name_header_field)?;
        Ok(Json(Value::Object(conversation_view(&id, &meta, true))).into_response())
    }
    .await;
    super::logged(result, log)
}

// ---- delete -----------------------------------------------------------------

/// `DELETE /v1/conversations/{id}`: removes it and every message, answering
/// OpenAI's `conversation.deleted` object (also when there was nothing to
/// remove: a delete is idempotent).
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_WRITE, &mut log).await?;
        remove(&state, &p, &id).await?;
        Ok(
            Json(json!({"id": id, "object": "conversation.deleted", "deleted": true}))
                .into_response(),
        )
    }
    .await;
    super::logged(result, log)
}

/// Deletes one conversation and its messages (nothing to delete is no
/// error); the caller checked the scope.
pub async fn remove(state: &AppState, p: &Principal, id: &str) -> Result<(), ApiError> {
    check_id(id)?;
    state.store.delete_conversation(&p.tenant, id).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_tenant_and_conversation() {
        let t = tag("acme", Some("c1"));
        let raw = encode_cursor(&Cursor {
            t: t.clone(),
            u: None,
            m: Some((7, true)),
        });
        assert_eq!(decode_cursor(&raw, &t).unwrap().m, Some((7, true)));
        assert!(decode_cursor(&raw, &tag("other", Some("c1"))).is_err());
        assert!(decode_cursor(&raw, &tag("acme", Some("c2"))).is_err());
        assert!(decode_cursor("not base64!", &t).is_err());
        let e = decode_cursor("e30", &t).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("cursor"));
    }

    #[test]
    fn fields_name_the_offender() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        let err = |v: Value| {
            parse_fields(&obj(v), &[], 100)
                .err()
                .unwrap()
                .param
                .unwrap()
        };
        assert_eq!(err(json!({"title": 3})), "title");
        assert_eq!(err(json!({"metadata": {"k": 1}})), "metadata.k");
        assert_eq!(err(json!({"retention_days": -1})), "retention_days");
        assert_eq!(
            err(json!({"system_prompt": "x".repeat(101)})),
            "system_prompt"
        );
        assert_eq!(err(json!({"colour": "red"})), "colour");
        let f = parse_fields(&obj(json!({"title": null, "retention_days": 0})), &[], 100).unwrap();
        assert_eq!(f.title, Some(None));
        assert_eq!(f.retention_days, Some(Some(0)));
    }
}
