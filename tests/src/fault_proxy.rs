//! A fault-injecting proxy in front of the DynamoDB emulator: forwards every
//! call unchanged, except that chosen operations (by `X-Amz-Target`) answer
//! with throttling or server errors a chosen number of times. The real SDK,
//! with the gateway's retry configuration, talks to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};

/// What a failing operation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 `ThrottlingException` (retryable).
    Throttle,
    /// 500 `InternalServerError` (retryable).
    ServerError,
}

/// Answers of one operation held back after the emulator has carried it out.
#[derive(Clone, Default)]
pub struct Hold {
    /// Notified (one permit per call) once a held call has been carried out.
    pub reached: Arc<tokio::sync::Notify>,
    /// Lets the held answers go.
    pub release: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Rules {
    /// Operation -> (fault, failures left; `None`: forever).
    failing: HashMap<String, (Fault, Option<usize>)>,
    /// Operation -> hold on its answers.
    held: HashMap<String, Hold>,
    /// Operation -> calls seen.
    calls: HashMap<String, usize>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    rules: Arc<Mutex<Rules>>,
}

/// A running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, the endpoint to give the SDK.
    pub url: String,
    rules: Arc<Mutex<Rules>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (the emulator's endpoint).
    pub async fn start(upstream: &str) -> Self {
        let rules = Arc::new(Mutex::new(Rules::default()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            rules: rules.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, rules }
    }

    /// Makes `operation` (e.g. `TransactWriteItems`) fail `times` times (`None`: always).
    pub fn fail(&self, operation: &str, fault: Fault, times: Option<usize>) {
        self.rules
            .lock()
            .unwrap()
            .failing
            .insert(operation.to_owned(), (fault, times));
    }

    /// Holds the answers of `operation` after the emulator carried it out,
    /// until `release` is notified: the write is done, its caller not told.
    pub fn hold(&self, operation: &str) -> Hold {
        let hold = Hold::default();
        self.rules
            .lock()
            .unwrap()
            .held
            .insert(operation.to_owned(), hold.clone());
        hold
    }

    /// Stops injecting faults and holding answers.
    pub fn heal(&self) {
        let mut rules = self.rules.lock().unwrap();
        rules.failing.clear();
        rules.held.clear();
    }

    /// Calls of `operation` seen so far (failed ones included).
    pub fn calls(&self, operation: &str) -> usize {
        self.rules
            .lock()
            .unwrap()
            .calls
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_owned();
    let fault = {
        let mut rules = state.rules.lock().unwrap();
        *rules.calls.entry(op.clone()).or_default() += 1;
        match rules.failing.get_mut(&op) {
            Some((fault, None)) => Some(*fault),
            Some((fault, Some(n))) if *n > 0 => {
                *n -= 1;
                Some(*fault)
            }
            _ => None,
        }
    };
    if let Some(fault) = fault {
        let (status, kind, message) = match fault {
            Fault::Throttle => (
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            ),
            Fault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error",
            ),
        };
        let body = format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"{message}"}}"#
        );
        return (
            status,
            [("content-type", "application/x-amz-json-1.0")],
            body,
        )
            .into_response();
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = state
        .client
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    for (k, v) in &headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = Response::builder().status(status);
            for (k, v) in resp.headers() {
                if k != http::header::TRANSFER_ENCODING && k != http::header::CONTENT_LENGTH {
                    out = out.header(k, v);
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            let hold = state.rules.lock().unwrap().held.get(&op).cloned();
            if let Some(h) = hold {
                h.reached.notify_one();
                h.release.notified().await;
            }
            out.body(Body::from(bytes)).unwrap()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
