//! Issue 19, point 1: nothing slow on a turn's critical path. DynamoDB calls
//! are counted at a proxy in front of the emulator, up to the response's
//! last byte and then after it (the usage batcher's flush): a stateless turn
//! of a key with no limit writes nothing before its answer, one with a
//! budget, a rate limit, or both makes one conditional write, and a stored turn
//! makes one read and one transaction. The usage written after the answer
//! adds up to what the turns used, on both stores.

use std::sync::Arc;

use axum::body::Body;
use ctxgate::store::CounterKey;
use ctxgate_tests::Gateway;
use ctxgate_tests::fault_proxy::FaultProxy;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

const OPS: [&str; 7] = [
    "GetItem",
    "Query",
    "UpdateItem",
    "PutItem",
    "TransactWriteItems",
    "BatchWriteItem",
    "DeleteItem",
];

const WRITES: [&str; 5] = [
    "UpdateItem",
    "PutItem",
    "TransactWriteItems",
    "BatchWriteItem",
    "DeleteItem",
];

/// No interval flush during the test (an hour): only the test flushes.
const TOML: &str = "usage_flush_ms = 3600000\n\
                    [tenants.budgeted]\ntokens_per_day = 1000000\n\
                    [tenants.both]\ntokens_per_day = 1000000\n\
                    [tenants.all]\ntokens_per_day = 1000000\ncost_per_day_usd = 100.0\n\
                    [prices]\nversion = \"t\"\n[prices.models]\n\
                    [prices.default]\ninput = 1.0\noutput = 1.0\n";

type Counts = Vec<(&'static str, usize)>;

fn snapshot(proxy: &FaultProxy) -> Vec<usize> {
    OPS.iter().map(|o| proxy.calls(o)).collect()
}

fn since(proxy: &FaultProxy, before: &[usize]) -> Counts {
    OPS.iter()
        .zip(before)
        .map(|(o, b)| (*o, proxy.calls(o) - b))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn get(c: &Counts, op: &str) -> usize {
    c.iter().find(|(o, _)| *o == op).map_or(0, |x| x.1)
}

fn writes(c: &Counts) -> usize {
    WRITES.iter().map(|o| get(c, o)).sum()
}

/// A streamed chat turn through the router: the calls made until the
/// response's last byte was read, and those the flush after it made.
async fn turn(
    gw: &Gateway,
    proxy: &FaultProxy,
    key: &str,
    conversation: Option<&str>,
) -> (Counts, Counts) {
    let mut body = json!({"model": "echo", "stream": true,
                          "messages": [{"role": "user", "content": "hello there"}]});
    if let Some(c) = conversation {
        body["conversation_id"] = c.into();
    }
    let req = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let before = snapshot(proxy);
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&bytes).contains("[DONE]"));
    let answered = since(proxy, &before);
    let mid = snapshot(proxy);
    gw.state.usage.flush().await.unwrap();
    (answered, since(proxy, &mid))
}

async fn key(gw: &Gateway, tenant: &str, rpm: Option<u32>) -> String {
    let mut k = ctxgate::auth::mint_key(tenant, "test", &[], None, ctxgate::now_secs()).unwrap();
    k.record.rpm = rpm;
    gw.state.store.put_key(&k.record).await.unwrap();
    k.secret
}

#[tokio::test]
async fn store_calls_before_and_after_the_answer() {
    let (gw, proxy) = ctxgate_tests::proxied_gateway(TOML, &[]).await;
    let free = key(&gw, "free", None).await;
    let budgeted = key(&gw, "budgeted", None).await;
    let limited = key(&gw, "limited", Some(1000)).await;
    let both = key(&gw, "both", Some(1000)).await;
    let all = key(&gw, "all", Some(1000)).await;
    let conversation = ctxgate_tests::unique("conv");
    // First turns warm the key cache (a GetItem each) and create the conversation.
    for k in [&free, &budgeted, &limited, &both, &all] {
        turn(&gw, &proxy, k, None).await;
    }
    turn(&gw, &proxy, &free, Some(&conversation)).await;

    let stateless = turn(&gw, &proxy, &free, None).await;
    let with_budget = turn(&gw, &proxy, &budgeted, None).await;
    let with_rate = turn(&gw, &proxy, &limited, None).await;
    let with_both = turn(&gw, &proxy, &both, None).await;
    let with_all = turn(&gw, &proxy, &all, None).await;
    let stored = turn(&gw, &proxy, &free, Some(&conversation)).await;

    println!("DynamoDB calls of one streamed turn, before the last byte | after (the flush):");
    println!("| turn | before the answer's last byte | after |\n|---|---|---|");
    let show = |c: &Counts| {
        let s: Vec<String> = c.iter().map(|(o, n)| format!("{o} {n}")).collect();
        if s.is_empty() {
            "none".to_owned()
        } else {
            s.join(", ")
        }
    };
    for (name, (before, after)) in [
        ("stateless, no rate limit or budget", &stateless),
        ("stateless, a daily token budget", &with_budget),
        ("stateless, a rate limit", &with_rate),
        ("stateless, a rate limit + a token budget", &with_both),
        (
            "stateless, a rate limit + token and cost budgets",
            &with_all,
        ),
        ("stored (conversation_id), no limits", &stored),
    ] {
        println!("| {name} | {} | {} |", show(before), show(after));
    }
    // No limits: nothing at all before the answer; the row after it.
    assert_eq!(stateless.0, vec![], "{stateless:?}");
    assert_eq!(stateless.1, vec![("TransactWriteItems", 1)]);
    // A budget: the reservation, one conditional write, and nothing else;
    // the settlement and the row after it, in one batch.
    assert_eq!(with_budget.0, vec![("UpdateItem", 1)], "{with_budget:?}");
    assert_eq!(with_budget.1, vec![("TransactWriteItems", 1)]);
    // A rate limit: the window's conditional write.
    assert_eq!(with_rate.0, vec![("UpdateItem", 1)], "{with_rate:?}");
    assert_eq!(with_rate.1, vec![("TransactWriteItems", 1)]);
    // A rate limit and budgets: the window's count and the reservations in
    // one conditional write (a transaction of their items), nothing else.
    for (name, c) in [("both", &with_both), ("all", &with_all)] {
        assert_eq!(c.0, vec![("TransactWriteItems", 1)], "{name}: {c:?}");
        assert_eq!(c.1, vec![("TransactWriteItems", 1)], "{name}: {c:?}");
    }
    // A stored turn: one read for its context, one transaction for its
    // commit (its row is in it), nothing after.
    assert_eq!(
        (
            get(&stored.0, "Query"),
            get(&stored.0, "TransactWriteItems")
        ),
        (1, 1),
        "{stored:?}"
    );
    assert_eq!(writes(&stored.0), 1, "{stored:?}");
    assert_eq!(stored.1, vec![], "{stored:?}");

    // What the batches wrote adds up: the budget holds exactly the
    // budgeted tenant's tokens (the reservations settled to their usage).
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let store = &gw.state.store;
    for (tenant, turns) in [
        ("free", 4),
        ("budgeted", 2),
        ("limited", 2),
        ("both", 2),
        ("all", 2),
    ] {
        let rows = store.usage(tenant, &day, &day).await.unwrap();
        assert_eq!(rows.len(), 1, "{tenant}: {rows:?}");
        assert_eq!(rows[0].requests, turns, "{tenant}");
    }
    for (tenant, what) in [
        ("budgeted", "tokens"),
        ("both", "tokens"),
        ("all", "tokens"),
        ("all", "cost"),
    ] {
        let rows = store.usage(tenant, &day, &day).await.unwrap();
        let spent = store
            .counter_get(&CounterKey {
                pk: format!("T#{tenant}#B"),
                sk: format!("{day}#{what}"),
            })
            .await
            .unwrap();
        let used = match what {
            "tokens" => rows[0].total_tokens,
            _ => rows[0].cost_micro_usd,
        };
        assert_eq!(spent, used as i64, "{tenant} {what}");
    }
}

/// Many concurrent turns on the embedded store: the rows add up once flushed,
/// and the budget equals them (every reservation settled exactly once).
#[tokio::test]
async fn concurrent_turns_add_up_on_the_embedded_store() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    let gw = Gateway::with_toml(store.clone(), TOML, &[]);
    let k = key(&gw, "budgeted", None).await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (gw, k) = (gw.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            // A cap on the output keeps 40 reservations in flight under the budget.
            let body = json!({"model": "echo", "stream": i % 2 == 0, "max_tokens": 50,
                              "messages": [{"role": "user", "content": format!("turn {i}")}]});
            let req = http::Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {k}"))
                .body(Body::from(body.to_string()))
                .unwrap();
            let resp = gw.router.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            resp.into_body().collect().await.unwrap();
            status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    gw.state.usage.flush().await.unwrap();
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let rows = store.usage("budgeted", &day, &day).await.unwrap();
    assert_eq!(rows[0].requests, 40);
    let spent = store
        .counter_get(&CounterKey {
            pk: "T#budgeted#B".into(),
            sk: format!("{day}#tokens"),
        })
        .await
        .unwrap();
    assert_eq!(spent, rows[0].total_tokens as i64);
}

/// On Lambda the chat function's streamed body ends with the flush: the
/// client has the whole answer (`[DONE]`) before the row is written, and the
/// row is written before the body ends (within the invocation), with no
/// flush by anyone else.
#[tokio::test]
async fn on_lambda_a_streamed_answer_ends_with_its_flush() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    let gw = Gateway::with_toml(
        store.clone(),
        TOML,
        &[
            ("AWS_LAMBDA_FUNCTION_NAME", "chat"),
            ("CTXGATE_STORE", "embedded"),
        ],
    );
    assert!(gw.state.config.usage_flush_after_response);
    let k = key(&gw, "free", None).await;
    let router = ctxgate::http::chat_routes(gw.state.clone());
    let body = json!({"model": "echo", "stream": true,
                      "messages": [{"role": "user", "content": "hello"}]});
    let req = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {k}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let mut body = resp.into_body();
    let mut text = String::new();
    while !text.contains("[DONE]") {
        let frame = body.frame().await.expect("more frames").unwrap();
        text.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
    }
    // The whole answer is out; its row waits in memory.
    assert!(store.usage("free", &day, &day).await.unwrap().is_empty());
    assert_eq!(gw.state.usage.pending(), 1);
    // The body's end is the flush.
    assert!(body.frame().await.is_none());
    let rows = store.usage("free", &day, &day).await.unwrap();
    assert_eq!(rows[0].requests, 1);
    assert_eq!(gw.state.usage.pending(), 0);
}

/// A settlement written late cannot let a tenant overspend: until it is
/// flushed the counter holds the whole reservation, so the next request is
/// judged against more than was spent, never less; once flushed the budget
/// holds exactly the usage.
#[tokio::test]
async fn a_late_settlement_only_errs_on_the_safe_side() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    let toml = "usage_flush_ms = 3600000\n[tenants.tight]\ntokens_per_day = 1000\n";
    let gw = Gateway::with_toml(store.clone(), toml, &[]);
    let k = key(&gw, "tight", None).await;
    let post = |max_tokens: u32| {
        let body = json!({"model": "echo", "max_tokens": max_tokens,
                          "messages": [{"role": "user", "content": "hi"}]});
        let req = http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {k}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let router = gw.router.clone();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            resp.into_body().collect().await.unwrap();
            status
        }
    };
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let counter = CounterKey {
        pk: "T#tight#B".into(),
        sk: format!("{day}#tokens"),
    };
    assert_eq!(post(600).await, 200);
    let held = store.counter_get(&counter).await.unwrap();
    assert!(held > 600, "the reservation is still held: {held}");
    // The first turn used a few tokens, but its refund is not written yet:
    // a second worst case of 600 does not fit what the counter holds.
    assert_eq!(post(600).await, 429);
    gw.state.usage.flush().await.unwrap();
    let rows = store.usage("tight", &day, &day).await.unwrap();
    assert_eq!(
        store.counter_get(&counter).await.unwrap(),
        rows[0].total_tokens as i64
    );
    assert_eq!(post(600).await, 200, "refunded once flushed");
}
