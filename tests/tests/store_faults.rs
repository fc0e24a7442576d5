//! DynamoDB failing under the gateway: throttling and server errors injected
//! by a proxy in front of the emulator, met by the production SDK retry
//! configuration. Transient faults are absorbed; persistent ones give the
//! client a 503 with `Retry-After`, and a turn is never half-written.

use std::sync::Arc;

use ctxgate::config::Config;
use ctxgate::store::Store;
use ctxgate::store::dynamo::DynamoStore;
use ctxgate_tests::fault_proxy::{Fault, FaultProxy};
use ctxgate_tests::{Gateway, MockUpstream, aws_endpoint, unique};
use serde_json::json;

/// A gateway whose store goes through the proxy, and a direct view of the
/// same table for checking what was really written.
async fn setup(upstream: &MockUpstream) -> (Gateway, FaultProxy, Arc<dyn Store>) {
    let proxy = FaultProxy::start(&aws_endpoint()).await;
    let table = unique("ctxgate");
    let direct = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&ctxgate_tests::aws_config().await),
        table.clone(),
    );
    direct.create_table().await.unwrap();
    let base = format!("{}/v1", upstream.url);
    let vars = [
        ("CTXGATE_STORE", "dynamodb"),
        ("CTXGATE_TABLE", table.as_str()),
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("OPENAI_BASE_URL", base.as_str()),
        ("OPENAI_API_KEY", "sk-test"),
    ];
    let config = Config::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    // The production SDK configuration (retries, timeouts), pointed at the proxy.
    let sdk = ctxgate::aws::sdk_config(&config).await;
    let proxied: Arc<dyn Store> = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table.clone(),
    ));
    let gw = Gateway::new(proxied, &vars);
    (gw, proxy, Arc::new(direct))
}

#[tokio::test]
async fn transient_throttling_is_retried_by_the_sdk() {
    let upstream = MockUpstream::openai().await;
    let (gw, proxy, direct) = setup(&upstream).await;
    let key = gw.key("acme", &[]).await;
    let (writes, queries) = (proxy.calls("TransactWriteItems"), proxy.calls("Query"));
    proxy.fail("TransactWriteItems", Fault::Throttle, Some(2));
    proxy.fail("Query", Fault::ServerError, Some(1));
    let (status, _, body) = gw.chat(&key, "openai/gpt-4o", Some("t-1"), "hello").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.calls("TransactWriteItems") - writes, 3);
    assert_eq!(proxy.calls("Query") - queries, 2);
    let conv = direct
        .load_conversation("acme", "t-1", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(conv.messages.len(), 2, "stored exactly once");
}

#[tokio::test]
async fn persistent_write_faults_give_503_and_store_no_half_turn() {
    let upstream = MockUpstream::openai().await;
    let (gw, proxy, direct) = setup(&upstream).await;
    let key = gw.key("acme", &[]).await;
    assert_eq!(
        gw.chat(&key, "openai/gpt-4o", Some("t-2"), "first").await.0,
        200
    );
    let before = direct
        .load_conversation("acme", "t-2", ctxgate::now_secs())
        .await
        .unwrap();

    let writes = proxy.calls("TransactWriteItems");
    proxy.fail("TransactWriteItems", Fault::Throttle, None);
    let (status, headers, body) = gw.chat(&key, "openai/gpt-4o", Some("t-2"), "second").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        proxy.calls("TransactWriteItems") - writes,
        4 + 4,
        "the SDK tried 4 times; a store failure is not a lost race, so no re-read; \
         then the usage flush after the answer (the paid turn's row) tried 4 times too"
    );
    let after = direct
        .load_conversation("acme", "t-2", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(after.meta, before.meta);
    assert_eq!(after.messages, before.messages);
    // The provider was paid for the refused turn: its usage is kept in
    // memory while the store fails, and written once it is back.
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let usage = direct.usage("acme", &day, &day).await.unwrap();
    assert_eq!(usage[0].requests, 1);
    assert_eq!(
        gw.state.usage.pending(),
        0,
        "the row waits in a failed batch"
    );

    proxy.heal();
    assert_eq!(
        gw.chat(&key, "openai/gpt-4o", Some("t-2"), "third").await.0,
        200
    );
    let usage = direct.usage("acme", &day, &day).await.unwrap();
    assert_eq!(usage[0].requests, 3, "the failed batch counted once");
}

#[tokio::test]
async fn a_store_that_cannot_be_read_stops_the_turn_before_the_provider() {
    let upstream = MockUpstream::openai().await;
    let (gw, proxy, _) = setup(&upstream).await;
    let key = gw.key("acme", &[]).await;
    proxy.fail("Query", Fault::ServerError, None);
    let (status, headers, body) = gw.chat(&key, "openai/gpt-4o", Some("t-3"), "hi").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        upstream.received().is_empty(),
        "no provider call was paid for"
    );
    let (status, _, body) = gw
        .call("GET", "/v1/conversations/t-3", Some(&key), None)
        .await;
    assert_eq!(status, 503, "{body}");
    proxy.fail("GetItem", Fault::Throttle, None);
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(json!({"id": "t-4"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
}

// Issue 12, point 3: a client that goes away while its turn's transaction is
// in flight is metered once. The commit runs to its end on its own task: the
// turn is stored with its usage row, and nothing records that row again.
#[tokio::test]
async fn a_client_gone_during_the_commit_is_metered_once() {
    let upstream = MockUpstream::openai().await;
    let (gw, proxy, direct) = setup(&upstream).await;
    let gw = Arc::new(gw);
    let key = gw.key("acme", &[]).await;
    let hold = proxy.hold("TransactWriteItems");
    let request = {
        let (gw, key) = (gw.clone(), key.clone());
        tokio::spawn(async move { gw.chat(&key, "openai/gpt-4o", Some("gone"), "hello").await })
    };
    // The emulator has applied the turn's transaction; the gateway is not told yet.
    hold.reached.notified().await;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    proxy.heal();
    hold.release.notify_one();

    // A second turn, start to end: by its end the first one's commit (and
    // anything it left in the background) has long finished.
    let (status, _, body) = gw.chat(&key, "openai/gpt-4o", Some("next"), "hello").await;
    assert_eq!(status, 200, "{body}");
    let now = ctxgate::now_secs();
    let stored = direct.load_conversation("acme", "gone", now).await.unwrap();
    assert_eq!(stored.messages.len(), 2, "the first turn was stored");
    let day = ctxgate::usage::day(now);
    let rows = direct.usage("acme", &day, &day).await.unwrap();
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    assert_eq!(requests, 2, "one usage row per turn: {rows:?}");
}
