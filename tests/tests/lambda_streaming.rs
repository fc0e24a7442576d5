//! The chat function runs with Lambda response streaming: real API Gateway
//! REST events through lambda_http's streaming adapter into the chat
//! service. A streamed request comes back as SSE chunks; a plain one still
//! gets its whole JSON body, with the status and headers in the prelude.

use bytes::Bytes;
use ctxgate_tests::Gateway;
use futures_util::StreamExt;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

fn event(key: &str, body: Value) -> LambdaRequest {
    let path = format!("{}/fixtures/apigw_rest_v1.json", env!("CARGO_MANIFEST_DIR"));
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let auth = format!("Bearer {key}");
    event["headers"]["Authorization"] = json!(auth);
    if event.get("multiValueHeaders").is_some() {
        event["multiValueHeaders"]["Authorization"] = json!([auth]);
    }
    event["body"] = json!(body.to_string());
    serde_json::from_value(event).unwrap()
}

/// Invokes the chat function's streaming service; returns status, content
/// type and the body pieces in the order they were produced.
async fn invoke(gw: &Gateway, request: LambdaRequest) -> (u16, String, Vec<Bytes>) {
    let service = ctxgate::http::lambda_service(ctxgate::http::chat_routes(gw.state.clone()));
    let mut adapter = lambda_http::StreamAdapter::from(service);
    let resp = adapter
        .ready()
        .await
        .unwrap()
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    let prelude = resp.metadata_prelude;
    let content_type = prelude.headers["content-type"].to_str().unwrap().to_owned();
    let pieces = resp.stream.map(|p| p.unwrap()).collect().await;
    (prelude.status_code.as_u16(), content_type, pieces)
}

fn gateway() -> (Gateway, tempfile::TempDir) {
    let (store, dir) = ctxgate_tests::embedded_store();
    (Gateway::new(store, &[]), dir)
}

#[tokio::test]
async fn streamed_request_comes_back_as_sse_pieces() {
    let (gw, _dir) = gateway();
    let key = gw.key("acme", &[]).await;
    let text = "streamed through the Lambda adapter, word by word, long enough to flow";
    let body = json!({"model": "echo", "stream": true, "conversation_id": "lambda-s",
        "messages": [{"role": "user", "content": text}]});
    let (status, content_type, pieces) = invoke(&gw, event(&key, body)).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    // One SSE event per piece: the body is not buffered into one blob.
    assert!(pieces.len() >= 4, "{pieces:?}");
    assert!(pieces.iter().all(|p| p.ends_with(b"\n\n")));
    assert_eq!(pieces.last().unwrap().as_ref(), b"data: [DONE]\n\n");
    let all: String = pieces.iter().map(|p| String::from_utf8_lossy(p)).collect();
    let streamed: String = all
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, text);
}

#[tokio::test]
async fn plain_request_still_gets_its_whole_json_body() {
    let (gw, _dir) = gateway();
    let key = gw.key("acme", &[]).await;
    let body = json!({"model": "echo", "messages": [{"role": "user", "content": "buffered"}]});
    let (status, content_type, pieces) = invoke(&gw, event(&key, body)).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let bytes: Vec<u8> = pieces.concat();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "buffered");

    // Errors keep their status in the prelude.
    let (status, _, pieces) = invoke(&gw, event("cgk_wrong", json!({"model": "echo"}))).await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_slice(&pieces.concat()).unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn the_messages_door_streams_through_the_adapter_too() {
    let (gw, _dir) = gateway();
    let key = gw.key("acme", &[]).await;
    let text = "Anthropic events through the Lambda adapter, word by word";
    let body = json!({"model": "echo", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": text}]});
    let mut request = event(&key, body);
    if let LambdaRequest::ApiGatewayV1(r) = &mut request {
        r.path = Some("/v1/messages".into());
        r.resource = Some("/v1/messages".into());
    }
    let (status, content_type, pieces) = invoke(&gw, request).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    assert!(pieces.len() >= 5, "{pieces:?}");
    let all: String = pieces.iter().map(|p| String::from_utf8_lossy(p)).collect();
    assert!(all.starts_with("event: message_start\n"), "{all}");
    assert!(all.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    let streamed: String = all
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streamed, text);
}

#[tokio::test]
async fn the_responses_door_streams_through_the_adapter_too() {
    let (gw, _dir) = gateway();
    let key = gw.key("acme", &[]).await;
    let text = "Responses events through the Lambda adapter, word by word";
    let body = json!({"model": "echo", "stream": true, "input": text});
    let mut request = event(&key, body);
    if let LambdaRequest::ApiGatewayV1(r) = &mut request {
        r.path = Some("/v1/responses".into());
        r.resource = Some("/v1/responses".into());
    }
    let (status, content_type, pieces) = invoke(&gw, request).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    assert!(pieces.len() >= 5, "{pieces:?}");
    let all: String = pieces.iter().map(|p| String::from_utf8_lossy(p)).collect();
    assert!(all.starts_with("event: response.created\n"), "{all}");
    let last = all.trim_end().rsplit("\n\n").next().unwrap_or_default();
    assert!(last.starts_with("event: response.completed\n"), "{all}");
    assert!(!all.contains("[DONE]"), "{all}");
    let streamed: String = all
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "response.output_text.delta")
        .filter_map(|v| v["delta"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streamed, text);
}
