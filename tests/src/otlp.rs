//! An OTLP collector fake on loopback: takes `POST /v1/traces`
//! (HTTP/protobuf), decodes each export with `opentelemetry-proto`'s types
//! and keeps the spans, flattened for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use tokio::sync::Notify;

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub struct Span {
    /// Span name.
    pub name: String,
    /// OTLP kind: 1 internal, 2 server, 3 client.
    pub kind: i32,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex (empty for a root).
    pub parent: String,
    /// Attributes, each value as text (an array as its items joined by `,`).
    pub attrs: BTreeMap<String, String>,
    /// Status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// The exporting resource's `service.name`.
    pub service: String,
}

impl Span {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

/// OTLP span kinds.
pub const SERVER: i32 = 2;
/// OTLP span kinds.
pub const CLIENT: i32 = 3;

#[derive(Default)]
struct Inner {
    spans: Mutex<Vec<Span>>,
    /// Every request's raw body (to search for strings that must not be there).
    raw: Mutex<Vec<Vec<u8>>>,
    /// Paths and content types received.
    requests: Mutex<Vec<(String, String)>>,
    arrived: Notify,
}

/// The collector; its URL goes in `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Clone)]
pub struct Collector {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    inner: Arc<Inner>,
}

impl Collector {
    /// Starts the collector on a loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.inner.spans.lock().unwrap().clone()
    }

    /// Every export request's raw body.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.inner.raw.lock().unwrap().clone()
    }

    /// The content types the exports came with.
    pub fn content_types(&self) -> Vec<String> {
        let r = self.inner.requests.lock().unwrap();
        r.iter().map(|(_, ct)| ct.clone()).collect()
    }

    /// Waits until `done` holds for the spans received (each export wakes
    /// it); `None` if it still does not after `limit`.
    pub async fn until(
        &self,
        limit: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Option<Vec<Span>> {
        let wait = async {
            loop {
                let arrived = self.inner.arrived.notified();
                let spans = self.spans();
                if done(&spans) {
                    return spans;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(limit, wait).await.ok()
    }
}

async fn export(
    State(inner): State<Arc<Inner>>,
    headers: http::HeaderMap,
    body: Bytes,
) -> (http::StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    inner
        .requests
        .lock()
        .unwrap()
        .push(("/v1/traces".into(), ct));
    inner.raw.lock().unwrap().push(body.to_vec());
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (
            http::StatusCode::BAD_REQUEST,
            [("content-type", "application/x-protobuf")],
            Vec::new(),
        );
    };
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    name: s.name,
                    kind: s.kind,
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    attrs: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    status: s.status.map_or(0, |st| st.code),
                    service: service.clone(),
                });
            }
        }
    }
    inner.spans.lock().unwrap().extend(out);
    inner.arrived.notify_waiters();
    (
        http::StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn text(v: Option<&Any>) -> String {
    match v {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| text(v.value.as_ref()))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
