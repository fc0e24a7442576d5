//! The Bedrock provider offline: the ConverseStream decoder fed real
//! event-stream frames (built with `aws-smithy-eventstream`'s encoder), the
//! error classification, and the signed request as it would leave.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{Assembler, Block, Event, FinishReason, Request, Role, ToolCall, Usage};

const CAPS: Caps = Caps {
    body: 1 << 20,
    event: 4096,
    stream: 1 << 20,
};

fn frame(headers: &[(&'static str, &'static str)], payload: Value) -> Vec<u8> {
    let mut m = Message::new(Bytes::from(payload.to_string()));
    for (k, v) in headers {
        m = m.add_header(Header::new(*k, HeaderValue::String((*v).into())));
    }
    let mut out = Vec::new();
    write_message_to(&m, &mut out).unwrap();
    out
}

fn event(kind: &'static str, payload: Value) -> Vec<u8> {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        payload,
    )
}

fn exception(kind: &'static str) -> Vec<u8> {
    frame(
        &[
            (":message-type", "exception"),
            (":exception-type", kind),
            (":content-type", "application/json"),
        ],
        json!({"message": "arn:aws:iam::123456789012:role/x is throttled"}),
    )
}

/// A streamed answer: text in two deltas, then a tool call whose input is
/// split mid-JSON across three deltas, then the stop and usage with cache counts.
fn answer() -> Vec<u8> {
    [
        event("messageStart", json!({"role": "assistant"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Let me "}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "check."}})),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "lookup"}}}),
        ),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"q\":"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": " \"ca"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "t\"}"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 142,
                             "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0},
                   "metrics": {"latencyMs": 321}}),
        ),
    ]
    .concat()
}

/// The events of `bytes` delivered in chunks of `size` bytes.
async fn decode(bytes: Vec<u8>, size: usize) -> Vec<Result<Event, ProviderError>> {
    let chunks: Vec<Result<Bytes, ProviderError>> = bytes
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::events(
        "bedrock",
        futures_util::stream::iter(chunks),
        CAPS,
        stream::EventDecoder::new(),
    )
    .collect()
    .await
}

fn assembled(events: &[Result<Event, ProviderError>]) -> crate::model::Response {
    let mut a = Assembler::new(true);
    for e in events {
        a.push(e.as_ref().unwrap());
    }
    a.finish()
}

// Issue 20, point 1: the binary event stream, frames split across reads at
// every byte (and whole), decodes to the same answer: text, the tool call's
// input joined across its deltas, the stop reason, usage with cache reads.
#[tokio::test]
async fn event_stream_frames_decode_to_the_answer_at_any_split() {
    let whole = decode(answer(), usize::MAX).await;
    for size in [1, 7, 64] {
        let split = decode(answer(), size).await;
        assert_eq!(split.len(), whole.len());
        assert_eq!(assembled(&split), assembled(&whole), "chunks of {size}");
    }
    let r = assembled(&whole);
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(
        r.usage,
        Usage {
            input: 112,
            output: 30,
            cache_read: 100,
            ..Usage::default()
        }
    );
    assert_eq!(
        r.message.content,
        vec![
            Block::text("Let me check."),
            Block::ToolCall(ToolCall {
                id: "tooluse_1".into(),
                name: "lookup".into(),
                arguments: r#"{"q":"cat"}"#.into(),
                cache: None,
            }),
        ]
    );
    assert_eq!(r.message.role, Role::Assistant);
}

// Issue 20, point 1: a corrupted frame (bad CRC) ends the stream with a
// clean upstream error, after the events decoded before it.
#[tokio::test]
async fn a_bad_crc_is_a_clean_upstream_error() {
    let mut bytes = answer();
    let first = event("messageStart", json!({"role": "assistant"})).len();
    // A payload byte of the second frame: its message CRC no longer matches.
    bytes[first + 60] ^= 0x01;
    let out = decode(bytes, 5).await;
    assert!(matches!(out[0], Ok(Event::Start { .. })));
    let last = out.last().unwrap();
    assert!(
        matches!(last, Err(ProviderError::BadResponse { detail, .. }) if detail.contains("CRC")),
        "{last:?}"
    );
    // A prelude whose own CRC is wrong fails the same way.
    let mut bytes = answer();
    bytes[9] ^= 0xff;
    assert!(matches!(
        decode(bytes, 3).await.last().unwrap(),
        Err(ProviderError::BadResponse { .. })
    ));
}

// Issue 20, point 4: an exception frame mid-stream ends the stream as
// other providers' mid-stream errors do (a `Stream` error with a short
// type, never AWS's message); the turn then stores nothing.
#[tokio::test]
async fn an_exception_frame_ends_the_stream() {
    let bytes = [
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hal"}}),
        ),
        exception("modelStreamErrorException"),
    ]
    .concat();
    let out = decode(bytes, 11).await;
    assert_eq!(out.len(), 4, "{out:?}");
    match out.last().unwrap() {
        Err(e @ ProviderError::Stream { kind, .. }) => {
            assert_eq!(kind, "model_stream_error");
            assert!(!e.to_string().contains("123456789012"));
        }
        other => panic!("{other:?}"),
    }
    // A body cut short (no messageStop) is an error, not a finished answer.
    let cut = [
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hal"}}),
        ),
    ]
    .concat();
    assert!(decode(cut.clone(), 4).await.last().unwrap().is_err());
    // ...as is one cut inside a frame.
    assert!(
        decode(cut[..cut.len() - 3].to_vec(), 4)
            .await
            .last()
            .unwrap()
            .is_err()
    );
}

// Upstream bodies are capped: a frame announcing more than the event cap
// fails before it is buffered.
#[tokio::test]
async fn frames_over_the_cap_are_refused() {
    let big = event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "x".repeat(5000)}}),
    );
    let out = decode(big, 1024).await;
    assert!(
        matches!(out.last().unwrap(), Err(ProviderError::BadResponse { detail, .. }) if detail.contains("cap"))
    );
}

// Streamed reasoning opens its block at its first delta; redacted
// reasoning comes whole.
#[tokio::test]
async fn streamed_reasoning() {
    let bytes = [
        event("messageStart", json!({"role": "assistant"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"reasoningContent": {"redactedContent": "AAEC"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"text": "ok"}})),
        event("contentBlockStop", json!({"contentBlockIndex": 2})),
        event("messageStop", json!({"stopReason": "end_turn"})),
    ]
    .concat();
    let r = assembled(&decode(bytes, 9).await);
    assert_eq!(
        r.message.content,
        vec![
            Block::Reasoning {
                text: "hmm".into(),
                signature: Some("sig".into()),
                encrypted: None
            },
            Block::Reasoning {
                text: String::new(),
                signature: None,
                encrypted: Some("AAEC".into())
            },
            Block::text("ok"),
        ]
    );
    assert_eq!(r.finish, FinishReason::Stop);
}

fn headers(error_type: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "x-amzn-errortype",
        format!("{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/")
            .parse()
            .unwrap(),
    );
    h
}

// Issue 20, point 4: Bedrock's exceptions map like other providers'
// failures; access denied and unknown models name the model and what is
// missing, and never carry AWS's message (account ids, ARNs).
#[test]
fn errors_are_classified_without_aws_messages() {
    let model = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    let classify = |status: u16, kind: &str, message: &str| {
        errors::classify(
            "bedrock",
            model,
            "us-east-1",
            status,
            &headers(kind),
            Some(&json!({"message": message})),
        )
    };
    let secret = "User: arn:aws:sts::123456789012:assumed-role/ctxgate/fn is not authorized";
    assert!(matches!(
        classify(429, "ThrottlingException", secret),
        ProviderError::RateLimited { .. }
    ));
    assert!(matches!(
        classify(429, "ModelNotReadyException", secret),
        ProviderError::RateLimited { .. }
    ));
    assert!(matches!(
        classify(503, "ServiceUnavailableException", secret),
        ProviderError::Unavailable { status: 503, .. }
    ));
    assert!(matches!(
        classify(408, "ModelTimeoutException", secret),
        ProviderError::Timeout { .. }
    ));
    assert!(matches!(
        classify(424, "ModelErrorException", secret),
        ProviderError::Unavailable { status: 424, .. }
    ));
    assert!(matches!(
        classify(403, "UnrecognizedClientException", secret),
        ProviderError::Auth { .. }
    ));

    let denied = ApiError::from(classify(403, "AccessDeniedException", secret));
    let text = String::from_utf8(denied.body().to_vec()).unwrap();
    assert_eq!(denied.status, http::StatusCode::BAD_GATEWAY);
    assert!(
        text.contains(model) && text.contains("bedrock:InvokeModel"),
        "{text}"
    );
    assert!(text.contains("Model access"), "{text}");
    assert!(
        !text.contains("123456789012") && !text.contains("arn:"),
        "{text}"
    );

    for missing in [
        classify(404, "ResourceNotFoundException", secret),
        classify(
            400,
            "ValidationException",
            "The provided model identifier is invalid.",
        ),
    ] {
        let e = ApiError::from(missing);
        let text = String::from_utf8(e.body().to_vec()).unwrap();
        assert_eq!(e.status, http::StatusCode::NOT_FOUND);
        assert!(text.contains(model) && text.contains("us-east-1"), "{text}");
        assert_eq!(e.param.as_deref(), Some("model"));
    }

    // Validation errors become 400s naming the field, never the value.
    let e = ApiError::from(classify(
        400,
        "ValidationException",
        "1 validation error detected: Value 'sk-secret' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1",
    ));
    assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
    assert_eq!(e.param.as_deref(), Some("inferenceConfig.maxTokens"));
    assert!(
        !String::from_utf8(e.body().to_vec())
            .unwrap()
            .contains("sk-secret")
    );
    assert_eq!(
        errors::validation_field(
            "The model returned the following errors: messages.1.content.0.image.source: too big"
        ),
        Some("messages.1.content.0.image.source".into())
    );
    assert!(matches!(
        classify(
            400,
            "ValidationException",
            "A conversation must start with a user message."
        ),
        ProviderError::Rejected { status: 400, .. }
    ));
    // Without the header, the body's `__type` names the exception.
    let by_body = errors::classify(
        "bedrock",
        model,
        "us-east-1",
        429,
        &http::HeaderMap::new(),
        Some(&json!({"__type": "com.amazon.bedrock#ThrottlingException"})),
    );
    assert!(matches!(by_body, ProviderError::RateLimited { .. }));
    // Throttling falls back and is retried like a 429; a refused field does neither.
    let policy = crate::config::RetryPolicy::default();
    let throttled = classify(429, "ThrottlingException", "");
    assert!(super::super::resilience::retryable(&throttled, &policy));
    assert!(super::super::resilience::falls_back(&throttled));
    let refused = classify(
        400,
        "ValidationException",
        "Value at 'inferenceConfig.topP' bad",
    );
    assert!(!super::super::resilience::falls_back(&refused));
    assert!(super::super::resilience::falls_back(&classify(
        403,
        "AccessDeniedException",
        ""
    )));
}

fn provider(toml: &str, vars: &[(&str, &str)]) -> (Bedrock, Arc<AwsCredentials>) {
    let config = Config::from_toml(toml, |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let aws = Arc::new(AwsCredentials::default_chain(None));
    aws.set_source(
        aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                "AKIDCTXGATETEST",
                "ctxgate-test-secret",
                Some("session-token".into()),
                None,
                "test",
            ),
        ),
    );
    let p = Bedrock::new(
        "bedrock",
        &config.providers["bedrock"],
        crate::tls::test_client(),
        CAPS,
        aws.clone(),
    );
    (p, aws)
}

fn request() -> Request {
    Request {
        messages: vec![crate::model::Message::text(Role::User, "hi")],
        ..Request::default()
    }
}

// Issue 20, point 2: calls are SigV4-signed for service `bedrock` in the
// provider's region, over the exact body sent, with the session token; the
// model id is escaped in the path (`:` -> `%3A`), as the SDKs do.
#[tokio::test]
async fn requests_are_signed_for_bedrock_in_the_region() {
    let (p, _) = provider(
        "[providers.bedrock]\nkind = \"bedrock\"\nregion = \"eu-west-1\"\n",
        &[],
    );
    let req = request();
    let call = Call {
        model: "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
        request: &req,
        api_key: None,
        cache: None,
    };
    let built = p.request(&call, true).await.unwrap().build().unwrap();
    assert_eq!(
        built.url().as_str(),
        "https://bedrock-runtime.eu-west-1.amazonaws.com/model/eu.anthropic.claude-haiku-4-5-20251001-v1%3A0/converse-stream"
    );
    let h = built.headers();
    let auth = h["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDCTXGATETEST/"),
        "{auth}"
    );
    assert!(auth.contains("/eu-west-1/bedrock/aws4_request"), "{auth}");
    assert!(
        auth.contains("SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token"),
        "{auth}"
    );
    assert_eq!(h["x-amz-security-token"], "session-token");
    assert_eq!(h["accept"], stream::CONTENT_TYPE);
    let body: Value = serde_json::from_slice(built.body().unwrap().as_bytes().unwrap()).unwrap();
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"text": "hi"}]}])
    );
}

// Issue 20, point 2: a Bedrock API key goes as a bearer instead of a signature.
#[tokio::test]
async fn an_api_key_is_sent_as_a_bearer() {
    let (p, _) = provider(
        "",
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:9"),
        ],
    );
    let req = request();
    let call = Call {
        model: "amazon.nova-pro-v1:0",
        request: &req,
        api_key: Some("bedrock-api-key"),
        cache: None,
    };
    let built = p.request(&call, false).await.unwrap().build().unwrap();
    assert_eq!(
        built.url().as_str(),
        "http://127.0.0.1:9/model/amazon.nova-pro-v1%3A0/converse"
    );
    assert_eq!(built.headers()["authorization"], "Bearer bedrock-api-key");
    assert!(built.headers().get("x-amz-date").is_none());
}

// Issue 20, bad input: no region resolvable gives a 503 naming the setting
// at the call (the built-in entry), never a panic.
#[tokio::test]
async fn no_region_is_a_503_naming_the_setting() {
    let (p, _) = provider("", &[]);
    let req = request();
    let call = Call {
        model: "amazon.nova-pro-v1:0",
        request: &req,
        api_key: None,
        cache: None,
    };
    let e = ApiError::from(p.request(&call, false).await.unwrap_err());
    assert_eq!(e.status, http::StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8(e.body().to_vec()).unwrap();
    assert!(
        text.contains("AWS_REGION") && text.contains("providers.bedrock.region"),
        "{text}"
    );
}
