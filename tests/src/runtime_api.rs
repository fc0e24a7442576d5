//! A local stand-in for the AWS Lambda Runtime API (test and benchmark
//! fixture, not part of the product): hands out queued events on
//! `/invocation/next` and reports what the function posts back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc;

/// Something the function did.
#[derive(Debug)]
pub enum RuntimeEvent {
    /// The function asked for its next invocation (it is initialised).
    Next(Instant),
    /// The function answered an invocation.
    Response {
        /// When.
        at: Instant,
        /// Invocation id.
        id: String,
        /// The response payload.
        body: Bytes,
    },
    /// The function reported an error (init or invocation).
    Error {
        /// Invocation id (`init` for an init error).
        id: String,
        /// The error payload.
        body: Bytes,
    },
}

#[derive(Clone)]
struct RtState {
    queue: Arc<Mutex<VecDeque<(String, String)>>>,
    tx: mpsc::UnboundedSender<RuntimeEvent>,
}

/// The fake Runtime API.
pub struct RuntimeApi {
    /// `127.0.0.1:PORT`, the value for `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    queue: Arc<Mutex<VecDeque<(String, String)>>>,
    /// What the function did, in order.
    pub events: mpsc::UnboundedReceiver<RuntimeEvent>,
}

impl RuntimeApi {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let state = RtState {
            queue: queue.clone(),
            tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            address,
            queue,
            events,
        }
    }

    /// Queues an invocation with this event payload.
    pub fn invoke(&self, id: &str, event: String) {
        self.queue.lock().unwrap().push_back((id.to_owned(), event));
    }

    /// Environment a Lambda function expects, pointing at this fake.
    pub fn lambda_env(&self, function: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/local"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

async fn next(State(s): State<RtState>) -> Response {
    let _ = s.tx.send(RuntimeEvent::Next(Instant::now()));
    let item = s.queue.lock().unwrap().pop_front();
    match item {
        Some((id, event)) => (
            [
                ("lambda-runtime-aws-request-id", id.as_str()),
                ("lambda-runtime-deadline-ms", "32503680000000"),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:local",
                ),
                ("content-type", "application/json"),
            ],
            event,
        )
            .into_response(),
        // No work: hold the long poll, as Lambda does between invocations.
        None => std::future::pending::<Response>().await,
    }
}

async fn response(State(s): State<RtState>, Path(id): Path<String>, body: Bytes) -> &'static str {
    let _ = s.tx.send(RuntimeEvent::Response {
        at: Instant::now(),
        id,
        body,
    });
    ""
}

async fn error(State(s): State<RtState>, Path(id): Path<String>, body: Bytes) -> &'static str {
    let _ = s.tx.send(RuntimeEvent::Error { id, body });
    ""
}

async fn init_error(State(s): State<RtState>, body: Bytes) -> &'static str {
    let _ = s.tx.send(RuntimeEvent::Error {
        id: "init".into(),
        body,
    });
    ""
}
