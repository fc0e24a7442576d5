//! Issue 18 through the router: the store round trips of a Responses turn
//! that continues a response, and of one that forks (figures for the
//! closing note, counted at a proxy in front of the emulator), and
//! refusals that change nothing. The SDK-facing behaviour is covered by
//! tests/python/test_openai_responses.py with the official OpenAI SDK.

use ctxgate_tests::Gateway;
use ctxgate_tests::fault_proxy::FaultProxy;
use serde_json::{Value, json};

const TENANT: &str = "acme";

async fn create(gw: &Gateway, key: &str, body: Value) -> (u16, Value) {
    let (status, _, text) = gw
        .call_raw_text(
            "POST",
            "/v1/responses",
            Some(key),
            &[],
            body.to_string().into_bytes(),
        )
        .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const OPS: [&str; 7] = [
    "GetItem",
    "Query",
    "UpdateItem",
    "PutItem",
    "TransactWriteItems",
    "BatchWriteItem",
    "DeleteItem",
];

/// The DynamoDB calls `f` makes, per operation.
async fn counted<F: std::future::Future<Output = Value>>(
    proxy: &FaultProxy,
    f: F,
) -> (Value, Vec<(&'static str, usize)>) {
    let before: Vec<usize> = OPS.iter().map(|o| proxy.calls(o)).collect();
    let out = f.await;
    let calls = OPS
        .iter()
        .zip(before)
        .map(|(o, b)| (*o, proxy.calls(o) - b))
        .filter(|(_, n)| *n > 0)
        .collect();
    (out, calls)
}

#[tokio::test]
async fn store_round_trips_of_a_continued_and_a_forked_response() {
    let (gw, proxy) = ctxgate_tests::proxied_gateway("", &[]).await;
    let key = gw.key(TENANT, &["chat"]).await;

    let (r1, first) = counted(&proxy, async {
        create(&gw, &key, json!({"model": "echo", "input": "one"}))
            .await
            .1
    })
    .await;
    let (r2, continued) = counted(&proxy, async {
        let body = json!({"model": "echo", "input": "two", "previous_response_id": r1["id"]});
        create(&gw, &key, body).await.1
    })
    .await;
    assert_eq!(r2["conversation"], r1["conversation"], "{r2}");
    let (r3, forked) = counted(&proxy, async {
        let body = json!({"model": "echo", "input": "three", "previous_response_id": r1["id"]});
        create(&gw, &key, body).await.1
    })
    .await;
    assert_ne!(r3["conversation"], r1["conversation"], "{r3}");
    let (_, on_fork) = counted(&proxy, async {
        let body = json!({"model": "echo", "input": "four", "previous_response_id": r3["id"]});
        create(&gw, &key, body).await.1
    })
    .await;
    let (_, unstored) = counted(&proxy, async {
        let body = json!({"model": "echo", "input": "five", "store": false,
                          "previous_response_id": r2["id"]});
        create(&gw, &key, body).await.1
    })
    .await;
    println!("DynamoDB calls of one Responses turn (no rate limit or budget on the key):");
    println!("| turn | calls |\n|---|---|");
    for (name, calls) in [
        ("a new conversation", &first),
        ("previous_response_id, the latest turn", &continued),
        ("previous_response_id, an earlier turn (fork)", &forked),
        ("the fork's next turn (reads its parent too)", &on_fork),
        ("store: false, from a response", &unstored),
    ] {
        let s: Vec<String> = calls.iter().map(|(o, n)| format!("{o} {n}")).collect();
        println!("| {name} | {} |", s.join(", "));
    }
    let get = |c: &[(&str, usize)], op: &str| c.iter().find(|(o, _)| *o == op).map_or(0, |x| x.1);
    // A continued turn: the record, the window, the commit.
    assert_eq!(
        (
            get(&continued, "GetItem"),
            get(&continued, "Query"),
            get(&continued, "TransactWriteItems")
        ),
        (1, 1, 1),
        "{continued:?}"
    );
    // A fork copies nothing: the record, the window, the tenant's count of
    // conversations (a new one is checked against its cap), the commit.
    assert_eq!(
        (
            get(&forked, "GetItem"),
            get(&forked, "Query"),
            get(&forked, "TransactWriteItems")
        ),
        (2, 1, 1),
        "{forked:?}"
    );
    // The fork's next turn reads its parent's history in place: one more Query.
    assert_eq!(get(&on_fork, "Query"), 2, "{on_fork:?}");
    // An unstored turn writes nothing of its own: its usage row goes in the
    // batch the test flushes after the answer (issue 19).
    assert_eq!(get(&unstored, "TransactWriteItems"), 1, "{unstored:?}");
    assert_eq!(get(&unstored, "UpdateItem"), 0, "{unstored:?}");
}

#[tokio::test]
async fn another_tenants_response_is_not_found_and_refusals_change_nothing() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    let gw = Gateway::new(store.clone(), &[]);
    let mine = gw.key(TENANT, &["chat", "conversations:read"]).await;
    let theirs = gw.key("other", &["chat", "conversations:read"]).await;
    let (status, r1) = create(&gw, &mine, json!({"model": "echo", "input": "hi"})).await;
    assert_eq!(status, 200, "{r1}");
    let id = r1["id"].as_str().unwrap();
    let conv = r1["conversation"]["id"].as_str().unwrap();
    let before = store
        .load_conversation(TENANT, conv, ctxgate::now_secs())
        .await
        .unwrap();

    for (body, status, param) in [
        (
            json!({"model": "echo", "input": "x", "previous_response_id": id}),
            404,
            "previous_response_id",
        ),
        (
            json!({"model": "echo", "input": [{"type": "nope"}]}),
            400,
            "input[0].type",
        ),
        (
            json!({"model": "echo", "input": "x", "background": true}),
            400,
            "background",
        ),
        (
            json!({"model": "echo", "input": "x", "tools": [{"type": "mcp", "server_label": "crm",
                   "require_approval": "never", "allowed_tools": ["get_customer"]}]}),
            400,
            "tools[0].allowed_tools",
        ),
        (
            json!({"model": "echo", "input": "x", "previous_response_id": "resp_x", "conversation": "c"}),
            400,
            "conversation",
        ),
    ] {
        let (s, e) = create(&gw, &theirs, body.clone()).await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (status, Some(param)),
            "{body}: {e}"
        );
    }
    let (s, _, e) = gw
        .call("GET", &format!("/v1/responses/{id}"), Some(&theirs), None)
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (404, Some("response_id")),
        "{e}"
    );
    // Mine, with the other tenant's conversation named with my response: 400.
    let (s, e) = create(
        &gw,
        &mine,
        json!({"model": "echo", "input": "x", "previous_response_id": id, "conversation": "elsewhere"}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("conversation")),
        "{e}"
    );
    let after = store
        .load_conversation(TENANT, conv, ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(after.meta, before.meta);
    assert_eq!(after.messages.len(), before.messages.len());
    let (s, _, got) = gw
        .call("GET", &format!("/v1/responses/{id}"), Some(&mine), None)
        .await;
    assert_eq!(
        (s, &got["output"][0]["content"][0]["type"]),
        (200, &json!("output_text")),
        "{got}"
    );
}

/// Point 7: what every door gets applies here too: a fallback across
/// providers, a stream redacted however it is split, an idempotent retry
/// replayed byte for byte with the upstream called once.
#[tokio::test]
async fn fallbacks_redaction_and_idempotent_replays_apply() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    let (gw, openai, _anthropic) = ctxgate_tests::fallback_gateway(store).await;
    let key = gw.key(TENANT, &["chat"]).await;
    let (status, r) = create(&gw, &key, json!({"model": "smart", "input": "hello"})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["model"], "openai/gpt-4o-mini", "{r}");
    assert_eq!(r["output"][0]["content"][0]["text"], "saw: from openai");

    let body = json!({"model": "openai/gpt-4o-mini", "input": "pii", "stream": true});
    let calls = openai.received().len();
    let post = |body: Value| {
        let gw = &gw;
        let key = key.clone();
        async move {
            gw.call_raw_text(
                "POST",
                "/v1/responses",
                Some(&key),
                &[("idempotency-key", "r-1")],
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let (status, _, first) = post(body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let text: String = first
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "response.output_text.delta")
        .filter_map(|v| v["delta"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Card: [CARD], mail [EMAIL]. Done.");
    assert!(
        !first.contains("4111") && !first.contains("bob."),
        "{first}"
    );
    assert!(first.contains("event: response.completed\n"), "{first}");
    let (status, headers, again) = post(body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first);
    assert_eq!(openai.received().len(), calls + 1);
}

/// Point 2: `truncation: "auto"` leaves out what does not fit the window
/// (as every stored conversation does); `"disabled"` refuses it, naming
/// `input`, and stores nothing.
#[tokio::test]
async fn truncation_disabled_refuses_what_does_not_fit() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    let gw = Gateway::with_toml(
        store.clone(),
        "[[models]]\nid = \"echo\"\ncontext_window = 2048\n",
        &[],
    );
    let key = gw.key(TENANT, &["chat"]).await;
    let long = "word ".repeat(1200);
    let (status, r1) = create(&gw, &key, json!({"model": "echo", "input": long})).await;
    assert_eq!(status, 200, "{r1}");
    let conv = r1["conversation"]["id"].as_str().unwrap().to_owned();
    let before = store
        .load_conversation(TENANT, &conv, ctxgate::now_secs())
        .await
        .unwrap();
    let next = |truncation: &str| {
        json!({"model": "echo", "input": "and then?", "previous_response_id": r1["id"],
               "truncation": truncation})
    };
    let (status, e) = create(&gw, &key, next("disabled")).await;
    assert_eq!(
        (
            status,
            e["error"]["code"].as_str(),
            e["error"]["param"].as_str()
        ),
        (400, Some("context_length_exceeded"), Some("input")),
        "{e}"
    );
    let after = store
        .load_conversation(TENANT, &conv, ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(
        (after.meta, after.messages.len()),
        (before.meta, before.messages.len())
    );
    let (status, r2) = create(&gw, &key, next("auto")).await;
    assert_eq!(status, 200, "{r2}");
    assert_eq!(r2["conversation"]["id"], conv.as_str());
}
