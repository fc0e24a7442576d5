//! A turn's answer going out through a front door, whole or streamed, in the
//! door's wire format ([`Wire`]): what every door does the same way lives
//! here. A whole answer is assembled, committed, then sent. A stream sends
//! the door's events as they arrive; its terminator (`[DONE]`,
//! `message_stop`) goes out only once the turn is stored, a failure ends it
//! with the door's error event and stores nothing, and a client that goes
//! away drops the turn (and the upstream request) with it. Both keep what
//! they sent for an idempotent replay when the turn holds a claim.

use std::collections::VecDeque;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, stream};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::RequestLog;
use super::chat::{CONVERSATION_HEADER, MCP_UNAVAILABLE_HEADER, MODEL_HEADER, REDACTIONS_HEADER};
use crate::error::Dialect;
use crate::model::{self, Event};
use crate::store::StoredResponse;
use crate::turn::{self, Answering, Step, TurnError};
use crate::{ApiError, idempotency};

/// A front door's wire format for answers.
pub trait Wire: Send + 'static {
    /// The envelope its errors are written in.
    const DIALECT: Dialect;
    /// The field naming a whole answer (a blocked answer is reported on it).
    const ANSWER_PARAM: &'static str;
    /// The field naming a streamed answer's text.
    const STREAM_PARAM: &'static str;

    /// The body of a whole answer.
    fn whole(&self, answer: &model::Response, done: &turn::Done) -> Result<Vec<u8>, ApiError>;
    /// What a stream sends before its first event.
    fn start(&mut self, out: &mut Vec<Bytes>);
    /// One model event as stream bytes.
    fn event(&mut self, event: &Event, out: &mut Vec<Bytes>);
    /// The answer is complete: its last events, before the turn is stored.
    fn end(&mut self, out: &mut Vec<Bytes>);
    /// The terminator, sent once the turn is stored (`done` is the turn as
    /// committed: its usage over every step, its conversation).
    fn done(&mut self, done: &turn::Done) -> Bytes;
    /// The keep-alive a silence sends (never kept in a replay).
    fn keep_alive(&self) -> Bytes;
    /// A silence: the keep-alive, after whatever must precede it.
    fn silence(&mut self, out: &mut Vec<Bytes>) {
        out.push(self.keep_alive());
    }
    /// The error event that ends a failed stream.
    fn error(&self, e: &ApiError) -> Bytes;
}

/// The unavailable MCP servers, comma-separated, if any.
fn unavailable_header(answering: &Answering) -> Option<HeaderValue> {
    let names = answering.unavailable_servers();
    if names.is_empty() {
        return None;
    }
    HeaderValue::from_str(&names.join(",")).ok()
}

/// A non-streamed answer: the turn's events assembled, then committed, then
/// sent as one JSON body.
pub async fn whole<W: Wire>(
    wire: W,
    mut answering: Answering,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let fail = |e: TurnError| e.into_api(W::ANSWER_PARAM, W::ANSWER_PARAM);
    let sent = answering.assemble().await.map_err(fail)?;
    let keeps_replay = answering.keeps_replay();
    let unavailable = unavailable_header(&answering);
    let done = answering.done().await.map_err(fail)?;
    let answer = model::Response {
        usage: done.usage(),
        ..sent.finish()
    };
    log.usage = Some(done.usage());
    let json = wire.whole(&answer, &done)?;
    let mut resp = (StatusCode::OK, json.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = done
        .conversation()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(CONVERSATION_HEADER, id);
    }
    if let Ok(v) = HeaderValue::from_str(&done.model().id) {
        h.insert(MODEL_HEADER, v);
    }
    if let Some(v) = unavailable {
        h.insert(MCP_UNAVAILABLE_HEADER, v);
    }
    let counts = done.counts();
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

/// The SSE response of an answer under way, written by `wire`.
pub fn streamed<W: Wire>(wire: W, answering: Answering) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    let h: &mut HeaderMap = resp.headers_mut();
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
    *resp.body_mut() = Body::from_stream(sse_body(answering, wire));
    resp
}

/// One streamed answer in flight.
struct Run<W> {
    /// Taken when the answer is complete.
    answering: Option<Answering>,
    wire: W,
    queue: VecDeque<Bytes>,
    over: bool,
    /// What the client has been sent, kept when an idempotent replay may need it.
    transcript: Option<Vec<u8>>,
    /// The silence marker, never kept in a transcript.
    keep_alive: Bytes,
}

/// The SSE body: the door's opening, the events, then storage and the
/// terminator (or an error event).
fn sse_body<W: Wire>(
    answering: Answering,
    mut wire: W,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let mut opening = Vec::new();
    wire.start(&mut opening);
    let run = Run {
        transcript: answering.keeps_replay().then(Vec::new),
        answering: Some(answering),
        keep_alive: wire.keep_alive(),
        wire,
        queue: opening.into(),
        over: false,
    };
    stream::unfold(run, |mut run| async move {
        loop {
            if let Some(b) = run.queue.pop_front() {
                if let Some(t) = run.transcript.as_mut()
                    && b != run.keep_alive
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

impl<W: Wire> Run<W> {
    fn fail(&self, e: TurnError) -> Bytes {
        let e: ApiError = e.into_api(W::STREAM_PARAM, W::ANSWER_PARAM);
        tracing::warn!(code = e.code, "stream ended with an error");
        crate::metrics::failed(e.status.as_u16(), e.code);
        self.wire.error(&e)
    }

    /// Waits for the next step of the answer and queues what it produces.
    async fn step(&mut self) {
        let Some(answering) = self.answering.as_mut() else {
            self.over = true;
            return;
        };
        let mut out = Vec::new();
        match answering.next().await {
            Ok(Step::Event(e)) => {
                if matches!(e, Event::BlockDelta { .. }) {
                    crate::metrics::first_token();
                }
                self.wire.event(&e, &mut out)
            }
            Ok(Step::Silence) => self.wire.silence(&mut out),
            Ok(Step::Tool(note)) => out.push(tool_comment(&note)),
            Ok(Step::End) => return self.complete().await,
            Err(e) => {
                self.over = true;
                self.answering = None;
                out.push(self.fail(e));
            }
        }
        self.queue.extend(out);
    }

    /// The answer is complete: the last events, then the commit, then the terminator.
    async fn complete(&mut self) {
        self.over = true;
        let Some(answering) = self.answering.take() else {
            return;
        };
        let mut out = Vec::new();
        self.wire.end(&mut out);
        self.queue.extend(out);
        let done = match answering.done().await {
            Ok(done) => done,
            Err(e) => {
                let b = self.fail(e);
                return self.queue.push_back(b);
            }
        };
        let terminator = self.wire.done(&done);
        // The replay of an idempotent request: the whole event stream as sent.
        let replay = self.transcript.as_ref().map(|sent| {
            let mut body = sent.clone();
            for b in self.queue.iter().filter(|b| **b != self.keep_alive) {
                body.extend_from_slice(b);
            }
            body.extend_from_slice(&terminator);
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
            let b = self.fail(e);
            return self.queue.push_back(b);
        }
        tracing::info!(
            model = %model,
            prompt_tokens = usage.input,
            completion_tokens = usage.output,
            "stream completed"
        );
        self.queue.push_back(terminator);
    }
}
