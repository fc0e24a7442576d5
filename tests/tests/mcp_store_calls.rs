//! Issue 19, point 1, on the `/mcp` paths. DynamoDB calls counted at a proxy
//! in front of the emulator: the `chat` tool makes the HTTP doors' single
//! conditional write before its answer (the rate count folded into the
//! reservation), other `/mcp` requests their one rate count, and federated
//! calls read the tenant's registrations once per `registry_cache_seconds`,
//! not once per call. A refused `chat` call changes no counter (both stores).

use std::sync::Arc;

use axum::body::Body;
use ctxgate::auth::Principal;
use ctxgate::http::mcp::federation;
use ctxgate::store::{CounterKey, Store};
use ctxgate_tests::Gateway;
use ctxgate_tests::fault_proxy::FaultProxy;
use ctxgate_tests::mcp_server::{GOOD_TOKEN, McpFixture, Revision};
use http_body_util::BodyExt;
use serde_json::{Value, json};
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

/// A key of `tenant` with the `mcp` and `chat` scopes and `rpm` (0: none);
/// its secret and key id.
async fn key(store: &Arc<dyn Store>, tenant: &str, rpm: Option<u32>) -> (String, String) {
    let scopes = ["mcp".to_owned(), "chat".to_owned()];
    let mut k =
        ctxgate::auth::mint_key(tenant, "test", &scopes, None, ctxgate::now_secs()).unwrap();
    k.record.rpm = rpm;
    store.put_key(&k.record).await.unwrap();
    (k.secret, k.record.key_id)
}

/// One `POST /mcp` through the router: status, `Retry-After`, body.
async fn post(
    gw: &Gateway,
    key: &str,
    method: &str,
    params: Value,
) -> (u16, Option<String>, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let req = http::Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn chat(message: &str) -> Value {
    json!({"name": "chat", "arguments": {"model": "echo", "message": message}})
}

/// A `POST /mcp` and the DynamoDB calls made until its answer was read.
async fn counted(
    gw: &Gateway,
    proxy: &FaultProxy,
    key: &str,
    method: &str,
    params: Value,
) -> (Value, Counts) {
    let before = snapshot(proxy);
    let (status, _, body) = post(gw, key, method, params).await;
    assert_eq!(status, 200, "{body}");
    let counts = since(proxy, &before);
    // Rows and settlements after the answer are not this test's concern.
    gw.state.usage.flush().await.unwrap();
    (body, counts)
}

/// No interval flush during the test (an hour): only the test flushes.
const TOML: &str = "usage_flush_ms = 3600000\n\
                    [tenants.budgeted]\ntokens_per_day = 1000000\n\
                    [tenants.both]\ntokens_per_day = 1000000\n";

#[tokio::test]
async fn the_chat_tool_makes_at_most_one_write_before_its_answer() {
    let (gw, proxy) = ctxgate_tests::proxied_gateway(TOML, &[]).await;
    let store = gw.state.store.clone();
    let (free, _) = key(&store, "free", None).await;
    let (budgeted, _) = key(&store, "budgeted", None).await;
    let (limited, _) = key(&store, "limited", Some(1000)).await;
    let (both, _) = key(&store, "both", Some(1000)).await;
    // First calls warm the key cache (a GetItem each).
    for k in [&free, &budgeted, &limited, &both] {
        counted(&gw, &proxy, k, "tools/call", chat("warm")).await;
    }
    // And the tenant's registrations (none), which a listing reads once.
    counted(&gw, &proxy, &both, "tools/list", json!({})).await;
    let mut table = Vec::new();
    for (name, k, want) in [
        ("no rate limit or budget", &free, vec![]),
        ("a daily token budget", &budgeted, vec![("UpdateItem", 1)]),
        ("a rate limit", &limited, vec![("UpdateItem", 1)]),
        (
            "a rate limit + a token budget",
            &both,
            vec![("TransactWriteItems", 1)],
        ),
    ] {
        let (body, c) = counted(&gw, &proxy, k, "tools/call", chat("hello")).await;
        assert_eq!(body["result"]["isError"], false, "{name}: {body}");
        table.push((format!("`chat`, {name}"), c.clone()));
        assert_eq!(c, want, "{name}");
    }
    // Other requests count their rate alone: one conditional write.
    let (_, c) = counted(&gw, &proxy, &both, "tools/list", json!({})).await;
    table.push(("`tools/list`, a rate limit".into(), c.clone()));
    assert_eq!(c, vec![("UpdateItem", 1)]);
    // A `chat` call refused before its turn (a missing argument) too.
    let bad = json!({"name": "chat", "arguments": {"model": "echo"}});
    let (body, c) = counted(&gw, &proxy, &both, "tools/call", bad).await;
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["error"]["field"],
        "message"
    );
    table.push(("`chat` without `message`, a rate limit".into(), c.clone()));
    assert_eq!(c, vec![("UpdateItem", 1)]);
    println!("DynamoDB calls of one POST /mcp until its answer:");
    println!("| request, key | calls |\n|---|---|");
    for (name, c) in table {
        let s: Vec<String> = c.iter().map(|(o, n)| format!("{o} {n}")).collect();
        let s = if s.is_empty() {
            "none".into()
        } else {
            s.join(", ")
        };
        println!("| {name} | {s} |");
    }
}

/// A key's rate window and its tenant's token budget, as stored now.
async fn counters(store: &Arc<dyn Store>, tenant: &str, key_id: &str, minute: i64) -> (i64, i64) {
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let rate = CounterKey {
        pk: format!("R#{tenant}#{key_id}"),
        sk: minute.to_string(),
    };
    let budget = CounterKey {
        pk: format!("T#{tenant}#B"),
        sk: format!("{day}#tokens"),
    };
    (
        store.counter_get(&rate).await.unwrap(),
        store.counter_get(&budget).await.unwrap(),
    )
}

async fn refusals_change_no_counter(store: Arc<dyn Store>) {
    // A `chat` call over its key's rate is answered 429 (as every route's
    // rate refusal) and reserves nothing; one over its tenant's budget is an
    // `isError` result naming the budget, and is not counted against the rate.
    let toml = "[tenants.poor]\ntokens_per_day = 5\n[tenants.rich]\ntokens_per_day = 1000000\n";
    let gw = Gateway::with_toml(store.clone(), toml, &[]);
    // A run that straddles a minute boundary starts a new window: try again.
    for _ in 0..3 {
        let minute = ctxgate::now_secs() / 60;
        let (poor, poor_id) = key(&store, "poor", Some(1)).await;
        let (rich, rich_id) = key(&store, "rich", Some(1)).await;

        let (status, _, over_budget) = post(&gw, &poor, "tools/call", chat("hello")).await;
        let after_budget = counters(&store, "poor", &poor_id, minute).await;

        let (first, _, answered) = post(&gw, &rich, "tools/call", chat("hello")).await;
        gw.settle_usage().await;
        let after_turn = counters(&store, "rich", &rich_id, minute).await;
        let (over_rate, retry, refused) = post(&gw, &rich, "tools/call", chat("hello")).await;
        gw.settle_usage().await;
        let after_rate = counters(&store, "rich", &rich_id, minute).await;
        if ctxgate::now_secs() / 60 != minute {
            continue;
        }
        assert_eq!(status, 200, "{over_budget}");
        let result = &over_budget["result"];
        assert_eq!(result["isError"], true, "{over_budget}");
        assert_eq!(
            result["structuredContent"]["error"]["code"], "budget_exceeded",
            "{over_budget}"
        );
        assert_eq!(after_budget, (0, 0), "a refused call changes no counter");

        assert_eq!(first, 200);
        assert_eq!(answered["result"]["isError"], false, "{answered}");
        assert_eq!(after_turn.0, 1, "the turn counted its request");
        assert!(after_turn.1 > 0, "and spent its tokens");
        assert_eq!(over_rate, 429, "{refused}");
        assert_eq!(refused["error"]["code"], "rate_limit_exceeded", "{refused}");
        let retry: i64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(
            after_rate, after_turn,
            "a rate-limited call reserves nothing"
        );
        return;
    }
    panic!("three runs straddled a minute boundary");
}

#[tokio::test]
async fn a_refused_chat_call_changes_no_counter_on_the_embedded_store() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    refusals_change_no_counter(store).await;
}

#[tokio::test]
async fn a_refused_chat_call_changes_no_counter_on_dynamodb() {
    refusals_change_no_counter(ctxgate_tests::dynamo_store().await).await;
}

fn principal(tenant: &str) -> Principal {
    Principal {
        tenant: tenant.to_owned(),
        key_id: "key_fed".to_owned(),
        scopes: vec!["mcp".into()],
        models: Vec::new(),
        rpm: None,
        expires_at: None,
        mcp_servers: Vec::new(),
        mcp_tools: Vec::new(),
    }
}

#[tokio::test]
async fn federated_calls_read_the_registrations_once_per_ttl() {
    let toml = "usage_flush_ms = 3600000\n[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n";
    let (gw, proxy) = ctxgate_tests::proxied_gateway(toml, &[]).await;
    let tenant = ctxgate_tests::unique("t");
    let kb = McpFixture::start(Revision::Current).await;
    let admin = gw.key(&tenant, &["admin"]).await;
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/admin/mcp-servers",
            Some(&admin),
            Some(json!({"name": "kb", "url": kb.url().as_str(),
                "headers": {"Authorization": GOOD_TOKEN}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let p = principal(&tenant);
    let call = async || {
        let r = federation::call(
            &gw.state,
            &p,
            "kb__echo",
            json!({"q": "x"}).as_object().cloned(),
        )
        .await
        .expect("a federated tool");
        assert_ne!(r.is_error, Some(true), "{r:?}");
    };
    let before = snapshot(&proxy);
    const N: usize = 20;
    for _ in 0..N {
        call().await;
    }
    let reads = since(&proxy, &before)
        .iter()
        .find(|(o, _)| *o == "Query")
        .map_or(0, |c| c.1);
    println!("{N} federated calls: {reads} registration read(s) (Query)");
    assert_eq!(reads, 1, "{N} calls, one read of the registrations");
    // A change through this process's admin API is read again at once.
    let (status, _, body) = gw
        .call(
            "PATCH",
            "/v1/admin/mcp-servers/kb",
            Some(&admin),
            Some(json!({"timeout_seconds": 7})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let before = snapshot(&proxy);
    call().await;
    call().await;
    let after = since(&proxy, &before);
    assert_eq!(
        after.iter().find(|(o, _)| *o == "Query").map(|c| c.1),
        Some(1)
    );
    gw.state.usage.flush().await.unwrap();
}
