//! Real API Gateway event payloads (REST v1 and HTTP API v2) through
//! lambda_http's adapter into the chat function's service, and the Lambda
//! response back out as JSON.

use base64::Engine;
use ctxgate_tests::Gateway;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn set_header(event: &mut Value, name: &str, value: &str) {
    event["headers"][name] = json!(value);
    if event.get("multiValueHeaders").is_some() {
        event["multiValueHeaders"][name] = json!([value]);
    }
}

async fn invoke(gw: &Gateway, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).expect("a valid API Gateway event");
    let service = ctxgate::http::lambda_service(ctxgate::http::chat_routes(gw.state.clone()));
    let mut adapter = lambda_http::Adapter::from(service);
    let response = adapter
        .ready()
        .await
        .unwrap()
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

fn body_json(resp: &Value) -> Value {
    let raw = resp["body"].as_str().unwrap_or("");
    let text = if resp["isBase64Encoded"] == true {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    } else {
        raw.to_owned()
    };
    serde_json::from_str(&text).unwrap()
}

fn chat_body(text: &str) -> String {
    json!({"model": "echo", "conversation_id": "lambda-1", "messages": [{"role": "user", "content": text}]}).to_string()
}

fn gateway() -> (Gateway, tempfile::TempDir) {
    let (store, dir) = ctxgate_tests::embedded_store();
    (Gateway::new(store, &[]), dir)
}

#[tokio::test]
async fn rest_v1_event_with_stage_reaches_the_chat_handler() {
    let (gw, _dir) = gateway();
    let key = gw.key("acme", &[]).await;
    let mut event = fixture("apigw_rest_v1.json");
    set_header(&mut event, "Authorization", &format!("Bearer {key}"));
    event["body"] = json!(chat_body("via REST"));
    let resp = invoke(&gw, event).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let body = body_json(&resp);
    assert_eq!(body["choices"][0]["message"]["content"], "via REST");
    assert_eq!(body["conversation_id"], "lambda-1");
    // REST responses carry multi-value headers; the request id is Lambda's.
    let headers = resp["multiValueHeaders"].as_object().unwrap();
    assert_eq!(headers["x-conversation-id"], json!(["lambda-1"]));
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn rest_v1_base64_body_and_errors() {
    let (gw, _dir) = gateway();
    let key = gw.key("acme", &[]).await;
    let mut event = fixture("apigw_rest_v1.json");
    set_header(&mut event, "Authorization", &format!("Bearer {key}"));
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(chat_body("encoded")));
    event["isBase64Encoded"] = json!(true);
    let resp = invoke(&gw, event.clone()).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(
        body_json(&resp)["choices"][0]["message"]["content"],
        "encoded"
    );

    event["isBase64Encoded"] = json!(false);
    event["body"] = json!(r#"{"model":"echo","messages":[{"role":"robot","content":"x"}]}"#);
    let resp = invoke(&gw, event.clone()).await;
    assert_eq!(resp["statusCode"], 400);
    assert_eq!(body_json(&resp)["error"]["param"], "messages[0].role");

    set_header(&mut event, "Authorization", "Bearer cgk_wrong");
    assert_eq!(invoke(&gw, event).await["statusCode"], 401);
}

#[tokio::test]
async fn http_v2_event_reaches_the_chat_handler() {
    let (gw, _dir) = gateway();
    let key = gw.key("acme", &[]).await;
    let mut event = fixture("apigw_http_v2.json");
    event["headers"]["authorization"] = json!(format!("Bearer {key}"));
    event["body"] = json!(chat_body("via HTTP API"));
    let resp = invoke(&gw, event.clone()).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(
        body_json(&resp)["choices"][0]["message"]["content"],
        "via HTTP API"
    );
    assert_eq!(resp["headers"]["x-conversation-id"], "lambda-1");

    // Second turn through Lambda sees the first (stored context).
    event["body"] = json!(chat_body("second"));
    assert_eq!(invoke(&gw, event.clone()).await["statusCode"], 200);
    let conv = gw
        .state
        .store
        .load_conversation("acme", "lambda-1", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(conv.messages.len(), 4);

    // Health needs no key; an unknown route is a JSON 404.
    event["rawPath"] = json!("/health");
    event["requestContext"]["http"]["method"] = json!("GET");
    event["requestContext"]["http"]["path"] = json!("/health");
    event["body"] = Value::Null;
    assert_eq!(invoke(&gw, event.clone()).await["statusCode"], 200);
    event["rawPath"] = json!("/v1/nothing");
    let resp = invoke(&gw, event).await;
    assert_eq!(resp["statusCode"], 404);
    assert_eq!(body_json(&resp)["error"]["code"], "unknown_route");
}
