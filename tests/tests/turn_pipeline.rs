//! Issue 13, point 3: the transport-free turn pipeline, driven directly.
//! It runs several model steps in one turn (what the MCP tool loop needs)
//! and commits them together: the tool call, its result and the final
//! answer are stored in one write, each step is metered, and the second
//! call sends the first answer and the result back upstream, streamed and
//! not. A turn's guard gives back its reservation and idempotency claim
//! when it is dropped. On both stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ctxgate::auth::Principal;
use ctxgate::idempotency::{self, Begin};
use ctxgate::model::{Block, Message, Request, Role, ToolResult, ToolResultPart};
use ctxgate::store::{CounterKey, Store};
use ctxgate::turn::{self, Answering, Input, Step};
use ctxgate_tests::{Gateway, MockUpstream, Reply, dynamo_store, embedded_store, eventually};
use serde_json::{Value, json};

const TENANT: &str = "steps";

fn principal() -> Principal {
    Principal {
        tenant: TENANT.into(),
        key_id: "k".into(),
        scopes: vec!["chat".into()],
        models: Vec::new(),
        rpm: None,
        expires_at: None,
        mcp_servers: Vec::new(),
    }
}

fn call_answer() -> Value {
    json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
        "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "crm_lookup", "arguments": "{\"customer\":\"42\"}"}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}})
}

fn final_answer() -> Value {
    json!({"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
        "content": "Customer 42 is Ada."}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}})
}

/// The same answer as an OpenAI chunk stream.
fn as_stream(answer: &Value) -> String {
    let choice = &answer["choices"][0];
    let mut delta = choice["message"].clone();
    if let Some(calls) = delta["tool_calls"].as_array_mut() {
        for (i, c) in calls.iter_mut().enumerate() {
            c["index"] = json!(i);
        }
    }
    let chunks = [
        json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}),
        json!({"choices": [], "usage": answer["usage"]}),
    ];
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    body
}

/// Runs an answer to its end and returns it settled.
async fn run(mut a: Answering) -> turn::Done {
    loop {
        match a.next().await.expect("no failure") {
            Step::End => break,
            Step::Event(_) | Step::Silence => {}
        }
    }
    a.done().await.expect("settles")
}

async fn two_steps(store: Arc<dyn Store>, streamed: bool) {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let upstream = MockUpstream::start(move |_| {
        let answer = match n.fetch_add(1, Ordering::SeqCst) {
            0 => call_answer(),
            _ => final_answer(),
        };
        if streamed {
            Reply::sse(as_stream(&answer))
        } else {
            Reply::json(answer)
        }
    })
    .await;
    let base = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        store.clone(),
        "[tenants.steps]\ntokens_per_day = 1000000\n",
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-test")],
    );
    let conversation = format!("loop-{streamed}");
    let input = Input {
        model: "openai/gpt-4o-mini".into(),
        request: Request {
            messages: vec![Message::text(Role::User, "Who is customer 42?")],
            ..Request::default()
        },
        conversation: Some(conversation.clone()),
        claim: None,
    };
    let before = store
        .usage(TENANT, "0000", "9999")
        .await
        .unwrap()
        .first()
        .map_or((0, 0), |r| (r.requests, r.total_tokens));
    let prepared = turn::prepare(&gw.state, &principal(), input).await.unwrap();
    let first = run(turn::generate(prepared, streamed).await.unwrap()).await;
    let call = first
        .response()
        .message
        .tool_calls()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        (call.id.as_str(), call.name.as_str()),
        ("call_1", "crm_lookup")
    );
    let result = Message {
        role: Role::Tool,
        content: vec![Block::ToolResult(ToolResult {
            call_id: call.id,
            content: vec![ToolResultPart::Text {
                text: "{\"name\":\"Ada\"}".into(),
                cache: None,
            }],
            is_error: false,
            cache: None,
        })],
        name: None,
    };
    let second = run(first.next_step(vec![result]).await.unwrap()).await;
    assert_eq!(
        second.response().message.text_content(),
        "Customer 42 is Ada."
    );
    second.commit(None).await.unwrap();

    // The second call carried the first answer and the tool result.
    let seen = upstream.received();
    assert_eq!(seen.len(), 2);
    let sent = &seen[1].body["messages"];
    assert_eq!(sent[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(sent[2]["role"], "tool");
    assert_eq!(sent[2]["tool_call_id"], "call_1");
    assert_eq!(sent[2]["content"], "{\"name\":\"Ada\"}");

    // One write stored the whole turn: question, call, result, answer.
    let conv = store
        .load_conversation(TENANT, &conversation, ctxgate::now_secs())
        .await
        .unwrap();
    let roles: Vec<Role> = conv.messages.iter().map(|m| m.message.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(conv.meta.turns, 1);
    assert_eq!(conv.meta.tokens, 30 + 46);
    let steps: Vec<u64> = conv
        .messages
        .iter()
        .filter_map(|m| m.turn.as_ref().map(|t| t.usage.total()))
        .collect();
    assert_eq!(steps, [30, 46]);

    // Both calls were metered, in the turn's own write.
    let rows = store.usage(TENANT, "0000", "9999").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].requests, rows[0].total_tokens),
        (before.0 + 2, before.1 + 76)
    );
}

#[tokio::test]
async fn two_steps_commit_together_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    two_steps(store.clone(), false).await;
    two_steps(store, true).await;
}

#[tokio::test]
async fn two_steps_commit_together_on_dynamodb() {
    let store = dynamo_store().await;
    two_steps(store.clone(), false).await;
    two_steps(store, true).await;
}

/// Tokens reserved or spent today by the tenant.
async fn spent(store: &Arc<dyn Store>) -> i64 {
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let key = CounterKey {
        pk: format!("T#{TENANT}#B"),
        sk: format!("{day}#tokens"),
    };
    store.counter_get(&key).await.unwrap()
}

async fn dropped_guard(store: Arc<dyn Store>) {
    let upstream = MockUpstream::start(|_| Reply::json(final_answer())).await;
    let base = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        store.clone(),
        "[tenants.steps]\ntokens_per_day = 1000000\n",
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-test")],
    );
    let now = ctxgate::now_secs();
    let key = ctxgate_tests::unique("idem");
    let begin = || idempotency::begin(&*store, TENANT, key.clone(), "fp", now, 600);
    let Begin::Run(claim) = begin().await.unwrap() else {
        panic!("a fresh key runs");
    };
    let before = spent(&store).await;
    let input = Input {
        model: "openai/gpt-4o-mini".into(),
        request: Request {
            messages: vec![Message::text(Role::User, "hello")],
            ..Request::default()
        },
        conversation: None,
        claim: Some(claim),
    };
    let prepared = turn::prepare(&gw.state, &principal(), input).await.unwrap();
    assert!(spent(&store).await > before, "the worst case is reserved");
    // The front door goes away before the provider is called.
    drop(prepared);
    eventually("the reservation refunded", || {
        let store = store.clone();
        async move { spent(&store).await == before }
    })
    .await;
    eventually("the claim released", || async {
        matches!(begin().await, Ok(Begin::Run(_)))
    })
    .await;
    assert!(upstream.received().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_dropped_guard_gives_back_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    dropped_guard(store).await;
}

#[tokio::test]
async fn a_dropped_guard_gives_back_on_dynamodb() {
    dropped_guard(dynamo_store().await).await;
}
