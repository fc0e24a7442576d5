//! Shared fixtures for the integration tests and benchmarks: the DynamoDB/Secrets Manager
//! emulator endpoint, mock upstream providers on loopback, and a gateway
//! built from the real handlers.

pub mod announced;
pub mod bedrock;
pub mod cache_sim;
pub mod child;
pub mod crm;
pub mod fault_proxy;
pub mod fault_upstream;
pub mod jwt;
pub mod mcp_server;
pub mod otlp;
pub mod runtime_api;
pub mod streamed_answer;
pub mod template;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ctxgate::auth;
use ctxgate::config::Config;
use ctxgate::secrets::{EnvKeys, KeySource};
use ctxgate::store::Store;
use ctxgate::store::dynamo::DynamoStore;
use ctxgate::store::embedded::EmbeddedStore;
use ctxgate::{AppState, now_secs};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The emulator endpoint the test command started (`CTXGATE_TEST_AWS_ENDPOINT`).
pub fn aws_endpoint() -> String {
    std::env::var("CTXGATE_TEST_AWS_ENDPOINT").expect(
        "CTXGATE_TEST_AWS_ENDPOINT is not set: run the suite with scripts/test.sh, which starts the DynamoDB/Secrets Manager emulator",
    )
}

/// Emulator credentials and region, applied to the SDK config.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(ctxgate::aws::sdk_http_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call (tables, secrets, tenants).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh DynamoDB table on the emulator, created with the production schema.
pub async fn dynamo_store() -> Arc<dyn Store> {
    dynamo_table().await.0
}

/// A fresh DynamoDB table on the emulator, with an SDK client and the
/// table's name for tests that read or write raw items.
pub async fn dynamo_table() -> (Arc<dyn Store>, aws_sdk_dynamodb::Client, String) {
    let table = unique("ctxgate");
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let store = DynamoStore::new(client.clone(), table.clone());
    store
        .create_table()
        .await
        .expect("create table on the emulator");
    (Arc::new(store), client, table)
}

/// A fresh embedded store in a temporary directory (kept alive by the returned guard).
pub fn embedded_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    (Arc::new(store), dir)
}

/// One request a mock upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Parsed JSON body.
    pub body: Value,
}

/// What a mock upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: String,
    /// Delay before answering.
    pub delay: Duration,
    /// When set, the answer waits until this is notified (orders concurrent
    /// requests without guessing at timings).
    pub gate: Option<Arc<tokio::sync::Notify>>,
}

impl Reply {
    /// A 200 JSON reply.
    pub fn json(v: Value) -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: v.to_string(),
            delay: Duration::ZERO,
            gate: None,
        }
    }

    /// A 200 event-stream reply.
    pub fn sse(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: body.into(),
            delay: Duration::ZERO,
            gate: None,
        }
    }

    /// An error reply.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.into(),
            delay: Duration::ZERO,
            gate: None,
        }
    }
}

type Responder = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

#[derive(Clone)]
struct MockState {
    responder: Arc<Mutex<Responder>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A mock provider on loopback, speaking whatever its responder answers.
pub struct MockUpstream {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: MockState,
}

impl MockUpstream {
    /// Starts a mock with a responder.
    pub async fn start(responder: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        let state = MockState {
            responder: Arc::new(Mutex::new(Arc::new(responder))),
            received: Arc::default(),
        };
        let app = Router::new()
            .fallback(mock_handler)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// A mock OpenAI: answers with a summary of the user messages it received.
    pub async fn openai() -> Self {
        Self::start(|r| Reply::json(openai_completion(&reported_users(&r.body), 11, 7))).await
    }

    /// A mock Anthropic Messages API answering with the user texts it received.
    pub async fn anthropic() -> Self {
        Self::start(|r| {
            let users: Vec<String> = r.body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["role"] == "user")
                .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
                .filter_map(|b| b["text"].as_str().map(str::to_owned))
                .collect();
            Reply::json(serde_json::json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": r.body["model"],
                "content": [{"type": "text", "text": format!("saw: {}", users.join(" | "))}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 13, "output_tokens": 5}
            }))
        })
        .await
    }

    /// Replaces the responder.
    pub fn respond(&self, responder: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        *self.state.responder.lock().unwrap() = Arc::new(responder);
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

/// The text of every user message in an OpenAI request, joined by ` | `.
pub fn reported_users(body: &Value) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or("").to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// An OpenAI `chat.completion` body with `text`.
pub fn openai_completion(text: &str, prompt: u64, completion: u64) -> Value {
    serde_json::json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("saw: {text}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
}

async fn mock_handler(State(state): State<MockState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let received = Received {
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let responder = state.responder.lock().unwrap().clone();
    let reply = responder(&received);
    state.received.lock().unwrap().push(received);
    if let Some(gate) = &reply.gate {
        gate.notified().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

/// A gateway built from the real handlers on a given store.
pub struct Gateway {
    /// Shared state.
    pub state: Arc<AppState>,
    /// Every route.
    pub router: Router,
}

impl Gateway {
    /// Builds a gateway; `vars` are configuration variables (as in the environment).
    pub fn new(store: Arc<dyn Store>, vars: &[(&str, &str)]) -> Self {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_lookup(|k| map.get(k).cloned()).expect("valid test config");
        let keys: Arc<dyn KeySource> =
            Arc::new(EnvKeys::from_config(&config, |k| map.get(k).cloned()));
        Self::with_keys(store, config, keys)
    }

    /// Builds a gateway from TOML config text (what a `CTXGATE_CONFIG` file
    /// would hold) and variables, with no file written.
    pub fn with_toml(store: Arc<dyn Store>, toml: &str, vars: &[(&str, &str)]) -> Self {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_toml(toml, |k| map.get(k).cloned()).expect("valid test config");
        let keys: Arc<dyn KeySource> =
            Arc::new(EnvKeys::from_config(&config, |k| map.get(k).cloned()));
        Self::with_keys(store, config, keys)
    }

    /// Builds a gateway with an explicit key source.
    pub fn with_keys(store: Arc<dyn Store>, config: Config, keys: Arc<dyn KeySource>) -> Self {
        let client = ctxgate::state::http_client(&config).unwrap();
        let state = AppState::from_parts(config, store, keys, client).expect("valid state");
        Self {
            router: ctxgate::http::app(state.clone()),
            state,
        }
    }

    /// Writes the usage and budget settlements the call left in memory, as
    /// the batcher would shortly after it (its failure, a faulty store's,
    /// keeps them for later), so tests read settled counters.
    pub async fn settle_usage(&self) {
        let _ = self.state.usage.flush().await;
    }

    /// Mints a key for `tenant` and returns its secret.
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let k = auth::mint_key(tenant, "test", &scopes, None, now_secs()).unwrap();
        self.state.store.put_key(&k.record).await.unwrap();
        k.secret
    }

    /// Sends a request through the router; returns status, headers and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        self.call_raw(
            method,
            path,
            key,
            &[],
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        )
        .await
    }

    /// Sends a JSON body with extra headers; returns status, headers and the body as text
    /// (for event streams).
    pub async fn call_text(
        &self,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, HeaderMap, String) {
        let mut req = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        self.settle_usage().await;
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// Sends raw bytes with extra headers; the body as JSON (`Null` when it is not).
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, HeaderMap, Value) {
        let (status, headers, text) = self.call_raw_text(method, path, key, headers, body).await;
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// Sends raw bytes with extra headers; the body as text (a stream's too).
    pub async fn call_raw_text(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(path);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        self.settle_usage().await;
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// A chat turn with a user message on an optional conversation.
    pub async fn chat(
        &self,
        key: &str,
        model: &str,
        conversation: Option<&str>,
        text: &str,
    ) -> (u16, HeaderMap, Value) {
        let mut body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]});
        if let Some(c) = conversation {
            body["conversation_id"] = c.into();
        }
        self.call("POST", "/v1/chat/completions", Some(key), Some(body))
            .await
    }
}

/// Waits until `check` holds, yielding between tries so background tasks
/// run; fails the test naming `what` if it never does (30 s: a hang, not a
/// timing assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !check().await {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never happened: {what}");
}

/// Everything the process logs, kept in memory (a `tracing` writer) so a
/// test can check what reached the logs.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// The captured log lines.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A gateway on a fresh DynamoDB table reached through a [`fault_proxy::FaultProxy`]
/// in front of the emulator, so that a test can count (or fail) the store
/// calls a request makes; `toml` and `vars` configure it as [`Gateway::with_toml`]'s do.
pub async fn proxied_gateway(
    toml: &str,
    vars: &[(&str, &str)],
) -> (Gateway, fault_proxy::FaultProxy) {
    let proxy = fault_proxy::FaultProxy::start(&aws_endpoint()).await;
    let table = unique("ctxgate");
    let direct = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws_config().await),
        table.clone(),
    );
    direct.create_table().await.unwrap();
    let mut all: Vec<(String, String)> = vec![
        ("CTXGATE_STORE".into(), "dynamodb".into()),
        ("CTXGATE_TABLE".into(), table.clone()),
        ("AWS_ENDPOINT_URL".into(), proxy.url.clone()),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lookup = |k: &str| {
        all.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let config = Config::from_toml(toml, lookup).unwrap();
    let sdk = ctxgate::aws::sdk_config(&config).await;
    let proxied: Arc<dyn Store> =
        Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));
    let keys: Arc<dyn KeySource> = Arc::new(EnvKeys::from_config(&config, lookup));
    (Gateway::with_keys(proxied, config, keys), proxy)
}

/// The OpenAI stream of a card number and an email split across chunks, as
/// a redaction test's upstream sends it.
pub fn openai_pii_stream() -> String {
    let mut s = String::new();
    for p in [
        "Card: 4111 11",
        "11 1111 1111, mail bob.sm",
        "ith@exa",
        "mple.com. Done.",
    ] {
        let c = serde_json::json!({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]});
        s.push_str(&format!("data: {c}\n\n"));
    }
    s + "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
}

/// A gateway whose alias `smart` falls back from an overloaded Anthropic
/// upstream to an OpenAI one that answers `from openai` (or, streamed,
/// [`openai_pii_stream`]); returns the gateway and both mocks (OpenAI, Anthropic).
pub async fn fallback_gateway(store: Arc<dyn Store>) -> (Gateway, MockUpstream, MockUpstream) {
    let openai = MockUpstream::start(|r| {
        if r.body["stream"] == true {
            Reply::sse(openai_pii_stream())
        } else {
            Reply::json(openai_completion("from openai", 10, 2))
        }
    })
    .await;
    let anthropic = MockUpstream::start(|_| {
        Reply::status(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
    })
    .await;
    let base = format!("{}/v1", openai.url);
    let gw = Gateway::with_toml(
        store,
        "[retry]\nbase_delay_ms = 1\nmax_delay_ms = 2\n[aliases]\nsmart = [\"anthropic/claude-sonnet-4-5\", \"openai/gpt-4o-mini\"]\n",
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-openai-PROVIDER"),
            ("ANTHROPIC_BASE_URL", anthropic.url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-PROVIDER"),
        ],
    );
    (gw, openai, anthropic)
}
