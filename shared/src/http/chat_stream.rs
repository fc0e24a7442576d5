//! `POST /v1/chat/completions` with `stream: true`: the turn's events go out
//! as OpenAI `chat.completion.chunk` events as they arrive. `[DONE]` goes
//! out only once the turn is stored; a failure ends the stream with an
//! OpenAI-style error event and stores nothing, and a client that goes away
//! drops the turn (and the upstream request) with it.

use std::collections::VecDeque;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, stream};
use http::{HeaderValue, StatusCode, header};

use super::chat::{CONVERSATION_HEADER, MODEL_HEADER, REDACTIONS_HEADER};
use crate::store::StoredResponse;
use crate::turn::{Answering, Step, TurnError};
use crate::wire::openai_chat::chunk::{ChunkEncoder, ChunkMeta, DONE, KEEP_ALIVE, error_event};
use crate::{ApiError, ids};

/// The field a blocked streamed answer is reported on.
pub const BLOCKED_PARAM: &str = "choices[0].delta.content";
/// The field a blocked stored answer is reported on.
const STORED_PARAM: &str = "choices[0].message";

/// The SSE response of an answer under way.
pub fn respond(answering: Answering, include_usage: bool) -> Response {
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

fn fail_event(e: TurnError) -> Bytes {
    let e: ApiError = e.into_api(BLOCKED_PARAM, STORED_PARAM);
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
