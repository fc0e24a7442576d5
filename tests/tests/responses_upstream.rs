//! Issue 18, point 6: an `openai` provider configured `api = "responses"`
//! calls OpenAI's Responses API (a loopback mock of it) statelessly, and a
//! reasoning model's encrypted reasoning is stored with the turn and sent
//! back on the next one. Two turns of one stored conversation through
//! `/v1/chat/completions`, and two through `/v1/responses`
//! (`previous_response_id`), whole and streamed, on both stores; the second
//! upstream request of each is checked: `store: false`, the encrypted
//! reasoning asked for, the first turn's reasoning item (with its
//! encrypted content) in the input before the answer it led to, the
//! provider's key and never the client's credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ctxgate::store::Store;
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, dynamo_store, embedded_store, unique};
use serde_json::{Value, json};

const PROVIDER_KEY: &str = "sk-openai-PROVIDER";
const MODEL: &str = "openai/gpt-4.1";

const CONFIG: &str = r#"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
api = "responses"
"#;

fn encrypted(n: usize) -> String {
    format!("gAAAAABencrypted-reasoning-{n}")
}

/// The mock's `n`th answer (from 1): a reasoning item with encrypted
/// content, then `answer n`.
fn response_object(n: usize, model: &Value) -> Value {
    json!({
        "id": format!("resp_up{n}"), "object": "response", "created_at": 1,
        "status": "completed", "model": model, "error": null, "incomplete_details": null,
        "output": [
            {"type": "reasoning", "id": format!("rs_up{n}"), "summary": [],
                "encrypted_content": encrypted(n), "status": "completed"},
            {"type": "message", "id": format!("msg_up{n}"), "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": format!("answer {n}"),
                    "annotations": []}]}
        ],
        "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10},
            "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 50}
    })
}

fn streamed(n: usize, model: &Value) -> String {
    let whole = response_object(n, model);
    let head = json!({"id": whole["id"], "object": "response", "status": "in_progress",
        "model": model, "output": []});
    let events = [
        json!({"type": "response.created", "sequence_number": 0, "response": head}),
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "reasoning", "id": format!("rs_up{n}"), "summary": []}}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": whole["output"][0]}),
        json!({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "message", "id": format!("msg_up{n}"), "role": "assistant",
                "content": [], "status": "in_progress"}}),
        json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0,
            "delta": "answer "}),
        json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0,
            "delta": n.to_string()}),
        json!({"type": "response.output_item.done", "output_index": 1,
            "item": whole["output"][1]}),
        json!({"type": "response.completed", "response": whole}),
    ];
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

/// A mock Responses API numbering its answers.
async fn mock_responses() -> MockUpstream {
    let count = Arc::new(AtomicUsize::new(0));
    MockUpstream::start(move |r: &Received| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if r.path != "/v1/responses" {
            return Reply::status(404, "{}");
        }
        if r.body["stream"] == true {
            Reply::sse(streamed(n, &r.body["model"]))
        } else {
            Reply::json(response_object(n, &r.body["model"]))
        }
    })
    .await
}

/// What the client sees of a Chat answer, whole or streamed.
fn chat_text(stream: bool, body: &str) -> String {
    if !stream {
        let v: Value = serde_json::from_str(body).unwrap();
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// A Responses answer's object: the body, or the `response.completed` event's.
fn response_of(stream: bool, body: &str) -> Value {
    if !stream {
        return serde_json::from_str(body).unwrap();
    }
    body.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|e| e["type"] == "response.completed")
        .map(|e| e["response"].clone())
        .unwrap_or_else(|| panic!("no response.completed in {body}"))
}

/// The checks on a second turn's upstream request.
fn assert_carried(req: &Received, client_key: &str, stream: bool, first: usize, second: &str) {
    let what = format!("stream {stream}: {}", req.body);
    assert_eq!(req.path, "/v1/responses", "{what}");
    assert_eq!(req.body["store"], false, "{what}");
    assert!(
        req.body["include"]
            .as_array()
            .unwrap()
            .contains(&json!("reasoning.encrypted_content")),
        "{what}"
    );
    assert_eq!(req.body.get("stream").is_some(), stream, "{what}");
    let input = req.body["input"].as_array().unwrap();
    let at = |pred: &dyn Fn(&Value) -> bool| input.iter().position(pred);
    let reasoning = at(&|i| i["type"] == "reasoning").unwrap_or_else(|| panic!("{what}"));
    assert_eq!(
        input[reasoning]["encrypted_content"],
        encrypted(first),
        "{what}"
    );
    assert_eq!(input[reasoning]["summary"], json!([]), "{what}");
    let answer = at(&|i| {
        i["role"] == "assistant" && i["content"][0]["text"] == format!("answer {first}").as_str()
    })
    .unwrap_or_else(|| panic!("{what}"));
    let new = at(&|i| i["role"] == "user" && i["content"][0]["text"] == second)
        .unwrap_or_else(|| panic!("{what}"));
    assert!(reasoning < answer && answer < new, "{what}");
    // Nothing OpenAI would look up among its (absent) stored items.
    assert!(input.iter().all(|i| i.get("id").is_none()), "{what}");
    assert_eq!(
        req.headers["authorization"],
        format!("Bearer {PROVIDER_KEY}").as_str()
    );
    for (name, value) in &req.headers {
        let value = value.to_str().unwrap_or_default();
        assert!(!value.contains(client_key), "client credential in {name}");
    }
    assert!(!req.body.to_string().contains(client_key));
}

async fn two_turns_through_both_doors(store: Arc<dyn Store>) {
    let upstream = mock_responses().await;
    let base = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        store,
        CONFIG,
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", PROVIDER_KEY),
        ],
    );
    let key = gw.key(&unique("t"), &["chat"]).await;
    for stream in [false, true] {
        // Two turns of one stored conversation through Chat Completions.
        let conversation = unique("conv");
        let mut seen = Vec::new();
        for text in ["first", "second"] {
            let body = json!({"model": MODEL, "conversation_id": conversation,
                "stream": stream, "messages": [{"role": "user", "content": text}]});
            let (status, _, answer) = gw
                .call_raw_text(
                    "POST",
                    "/v1/chat/completions",
                    Some(&key),
                    &[],
                    body.to_string().into_bytes(),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            seen.push(chat_text(stream, &answer));
        }
        let received = upstream.received();
        let n = received.len();
        assert_eq!(seen, [format!("answer {}", n - 1), format!("answer {n}")]);
        assert_carried(&received[n - 1], &key, stream, n - 1, "second");

        // Two turns through the Responses door, the second continuing the first.
        let mut previous: Option<String> = None;
        for text in ["first", "second"] {
            let mut body = json!({"model": MODEL, "input": text, "stream": stream});
            if let Some(p) = &previous {
                body["previous_response_id"] = json!(p);
            }
            let (status, _, answer) = gw
                .call_raw_text(
                    "POST",
                    "/v1/responses",
                    Some(&key),
                    &[],
                    body.to_string().into_bytes(),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            let response = response_of(stream, &answer);
            assert_eq!(response["status"], "completed", "{response}");
            previous = Some(response["id"].as_str().unwrap().to_owned());
        }
        let received = upstream.received();
        let n = received.len();
        assert_carried(&received[n - 1], &key, stream, n - 1, "second");
    }
}

#[tokio::test]
async fn encrypted_reasoning_is_carried_across_turns_embedded() {
    let (store, _dir) = embedded_store();
    two_turns_through_both_doors(store).await;
}

#[tokio::test]
async fn encrypted_reasoning_is_carried_across_turns_dynamodb() {
    two_turns_through_both_doors(dynamo_store().await).await;
}

// Issue 18, point 6: the Responses upstream's failures reach the client as
// the Chat upstream's do (one classification, `provider/http.rs`), whole
// and streamed, with the same retries; an upstream's error body (which may
// echo the prompt) never does.
#[tokio::test]
async fn failures_map_as_the_chat_path_does() {
    let upstream = MockUpstream::start(|_| Reply::status(500, "{}")).await;
    let base = format!("{}/v1", upstream.url);
    let config = format!(
        "{CONFIG}\n[providers.chatty]\nkind = \"openai\"\nbase_url = \"{base}\"\n\
         api_key_env = \"OPENAI_API_KEY\"\n[retry]\nattempts = 2\nbase_delay_ms = 1\n\
         max_delay_ms = 1\n"
    );
    let gw = Gateway::with_toml(
        embedded_store().0,
        &config,
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", PROVIDER_KEY),
        ],
    );
    let key = gw.key(&unique("t"), &["chat"]).await;
    let ask = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "hello SECRET-PROMPT"}]})
    };
    let call = |body: Value| {
        let gw = &gw;
        let key = key.clone();
        async move {
            let (status, headers, text) = gw
                .call_raw_text(
                    "POST",
                    "/v1/chat/completions",
                    Some(&key),
                    &[],
                    body.to_string().into_bytes(),
                )
                .await;
            let retry_after = headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, text)
        }
    };
    for status in [400, 401, 403, 404, 413, 422, 429, 500, 503] {
        upstream.respond(move |_| {
            let mut r = Reply::status(
                status,
                r#"{"error": {"message": "echo: SECRET-PROMPT", "type": "x"}}"#,
            );
            // Passed on to the client; zero so that the retry waits for nothing.
            r.headers.push(("retry-after".into(), "0".into()));
            r
        });
        for stream in [false, true] {
            let before = upstream.received().len();
            let mut chat = call(ask("chatty/gpt-4.1", stream)).await;
            chat.2 = chat.2.replace("chatty", "openai");
            let chat_calls = upstream.received().len() - before;
            let before = upstream.received().len();
            let responses = call(ask(MODEL, stream)).await;
            let responses_calls = upstream.received().len() - before;
            assert_eq!(responses, chat, "upstream {status}, stream {stream}");
            assert_eq!(responses_calls, chat_calls, "upstream {status}: retries");
            assert!(!responses.2.contains("SECRET-PROMPT"), "{}", responses.2);
            assert_ne!(responses.0, 200, "upstream {status}");
        }
    }
    // A retried failure then an answer: the answer.
    let count = Arc::new(AtomicUsize::new(0));
    upstream.respond(move |r| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(503, "{}")
        } else {
            Reply::json(response_object(1, &r.body["model"]))
        }
    });
    let (status, _, text) = call(ask(MODEL, false)).await;
    assert_eq!((status, chat_text(false, &text)), (200, "answer 1".into()));
    // Mid-stream: the upstream's error event ends the answer as a Chat
    // upstream's error chunk does.
    upstream.respond(|r| {
        if r.path == "/v1/responses" {
            Reply::sse(
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\"}}\n\n\
                 event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"SECRET-PROMPT\"}\n\n",
            )
        } else {
            Reply::sse(
                "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                 data: {\"error\":{\"type\":\"server_error\",\"message\":\"SECRET-PROMPT\"}}\n\n",
            )
        }
    });
    let mut chat = call(ask("chatty/gpt-4.1", true)).await;
    chat.2 = chat.2.replace("chatty", "openai");
    let responses = call(ask(MODEL, true)).await;
    let errors = |text: &str| -> Vec<Value> {
        text.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|c| c.get("error").cloned())
            .collect()
    };
    assert_eq!(responses.0, chat.0);
    assert_eq!(errors(&responses.2), errors(&chat.2), "{}", responses.2);
    assert!(!errors(&responses.2).is_empty(), "{}", responses.2);
    assert!(!responses.2.contains("SECRET-PROMPT"));
}
