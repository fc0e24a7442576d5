//! A conversation's items in OpenAI's Conversations API shape
//! (`/v1/conversations/{id}/items`): list, add, read and delete items in the
//! Responses item format. Stored messages are shown as items through the one
//! mapping of the Responses codec ([`encode_items`]); an item's id names
//! the message slot and the item's position in it, so no id is stored.
//! Reads need `conversations:read`, changes `conversations:write`; every
//! read and write is keyed by the caller's tenant.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::request::Parts;
use serde_json::{Value, json};

use super::conversations::{body_object, check_id, conversation_view, not_found};
use super::{PathId, QueryMap, RequestLog, caller};
use crate::auth::{SCOPE_CONVERSATIONS_READ, SCOPE_CONVERSATIONS_WRITE};
use crate::model::Message;
use crate::processor::{self, Counts};
use crate::redact::Place;
use crate::store::{Order, StoredMessage};
use crate::wire::openai_responses::{Item, ItemIds, decode_items, encode_items, parse_item_id};
use crate::{ApiError, AppState, context, now_secs};

/// Most items one request adds (OpenAI's limit).
pub const MAX_NEW_ITEMS: usize = 20;
/// Default page size of an item listing.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page size of an item listing.
pub const MAX_LIMIT: usize = 100;
/// `include` values OpenAI documents. ctxgate always shows what they ask for
/// that it has (encrypted reasoning, image URLs), so they are accepted and
/// change nothing.
const INCLUDABLE: &[&str] = &[
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "web_search_call.action.sources",
    "web_search_call.results",
];

/// The items of one stored message, with their ids.
pub fn items_of(m: &StoredMessage) -> Vec<Item> {
    encode_items(&m.message, &ItemIds::slot(m.seq))
}

/// Items a client sends (`items` of a create) as the messages to store:
/// decoded with the Responses codec (errors name `{field}[i]...`), at most
/// [`MAX_NEW_ITEMS`], redacted per the tenant's stored-data policy.
pub fn stored_messages(
    state: &AppState,
    tenant: &str,
    items: &Value,
    field: &str,
) -> Result<Vec<Message>, ApiError> {
    let Value::Array(items) = items else {
        return Err(ApiError::invalid(
            field,
            format!("'{field}' must be an array of items"),
        ));
    };
    if items.len() > MAX_NEW_ITEMS {
        return Err(ApiError::invalid(
            field,
            format!("'{field}' holds at most {MAX_NEW_ITEMS} items"),
        ));
    }
    let mut messages =
        decode_items(items, field).map_err(|e| ApiError::invalid(e.param, e.message))?;
    let max_chars = state.config.limits.max_message_chars;
    if let Some(i) = messages
        .iter()
        .position(|m| m.text_content().chars().count() > max_chars)
    {
        return Err(ApiError::invalid(
            field,
            format!("message {i} of '{field}' is over {max_chars} characters"),
        ));
    }
    processor::apply(
        state.redactors.for_tenant(tenant),
        &mut messages,
        Place::Stored,
        &mut Counts::default(),
    )
    .map_err(|b| ApiError::blocked(&b, field))?;
    Ok(messages)
}

/// A list of items as OpenAI answers one.
fn item_list(data: Vec<Item>, has_more: bool) -> Value {
    let first = data.first().map(|i| i.id().to_owned());
    let last = data.last().map(|i| i.id().to_owned());
    json!({
        "object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more,
    })
}

/// Checks every `include` value of the raw query (the SDKs send arrays as
/// `include[]=a&include[]=b`, which the query map would cut to the last).
fn check_include(query: Option<&str>) -> Result<(), ApiError> {
    let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes());
    for (k, v) in pairs {
        if (k == "include" || k == "include[]") && !INCLUDABLE.contains(&v.as_ref()) {
            return Err(ApiError::invalid(
                "include",
                format!("'{v}' is not a supported 'include' value"),
            ));
        }
    }
    Ok(())
}

fn item_not_found(item_id: &str) -> ApiError {
    let mut e = ApiError::not_found(
        "item_id",
        format!("no item '{item_id}' in this conversation"),
    );
    e.code = "item_not_found";
    e
}

/// The conversation and item ids of an item route.
pub struct ItemPath {
    id: String,
    item_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ItemPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((id, item_id))) => Ok(Self { id, item_id }),
            Err(e) => {
                // Name the parameter that failed (bytes that are not UTF-8).
                let param = match &e {
                    PathRejection::FailedToDeserializePathParams(f) => match f.kind() {
                        ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                        _ => "item_id".to_owned(),
                    },
                    _ => "item_id".to_owned(),
                };
                Err(ApiError::invalid(
                    param,
                    format!("invalid path parameter: {}", e.body_text()),
                ))
            }
        }
    }
}

// ---- list -------------------------------------------------------------------

/// `GET /v1/conversations/{id}/items?after=&limit=&order=&include=`: newest
/// first by default, as OpenAI lists them.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_READ, &mut log).await?;
        check_include(raw.as_deref())?;
        Ok(Json(list_page(&state, &p.tenant, &id, &q).await?).into_response())
    }
    .await;
    super::logged(result, log)
}

/// A page of a conversation's items (`after`, `limit`, `order` as in the
/// query string); the caller checked the scope and `include`.
pub async fn list_page(
    state: &AppState,
    tenant: &str,
    id: &str,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    check_id(id)?;
    let limit = super::cursor::page_limit(q, DEFAULT_LIMIT, MAX_LIMIT)?;
    let order = match q.get("order").map(String::as_str) {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => {
            return Err(ApiError::invalid(
                "order",
                "'order' must be 'asc' or 'desc'",
            ));
        }
    };
    let after = match q.get("after") {
        None => None,
        Some(raw) => Some(
            parse_item_id(raw)
                .ok_or_else(|| ApiError::invalid("after", format!("'{raw}' is not an item id")))?,
        ),
    };
    // Message pages from the slot of `after` on (it included: the items
    // after it in that message come first), until one item past the page.
    let mut slot = after.map(|(seq, _)| match order {
        Order::Asc => seq.checked_sub(1),
        Order::Desc => Some(seq.saturating_add(1)),
    });
    let mut data: Vec<Item> = Vec::with_capacity(limit + 1);
    let now = now_secs();
    loop {
        let page = state
            .store
            .message_page(tenant, id, now, order, slot.flatten(), limit + 1)
            .await?;
        if page.meta.is_none() {
            return Err(not_found(id));
        }
        for m in &page.messages {
            let mut items = items_of(m);
            if order == Order::Desc {
                items.reverse();
            }
            data.extend(items.into_iter().filter(|item| {
                let Some((seq, n)) = after else { return true };
                let (s, i) = parse_item_id(item.id()).unwrap_or((m.seq, 0));
                s != seq
                    || match order {
                        Order::Asc => i > n,
                        Order::Desc => i < n,
                    }
            }));
        }
        let last = page.messages.last().map(|m| m.seq);
        if data.len() > limit || !page.has_more || last.is_none() {
            break;
        }
        slot = Some(last);
    }
    let has_more = data.len() > limit;
    data.truncate(limit);
    Ok(item_list(data, has_more))
}

// ---- create -----------------------------------------------------------------

/// `POST /v1/conversations/{id}/items`: appends `items` (at most
/// [`MAX_NEW_ITEMS`]) and answers them as a list.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_WRITE, &mut log).await?;
        check_id(&id)?;
        check_include(raw.as_deref())?;
        let obj = body_object(&headers, body).await?;
        if let Some(other) = obj.keys().find(|k| k.as_str() != "items") {
            return Err(ApiError::invalid(
                other.as_str(),
                format!("unknown field '{other}'"),
            ));
        }
        let items = obj
            .get("items")
            .ok_or_else(|| ApiError::invalid("items", "'items' is required"))?;
        let messages = stored_messages(&state, &p.tenant, items, "items")?;
        if messages.is_empty() {
            return Err(ApiError::invalid("items", "'items' must not be empty"));
        }
        let meta = context::append_messages(
            &*state.store,
            &p.tenant,
            &id,
            now_secs(),
            (
                state.config.retention_secs(),
                state.config.limits.conversation_cap(),
            ),
            &messages,
            |_, live| if live { Ok(()) } else { Err(not_found(&id)) },
        )
        .await?;
        let first = meta.next_seq - messages.len() as u64;
        let data: Vec<Item> = messages
            .iter()
            .zip(first..)
            .flat_map(|(m, seq)| encode_items(m, &ItemIds::slot(seq)))
            .collect();
        Ok(Json(item_list(data, false)).into_response())
    }
    .await;
    super::logged(result, log)
}

// ---- read and delete ----------------------------------------------------------

/// The stored message holding `item_id` and the item's position in it;
/// 404 naming `item_id` when this conversation has no such item.
async fn find(
    state: &AppState,
    tenant: &str,
    id: &str,
    item_id: &str,
) -> Result<(StoredMessage, usize), ApiError> {
    check_id(id)?;
    let Some((seq, n)) = parse_item_id(item_id) else {
        return Err(item_not_found(item_id));
    };
    let page = state
        .store
        .message_page(tenant, id, now_secs(), Order::Asc, seq.checked_sub(1), 1)
        .await?;
    if page.meta.is_none() {
        return Err(not_found(id));
    }
    let m = page
        .messages
        .into_iter()
        .next()
        .filter(|m| m.seq == seq)
        .ok_or_else(|| item_not_found(item_id))?;
    // The whole id must match: `fc_3_1` does not name the message `msg_3_1`.
    if items_of(&m).get(n).is_none_or(|i| i.id() != item_id) {
        return Err(item_not_found(item_id));
    }
    Ok((m, n))
}

/// `GET /v1/conversations/{id}/items/{item_id}`: one item.
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    path: ItemPath,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_READ, &mut log).await?;
        check_include(raw.as_deref())?;
        let (m, n) = find(&state, &p.tenant, &path.id, &path.item_id).await?;
        let item = items_of(&m).swap_remove(n);
        Ok(Json(item).into_response())
    }
    .await;
    super::logged(result, log)
}

/// `DELETE /v1/conversations/{id}/items/{item_id}`: removes the item from
/// its stored message (the message goes when it has no item left) and
/// answers the conversation, as OpenAI does.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    path: ItemPath,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_WRITE, &mut log).await?;
        let ItemPath { id, item_id } = path;
        let (found, _) = find(&state, &p.tenant, &id, &item_id).await?;
        let meta = context::edit_message(
            &*state.store,
            (&p.tenant, &id),
            now_secs(),
            state.config.retention_secs(),
            found.seq,
            || item_not_found(&item_id),
            |m| {
                // Re-found on the message as read now: it may have changed.
                let n = items_of(m)
                    .iter()
                    .position(|i| i.id() == item_id)
                    .ok_or_else(|| item_not_found(&item_id))?;
                Ok(without_item(m, n))
            },
        )
        .await?;
        Ok(Json(conversation_view(&id, &meta, true)).into_response())
    }
    .await;
    super::logged(result, log)
}

/// The stored message without its item `n`; `None` when no item is left.
/// Blocks that show as no item (another format's opaque blocks) stay.
pub fn without_item(m: &StoredMessage, n: usize) -> Option<StoredMessage> {
    let ids = ItemIds::slot(m.seq);
    let content = &m.message.content;
    // Which item each block shows in: the item count of the message up to
    // and including it, less one; a block that shows as no item on its own
    // belongs to none.
    let keep: Vec<bool> = (0..content.len())
        .map(|b| {
            let alone = Message {
                content: vec![content[b].clone()],
                ..m.message.clone()
            };
            if encode_items(&alone, &ids).is_empty() {
                return true;
            }
            let upto = Message {
                content: content[..=b].to_vec(),
                ..m.message.clone()
            };
            encode_items(&upto, &ids).len().checked_sub(1) != Some(n)
        })
        .collect();
    let mut message = m.message.clone();
    let mut flags = keep.into_iter();
    message.content.retain(|_| flags.next().unwrap_or(true));
    if encode_items(&message, &ids).is_empty() {
        return None;
    }
    Some(StoredMessage {
        message,
        // What the provider counted was the whole message: estimate anew.
        tokens: None,
        ..m.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Block, Opaque, Role, ToolCall, WireFormat};

    fn answer() -> StoredMessage {
        let mut m = Message::text(Role::Assistant, "let me look");
        m.content.push(Block::ToolCall(ToolCall {
            id: "call_1".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
            cache: None,
        }));
        m.content.push(Block::Text {
            text: "and then".into(),
            cache: None,
            citations: None,
        });
        StoredMessage::new(7, m, 0)
    }

    #[test]
    fn an_item_goes_with_exactly_its_blocks() {
        let m = answer();
        let ids: Vec<String> = items_of(&m).iter().map(|i| i.id().to_owned()).collect();
        assert_eq!(ids, ["msg_7_0", "fc_7_1", "msg_7_2"]);
        let rest = without_item(&m, 1).unwrap();
        assert_eq!(rest.message.content.len(), 2);
        assert!(
            rest.message
                .content
                .iter()
                .all(|b| !matches!(b, Block::ToolCall(_)))
        );
        let one = without_item(&without_item(&m, 0).unwrap(), 0).unwrap();
        assert_eq!(one.message.text_content(), "and then");
        assert!(without_item(&one, 0).is_none());
    }

    #[test]
    fn blocks_that_show_as_no_item_stay() {
        let mut m = answer();
        let opaque = Block::Opaque(Opaque {
            format: WireFormat::Anthropic,
            value: json!({"type": "server_tool_use", "id": "srv_1"}),
        });
        m.message.content.insert(2, opaque.clone());
        assert_eq!(items_of(&m).len(), 3);
        // The call goes; the opaque block after it stays.
        let rest = without_item(&m, 1).unwrap();
        assert!(rest.message.content.contains(&opaque));
        assert_eq!(items_of(&rest).len(), 1);
        // With every item gone, a message of opaque blocks alone shows nothing: it goes.
        let rest = without_item(&rest, 0);
        assert!(rest.is_none());
    }

    #[test]
    fn include_values_are_checked() {
        let ok = "include%5B%5D=reasoning.encrypted_content&include[]=message.output_text.logprobs";
        assert!(check_include(Some(ok)).is_ok());
        assert!(check_include(None).is_ok());
        // Every value counts, not only the last.
        let e = check_include(Some(
            "include[]=everything&include[]=reasoning.encrypted_content",
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("include"));
    }
}
