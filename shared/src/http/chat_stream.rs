//! `POST /v1/chat/completions` with `stream: true`: the provider's stream
//! goes out as OpenAI `chat.completion.chunk` events as it arrives. The turn
//! is stored (and `[DONE]` sent) only once the upstream has completed; a
//! failure ends the stream with an OpenAI-style error event and stores
//! nothing, and a client that goes away drops the upstream request with it.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderValue, StatusCode, header};

use super::chat::{CONVERSATION_HEADER, Finished, MODEL_HEADER, REDACTIONS_HEADER, store_turn};
use crate::config::ProviderKind;
use crate::context::Turn;
use crate::meter::Meter;
use crate::processor::{self, Counts};
use crate::provider::{ResolvedModel, resilience};
use crate::redact::Place;
use crate::store::{IdempotencyDone, StoredResponse};
use crate::stream::chunk::{ChunkMeta, DONE, KEEP_ALIVE, error_event};
use crate::stream::keep_alive::{self, Beat};
use crate::stream::redact::StreamRedactor;
use crate::stream::session::{BLOCKED_PARAM, Session};
use crate::wire::{ChatMessage, ChatRequest, Usage};
use crate::{ApiError, AppState, idempotency, ids, summary, tokens, usage};

/// Everything the non-streamed preparation established, handed over.
pub struct StreamCall {
    /// The caller's tenant.
    pub tenant: String,
    /// The models to try in order (a fallback chain, or one).
    pub chain: Vec<ResolvedModel>,
    /// The model answering (the chain's first until the stream opens).
    pub model: ResolvedModel,
    /// The request's parameters (its messages already taken).
    pub request: ChatRequest,
    /// The full prompt, as redacted for the provider.
    pub prompt: Vec<ChatMessage>,
    /// The stored conversation turn, if any.
    pub turn: Option<Turn>,
    /// The conversation id, echoed in a header.
    pub conversation: Option<String>,
    /// The call's metering (budget reservation and usage row).
    pub meter: Meter,
    /// The prompt's estimated tokens (for a cut stream without usage).
    pub prompt_estimate: u64,
    /// Replacements made on the request so far.
    pub counts: Counts,
    /// Request time, Unix seconds.
    pub now: i64,
    /// Until when the stream may take to open (retries and fallbacks included).
    pub deadline: std::time::Instant,
    /// The idempotency claim this request holds, if it sent a key.
    pub claim: Option<idempotency::Claim>,
    /// A summary being written beside the stream.
    pub summary: Option<summary::Pending>,
}

/// Starts the upstream stream and answers with the SSE response; failures
/// before the answer starts are ordinary JSON errors.
///
/// Retries and fallbacks happen only here, before the first byte goes to the
/// client: once the answer has started, a failure ends it with an error event.
pub async fn respond(state: Arc<AppState>, mut call: StreamCall) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    call.meter.sent();
    let opened = {
        let (prompt, request) = (&call.prompt, &call.request);
        resilience::run(
            &call.chain,
            |m| state.config.retry_policy(&m.provider, &m.id),
            call.deadline,
            |m| {
                let state = state.clone();
                async move { state.providers.stream(&m, prompt, request).await }
            },
        )
        .await
    };
    let deltas = match opened {
        Ok(routed) => {
            call.model = routed.model;
            routed.value
        }
        Err(e) => {
            call.meter.failed(&e).await;
            if let Some(p) = call.summary.take() {
                p.cancel();
            }
            return Err(e.into());
        }
    };
    let meta = ChunkMeta {
        id: ids::completion_id(),
        created: call.now,
        model: call.model.id.clone(),
        include_usage: call
            .request
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    };
    let redactor = StreamRedactor::new(state.redactors.for_tenant(&call.tenant), Place::Response);
    let canonical = state.providers.kind(&call.model) == ProviderKind::Anthropic;
    let session = Session::new(meta, redactor, canonical);

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
    if let Some(id) = call
        .conversation
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(CONVERSATION_HEADER, id);
    }
    if !call.counts.is_empty()
        && let Ok(v) = HeaderValue::from_str(&call.counts.header())
    {
        h.insert(REDACTIONS_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&call.model.id) {
        h.insert(MODEL_HEADER, v);
    }
    let events = keep_alive::watch(
        deltas,
        keep_alive::INTERVAL,
        state.config.upstream_timeout,
        call.model.provider.clone(),
    );
    *resp.body_mut() = Body::from_stream(sse_body(state, call, session, events, started));
    Ok(resp)
}

/// The SSE body: the role chunk, then the upstream's translation, then
/// storage and `[DONE]` (or an error event).
fn sse_body(
    state: Arc<AppState>,
    call: StreamCall,
    session: Session,
    events: impl Stream<Item = Beat> + Send + 'static,
    started: std::time::Instant,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let mut queue = VecDeque::new();
    queue.push_back(session.start());
    let run = Run {
        state,
        transcript: call.claim.as_ref().map(|_| Vec::new()),
        call: Some(call),
        session: Some(session),
        events: Box::pin(events),
        queue,
        over: false,
        started,
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

type Beats = std::pin::Pin<Box<dyn Stream<Item = Beat> + Send>>;

/// One streamed turn in flight.
struct Run {
    state: Arc<AppState>,
    /// Taken when the turn is settled (completed or failed).
    call: Option<StreamCall>,
    session: Option<Session>,
    events: Beats,
    queue: VecDeque<Bytes>,
    over: bool,
    /// When the provider call started (the stored answer's latency).
    started: std::time::Instant,
    /// What the client has been sent, kept when an idempotent replay may need it.
    transcript: Option<Vec<u8>>,
}

impl Run {
    /// Waits for the next upstream event and queues what it produces.
    async fn step(&mut self) {
        let mut out = Vec::new();
        match self.events.next().await {
            Some(Beat::Silence) => out.push(Bytes::from_static(KEEP_ALIVE)),
            Some(Beat::Item(Ok(delta))) => {
                let pushed = match self.session.as_mut() {
                    Some(s) => s.push(delta, &mut out),
                    None => Ok(()),
                };
                if let Err(b) = pushed {
                    self.queue.extend(out);
                    return self.fail(ApiError::blocked(&b, BLOCKED_PARAM)).await;
                }
            }
            Some(Beat::Item(Err(e))) => return self.fail(e.into()).await,
            None => return self.complete().await,
        }
        self.queue.extend(out);
    }

    /// The upstream failed or the answer was blocked: the provider's work so
    /// far is accounted, nothing is stored, the client gets an error event.
    async fn fail(&mut self, e: ApiError) {
        // Dropping the upstream stream closes the provider connection.
        self.events = Box::pin(stream::empty());
        self.over = true;
        if let (Some(mut call), Some(session)) = (self.call.take(), self.session.take()) {
            give_back(&self.state, &mut call).await;
            let usage = spent(&call, &session);
            account(call, usage).await;
        }
        tracing::warn!(code = e.code, "stream ended with an error");
        self.queue.push_back(error_event(&e));
    }

    /// The upstream completed: flush, account, store, `[DONE]`.
    async fn complete(&mut self) {
        self.over = true;
        let (Some(mut call), Some(mut session)) = (self.call.take(), self.session.take()) else {
            return;
        };
        let mut out = Vec::new();
        let ended = session.end(&mut out);
        self.queue.extend(out);
        let (completion, counts) = match ended {
            Ok(done) => done,
            Err(b) => {
                give_back(&self.state, &mut call).await;
                let usage = spent(&call, &session);
                account(call, usage).await;
                self.queue
                    .push_back(error_event(&ApiError::blocked(&b, BLOCKED_PARAM)));
                return;
            }
        };
        let (tenant, model, now) = (call.tenant.clone(), call.model.clone(), call.now);
        let latency = self.started.elapsed();
        // Without usage from the provider, the gateway's estimate is charged.
        let (spent, estimated) =
            usage::or_estimate(completion.usage, call.prompt_estimate, &completion.message);
        let row = call.meter.answered(&model.id, &spent, estimated).await;
        // The replay of an idempotent request: the whole event stream as sent.
        let done = match (call.claim.take(), self.transcript.as_ref()) {
            (Some(c), Some(sent)) => {
                let mut body = sent.clone();
                for b in self.queue.iter().filter(|b| **b != KEEP_ALIVE) {
                    body.extend_from_slice(b);
                }
                body.extend_from_slice(DONE);
                let mut headers = vec![("content-type".to_owned(), "text/event-stream".to_owned())];
                headers.extend(
                    call.conversation
                        .clone()
                        .map(|c| (CONVERSATION_HEADER.to_owned(), c)),
                );
                headers.push((MODEL_HEADER.to_owned(), model.id.clone()));
                Some(IdempotencyDone {
                    key: c.key,
                    token: c.token,
                    response: StoredResponse {
                        status: 200,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        conversation: None,
                    },
                    expires_at: now + idempotency::KEEP_SECS,
                })
            }
            _ => None,
        };
        match call.turn.take() {
            Some(turn) => {
                let mut stored = completion.clone();
                // As a non-streamed turn stores them: the request's replacements
                // (stored, upstream), the answer's as sent, then as stored.
                let mut stored_counts = call.counts.clone();
                stored_counts.merge(&counts);
                let redactor = self.state.redactors.for_tenant(&tenant);
                if let Err(b) = processor::apply(
                    redactor,
                    std::slice::from_mut(&mut stored.message),
                    Place::Stored,
                    &mut stored_counts,
                ) {
                    call.meter.record().await;
                    release(&self.state, &tenant, done.as_ref()).await;
                    if let Some(p) = call.summary.take() {
                        p.cancel();
                    }
                    self.queue
                        .push_back(error_event(&ApiError::blocked(&b, "choices[0].message")));
                    return;
                }
                let finished = Finished {
                    tenant: tenant.clone(),
                    turn,
                    stored,
                    model: model.clone(),
                    latency,
                    redactions: stored_counts.0,
                    row,
                    idempotency: done.clone(),
                    now,
                    meter: call.meter,
                    summary: call.summary.take(),
                };
                if let Err(e) = store_turn(&self.state, finished).await {
                    release(&self.state, &tenant, done.as_ref()).await;
                    self.queue.push_back(error_event(&e));
                    return;
                }
            }
            None => {
                call.meter.record().await;
                if let Some(done) = &done
                    && let Err(e) = self.state.store.idempotency_complete(&tenant, done).await
                {
                    tracing::warn!(error = %e, "could not store an idempotent response");
                }
            }
        }
        let model = model.id;
        tracing::info!(
            model = %model,
            prompt_tokens = completion.usage.prompt_tokens,
            completion_tokens = completion.usage.completion_tokens,
            "stream completed"
        );
        self.queue.push_back(Bytes::from_static(DONE));
    }
}

impl Drop for Run {
    /// The client went away mid-stream: nothing is stored, but the provider
    /// was paid for what it generated, so that is accounted in the background.
    fn drop(&mut self) {
        let (Some(mut call), Some(session)) = (self.call.take(), self.session.take()) else {
            return;
        };
        if let Some(p) = call.summary.take() {
            p.cancel();
        }
        let usage = spent(&call, &session);
        let state = self.state.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                give_back(&state, &mut call).await;
                account(call, usage).await
            });
        }
    }
}

/// Usage of an answer that did not complete: the provider's figures so far
/// where it sent them, and at least an estimate of what was generated
/// (`true`: estimated).
fn spent(call: &StreamCall, session: &Session) -> (Usage, bool) {
    let generated = tokens::estimate_text(&session.assembler().generated_chars());
    match session.assembler().usage() {
        Some(u) if u.completion_tokens >= generated => (u, false),
        Some(u) => (
            Usage::new(u.prompt_tokens, generated)
                .with_details(u.cached_tokens(), u.reasoning_tokens()),
            true,
        ),
        None => (Usage::new(call.prompt_estimate, generated), true),
    }
}

/// A failed or abandoned stream: its summary is stopped and its idempotency
/// claim given back (failures are not remembered), so a retry runs.
async fn give_back(state: &AppState, call: &mut StreamCall) {
    if let Some(p) = call.summary.take() {
        p.cancel();
    }
    if let Some(c) = call.claim.take() {
        let released = state
            .store
            .idempotency_release(&call.tenant, &c.key, &c.token);
        if let Err(e) = released.await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    }
}

/// Gives back the claim of a completed stream whose turn could not be stored.
async fn release(state: &AppState, tenant: &str, done: Option<&IdempotencyDone>) {
    if let Some(d) = done
        && let Err(e) = state
            .store
            .idempotency_release(tenant, &d.key, &d.token)
            .await
    {
        tracing::warn!(error = %e, "could not release an idempotency key");
    }
}

/// Settles the budget to what a cut stream spent and records it.
async fn account(mut call: StreamCall, (usage, estimated): (Usage, bool)) {
    let model = call.model.id.clone();
    call.meter.answered(&model, &usage, estimated).await;
    call.meter.record().await;
}
