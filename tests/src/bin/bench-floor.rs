//! Benchmark fixture, not shipped: the floor under the gateway's added latency. A
//! pass-through proxy on the gateway's own HTTP stack (an axum server with `TCP_NODELAY`,
//! one shared reqwest client, tokio's multi-threaded runtime; the system allocator) that
//! does nothing else: each `POST` body goes to `{UPSTREAM}{path}` with a fixed bearer and
//! the upstream's status and bytes come back. No authentication, no parsing, no store.
//!
//! What the side-by-side table adds through this proxy is what any gateway built on
//! these crates pays on this machine for the second loopback hop and the two HTTP
//! codecs; what ctxgate adds beyond it is ctxgate's own work (`scripts/bench.sh`,
//! issue 19).
//!
//! `bench-floor UPSTREAM` (a base URL such as `http://127.0.0.1:4000`) listens
//! on 127.0.0.1, prints `listening on <addr>` on stdout once it accepts, and logs nothing
//! else.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The shared client and the upstream's base URL.
#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    base: String,
}

/// Sends the request's body on to the upstream, and its answer back.
async fn forward(State(up): State<Upstream>, uri: Uri, body: Bytes) -> Response {
    let sent = up
        .client
        .post(format!("{}{}", up.base, uri.path()))
        .header(header::CONTENT_TYPE, "application/json")
        .bearer_auth("sk-floor")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match answer.bytes().await {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let base = std::env::args()
        .nth(1)
        .expect("usage: bench-floor UPSTREAM_BASE_URL");
    let up = Upstream {
        client: reqwest::Client::new(),
        base: base.trim_end_matches('/').to_owned(),
    };
    let app = axum::Router::new().fallback(forward).with_state(up);
    ctxgate_tests::announced::serve("127.0.0.1:0", app).await;
}
