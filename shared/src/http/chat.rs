//! `POST /v1/chat/completions`, the OpenAI Chat front door: authenticate,
//! decode the request into the model, run the turn, encode its answer as a
//! `chat.completion` (or, with `stream: true`, as chunks: [`chat_stream`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{RequestLog, caller, chat_stream, read_json_body, with_log};
use crate::auth::{Principal, SCOPE_CHAT};
use crate::model::{self, Assembler};
use crate::turn::{self, Input, Step};
use crate::wire::ChatRequest;
use crate::wire::openai_chat::{self as codec, ResponseMeta};
use crate::{ApiError, AppState, idempotency, ids, validate};

/// Header naming a stored conversation (alternative to the body field).
pub const CONVERSATION_HEADER: &str = "x-conversation-id";
/// Header reporting how many values the response processor replaced.
pub const REDACTIONS_HEADER: &str = "x-ctxgate-redactions";
/// Header naming the model that answered (a fallback chain may move on).
pub const MODEL_HEADER: &str = "x-ctxgate-model";
/// The field holding a whole answer's text, named by redaction blocks.
const ANSWER_PARAM: &str = "choices[0].message";

/// The chat completions handler.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let resp = match complete(&state, &headers, body, &mut log).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    with_log(resp, log)
}

/// The conversation id from the body or the header; both must agree.
fn conversation_id(body: Option<String>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let header = match headers.get(CONVERSATION_HEADER) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::invalid(CONVERSATION_HEADER, "invalid conversation id"))?;
            validate::conversation_id(v, CONVERSATION_HEADER)?;
            Some(v.to_owned())
        }
    };
    match (body, header) {
        (Some(b), Some(h)) if b != h => Err(ApiError::invalid(
            "conversation_id",
            "conversation_id and the x-conversation-id header name different conversations",
        )),
        (Some(b), _) => Ok(Some(b)),
        (None, h) => Ok(h),
    }
}

/// A validated request, decoded into the model.
struct Decoded {
    input: Input,
    stream: bool,
    include_usage: bool,
}

fn decode(state: &AppState, headers: &HeaderMap, bytes: &[u8]) -> Result<Decoded, ApiError> {
    let mut req: ChatRequest = validate::chat_request(bytes, &state.config.limits)?;
    let conversation = conversation_id(req.conversation_id.take(), headers)?;
    let request = codec::decode_request(&req);
    Ok(Decoded {
        stream: req.stream == Some(true),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        input: Input {
            model: std::mem::take(&mut req.model),
            request,
            conversation,
            claim: None,
        },
    })
}

async fn complete(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let now = crate::now_secs();
    let principal = caller(state, headers, SCOPE_CHAT, log).await?;
    let bytes = read_json_body(headers, body, state.config.max_body_bytes).await?;

    let claim = match idempotency::key_from(headers)? {
        None => None,
        Some(key) => {
            // The conversation header changes what the request does, like its body.
            let fingerprint = idempotency::fingerprint(
                "/v1/chat/completions",
                headers,
                &[CONVERSATION_HEADER],
                &bytes,
            );
            // A claim outlives any attempt of its holder: the deadline bounds those.
            let lease = i64::try_from(state.config.deadline.as_secs()).unwrap_or(600) + 30;
            let begun = idempotency::begin(
                &*state.store,
                &principal.tenant,
                key,
                &fingerprint,
                now,
                lease,
            )
            .await?;
            match begun {
                idempotency::Begin::Replay(stored) => {
                    return replay(state, &principal, &bytes, stored, now).await;
                }
                idempotency::Begin::Run(claim) => Some(claim),
            }
        }
    };
    let decoded = match decode(state, headers, &bytes) {
        Ok(d) => d,
        Err(e) => {
            if let Some(c) = &claim {
                idempotency::release(&*state.store, &principal.tenant, c).await;
            }
            return Err(e);
        }
    };
    let Decoded {
        mut input,
        stream,
        include_usage,
    } = decoded;
    input.claim = claim;
    let prepared = turn::prepare(state, &principal, input).await?;
    log.model = Some(prepared.model().id.clone());
    let answering = turn::generate(prepared, stream).await?;
    log.model = Some(answering.model().id.clone());
    if stream {
        return Ok(chat_stream::respond(answering, include_usage));
    }
    whole(answering, log).await
}

/// A replay answers only for a model the caller may still use, from a
/// conversation life that still exists.
async fn replay(
    state: &AppState,
    principal: &Principal,
    bytes: &[u8],
    stored: crate::store::StoredResponse,
    now: i64,
) -> Result<Response, ApiError> {
    let req = validate::chat_request(bytes, &state.config.limits)?;
    turn::model_chain(state, principal, &req.model)?;
    idempotency::check_replay(&*state.store, &principal.tenant, &stored, now).await?;
    Ok(idempotency::replay(stored))
}

/// A non-streamed answer: the turn's events assembled, then committed, then
/// sent as one `chat.completion`.
async fn whole(mut answering: turn::Answering, log: &mut RequestLog) -> Result<Response, ApiError> {
    let fail = |e: turn::TurnError| e.into_api(ANSWER_PARAM, ANSWER_PARAM);
    let mut sent = Assembler::new(false);
    loop {
        match answering.next().await.map_err(fail)? {
            Step::Event(e) => sent.push(&e),
            Step::Silence => {}
            Step::End => break,
        }
    }
    let keeps_replay = answering.keeps_replay();
    let done = answering.done().await.map_err(fail)?;
    let answer = model::Response {
        usage: done.usage(),
        ..sent.finish()
    };
    log.usage = Some(done.usage());
    let counts = done.counts();
    let conversation = done.conversation().map(str::to_owned);
    let body = codec::encode_response(
        &answer,
        ResponseMeta {
            id: ids::completion_id(),
            created: done.now(),
            model: done.model().id.clone(),
            conversation_id: conversation.clone(),
            redactions: (!counts.is_empty()).then(|| counts.0.clone()),
        },
    );
    let json = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
    let mut resp = (StatusCode::OK, json.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = conversation.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(CONVERSATION_HEADER, id);
    }
    if let Ok(v) = HeaderValue::from_str(&done.model().id) {
        h.insert(MODEL_HEADER, v);
    }
    if !counts.is_empty()
        && let Ok(v) = HeaderValue::from_str(&counts.header())
    {
        h.insert(REDACTIONS_HEADER, v);
    }
    let replay = keeps_replay.then(|| {
        idempotency::keep(
            StatusCode::OK,
            resp.headers(),
            &json,
            &[CONVERSATION_HEADER, REDACTIONS_HEADER, MODEL_HEADER],
        )
    });
    done.commit(replay).await.map_err(fail)?;
    Ok(resp)
}
