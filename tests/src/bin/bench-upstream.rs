//! Benchmark fixture, not shipped: a mock OpenAI upstream written for speed.
//! Every request, whatever its path, is answered at once with the same
//! non-streamed `chat.completion` body, so that what the benchmark measures
//! through the gateway is the gateway (`scripts/bench.sh`, issue 19).
//!
//! `ctxgate-bench-upstream [ADDR]` listens on ADDR (default `127.0.0.1:0`),
//! prints `listening on <addr>` on stdout once it accepts, and logs nothing
//! else. Multi-threaded (one tokio worker per core, or `BENCH_UPSTREAM_THREADS`).

use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::io::Write;

/// The one answer: a short completion with its usage, as OpenAI sends it.
const BODY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}"#;

async fn answer() -> Response {
    // A static body: no allocation, no serialisation per request.
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        Bytes::from_static(BODY.as_bytes()),
    )
        .into_response()
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
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
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            let local = listener.local_addr().expect("local address");
            // As providers do: no Nagle delay on small writes.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let app = axum::Router::new().fallback(answer);
            let mut out = std::io::stdout();
            writeln!(out, "listening on {local}").expect("stdout");
            out.flush().expect("stdout");
            axum::serve(listener, app).await.expect("serve");
        });
}
