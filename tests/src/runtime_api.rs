//! A local stand-in for the AWS Lambda Runtime API (test and benchmark
//! fixture, not part of the product): hands out queued events on
//! `/invocation/next` and reports what the function posts back, buffered or
//! streamed, as Lambda's documented custom-runtime interface defines it:
//!
//! - `GET  /2018-06-01/runtime/invocation/next`: long poll; the event with the
//!   `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`
//!   and `-Trace-Id` headers;
//! - `POST /2018-06-01/runtime/invocation/{id}/response`: the result, either one
//!   JSON document (at most 6 MB, else `413` as Lambda answers) or, with
//!   `Lambda-Runtime-Function-Response-Mode: streaming`, a chunked body that for
//!   HTTP integrations is a JSON prelude, eight NUL bytes, then the body; a
//!   mid-stream failure arrives as `Lambda-Runtime-Function-Error-Type/-Body`
//!   trailers (lambda_runtime writes them as trailing text of the body);
//! - `POST /2018-06-01/runtime/invocation/{id}/error` and `/init/error`: a
//!   diagnostic `{"errorType","errorMessage"}` with the
//!   `Lambda-Runtime-Function-Error-Type` header;
//! - the Extensions API's `POST /2020-01-01/extension/register` (answered with a
//!   `Lambda-Extension-Identifier`) and `GET /2020-01-01/extension/event/next`
//!   (held open: no event is ever sent), reported on [`RuntimeApi::extensions`].
//!
//! Concurrency: classic Lambda has one invocation outstanding per environment;
//! Lambda Managed Instances accept concurrent `/next` and `/response` calls up
//! to `AWS_LAMBDA_MAX_CONCURRENCY` ([`RuntimeApi::start_concurrent`]). The
//! fixture hands out at most that many invocations at once (a further `/next`
//! waits until one is answered) and records the most it ever had in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Lambda's limit on a buffered (non-streamed) response payload.
pub const MAX_BUFFERED_RESPONSE: usize = 6 * 1024 * 1024;

const ERROR_TYPE: &str = "Lambda-Runtime-Function-Error-Type";
const ERROR_BODY: &str = "Lambda-Runtime-Function-Error-Body";

/// Something the function did.
#[derive(Debug)]
pub enum RuntimeEvent {
    /// The function asked for its next invocation (it is initialised).
    Next(Instant),
    /// The function answered an invocation.
    Response {
        /// When the answer was complete.
        at: Instant,
        /// Invocation id.
        id: String,
        /// Buffered: the response document; streamed: the body after the prelude.
        body: Bytes,
        /// Present when the response was streamed.
        stream: Option<Streamed>,
    },
    /// The function reported an error (init or invocation).
    Error {
        /// Invocation id (`init` for an init error).
        id: String,
        /// The error payload (`{"errorType","errorMessage"}`).
        body: Bytes,
        /// The `Lambda-Runtime-Function-Error-Type` header.
        error_type: Option<String>,
    },
}

/// What a streamed response carried besides its body.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// The HTTP integration prelude (`statusCode`, `headers`, `cookies`).
    pub prelude: serde_json::Value,
    /// Number of data frames received (at least one: the prelude).
    pub frames: usize,
    /// A mid-stream failure: (error type, decoded error body).
    pub error: Option<(String, String)>,
}

impl RuntimeEvent {
    /// The HTTP status the function answered, buffered or streamed.
    pub fn status(&self) -> Option<u64> {
        match self {
            Self::Response {
                stream: Some(s), ..
            } => s.prelude["statusCode"].as_u64(),
            Self::Response { body, .. } => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["statusCode"].as_u64()),
            _ => None,
        }
    }
}

/// Something an extension did through the Extensions API.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtensionCall {
    /// `POST /extension/register`: its `Lambda-Extension-Name` and JSON body;
    /// answered with the identifier `ext-<n>`.
    Register {
        name: String,
        body: serde_json::Value,
    },
    /// `GET /extension/event/next` with this `Lambda-Extension-Identifier`.
    Next { id: String },
}

/// Queued invocations: `(request id, event)`.
type Invocations = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, String)>>>;

/// Invocations handed out and not yet answered, and the most there ever were.
#[derive(Default)]
struct InFlight {
    /// Each outstanding invocation holds one of the environment's slots.
    slots: Mutex<HashMap<String, OwnedSemaphorePermit>>,
    max: AtomicUsize,
}

#[derive(Clone)]
struct RtState {
    queue: Invocations,
    tx: mpsc::UnboundedSender<RuntimeEvent>,
    /// `AWS_LAMBDA_MAX_CONCURRENCY` slots (one on classic Lambda).
    capacity: Arc<Semaphore>,
    in_flight: Arc<InFlight>,
    extensions: mpsc::UnboundedSender<ExtensionCall>,
    /// Extensions registered so far (the next identifier's number).
    registered: Arc<AtomicUsize>,
}

impl RtState {
    /// The invocation is answered (response or error): its slot is free.
    fn finish(&self, id: &str) {
        self.in_flight.slots.lock().unwrap().remove(id);
    }
}

/// The fake Runtime API.
pub struct RuntimeApi {
    /// `127.0.0.1:PORT`, the value for `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    queue: mpsc::UnboundedSender<(String, String)>,
    /// What the function did, in order.
    pub events: mpsc::UnboundedReceiver<RuntimeEvent>,
    /// What extensions did through the Extensions API, in order.
    pub extensions: mpsc::UnboundedReceiver<ExtensionCall>,
    max_concurrency: usize,
    in_flight: Arc<InFlight>,
}

impl RuntimeApi {
    /// Starts the fake on a free loopback port, as classic Lambda: one
    /// invocation at a time.
    pub async fn start() -> Self {
        Self::start_concurrent(1).await
    }

    /// Starts the fake as a Lambda Managed Instances environment: up to
    /// `max_concurrency` invocations outstanding at once.
    pub async fn start_concurrent(max_concurrency: usize) -> Self {
        let max_concurrency = max_concurrency.max(1);
        let (tx, events) = mpsc::unbounded_channel();
        let (queue, invocations) = mpsc::unbounded_channel();
        let in_flight = Arc::new(InFlight::default());
        let (ext_tx, extensions) = mpsc::unbounded_channel();
        let state = RtState {
            queue: Arc::new(tokio::sync::Mutex::new(invocations)),
            tx,
            capacity: Arc::new(Semaphore::new(max_concurrency)),
            in_flight: in_flight.clone(),
            extensions: ext_tx,
            registered: Arc::default(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2020-01-01/extension/register", post(extension_register))
            .route("/2020-01-01/extension/event/next", get(extension_next))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            address,
            queue,
            events,
            extensions,
            max_concurrency,
            in_flight,
        }
    }

    /// The most invocations the function ever had outstanding at once.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.max.load(Ordering::SeqCst)
    }

    /// Queues an invocation with this event payload; a pending `/next` gets it at once.
    pub fn invoke(&self, id: &str, event: String) {
        self.queue
            .send((id.to_owned(), event))
            .expect("runtime API stopped");
    }

    /// The next thing the function did other than polling for work.
    pub async fn outcome(&mut self) -> RuntimeEvent {
        loop {
            match self.events.recv().await.expect("runtime API stopped") {
                RuntimeEvent::Next(_) => continue,
                other => return other,
            }
        }
    }

    /// Environment a Lambda function expects, pointing at this fake (with
    /// `AWS_LAMBDA_MAX_CONCURRENCY` when it serves several at once, as Lambda
    /// Managed Instances set it).
    pub fn lambda_env(&self, function: &str) -> Vec<(String, String)> {
        let concurrency = self.max_concurrency.to_string();
        let mut env: Vec<(String, String)> = [
            ("AWS_LAMBDA_RUNTIME_API", self.address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/local"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if self.max_concurrency > 1 {
            env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), concurrency));
        }
        env
    }
}

async fn extension_register(State(s): State<RtState>, headers: HeaderMap, body: Bytes) -> Response {
    let name = headers
        .get("lambda-extension-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let _ = s.extensions.send(ExtensionCall::Register { name, body });
    let id = format!("ext-{}", s.registered.fetch_add(1, Ordering::SeqCst));
    ([("lambda-extension-identifier", id)], "{}").into_response()
}

async fn extension_next(State(s): State<RtState>, headers: HeaderMap) -> Response {
    let id = headers
        .get("lambda-extension-identifier")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let _ = s.extensions.send(ExtensionCall::Next { id });
    // No event is ever due: held until the process goes.
    std::future::pending::<Response>().await
}

async fn next(State(s): State<RtState>) -> Response {
    let _ = s.tx.send(RuntimeEvent::Next(Instant::now()));
    // A slot first: an environment never holds more invocations than its
    // concurrency allows.
    let Ok(slot) = s.capacity.clone().acquire_owned().await else {
        return StatusCode::GONE.into_response();
    };
    // The long poll: held until an invocation is queued, as Lambda holds it.
    let item = s.queue.lock().await.recv().await;
    match item {
        Some((id, event)) => {
            let outstanding = {
                let mut slots = s.in_flight.slots.lock().unwrap();
                slots.insert(id.clone(), slot);
                slots.len()
            };
            s.in_flight.max.fetch_max(outstanding, Ordering::SeqCst);
            invocation(&id, event)
        }
        // The fixture is shutting down.
        None => StatusCode::GONE.into_response(),
    }
}

/// An invocation as `/next` hands it out.
fn invocation(id: &str, event: String) -> Response {
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", "32503680000000"),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:local",
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-67a0c7f2-1f2e3d4c5b6a798877665544;Parent=53995c3f42cd8ad8;Sampled=0",
            ),
            ("content-type", "application/json"),
        ],
        event,
    )
        .into_response()
}

async fn response(
    State(s): State<RtState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = read_response(&s, id.clone(), headers, body).await;
    s.finish(&id);
    answer
}

async fn read_response(s: &RtState, id: String, headers: HeaderMap, body: Body) -> Response {
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"));
    let mut body = body;
    let mut data = Vec::new();
    let mut frames = 0;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return (StatusCode::BAD_REQUEST, "response body broke off").into_response();
        };
        match frame.into_data() {
            Ok(d) => {
                frames += 1;
                data.extend_from_slice(&d);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    if !streaming {
        if data.len() > MAX_BUFFERED_RESPONSE {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes)."}"#,
            )
                .into_response();
        }
        let _ = s.tx.send(RuntimeEvent::Response {
            at: Instant::now(),
            id,
            body: data.into(),
            stream: None,
        });
        return StatusCode::ACCEPTED.into_response();
    }
    let Some(split) = data.windows(8).position(|w| w == [0u8; 8]) else {
        return (
            StatusCode::BAD_REQUEST,
            "streamed HTTP response without the 8-NUL prelude delimiter",
        )
            .into_response();
    };
    let Ok(prelude) = serde_json::from_slice(&data[..split]) else {
        return (StatusCode::BAD_REQUEST, "streamed prelude is not JSON").into_response();
    };
    let mut rest = data[split + 8..].to_vec();
    let mut error = trailers.as_ref().and_then(|t| {
        let kind = t.get(ERROR_TYPE)?.to_str().ok()?.to_owned();
        let body = t
            .get(ERROR_BODY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Some((kind, decode_b64(body)))
    });
    // lambda_runtime reports a stream failure as trailer lines in the body itself.
    let marker = format!("{ERROR_TYPE}: ");
    if error.is_none()
        && let Some(at) = find(&rest, marker.as_bytes())
    {
        let text = String::from_utf8_lossy(&rest[at..]).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        error = Some((field(ERROR_TYPE), decode_b64(&field(ERROR_BODY))));
        rest.truncate(at);
    }
    let _ = s.tx.send(RuntimeEvent::Response {
        at: Instant::now(),
        id,
        body: rest.into(),
        stream: Some(Streamed {
            prelude,
            frames,
            error,
        }),
    });
    StatusCode::ACCEPTED.into_response()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn decode_b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|_| text.to_owned())
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn error(
    State(s): State<RtState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    s.finish(&id);
    let _ = s.tx.send(RuntimeEvent::Error {
        id,
        body,
        error_type: error_type(&headers),
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<RtState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _ = s.tx.send(RuntimeEvent::Error {
        id: "init".into(),
        body,
        error_type: error_type(&headers),
    });
    StatusCode::ACCEPTED
}
