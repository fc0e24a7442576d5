//! Benchmark fixture, not shipped: a mock upstream written for speed, so that what the
//! benchmarks measure through the gateway is the gateway (`scripts/bench.sh`, issues 19
//! and 20). Every answer is built once at start-up and sent as it is:
//!
//! - `POST /model/{modelId}/converse-stream`: Bedrock's ConverseStream, an
//!   `application/vnd.amazon.eventstream` answer (`messageStart`, the text deltas as
//!   `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata` with the usage), framed
//!   by `aws-smithy-eventstream` (`ctxgate_tests::streamed_answer`);
//! - `POST /model/{modelId}/converse`: Bedrock's Converse, a short text and its usage;
//! - any other request whose body asks for `"stream":true`: an OpenAI chat completion stream
//!   (SSE) of the same text deltas;
//! - any other request: the same non-streamed `chat.completion` body.
//!
//! A streamed answer has `BENCH_UPSTREAM_EVENTS` text deltas (default 20) of
//! `BENCH_UPSTREAM_EVENT_BYTES` bytes each (default 80), each its own body frame, then its end
//! (one frame), in both wires, as fast as the connection takes them. It checks no signature: the Bedrock paths take any SigV4 or
//! bearer request (the signing is tested against `tests/python/mock_bedrock.py`, which verifies
//! it).
//!
//! `bench-upstream [ADDR]` listens on ADDR (default `127.0.0.1:0`),
//! prints `listening on <addr>` on stdout once it accepts, and logs nothing
//! else. Multi-threaded (one tokio worker per core, or `BENCH_UPSTREAM_THREADS`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ctxgate_tests::{announced, streamed_answer};

/// The one non-streamed chat answer: a short completion with its usage, as OpenAI sends it.
const BODY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}"#;

/// Every answer, built once.
struct Answers {
    chat_stream: Arc<[Bytes]>,
    converse: Bytes,
    converse_stream: Arc<[Bytes]>,
}

/// A streamed answer, one body frame (so one write) per item.
fn stream(content_type: &'static str, writes: &Arc<[Bytes]>) -> Response {
    let writes = writes.clone();
    let frames =
        (0..writes.len()).map(move |i| Ok::<_, std::convert::Infallible>(writes[i].clone()));
    (
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(futures_util::stream::iter(frames)),
    )
        .into_response()
}

fn json(body: Bytes) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

async fn answer(
    State(answers): State<Arc<Answers>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::POST && path.starts_with("/model/") {
        if path.ends_with("/converse-stream") {
            return stream(streamed_answer::EVENT_STREAM, &answers.converse_stream);
        }
        if path.ends_with("/converse") {
            return json(answers.converse.clone());
        }
    }
    // The OpenAI provider asks for a stream in its (compact) body only.
    const STREAM: &[u8] = b"\"stream\":true";
    if body.windows(STREAM.len()).any(|w| w == STREAM) {
        return stream("text/event-stream", &answers.chat_stream);
    }
    // A static body: no allocation, no serialisation per request.
    json(Bytes::from_static(BODY.as_bytes()))
}

/// A `usize` from the environment variable `name`, else `default`.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?}: not a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let (events, bytes) = (
        knob("BENCH_UPSTREAM_EVENTS", 20),
        knob("BENCH_UPSTREAM_EVENT_BYTES", 80),
    );
    let answers = Arc::new(Answers {
        chat_stream: streamed_answer::openai_stream(events, bytes).into(),
        converse: streamed_answer::bedrock_converse(),
        converse_stream: streamed_answer::bedrock_stream(events, bytes).into(),
    });
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("BENCH_UPSTREAM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        runtime.worker_threads(n);
    }
    runtime
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(announced::serve(
            &addr,
            axum::Router::new().fallback(answer).with_state(answers),
        ));
}
