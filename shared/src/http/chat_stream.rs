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

use super::chat::{CONVERSATION_HEADER, REDACTIONS_HEADER};
use crate::config::ProviderKind;
use crate::context::{self, Turn};
use crate::limits::Reservation;
use crate::processor::{self, Counts};
use crate::provider::{ResolvedModel, estimate_tokens};
use crate::redact::Place;
use crate::stream::chunk::{ChunkMeta, DONE, KEEP_ALIVE, error_event};
use crate::stream::keep_alive::{self, Beat};
use crate::stream::redact::StreamRedactor;
use crate::stream::session::{BLOCKED_PARAM, Session};
use crate::wire::{ChatMessage, ChatRequest, Usage};
use crate::{ApiError, AppState, ids, usage};

/// Everything the non-streamed preparation established, handed over.
pub struct StreamCall {
    /// The caller's tenant.
    pub tenant: String,
    /// The resolved model.
    pub model: ResolvedModel,
    /// The request's parameters (its messages already taken).
    pub request: ChatRequest,
    /// The full prompt, as redacted for the provider.
    pub prompt: Vec<ChatMessage>,
    /// The stored conversation turn, if any.
    pub turn: Option<Turn>,
    /// The conversation id, echoed in a header.
    pub conversation: Option<String>,
    /// The budget reservation, if the tenant has quotas.
    pub reservation: Option<Reservation>,
    /// The prompt's estimated tokens (for a cut stream without usage).
    pub prompt_estimate: u64,
    /// Replacements made on the request so far.
    pub counts: Counts,
    /// Request time, Unix seconds.
    pub now: i64,
}

/// Starts the upstream stream and answers with the SSE response; failures
/// before the answer starts are ordinary JSON errors.
pub async fn respond(state: Arc<AppState>, mut call: StreamCall) -> Result<Response, ApiError> {
    let started = state
        .providers
        .stream(&call.model, &call.prompt, &call.request)
        .await;
    let deltas = match started {
        Ok(d) => d,
        Err(e) => {
            if let Some(r) = call.reservation.as_mut() {
                r.settle(0, 0).await;
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
    let events = keep_alive::watch(
        deltas,
        keep_alive::INTERVAL,
        state.config.upstream_timeout,
        call.model.provider.clone(),
    );
    *resp.body_mut() = Body::from_stream(sse_body(state, call, session, events));
    Ok(resp)
}

/// The SSE body: the role chunk, then the upstream's translation, then
/// storage and `[DONE]` (or an error event).
fn sse_body(
    state: Arc<AppState>,
    call: StreamCall,
    session: Session,
    events: impl Stream<Item = Beat> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let mut queue = VecDeque::new();
    queue.push_back(session.start());
    let run = Run {
        state,
        call: Some(call),
        session: Some(session),
        events: Box::pin(events),
        queue,
        over: false,
    };
    stream::unfold(run, |mut run| async move {
        loop {
            if let Some(b) = run.queue.pop_front() {
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
        if let (Some(call), Some(session)) = (self.call.take(), self.session.take()) {
            let usage = spent(&call, &session);
            account(&self.state, call, &usage).await;
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
                let usage = spent(&call, &session);
                account(&self.state, call, &usage).await;
                self.queue
                    .push_back(error_event(&ApiError::blocked(&b, BLOCKED_PARAM)));
                return;
            }
        };
        let turn = call.turn.take();
        let (tenant, model, now) = (call.tenant.clone(), call.model.id.clone(), call.now);
        // The provider was paid whatever happens next: account for it first.
        account(&self.state, call, &completion.usage).await;
        if let Some(turn) = turn {
            let mut stored = completion.clone();
            let mut stored_counts = counts;
            let redactor = self.state.redactors.for_tenant(&tenant);
            if let Err(b) = processor::apply(
                redactor,
                std::slice::from_mut(&mut stored.message),
                Place::Stored,
                &mut stored_counts,
            ) {
                self.queue
                    .push_back(error_event(&ApiError::blocked(&b, "choices[0].message")));
                return;
            }
            let committed = context::commit(
                &*self.state.store,
                &tenant,
                turn,
                &stored,
                &model,
                self.state.config.retention_secs(),
                now,
            )
            .await;
            if let Err(e) = committed {
                self.queue.push_back(error_event(&e.into()));
                return;
            }
        }
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
        let (Some(call), Some(session)) = (self.call.take(), self.session.take()) else {
            return;
        };
        let usage = spent(&call, &session);
        let state = self.state.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { account(&state, call, &usage).await });
        }
    }
}

/// Usage of an answer that did not complete: the provider's figures so far
/// where it sent them, and at least an estimate of what was generated.
fn spent(call: &StreamCall, session: &Session) -> Usage {
    let generated = estimate_tokens(&session.assembler().generated_chars());
    match session.assembler().usage() {
        Some(u) if u.completion_tokens >= generated => u,
        Some(u) => Usage::new(u.prompt_tokens, generated)
            .with_details(u.cached_tokens(), u.reasoning_tokens()),
        None => Usage::new(call.prompt_estimate, generated),
    }
}

/// Settles the budget reservation to `usage` and records it.
async fn account(state: &AppState, mut call: StreamCall, usage: &Usage) {
    let prices = &state.config.prices;
    let row = usage::row(prices, usage::day(call.now), &call.model.id, usage);
    if let Some(r) = call.reservation.as_mut() {
        r.settle(row.total_tokens, row.cost_micro_usd).await;
    }
    if row.total_tokens > 0
        && let Err(e) = state.store.add_usage(&call.tenant, &row).await
    {
        tracing::error!(error = %e, "usage accounting failed");
    }
}
