//! `stream: true` end to end through the real handlers: mock OpenAI and
//! Anthropic upstreams speaking SSE on loopback, the embedded store.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use ctxgate::store::Store;
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, embedded_store};
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const TENANT: &str = "acme";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/streams")
        .join(format!("{name}.sse"));
    std::fs::read_to_string(path).unwrap()
}

fn sse(body: String) -> Reply {
    Reply::sse(body)
}

/// Answers a streamed request with `stream` and a plain one with `json`.
fn both(stream: String, json: Value) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    move |r| {
        if r.body["stream"] == true {
            sse(stream.clone())
        } else {
            Reply::json(json.clone())
        }
    }
}

fn gateway(
    store: Arc<dyn Store>,
    openai: &MockUpstream,
    anthropic: &MockUpstream,
    toml: &str,
) -> Gateway {
    let base = format!("{}/v1", openai.url);
    let vars = [
        ("OPENAI_BASE_URL", base.as_str()),
        ("OPENAI_API_KEY", "sk-openai"),
        ("ANTHROPIC_BASE_URL", anthropic.url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant"),
    ];
    Gateway::with_toml(store, toml, &vars)
}

/// Sends a chat request and reads the whole (streamed) answer as text.
async fn call(gw: &Gateway, key: &str, body: Value) -> (u16, http::HeaderMap, String) {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    gw.settle_usage().await;
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The JSON payloads of a client stream's `data:` events (`[DONE]` as a string).
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned())))
        .collect()
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

async fn stored(store: &Arc<dyn Store>, conversation: &str) -> Vec<Value> {
    store
        .load_conversation(TENANT, &conversation.replace('/', ":"), ctxgate::now_secs())
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| {
            // As the conversations API shows a stored message: in OpenAI's shape.
            let shown = match m.turn {
                Some(_) => ctxgate::wire::openai_chat::encode_answer(&m.message),
                None => ctxgate::wire::openai_chat::encode_messages(&[m.message])
                    .unwrap()
                    .remove(0),
            };
            serde_json::to_value(shown).unwrap()
        })
        .collect()
}

fn request(model: &str, conversation: &str, stream: bool) -> Value {
    let conversation = conversation.replace('/', ":");
    let mut body = json!({"model": model, "conversation_id": conversation,
        "messages": [{"role": "user", "content": "weather in Oslo?"}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn streamed_turns_are_stored_exactly_as_non_streamed_ones() {
    let openai = MockUpstream::start(both(
        fixture("openai_parallel_tools"),
        json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}]}}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 30, "total_tokens": 70}}),
    ))
    .await;
    let anthropic = MockUpstream::start(both(
        fixture("anthropic_multi_block"),
        json!({"type": "message", "role": "assistant", "stop_reason": "tool_use", "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
            {"type": "text", "text": "I'll check the weather."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo", "unit": "c"}}],
            "usage": {"input_tokens": 30, "cache_read_input_tokens": 10, "output_tokens": 45}}),
    ))
    .await;
    let (store, _dir) = embedded_store();
    let gw = gateway(store.clone(), &openai, &anthropic, "");
    let key = gw.key(TENANT, &[]).await;

    for model in ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"] {
        let (status, _, plain) = gw
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                Some(request(model, &format!("{model}-plain"), false)),
            )
            .await;
        assert_eq!(status, 200, "{plain}");
        let (status, headers, body) =
            call(&gw, &key, request(model, &format!("{model}-stream"), true)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(
            headers["x-conversation-id"],
            format!("{model}-stream").replace('/', ":").as_str()
        );
        let ev = events(&body);
        assert_eq!(ev.last().unwrap(), "[DONE]");
        assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(ev[0]["model"], model);
        // The usage chunk carries what the non-streamed answer reports.
        let usage = &ev[ev.len() - 2]["usage"];
        assert_eq!(usage, &plain["usage"], "{model}");
        assert_eq!(
            stored(&store, &format!("{model}-stream")).await,
            stored(&store, &format!("{model}-plain")).await,
            "{model}"
        );
        assert_eq!(stored(&store, &format!("{model}-stream")).await.len(), 2);
        // Issue 13, point 4: the stored model (reasoning and its signature
        // included) is the same too, not only its OpenAI view.
        let raw = |c: String| {
            let store = store.clone();
            async move {
                let conv = store
                    .load_conversation(TENANT, &c.replace('/', ":"), ctxgate::now_secs())
                    .await
                    .unwrap();
                conv.messages
                    .into_iter()
                    .map(|m| m.message)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            raw(format!("{model}-stream")).await,
            raw(format!("{model}-plain")).await,
            "{model}"
        );
    }
    // The upstream was asked to stream, with usage.
    let seen = openai.received();
    assert_eq!(seen[1].body["stream"], true);
    assert_eq!(seen[1].body["stream_options"]["include_usage"], true);
    assert_eq!(anthropic.received()[1].body["stream"], true);
}

#[tokio::test]
async fn usage_chunk_only_when_asked_and_text_arrives_whole() {
    let openai = MockUpstream::start(|_| sse(fixture("openai_text"))).await;
    let anthropic = MockUpstream::start(|_| sse(fixture("anthropic_text"))).await;
    let (store, _dir) = embedded_store();
    let gw = gateway(store.clone(), &openai, &anthropic, "");
    let key = gw.key(TENANT, &[]).await;
    for model in ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"] {
        let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, out) = call(&gw, &key, body).await;
        assert_eq!(status, 200);
        let ev = events(&out);
        assert_eq!(text_of(&ev), "Hello, Zoë — 日本 👋!");
        assert!(ev.iter().all(|e| e.get("usage").is_none()), "{out}");
        assert_eq!(ev[ev.len() - 2]["choices"][0]["finish_reason"], "stop");
    }
    // Echo streams too.
    let body = json!({"model": "echo", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "one two three"}]});
    let (status, _, out) = call(&gw, &key, body).await;
    assert_eq!(status, 200);
    let ev = events(&out);
    assert_eq!(text_of(&ev), "one two three");
    assert!(
        ev[ev.len() - 2]["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn failed_streams_store_nothing_and_end_with_an_error_event() {
    let openai = MockUpstream::start(|_| sse(fixture("openai_cut"))).await;
    let anthropic = MockUpstream::start(|_| sse(fixture("anthropic_error"))).await;
    let (store, _dir) = embedded_store();
    let gw = gateway(store.clone(), &openai, &anthropic, "");
    let key = gw.key(TENANT, &[]).await;
    for (model, code) in [
        ("openai/gpt-4o-mini", "upstream_bad_response"),
        ("anthropic/claude-sonnet-4-5", "upstream_stream_error"),
    ] {
        let (status, _, out) = call(&gw, &key, request(model, "doomed", true)).await;
        assert_eq!(status, 200);
        let ev = events(&out);
        assert_eq!(ev.last().unwrap()["error"]["code"], code, "{out}");
        assert!(!out.contains("[DONE]"));
        assert!(stored(&store, "doomed").await.is_empty(), "{model}");
    }
    // A provider error before the stream starts is an ordinary JSON error.
    openai.respond(|_| Reply::status(503, "{}"));
    let (status, headers, out) =
        call(&gw, &key, request("openai/gpt-4o-mini", "doomed", true)).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["error"]["code"],
        "upstream_unavailable"
    );
    assert!(stored(&store, "doomed").await.is_empty());
}

#[tokio::test]
async fn redaction_finds_values_split_across_chunks() {
    let pieces = [
        "Card: 4111 11",
        "11 1111 1111, mail bob.sm",
        "ith@exa",
        "mple.com. Done.",
    ];
    let mut body = String::new();
    for p in pieces {
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})
        ));
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    let openai = MockUpstream::start(move |_| sse(body.clone())).await;
    let anthropic = MockUpstream::start(|_| Reply::status(500, "{}")).await;
    let (store, _dir) = embedded_store();
    let gw = gateway(store.clone(), &openai, &anthropic, "");
    let key = gw.key(TENANT, &[]).await;
    let (status, _, out) = call(&gw, &key, request("openai/gpt-4o-mini", "pii", true)).await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&events(&out)), "Card: [CARD], mail [EMAIL]. Done.");
    assert!(!out.contains("4111") && !out.contains("bob."), "{out}");
    // What is stored is redacted by the stored policy, from the whole answer.
    let stored = stored(&store, "pii").await;
    assert_eq!(stored[1]["content"], "Card: [CARD], mail [EMAIL]. Done.");
}

#[tokio::test]
async fn budget_is_settled_to_the_streamed_usage() {
    let openai = MockUpstream::start(|_| sse(fixture("openai_text"))).await;
    let anthropic = MockUpstream::start(|_| sse(fixture("anthropic_error"))).await;
    let (store, _data) = embedded_store();
    let gw = gateway(
        store.clone(),
        &openai,
        &anthropic,
        &format!("[tenants.{TENANT}]\ntokens_per_day = 100000\n"),
    );
    let key = gw.key(TENANT, &[]).await;
    let counter = ctxgate::store::CounterKey {
        pk: format!("T#{TENANT}#B"),
        sk: format!("{}#tokens", ctxgate::usage::day(ctxgate::now_secs())),
    };
    let (status, _, _) = call(&gw, &key, request("openai/gpt-4o-mini", "b1", true)).await;
    assert_eq!(status, 200);
    // openai_text reports 19 + 10 tokens.
    assert_eq!(store.counter_get(&counter).await.unwrap(), 29);
    // A stream that fails after `message_start` is charged what it used: the
    // 12 prompt tokens reported there and the estimate of "Partial".
    let (_, _, out) = call(
        &gw,
        &key,
        request("anthropic/claude-sonnet-4-5", "b2", true),
    )
    .await;
    assert!(out.contains("upstream_stream_error"));
    assert_eq!(
        store.counter_get(&counter).await.unwrap(),
        29 + 12 + ctxgate::tokens::estimate_text("Partial") as i64
    );
}

#[tokio::test]
async fn stream_options_are_validated() {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let (store, _dir) = embedded_store();
    let gw = gateway(store, &openai, &anthropic, "");
    let key = gw.key(TENANT, &[]).await;
    let msgs = json!([{"role": "user", "content": "x"}]);
    for (body, param) in [
        (
            json!({"model": "echo", "messages": msgs, "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"model": "echo", "messages": msgs, "stream": false, "stream_options": {}}),
            "stream_options",
        ),
        (
            json!({"model": "echo", "messages": msgs, "stream": true, "stream_options": "yes"}),
            "stream_options",
        ),
        (
            json!({"model": "echo", "messages": msgs, "stream": true, "stream_options": {"include_usage": "x"}}),
            "stream_options.include_usage",
        ),
        (
            json!({"model": "echo", "messages": msgs, "stream": "yes"}),
            "stream",
        ),
    ] {
        let (status, _, out) = gw
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body}: {out}");
        assert_eq!(out["error"]["param"], param, "{body}");
    }
    assert!(openai.received().is_empty());
}

/// An upstream that sends one chunk, then only SSE comments (as providers
/// ping) until its connection is closed, which it reports.
async fn hanging_upstream() -> (String, tokio::sync::oneshot::Receiver<()>, Arc<Mutex<u32>>) {
    struct Report(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for Report {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let calls = Arc::new(Mutex::new(0u32));
    let seen = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let report = Report(tx.lock().unwrap().take());
        *seen.lock().unwrap() += 1;
        async move {
            let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, this answer is long enough for the redactor to let its start through at once.\"},\"finish_reason\":null}]}\n\n";
            // A server notices a closed connection when it next writes.
            let pings = tokio_stream_interval().map(|_| Ok(": ping\n\n".to_owned()));
            let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first.to_owned()) })
                .chain(pings)
                .map(move |chunk| {
                    let _keep = &report;
                    chunk
                });
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx, calls)
}

fn tokio_stream_interval() -> impl futures_util::Stream<Item = ()> + Send {
    let every = tokio::time::interval(std::time::Duration::from_millis(20));
    futures_util::stream::unfold(every, |mut every| async move {
        every.tick().await;
        Some(((), every))
    })
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_and_stores_nothing() {
    let (url, closed, calls) = hanging_upstream().await;
    let (store, _dir) = embedded_store();
    let base = format!("{url}/v1");
    let gw = Gateway::new(
        store.clone(),
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-x")],
    );
    let key = gw.key(TENANT, &[]).await;
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(
            request("openai/gpt-4o-mini", "gone", true).to_string(),
        ))
        .unwrap();
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("Hello") {
        let chunk = body.next().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    // The client goes away mid-answer.
    drop(body);
    // The upstream sees its connection closed (a hang here means it was not).
    tokio::time::timeout(std::time::Duration::from_secs(30), closed)
        .await
        .expect("the upstream request was not cancelled")
        .unwrap();
    assert_eq!(*calls.lock().unwrap(), 1);
    assert!(stored(&store, "gone").await.is_empty());
}

/// Issue 12, point 8: a streamed answer is redacted exactly as the same answer
/// sent whole, even split right after the keyword a detector needs ("secret",
/// "Bearer"), and the stored turn carries the same `redactions` counts as the
/// non-streamed one (the request's included), on both stores.
#[tokio::test]
async fn streamed_redaction_and_stored_counts_match_the_non_streamed_turn() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let token = format!("sk-proj-{}", "AbCdEf0123456789".repeat(8));
    let answer = format!(
        "Set aws_secret_access_key={secret} and send Authorization: Bearer {token} to ops@example.com."
    );
    // Cut where the keyword has gone out before its value arrives.
    let cuts = [
        answer.find("secret").unwrap() + 6,
        answer.find("key=").unwrap() + 4,
        answer.find("Bearer").unwrap() + 6,
        answer.find("sk-proj").unwrap() + 9,
        answer.find("ops@").unwrap() + 3,
    ];
    let mut body = String::new();
    let mut from = 0;
    for to in cuts.into_iter().chain([answer.len()]) {
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": &answer[from..to]}, "finish_reason": null}]})
        ));
        from = to;
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":40,\"total_tokens\":49}}\n\ndata: [DONE]\n\n");
    let plain = json!({"choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": &answer}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}});
    let openai = MockUpstream::start(both(body, plain)).await;
    let anthropic = MockUpstream::start(|_| Reply::status(500, "{}")).await;
    let (embedded, _dir) = embedded_store();
    for store in [embedded, ctxgate_tests::dynamo_store().await] {
        let gw = gateway(store.clone(), &openai, &anthropic, "");
        let key = gw.key(TENANT, &[]).await;
        let ask = |conversation: &str, stream: bool| {
            let mut r = request("openai/gpt-4o-mini", conversation, stream);
            r["messages"][0]["content"] = json!("mail me at bob@example.com");
            r
        };
        let (status, _, whole) = gw
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                Some(ask("whole", false)),
            )
            .await;
        assert_eq!(status, 200, "{whole}");
        let (status, _, streamed) = call(&gw, &key, ask("streamed", true)).await;
        assert_eq!(status, 200, "{streamed}");
        let sent = text_of(&events(&streamed));
        assert_eq!(sent, whole["choices"][0]["message"]["content"]);
        assert_eq!(
            sent,
            "Set aws_secret_access_key=[AWS_SECRET_KEY] and send Authorization: Bearer [TOKEN] to [EMAIL]."
        );
        assert!(!streamed.contains(secret) && !streamed.contains(&token));
        let turn = |conversation: &'static str| {
            let store = store.clone();
            async move {
                store
                    .load_conversation(TENANT, conversation, ctxgate::now_secs())
                    .await
                    .unwrap()
                    .messages
                    .into_iter()
                    .find_map(|m| m.turn)
                    .unwrap()
                    .redactions
            }
        };
        let counts = turn("streamed").await;
        assert_eq!(counts, turn("whole").await);
        assert_eq!(counts["stored"]["email"], 2, "{counts:?}");
        assert_eq!(counts["response"]["aws_secret_key"], 1, "{counts:?}");
        assert_eq!(
            stored(&store, "streamed").await,
            stored(&store, "whole").await
        );
    }
}
