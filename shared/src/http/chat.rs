//! `POST /v1/chat/completions`, the OpenAI Chat front door: authenticate,
//! decode the request into the model, run the turn, encode its answer as a
//! `chat.completion`, or, with `stream: true`, as `chat.completion.chunk`
//! events as they arrive. A stream's `[DONE]` goes out only once the turn is
//! stored; a failure ends it with an OpenAI-style error event and stores
//! nothing, and a client that goes away drops the turn (and the upstream
//! request) with it.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, stream};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{RequestLog, caller, read_json_body, with_log};
use crate::auth::{Principal, SCOPE_CHAT};
use crate::model::{self, Assembler};
use crate::store::StoredResponse;
use crate::turn::{self, Answering, Input, Step, TurnError};
use crate::wire::openai_chat::chunk::{ChunkEncoder, ChunkMeta, DONE, KEEP_ALIVE, error_event};
use crate::wire::openai_chat::types::ChatRequest;
use crate::wire::openai_chat::{self as codec, ResponseMeta};
use crate::{ApiError, AppState, idempotency, ids, validate};

/// Header naming a stored conversation (alternative to the body field).
pub const CONVERSATION_HEADER: &str = "x-conversation-id";
/// Header reporting how many values the response processor replaced.
pub const REDACTIONS_HEADER: &str = "x-ctxgate-redactions";
/// Header naming the model that answered (a fallback chain may move on).
pub const MODEL_HEADER: &str = "x-ctxgate-model";
/// Header naming the MCP servers whose tools could not be listed for the
/// turn (the model answered without them; the log says why).
pub const MCP_UNAVAILABLE_HEADER: &str = "x-ctxgate-mcp-unavailable";
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
            mcp_servers: req.mcp_servers.take(),
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
        return Ok(respond(answering, include_usage));
    }
    whole(answering, log).await
}

/// A replay answers only for a model the caller may still use, from a
/// conversation life that still exists.
async fn replay(
    state: &AppState,
    principal: &Principal,
    bytes: &[u8],
    stored: StoredResponse,
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
            Step::Silence | Step::Tool(_) => {}
            Step::End => break,
        }
    }
    let keeps_replay = answering.keeps_replay();
    let unavailable = unavailable_header(&answering);
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
    if let Some(v) = unavailable {
        h.insert(MCP_UNAVAILABLE_HEADER, v);
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

/// The unavailable MCP servers, comma-separated, if any.
fn unavailable_header(answering: &Answering) -> Option<HeaderValue> {
    let names = answering.unavailable_servers();
    if names.is_empty() {
        return None;
    }
    HeaderValue::from_str(&names.join(",")).ok()
}

// ---- streamed answers -------------------------------------------------------

/// The field a blocked streamed answer is reported on.
pub const BLOCKED_PARAM: &str = "choices[0].delta.content";

/// The SSE response of an answer under way.
fn respond(answering: Answering, include_usage: bool) -> Response {
    let meta = ChunkMeta {
        id: ids::completion_id(),
        created: answering.now(),
        model: answering.model().id.clone(),
        include_usage,
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(id) = answering
        .conversation()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(CONVERSATION_HEADER, id);
    }
    let counts = answering.request_counts();
    if !counts.is_empty()
        && let Ok(v) = HeaderValue::from_str(&counts.header())
    {
        h.insert(REDACTIONS_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&answering.model().id) {
        h.insert(MODEL_HEADER, v);
    }
    if let Some(v) = unavailable_header(&answering) {
        h.insert(MCP_UNAVAILABLE_HEADER, v);
    }
    *resp.body_mut() = Body::from_stream(sse_body(answering, ChunkEncoder::new(meta)));
    resp
}

/// One streamed answer in flight.
struct Run {
    /// Taken when the answer is complete.
    answering: Option<Answering>,
    encoder: ChunkEncoder,
    queue: VecDeque<Bytes>,
    over: bool,
    /// What the client has been sent, kept when an idempotent replay may need it.
    transcript: Option<Vec<u8>>,
}

/// The SSE body: the role chunk, the events as chunks, then storage and
/// `[DONE]` (or an error event).
fn sse_body(
    answering: Answering,
    encoder: ChunkEncoder,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let mut queue = VecDeque::new();
    queue.push_back(encoder.start());
    let run = Run {
        transcript: answering.keeps_replay().then(Vec::new),
        answering: Some(answering),
        encoder,
        queue,
        over: false,
    };
    stream::unfold(run, |mut run| async move {
        loop {
            if let Some(b) = run.queue.pop_front() {
                if let Some(t) = run.transcript.as_mut()
                    && b != KEEP_ALIVE
                {
                    t.extend_from_slice(&b);
                }
                return Some((Ok(b), run));
            }
            if run.over {
                return None;
            }
            run.step().await;
        }
    })
}

/// A tool run of the loop as an SSE comment, which clients' SSE parsers
/// skip: `: ctxgate-tool {"server":..,"tool":..,"outcome":..,"duration_ms":..}`.
fn tool_comment(note: &turn::ToolNote) -> Bytes {
    let body = serde_json::json!({
        "server": note.server,
        "tool": note.tool,
        "outcome": note.outcome,
        "duration_ms": u64::try_from(note.duration.as_millis()).unwrap_or(u64::MAX),
    });
    Bytes::from(format!(": ctxgate-tool {body}\n\n"))
}

fn fail_event(e: TurnError) -> Bytes {
    let e: ApiError = e.into_api(BLOCKED_PARAM, ANSWER_PARAM);
    tracing::warn!(code = e.code, "stream ended with an error");
    error_event(&e.body())
}

impl Run {
    /// Waits for the next step of the answer and queues what it produces.
    async fn step(&mut self) {
        let Some(answering) = self.answering.as_mut() else {
            self.over = true;
            return;
        };
        let mut out = Vec::new();
        match answering.next().await {
            Ok(Step::Event(e)) => self.encoder.push(&e, &mut out),
            Ok(Step::Silence) => out.push(Bytes::from_static(KEEP_ALIVE)),
            Ok(Step::Tool(note)) => out.push(tool_comment(&note)),
            Ok(Step::End) => return self.complete().await,
            Err(e) => {
                self.over = true;
                self.answering = None;
                out.push(fail_event(e));
            }
        }
        self.queue.extend(out);
    }

    /// The answer is complete: the last chunks, then the commit, then `[DONE]`.
    async fn complete(&mut self) {
        self.over = true;
        let Some(answering) = self.answering.take() else {
            return;
        };
        let mut out = Vec::new();
        self.encoder.end(&mut out);
        self.queue.extend(out);
        let done = match answering.done().await {
            Ok(done) => done,
            Err(e) => return self.queue.push_back(fail_event(e)),
        };
        // The replay of an idempotent request: the whole event stream as sent.
        let replay = self.transcript.as_ref().map(|sent| {
            let mut body = sent.clone();
            for b in self.queue.iter().filter(|b| **b != KEEP_ALIVE) {
                body.extend_from_slice(b);
            }
            body.extend_from_slice(DONE);
            let mut headers = vec![("content-type".to_owned(), "text/event-stream".to_owned())];
            headers.extend(
                done.conversation()
                    .map(|c| (CONVERSATION_HEADER.to_owned(), c.to_owned())),
            );
            headers.push((MODEL_HEADER.to_owned(), done.model().id.clone()));
            StoredResponse {
                status: 200,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                conversation: None,
            }
        });
        let (model, usage) = (done.model().id.clone(), done.usage());
        if let Err(e) = done.commit(replay).await {
            return self.queue.push_back(fail_event(e));
        }
        tracing::info!(
            model = %model,
            prompt_tokens = usage.input,
            completion_tokens = usage.output,
            "stream completed"
        );
        self.queue.push_back(Bytes::from_static(DONE));
    }
}
