//! Issue 12, points 3 and 4: budgets that cannot be bypassed (unpriced
//! models, uncapped answers, unmetered calls) and rate limits per tenant on
//! every authenticated route. Counters are checked on both stores.

use std::sync::Arc;
use std::time::Duration;

use ctxgate::auth::{KeySpec, mint};
use ctxgate::store::{CounterKey, Store, UsageRow};
use ctxgate_tests::jwt::Issuer;
use ctxgate_tests::{
    Gateway, MockUpstream, Received, Reply, dynamo_store, embedded_store, eventually,
    openai_completion, reported_users,
};
use serde_json::{Value, json};

/// A gateway on `store` whose OpenAI provider is `upstream`, with `config`.
fn gateway(store: Arc<dyn Store>, upstream: &MockUpstream, config: &str) -> Gateway {
    let base = format!("{}/v1", upstream.url);
    Gateway::with_toml(
        store,
        config,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-x")],
    )
}

async fn key(store: &Arc<dyn Store>, tenant: &str, scopes: &[&str], rpm: Option<u32>) -> String {
    let spec = KeySpec {
        tenant: tenant.into(),
        name: "t".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        models: vec![],
        rpm,
        valid_until: None,
        mcp_servers: Vec::new(),
        mcp_tools: Vec::new(),
    };
    let k = mint(&spec, ctxgate::now_secs()).unwrap();
    store.put_key(&k.record).await.unwrap();
    k.secret
}

fn today() -> String {
    ctxgate::usage::day(ctxgate::now_secs())
}

async fn spent(store: &Arc<dyn Store>, tenant: &str, what: &str) -> i64 {
    let key = CounterKey {
        pk: format!("T#{tenant}#B"),
        sk: format!("{}#{what}", today()),
    };
    store.counter_get(&key).await.unwrap()
}

async fn usage_rows(store: &Arc<dyn Store>, tenant: &str) -> Vec<UsageRow> {
    let day = today();
    store.usage(tenant, &day, &day).await.unwrap()
}

fn chat(model: &str, max_tokens: Option<u32>) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    if let Some(n) = max_tokens {
        body["max_tokens"] = n.into();
    }
    body
}

// ---- point 3: a model without a price is not free ---------------------------

async fn unpriced_models(store: Arc<dyn Store>) {
    // Issue 12, point 3: an unpriced model is refused under a cost budget,
    // unless the price table matches it by the documented rule.
    let upstream = MockUpstream::openai().await;
    let gw = gateway(
        store.clone(),
        &upstream,
        "[quotas]\ncost_per_day_usd = 10.0\n[tenants.free]\ntokens_per_day = 1000000\n",
    );
    let paying = key(&store, "paying", &["chat"], None).await;
    for model in ["openai/gpt-4o-turbo-preview", "openai/gpt-4o-2024-8-06"] {
        let (status, _, body) = gw
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&paying),
                Some(chat(model, None)),
            )
            .await;
        assert_eq!(status, 400, "{model}: {body}");
        assert_eq!(body["error"]["code"], "model_not_priced");
        assert_eq!(body["error"]["param"], "model");
    }
    assert!(upstream.received().is_empty(), "nothing was sent upstream");
    assert_eq!(spent(&store, "paying", "cost").await, 0);

    // A dated variant is priced as its undated name: 11 in, 7 out at gpt-4o's
    // 2.5 / 10 USD per million is 97.5 micro-USD.
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&paying),
            Some(chat("openai/gpt-4o-2024-08-06", Some(100))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(spent(&store, "paying", "cost").await, 98);
    let rows = usage_rows(&store, "paying").await;
    assert_eq!(rows[0].cost_micro_usd, 98);

    // A tenant without a cost budget may use it (it costs 0 in its report).
    let free = key(&store, "free", &["chat"], None).await;
    let (status, _, _) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&free),
            Some(chat("openai/gpt-4o-turbo-preview", None)),
        )
        .await;
    assert_eq!(status, 200);

    // With a configured default price, unpriced models are charged at it.
    let gw = gateway(
        store.clone(),
        &upstream,
        r#"[quotas]
cost_per_day_usd = 10.0
[prices]
version = "test-1"
[prices.models."openai/gpt-4o"]
input = 2.5
output = 10.0
[prices.default]
input = 100.0
output = 100.0
"#,
    );
    let other = key(&store, "defaulted", &["chat"], None).await;
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&other),
            Some(chat("openai/gpt-4o-turbo-preview", Some(100))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(spent(&store, "defaulted", "cost").await, 18 * 100);
}

#[tokio::test]
async fn unpriced_models_are_refused_under_a_cost_budget_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    unpriced_models(store).await;
}

#[tokio::test]
async fn unpriced_models_are_refused_under_a_cost_budget_on_dynamodb() {
    unpriced_models(dynamo_store().await).await;
}

// ---- point 3: a turn cannot overrun the budget ------------------------------

/// A provider that generates all it is allowed: the cap it was sent, else 100k.
fn greedy(r: &Received) -> Reply {
    let cap = r.body["max_completion_tokens"]
        .as_u64()
        .or(r.body["max_tokens"].as_u64())
        .unwrap_or(100_000);
    Reply::json(openai_completion(&reported_users(&r.body), 5, cap))
}

async fn uncapped_turns(store: Arc<dyn Store>) {
    // Issue 12, point 3: without max_tokens, a turn reserves the model's real
    // maximum output, or is capped upstream to what the budget has left.
    let upstream = MockUpstream::start(greedy).await;
    let gw = gateway(
        store.clone(),
        &upstream,
        "[tenants.small]\ntokens_per_day = 3000\n[tenants.big]\ntokens_per_day = 10000000\n\
         [tenants.crowd]\ntokens_per_day = 3000\n[tenants.thrifty]\ncost_per_day_usd = 0.001\n",
    );
    // Enough budget: the model's own maximum (16384 for gpt-4o-mini) is
    // reserved and nothing is imposed upstream.
    let big = key(&store, "big", &["chat"], None).await;
    let (status, _, _) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&big),
            Some(chat("openai/gpt-4o-mini", None)),
        )
        .await;
    assert_eq!(status, 200);
    let sent = &upstream.received()[0].body;
    assert!(sent.get("max_completion_tokens").is_none() && sent.get("max_tokens").is_none());

    // A small budget: the cap sent upstream is what is left, so however much
    // the provider would write, the budget holds.
    let small = key(&store, "small", &["chat"], None).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _, body) = gw
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&small),
                Some(chat("openai/gpt-4o-mini", None)),
            )
            .await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "budget_exceeded");
        }
        statuses.push(status);
        assert!(spent(&store, "small", "tokens").await <= 3000);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");
    let capped: Vec<u64> = upstream.received()[1..]
        .iter()
        .map(|r| {
            r.body["max_completion_tokens"]
                .as_u64()
                .expect("a cap was sent")
        })
        .collect();
    assert!(capped.iter().all(|c| *c < 3000), "{capped:?}");

    // A cost budget caps the answer too: 1000 micro-USD at gpt-4o-mini's
    // 0.15 / 0.60 USD per million tokens.
    let thrifty = key(&store, "thrifty", &["chat"], None).await;
    for _ in 0..3 {
        gw.call(
            "POST",
            "/v1/chat/completions",
            Some(&thrifty),
            Some(chat("openai/gpt-4o-mini", None)),
        )
        .await;
    }
    let cost = spent(&store, "thrifty", "cost").await;
    assert!(cost > 900 && cost <= 1000, "{cost}");
    let last = upstream.received().pop().unwrap();
    assert!(last.body["max_completion_tokens"].as_u64().unwrap() < 16_384);

    // Concurrent turns: the sum still stays within the budget.
    let crowd = key(&store, "crowd", &["chat"], None).await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (gw, crowd) = (gw.clone(), crowd.clone());
        tasks.push(tokio::spawn(async move {
            gw.call(
                "POST",
                "/v1/chat/completions",
                Some(&crowd),
                Some(chat("openai/gpt-4o-mini", None)),
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert!([200, 429].contains(&t.await.unwrap()));
    }
    let total = spent(&store, "crowd", "tokens").await;
    assert!(total > 0 && total <= 3000, "{total}");
    let rows = usage_rows(&store, "crowd").await;
    assert_eq!(
        rows[0].total_tokens as i64, total,
        "every reservation was settled"
    );
}

#[tokio::test]
async fn uncapped_turns_stay_within_the_budget_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    uncapped_turns(store).await;
}

#[tokio::test]
async fn uncapped_turns_stay_within_the_budget_on_dynamodb() {
    uncapped_turns(dynamo_store().await).await;
}

async fn tolerance(store: Arc<dyn Store>) {
    // Issue 12, point 3: with `limits.budget_tolerance`, a tenant ends at most
    // one tolerance past its budget.
    let upstream = MockUpstream::start(greedy).await;
    let gw = gateway(
        store.clone(),
        &upstream,
        "[limits]\nbudget_tolerance = 0.5\n[tenants.t]\ntokens_per_day = 2000\n",
    );
    let k = key(&store, "t", &["chat"], None).await;
    for _ in 0..4 {
        gw.call(
            "POST",
            "/v1/chat/completions",
            Some(&k),
            Some(chat("openai/gpt-4o-mini", None)),
        )
        .await;
    }
    let total = spent(&store, "t", "tokens").await;
    assert!(total > 2000 && total <= 3000, "{total}");
}

#[tokio::test]
async fn the_tolerance_bounds_the_overrun_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    tolerance(store).await;
}

#[tokio::test]
async fn the_tolerance_bounds_the_overrun_on_dynamodb() {
    tolerance(dynamo_store().await).await;
}

// ---- point 3: every provider call that ran is metered -----------------------

const NO_USAGE_SSE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"an answer without usage\"},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";

async fn answers_without_usage(store: Arc<dyn Store>) {
    // Issue 12, point 3: an answer without `usage` is charged the gateway's
    // estimate, and its row says so; streamed and not.
    let upstream = MockUpstream::start(|r| {
        if r.body["stream"] == true {
            Reply {
                headers: vec![("content-type".into(), "text/event-stream".into())],
                ..Reply::status(200, NO_USAGE_SSE)
            }
        } else {
            Reply::json(json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "an answer without usage"},
                             "finish_reason": "stop"}]}))
        }
    })
    .await;
    let gw = gateway(
        store.clone(),
        &upstream,
        "[tenants.t]\ntokens_per_day = 1000000\n",
    );
    let k = key(&store, "t", &["chat"], None).await;
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&k),
            Some(chat("openai/gpt-4o-mini", Some(50))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let rows = usage_rows(&store, "t").await;
    assert_eq!((rows[0].requests, rows[0].estimated_requests), (1, 1));
    assert!(rows[0].completion_tokens > 0 && rows[0].prompt_tokens > 0);
    assert_eq!(
        spent(&store, "t", "tokens").await,
        rows[0].total_tokens as i64
    );

    let mut streamed = chat("openai/gpt-4o-mini", Some(50));
    streamed["stream"] = true.into();
    let (status, _, text) = gw
        .call_text("/v1/chat/completions", &k, &[], streamed)
        .await;
    assert_eq!(status, 200);
    assert!(text.contains("[DONE]"), "{text}");
    let rows = usage_rows(&store, "t").await;
    assert_eq!((rows[0].requests, rows[0].estimated_requests), (2, 2));
    assert_eq!(
        spent(&store, "t", "tokens").await,
        rows[0].total_tokens as i64
    );
}

#[tokio::test]
async fn answers_without_usage_are_metered_by_estimate_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    answers_without_usage(store).await;
}

#[tokio::test]
async fn answers_without_usage_are_metered_by_estimate_on_dynamodb() {
    answers_without_usage(dynamo_store().await).await;
}

async fn disconnects(store: Arc<dyn Store>) {
    // Issue 12, point 3: a non-streamed client that goes away while the
    // provider runs is still charged (its reserved worst case, marked
    // estimated), not refunded to zero.
    let gate = Arc::new(tokio::sync::Notify::new());
    let held = gate.clone();
    let upstream = MockUpstream::start(move |_| Reply {
        gate: Some(held.clone()),
        ..Reply::json(openai_completion("late", 11, 7))
    })
    .await;
    let gw = gateway(
        store.clone(),
        &upstream,
        "[tenants.t]\ntokens_per_day = 1000000\n",
    );
    let gw = Arc::new(gw);
    let k = key(&store, "t", &["chat"], None).await;
    let (up, st) = (&upstream, &store);
    let request = {
        let (gw, k) = (gw.clone(), k.clone());
        tokio::spawn(async move {
            gw.call(
                "POST",
                "/v1/chat/completions",
                Some(&k),
                Some(chat("openai/gpt-4o-mini", Some(500))),
            )
            .await
        })
    };
    eventually("the provider was called", || async move {
        up.received().len() == 1
    })
    .await;
    let reserved = spent(&store, "t", "tokens").await;
    assert!(reserved > 500);
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    eventually("the abandoned call was recorded", || async move {
        !usage_rows(st, "t").await.is_empty()
    })
    .await;
    let rows = usage_rows(&store, "t").await;
    assert_eq!((rows[0].requests, rows[0].estimated_requests), (1, 1));
    assert_eq!(rows[0].total_tokens as i64, reserved);
    assert_eq!(spent(&store, "t", "tokens").await, reserved);

    // Gone just as the provider answers: whichever happened first, the call
    // is metered exactly once and the budget matches the usage report.
    let gate = Arc::new(tokio::sync::Notify::new());
    let held = gate.clone();
    upstream.respond(move |_| Reply {
        gate: Some(held.clone()),
        ..Reply::json(openai_completion("late", 11, 7))
    });
    let request = {
        let (gw, k) = (gw.clone(), k.clone());
        tokio::spawn(async move {
            gw.call(
                "POST",
                "/v1/chat/completions",
                Some(&k),
                Some(chat("openai/gpt-4o-mini", Some(500))),
            )
            .await
        })
    };
    eventually("the provider was called again", || async move {
        up.received().len() == 2
    })
    .await;
    gate.notify_one();
    request.abort();
    let _ = request.await;
    eventually("the second call was recorded", || async move {
        usage_rows(st, "t").await[0].requests == 2
    })
    .await;
    let rows = usage_rows(&store, "t").await;
    assert_eq!(
        spent(&store, "t", "tokens").await,
        rows[0].total_tokens as i64
    );

    // A streamed request whose client goes away before the stream opened.
    let (before, estimated) = (
        spent(&store, "t", "tokens").await,
        rows[0].estimated_requests,
    );
    upstream.respond(move |_| Reply {
        gate: Some(Arc::new(tokio::sync::Notify::new())),
        ..Reply::json(openai_completion("never", 11, 7))
    });
    let request = {
        let (gw, k) = (gw.clone(), k.clone());
        let mut body = chat("openai/gpt-4o-mini", Some(500));
        body["stream"] = true.into();
        tokio::spawn(async move { gw.call_text("/v1/chat/completions", &k, &[], body).await })
    };
    eventually("the streamed call went out", || async move {
        up.received().len() == 3
    })
    .await;
    let reserved = spent(&store, "t", "tokens").await - before;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    eventually("the abandoned stream was recorded", || async move {
        usage_rows(st, "t").await[0].requests == 3
    })
    .await;
    let rows = usage_rows(&store, "t").await;
    assert_eq!(rows[0].estimated_requests, estimated + 1);
    assert_eq!(spent(&store, "t", "tokens").await, before + reserved);
    assert_eq!(
        spent(&store, "t", "tokens").await,
        rows[0].total_tokens as i64
    );
}

#[tokio::test]
async fn disconnected_clients_are_charged_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    disconnects(store).await;
}

#[tokio::test]
async fn disconnected_clients_are_charged_on_dynamodb() {
    disconnects(dynamo_store().await).await;
}

async fn blocked_answers(store: Arc<dyn Store>) {
    // Issue 12, point 3: an answer the redaction policy blocks was paid for:
    // it is charged, then refused.
    let upstream = MockUpstream::start(|_| {
        Reply::json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "write to jane.doe@example.com"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}))
    })
    .await;
    let gw = gateway(
        store.clone(),
        &upstream,
        "[tenants.t]\ntokens_per_day = 1000000\n[tenants.t.redaction]\nresponse = \"block\"\n",
    );
    let k = key(&store, "t", &["chat"], None).await;
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&k),
            Some(chat("openai/gpt-4o-mini", Some(50))),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "content_blocked");
    let rows = usage_rows(&store, "t").await;
    assert_eq!((rows[0].requests, rows[0].total_tokens), (1, 18));
    assert_eq!(spent(&store, "t", "tokens").await, 18);

    // Issue 12, point 3: a 2xx answer the gateway cannot read was still
    // generated (and billed): its worst case is charged, as estimated.
    upstream.respond(|_| Reply::status(200, "{\"choices\": \"not a list\""));
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&k),
            Some(chat("openai/gpt-4o-mini", Some(50))),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    let rows = usage_rows(&store, "t").await;
    assert_eq!((rows[0].requests, rows[0].estimated_requests), (2, 1));
    assert!(rows[0].completion_tokens >= 7 + 50);
    assert_eq!(
        spent(&store, "t", "tokens").await,
        rows[0].total_tokens as i64
    );
}

#[tokio::test]
async fn blocked_answers_are_charged_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    blocked_answers(store).await;
}

#[tokio::test]
async fn blocked_answers_are_charged_on_dynamodb() {
    blocked_answers(dynamo_store().await).await;
}

// ---- issue 14, point 4: a prompt may be written to the cache at 2x -------------

/// A price table whose gpt-4o-mini costs 100 USD per million in and out,
/// with `cache` lines (the write prices; none: the defaults, 1.25x and 2x).
fn cache_prices(cache: &str, tenants: &str) -> String {
    format!(
        "[prices]\nversion = \"t\"\n[prices.models.\"openai/gpt-4o-mini\"]\n\
         input = 100.0\noutput = 100.0\n{cache}\n{tenants}"
    )
}

async fn cache_write_rates(store: Arc<dyn Store>) {
    // Issue 14, point 4: a cost reservation covers the prompt at the highest
    // of the input and cache-write prices, so caching cannot overspend.
    let gate = Arc::new(tokio::sync::Notify::new());
    let held = gate.clone();
    let upstream = MockUpstream::start(move |_| Reply {
        gate: Some(held.clone()),
        ..Reply::json(openai_completion("x", 11, 7))
    })
    .await;
    let tenant = "[tenants.t]\ntokens_per_day = 1000000\ncost_per_day_usd = 10.0\n";
    let gw = Arc::new(gateway(store.clone(), &upstream, &cache_prices("", tenant)));
    let k = key(&store, "t", &["chat"], None).await;
    let request = {
        let (gw, k) = (gw.clone(), k.clone());
        tokio::spawn(async move {
            gw.call(
                "POST",
                "/v1/chat/completions",
                Some(&k),
                Some(chat("openai/gpt-4o-mini", Some(500))),
            )
            .await
        })
    };
    let up = &upstream;
    eventually("the provider was called", || async move {
        up.received().len() == 1
    })
    .await;
    // The prompt's reserved tokens, at the 1-hour write price (2 x 100),
    // and the 500 output tokens at 100.
    let prompt = spent(&store, "t", "tokens").await - 500;
    assert!(prompt > 0);
    assert_eq!(spent(&store, "t", "cost").await, prompt * 200 + 500 * 100);
    gate.notify_one();
    assert_eq!(request.await.unwrap().0, 200);
    // Settled to what was reported: 11 in and 7 out at 100.
    assert_eq!(spent(&store, "t", "cost").await, 1800);

    // A budget between the input-price and the write-price reservation: it
    // is refused with the default write prices, and only fits when the
    // table says writes cost the input price.
    let between = (prompt * 150 + 500 * 100) as f64 / 1e6;
    let tight = format!("[tenants.tight]\ncost_per_day_usd = {between}\n");
    let answered = MockUpstream::start(|_| Reply::json(openai_completion("x", 11, 7))).await;
    let gw = gateway(store.clone(), &answered, &cache_prices("", &tight));
    let k = key(&store, "tight", &["chat"], None).await;
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&k),
            Some(chat("openai/gpt-4o-mini", Some(500))),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert!(answered.received().is_empty());
    let flat = "cache_write = 100.0\ncache_write_1h = 100.0";
    let gw = gateway(store.clone(), &answered, &cache_prices(flat, &tight));
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&k),
            Some(chat("openai/gpt-4o-mini", Some(500))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn reservations_cover_cache_write_prices_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    cache_write_rates(store).await;
}

#[tokio::test]
async fn reservations_cover_cache_write_prices_on_dynamodb() {
    cache_write_rates(dynamo_store().await).await;
}

async fn summary_calls(store: Arc<dyn Store>) {
    // Issue 12, point 3: summary calls are metered, including one cut off
    // (charged its reserved worst case) and one whose summary is discarded.
    // The first summary call hangs until it is cut off.
    let gate = Arc::new(tokio::sync::Notify::new());
    let upstream = MockUpstream::start(move |_| Reply {
        gate: Some(gate.clone()),
        ..Reply::json(openai_completion("SUMMARY", 50, 6))
    })
    .await;
    let gw = gateway(
        store.clone(),
        &upstream,
        r#"[context]
strategy = "summarize"
summary_model = "openai/summarizer"
summarize_after_turns = 1
summary_max_tokens = 300
[tenants.t]
tokens_per_day = 1000000
"#,
    );
    let k = key(&store, "t", &["chat"], None).await;
    for i in 0..3 {
        let mut body = chat("echo", None);
        body["conversation_id"] = "s".into();
        body["messages"][0]["content"] = format!("turn {i}").into();
        let (status, _, _) = gw
            .call("POST", "/v1/chat/completions", Some(&k), Some(body))
            .await;
        assert_eq!(status, 200);
    }
    let before = spent(&store, "t", "tokens").await;
    let (up, st) = (&upstream, &store);
    let job = || ctxgate::context::SummaryJob {
        from_seq: 1,
        to_seq: 100,
        previous: None,
    };
    let summarizer = |rows: &[UsageRow]| {
        rows.iter()
            .find(|r| r.model == "openai/summarizer")
            .cloned()
    };

    // Cut off: the turn stops waiting while the summary model still writes.
    let pending = ctxgate::summary::Pending::start(gw.state.clone(), "t".into(), "s".into(), job());
    eventually("the summary call went out", || async move {
        up.received().len() == 1
    })
    .await;
    assert!(pending.finish(Duration::ZERO).await.is_none());
    eventually("the cut-off summary was recorded", || async move {
        summarizer(&usage_rows(st, "t").await).is_some()
    })
    .await;
    let row = summarizer(&usage_rows(&store, "t").await).unwrap();
    assert_eq!((row.requests, row.estimated_requests), (1, 1));
    assert!(row.completion_tokens >= 300);
    assert_eq!(
        spent(&store, "t", "tokens").await,
        before + row.total_tokens as i64
    );

    // Answered, then discarded (the turn it was for failed): still recorded.
    upstream.respond(|_| Reply::json(openai_completion("SUMMARY", 50, 6)));
    let pending = ctxgate::summary::Pending::start(gw.state.clone(), "t".into(), "s".into(), job());
    let written = pending
        .finish(Duration::from_secs(30))
        .await
        .expect("a summary");
    drop(written);
    eventually("the discarded summary was recorded", || async move {
        summarizer(&usage_rows(st, "t").await).is_some_and(|r| r.requests == 2)
    })
    .await;
    let second = summarizer(&usage_rows(&store, "t").await).unwrap();
    assert_eq!(second.total_tokens, row.total_tokens + 56);
    assert_eq!(
        spent(&store, "t", "tokens").await,
        before + second.total_tokens as i64
    );
}

#[tokio::test]
async fn summary_calls_are_metered_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    summary_calls(store).await;
}

#[tokio::test]
async fn summary_calls_are_metered_on_dynamodb() {
    summary_calls(dynamo_store().await).await;
}

// ---- issue 19, point 1: the rate count and the reservation, one write -------

async fn rate_and_budget_in_one_write(store: Arc<dyn Store>) {
    // A turn counts its request against the key's rate limit in the same
    // conditional write as its reservation, all or none: a request refused
    // by its budget is not counted against the rate, one refused by its rate
    // reserves nothing, and each refusal names its own limit.
    let upstream = MockUpstream::openai().await;
    let gw = gateway(
        store.clone(),
        &upstream,
        "[tenants.both]\ntokens_per_day = 1000\ncost_per_day_usd = 1.0\n\
         [tenants.poor]\ntokens_per_day = 1000000\ncost_per_day_usd = 0.0001\n",
    );
    let post = |k: String, max_tokens: Option<u32>| {
        let gw = &gw;
        async move {
            gw.call(
                "POST",
                "/v1/chat/completions",
                Some(&k),
                Some(chat("openai/gpt-4o", max_tokens)),
            )
            .await
        }
    };
    let budgets = async |tenant| {
        (
            spent(&store, tenant, "tokens").await,
            spent(&store, tenant, "cost").await,
        )
    };
    // A run that straddles a minute boundary starts a new window: try again.
    for _ in 0..3 {
        let minute = ctxgate::now_secs() / 60;
        let k = key(&store, "both", &["chat"], Some(1)).await;
        let start = budgets("both").await;
        // More output than the token budget holds: refused by it, nothing counted.
        let (over_budget, _, body) = post(k.clone(), Some(5000)).await;
        let after_refusal = budgets("both").await;
        // The window is still open: this one runs.
        let (first, _, _) = post(k.clone(), Some(100)).await;
        let after_turn = budgets("both").await;
        // Over the rate: refused as such, and nothing reserved.
        let (over_rate, headers, rate_body) = post(k.clone(), Some(100)).await;
        let after_rate = budgets("both").await;
        if ctxgate::now_secs() / 60 != minute {
            continue;
        }
        assert_eq!(over_budget, 429, "{body}");
        assert_eq!(body["error"]["code"], "budget_exceeded");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("token"),
            "{body}"
        );
        assert_eq!(after_refusal, start, "a refused request changes no counter");
        assert_eq!(first, 200);
        assert!(after_turn.0 > start.0 && after_turn.1 > start.1);
        assert_eq!(over_rate, 429, "{rate_body}");
        assert_eq!(rate_body["error"]["code"], "rate_limit_exceeded");
        let retry: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(
            after_rate, after_turn,
            "a rate-limited request reserves nothing"
        );
        // What the budget holds is what the turns used: every settlement
        // arrived, no refusal left a trace.
        let rows = usage_rows(&store, "both").await;
        let total: u64 = rows.iter().map(|r| r.total_tokens).sum();
        assert_eq!(after_rate.0, total as i64);

        // A cost budget that refuses: named, and the token budget untouched.
        let poor = key(&store, "poor", &["chat"], Some(1)).await;
        let (status, _, body) = post(poor.clone(), Some(100)).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "budget_exceeded");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("cost"),
            "{body}"
        );
        assert_eq!(budgets("poor").await, (0, 0));
        if ctxgate::now_secs() / 60 != minute {
            continue;
        }
        return;
    }
    panic!("three runs straddled a minute boundary");
}

#[tokio::test]
async fn rate_and_budget_are_one_write_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    rate_and_budget_in_one_write(store).await;
}

#[tokio::test]
async fn rate_and_budget_are_one_write_on_dynamodb() {
    rate_and_budget_in_one_write(dynamo_store().await).await;
}

// ---- point 4: rate limits per tenant and everywhere -------------------------

async fn jwt_buckets(store: Arc<dyn Store>) {
    // Issue 12, point 4: JWT rate buckets are keyed by tenant and subject; a
    // token without `sub` gets a bucket per tenant, not one global bucket.
    let issuer = Issuer::start(false).await;
    let config = format!(
        "[limits]\nrequests_per_minute = 2\n[jwt]\nissuer = \"{}\"\naudience = [\"api\"]\njwks_url = \"{}\"\n",
        issuer.issuer, issuer.jwks_url
    );
    let gw = Gateway::with_toml(store, &config, &[]);
    let token = |tenant: &str, sub: Option<&str>| {
        let mut claims = issuer.claims(tenant, "api", "chat");
        match sub {
            Some(s) => claims["sub"] = s.into(),
            None => {
                claims.as_object_mut().unwrap().remove("sub");
            }
        }
        issuer.rs256(&claims)
    };
    // A run that straddles a minute boundary starts a new window: try again.
    for _ in 0..3 {
        let minute = ctxgate::now_secs() / 60;
        let tenant_a = ctxgate_tests::unique("a");
        let tenant_b = ctxgate_tests::unique("b");
        let mut statuses = Vec::new();
        for t in [
            token(&tenant_a, None),
            token(&tenant_a, None),
            token(&tenant_a, None),
            token(&tenant_b, None),
            token(&tenant_a, Some("user-2")),
            token(&tenant_b, Some("user-2")),
        ] {
            statuses.push(gw.call("GET", "/v1/models", Some(&t), None).await.0);
        }
        if ctxgate::now_secs() / 60 == minute {
            assert_eq!(statuses, [200, 200, 429, 200, 200, 200]);
            return;
        }
    }
    panic!("three runs straddled a minute boundary");
}

#[tokio::test]
async fn jwt_rate_buckets_are_per_tenant_and_subject_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    jwt_buckets(store).await;
}

#[tokio::test]
async fn jwt_rate_buckets_are_per_tenant_and_subject_on_dynamodb() {
    jwt_buckets(dynamo_store().await).await;
}

async fn every_route(store: Arc<dyn Store>) {
    // Issue 12, point 4: the per-minute limit applies to every authenticated
    // route, not only chat.
    let gw = Gateway::new(store.clone(), &[]);
    let all = [
        "chat",
        "conversations:read",
        "conversations:write",
        "usage:read",
        "admin",
    ];
    let routes: &[(&str, &str, Option<Value>)] = &[
        ("POST", "/v1/chat/completions", Some(chat("echo", None))),
        ("GET", "/v1/models", None),
        ("GET", "/v1/conversations", None),
        ("POST", "/v1/conversations", Some(json!({}))),
        ("GET", "/v1/conversations/c1", None),
        ("PATCH", "/v1/conversations/c1", Some(json!({"title": "x"}))),
        ("DELETE", "/v1/conversations/c1", None),
        ("GET", "/v1/usage", None),
        ("GET", "/v1/admin/keys", None),
        (
            "POST",
            "/v1/admin/keys",
            Some(json!({"name": "n", "scopes": ["chat"]})),
        ),
        ("DELETE", "/v1/admin/keys/key_0000000000000000", None),
        ("GET", "/v1/admin/ready", None),
    ];
    for (method, path, body) in routes {
        for _ in 0..3 {
            let minute = ctxgate::now_secs() / 60;
            let k = key(&store, &ctxgate_tests::unique("t"), &all, Some(1)).await;
            let (first, _, _) = gw.call(method, path, Some(&k), body.clone()).await;
            let (second, headers, resp) = gw.call(method, path, Some(&k), body.clone()).await;
            if ctxgate::now_secs() / 60 != minute {
                continue;
            }
            assert_ne!(first, 429, "{method} {path}");
            assert_eq!(second, 429, "{method} {path}: {resp}");
            assert_eq!(resp["error"]["code"], "rate_limit_exceeded");
            assert!(headers.contains_key("retry-after"));
            break;
        }
    }
}

#[tokio::test]
async fn every_authenticated_route_is_rate_limited_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    every_route(store).await;
}

#[tokio::test]
async fn every_authenticated_route_is_rate_limited_on_dynamodb() {
    every_route(dynamo_store().await).await;
}
