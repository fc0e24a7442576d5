//! Issue 13, point 3: the transport-free turn pipeline, driven directly. A
//! turn's guard gives back its reservation and idempotency claim when it is
//! dropped. On both stores. (Several model steps in one turn, committed
//! together, are the tool loop's: tests/tests/tool_loop.rs.)

use std::sync::Arc;

use ctxgate::auth::Principal;
use ctxgate::idempotency::{self, Begin};
use ctxgate::model::{Message, Request, Role};
use ctxgate::store::{CounterKey, Store};
use ctxgate::turn::{self, Input};
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
        mcp_tools: Vec::new(),
    }
}

fn final_answer() -> Value {
    json!({"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
        "content": "Customer 42 is Ada."}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}})
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
        mcp_servers: None,
        continuation: Default::default(),
    };
    let prepared = turn::prepare(&gw.state, &principal(), input, None)
        .await
        .unwrap();
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
