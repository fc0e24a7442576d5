//! `/v1/responses`, OpenAI's Responses API, on any model, with the state
//! kept by ctxgate: every stored response is a turn of a conversation (a new
//! one, the one `conversation` names, or the one of `previous_response_id`,
//! forked when that response is not the latest turn there). `store: false`
//! reads that history and stores nothing but usage. Streams are OpenAI's
//! typed events; `response.completed` goes out only once the turn is stored.
//! The companion routes read, delete and list what was stored, and count a
//! request's input tokens. The way through the turn is every door's
//! ([`super::door`]); errors are OpenAI's envelope.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::answer::Wire;
use super::door::{self, Decoded, Door};
use super::messages::COUNT_SOURCE_HEADER;
use super::{PathId, QueryMap, RequestLog, caller, read_json_body, with_log};
use crate::auth::{Principal, SCOPE_CHAT, SCOPE_CONVERSATIONS_READ, SCOPE_CONVERSATIONS_WRITE};
use crate::context::ResponseDraft;
use crate::error::Dialect;
use crate::model::{self, Event, FinishReason, Usage};
use crate::store::{Order, ResponseRecord, StoredMessage};
use crate::turn::{self, Answering, Continuation, Input};
use crate::validate::{self, responses::responses_request};
use crate::wire::openai_responses::types::{
    ConversationId, IncompleteDetails, Item, Status, ToolParam, Truncation,
};
use crate::wire::openai_responses::{
    self as codec, EventEncoder, ItemIds, ResponseHead, ResponseObject,
};
use crate::{ApiError, AppState, ids};

/// The field naming a whole answer's text.
const ANSWER_PARAM: &str = "output";
/// The field naming a streamed answer's text.
const STREAM_PARAM: &str = "response.output_text.delta";

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    door::serve::<Responses>(&state, &headers, body).await
}

/// A checked create body as a turn's input, with the head of the response
/// it becomes; `counting`: for a token count, which stores nothing.
fn decode_input(
    state: &AppState,
    bytes: &[u8],
    counting: bool,
) -> Result<(Input, ResponseHead, bool), ApiError> {
    let checked = responses_request(bytes, &state.config.limits)?;
    let req = &checked.request;
    let decoded = codec::decode_request(req).map_err(|e| ApiError::invalid(e.param, e.message))?;
    // An `mcp` tool names a registered server: its tools join the turn's
    // through the registry and the tool loop, as `mcp_servers` does. Its
    // tools are narrowed where they are registered (the server's
    // `allowed_tools`, the key's `mcp_tools`); a request that asks for a
    // narrower set is refused rather than given more than it asked for.
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        if let ToolParam::Mcp {
            allowed_tools: Some(_),
            ..
        } = tool
        {
            return Err(ApiError::invalid(
                format!("tools[{i}].allowed_tools"),
                "a request cannot narrow an MCP server's tools; set allowed_tools on the \
                 server's registration, or mcp_tools on the API key",
            ));
        }
    }
    let mut mcp_servers = checked.mcp_servers.clone();
    for (_, label) in &decoded.mcp_labels {
        let names = mcp_servers.get_or_insert_with(Vec::new);
        if !names.contains(label) {
            names.push(label.clone());
        }
    }
    let store = req.store() && !counting;
    let named = req.conversation_id().map(str::to_owned);
    if let Some(c) = &named {
        validate::conversation_id(c, "conversation")?;
    }
    if let Some(p) = &req.previous_response_id
        && !ids::is_valid_id(p, 128)
    {
        return Err(ApiError::not_found(
            "previous_response_id",
            format!("no response '{}' is stored", p.escape_debug()),
        ));
    }
    // Every stored response is a turn of a conversation: one the gateway
    // names when the request names none.
    let conversation = match (&named, &req.previous_response_id) {
        (None, None) if store => Some(ids::conversation_id()),
        _ => named.clone(),
    };
    let id = ids::response_id();
    let mut head = ResponseHead::new(&id, crate::now_secs().max(0) as u64, req);
    head.conversation = conversation.clone().filter(|_| store);
    let fields = serde_json::to_value(head.object(Status::Completed, Vec::new()))
        .map_err(|_| ApiError::internal())?;
    let input = Input {
        model: req.model.clone(),
        request: decoded.request,
        conversation,
        claim: None,
        mcp_servers,
        continuation: Continuation {
            previous_response: req.previous_response_id.clone(),
            instructions: decoded.instructions,
            read_only: !store,
            strict_window: req.truncation == Some(Truncation::Disabled),
            response: store.then_some(ResponseDraft { id, fields }),
        },
    };
    Ok((input, head, req.stream()))
}

/// The Responses door.
struct Responses;

impl Door for Responses {
    type Options = ResponseHead;
    type Wire = ResponsesWire;
    const PATH: &'static str = "/v1/responses";
    const MEANINGFUL_HEADERS: &'static [&'static str] = &[];

    fn decode(
        state: &AppState,
        _headers: &HeaderMap,
        bytes: &[u8],
    ) -> Result<Decoded<ResponseHead>, ApiError> {
        let (input, head, stream) = decode_input(state, bytes, false)?;
        Ok(Decoded {
            input,
            stream,
            options: head,
        })
    }

    fn model_of(state: &AppState, bytes: &[u8]) -> Result<String, ApiError> {
        Ok(responses_request(bytes, &state.config.limits)?
            .request
            .model)
    }

    fn wire(mut head: ResponseHead, answering: &Answering, _prompt_estimate: u64) -> ResponsesWire {
        head.model = answering.model().id.clone();
        // A fork's conversation is known only once the turn is prepared.
        if head.store {
            head.conversation = answering.conversation().map(str::to_owned);
        }
        let ids = ItemIds::response(&head.id);
        ResponsesWire {
            encoder: EventEncoder::new(head.clone(), ids),
            head,
        }
    }
}

/// Answers as a `response` object and its typed events.
struct ResponsesWire {
    encoder: EventEncoder,
    head: ResponseHead,
}

impl Wire for ResponsesWire {
    const DIALECT: Dialect = Dialect::OpenAi;
    const ANSWER_PARAM: &'static str = ANSWER_PARAM;
    const STREAM_PARAM: &'static str = STREAM_PARAM;

    fn whole(&self, answer: &model::Response, _done: &turn::Done) -> Result<Vec<u8>, ApiError> {
        let body = codec::encode_response(answer, &self.head, &ItemIds::response(&self.head.id));
        serde_json::to_vec(&body).map_err(|_| ApiError::internal())
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        let mut buf = Vec::new();
        self.encoder.start(&mut buf);
        out.push(Bytes::from(buf));
    }

    fn event(&mut self, event: &Event, out: &mut Vec<Bytes>) {
        let mut buf = Vec::new();
        self.encoder.push(event, &mut buf);
        if !buf.is_empty() {
            out.push(Bytes::from(buf));
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        let mut buf = Vec::new();
        self.encoder.finish(&mut buf);
        if !buf.is_empty() {
            out.push(Bytes::from(buf));
        }
    }

    fn done(&mut self, done: &turn::Done) -> Bytes {
        let mut buf = Vec::new();
        self.encoder.completed(done.usage(), &mut buf);
        Bytes::from(buf)
    }

    fn keep_alive(&self) -> Bytes {
        Bytes::from_static(EventEncoder::keep_alive())
    }

    fn error(&self, e: &ApiError) -> Bytes {
        let mut buf = Vec::new();
        self.encoder.failed(e.code, &e.message, &mut buf);
        Bytes::from(buf)
    }
}

/// The 404 of a response id that names no stored response of the caller's.
fn missing(id: &str) -> ApiError {
    ApiError::not_found(
        "response_id",
        format!("no response '{}' is stored", id.escape_debug()),
    )
}

/// A stored response's record, or a 404 naming `response_id`.
async fn record(
    state: &AppState,
    p: &Principal,
    id: &str,
    now: i64,
) -> Result<ResponseRecord, ApiError> {
    if !ids::is_valid_id(id, 128) {
        return Err(missing(id));
    }
    state
        .store
        .get_response(&p.tenant, id, now)
        .await?
        .ok_or_else(|| missing(id))
}

/// The stored messages of a response's turn, from `from` (a slot) to its
/// last; a 404 when its conversation's life is over.
async fn turn_messages(
    state: &AppState,
    p: &Principal,
    r: &ResponseRecord,
    from: u64,
    now: i64,
) -> Result<Vec<StoredMessage>, ApiError> {
    let wanted = usize::try_from(r.last_seq + 1 - from).unwrap_or(usize::MAX);
    let page = state
        .store
        .message_page(
            &p.tenant,
            &r.conversation,
            now,
            Order::Asc,
            from.checked_sub(1),
            wanted,
        )
        .await?;
    if page.meta.is_none_or(|m| m.life != r.life) {
        return Err(ApiError::not_found(
            "response_id",
            format!("the conversation of response '{}' no longer exists", r.id),
        ));
    }
    Ok(page
        .messages
        .into_iter()
        .filter(|m| m.seq <= r.last_seq)
        .collect())
}

/// A stored response as the `response` object it was answered as: its own
/// fields from its answer, the output, usage of every model step, the status.
async fn stored_response(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<ResponseObject, ApiError> {
    let now = crate::now_secs();
    let r = record(state, p, id, now).await?;
    let messages = turn_messages(state, p, &r, r.output_seq, now).await?;
    // Its answer's items may have been deleted through the Conversations API.
    let gone = || {
        ApiError::not_found(
            "response_id",
            format!(
                "the answer of response '{}' was deleted from its conversation",
                r.id
            ),
        )
    };
    let answer = messages
        .iter()
        .find(|m| m.seq == r.answer_seq)
        .ok_or_else(gone)?;
    let fields = answer.response.clone().ok_or_else(gone)?;
    let mut object: ResponseObject =
        serde_json::from_value(fields).map_err(|_| ApiError::internal())?;
    let mut usage = Usage::default();
    for m in messages.iter().filter(|m| m.seq <= r.answer_seq) {
        if let Some(t) = &m.turn {
            usage.add(&t.usage);
        }
    }
    let finish = answer
        .turn
        .as_ref()
        .and_then(|t| t.finish_reason)
        .unwrap_or(FinishReason::Stop);
    let head_of = |o: &ResponseObject| o.model.clone();
    let model = answer.model.clone().unwrap_or_else(|| head_of(&object));
    let output = codec::output_items(&answer.message, &ItemIds::response(&r.id));
    let (status, reason) = codec::status_of(finish);
    object.model = model;
    object.output = output;
    object.status = status;
    object.incomplete_details = reason.map(|reason| IncompleteDetails {
        reason: reason.into(),
    });
    object.usage = Some(codec::encode_usage(&usage));
    object.conversation = Some(ConversationId {
        id: r.conversation.clone(),
    });
    Ok(object)
}

/// `GET /v1/responses/{response_id}`.
pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_READ, &mut log).await?;
        Ok(Json(stored_response(&state, &p, &id).await?).into_response())
    }
    .await;
    super::logged(result, log)
}

/// `DELETE /v1/responses/{response_id}`: the response is forgotten; its
/// turn stays in its conversation until the conversation is deleted.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_WRITE, &mut log).await?;
        let now = crate::now_secs();
        record(&state, &p, &id, now).await?;
        if !state.store.delete_response(&p.tenant, &id).await? {
            return Err(missing(&id));
        }
        Ok(Json(json!({"id": id, "object": "response.deleted", "deleted": true})).into_response())
    }
    .await;
    super::logged(result, log)
}

/// `GET /v1/responses/{response_id}/input_items`: the items the response's
/// request added to its conversation, newest first unless `order=asc`,
/// paginated by `after` (an item id) and `limit` (1..=100, default 20).
pub async fn input_items(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CONVERSATIONS_READ, &mut log).await?;
        Ok(Json(list_input_items(&state, &p, &id, &q).await?).into_response())
    }
    .await;
    super::logged(result, log)
}

async fn list_input_items(
    state: &AppState,
    p: &Principal,
    id: &str,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let limit = super::cursor::page_limit(q, 20, 100)?;
    let desc = match q.get("order").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::invalid("order", "order must be 'asc' or 'desc'")),
    };
    let now = crate::now_secs();
    let r = record(state, p, id, now).await?;
    let messages = turn_messages(state, p, &r, r.first_seq, now).await?;
    let mut items: Vec<Item> = messages
        .iter()
        .filter(|m| m.seq < r.output_seq)
        .flat_map(|m| codec::encode_items(&m.message, &ItemIds::slot(m.seq)))
        .collect();
    if desc {
        items.reverse();
    }
    if let Some(after) = q.get("after") {
        let at = items.iter().position(|i| i.id() == after).ok_or_else(|| {
            ApiError::invalid("after", "'after' names no input item of this response")
        })?;
        items.drain(..=at);
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(json!({
        "object": "list",
        "first_id": items.first().map(|i| i.id().to_owned()),
        "last_id": items.last().map(|i| i.id().to_owned()),
        "has_more": has_more,
        "data": items,
    }))
}

/// `POST /v1/responses/input_tokens`: the input tokens a create request
/// with this body would send (its stored history included), counted by the
/// model's provider where it can, else estimated, and labelled as one
/// (`x-ctxgate-token-count`).
pub async fn input_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        let p = caller(&state, &headers, SCOPE_CHAT, &mut log).await?;
        let bytes = read_json_body(&headers, body, state.config.max_body_bytes).await?;
        let (input, _, _) = decode_input(&state, &bytes, true)?;
        log.model = Some(input.model.clone());
        let counted = turn::count_input(&state, &p, input).await?;
        let mut resp = Json(json!({
            "object": "response.input_tokens",
            "input_tokens": counted.input_tokens,
        }))
        .into_response();
        let source = if counted.estimated {
            "estimate"
        } else {
            "provider"
        };
        resp.headers_mut()
            .insert(COUNT_SOURCE_HEADER, HeaderValue::from_static(source));
        Ok(resp)
    }
    .await;
    with_log(
        result.unwrap_or_else(|e: ApiError| e.render(Dialect::OpenAi)),
        log,
    )
}
