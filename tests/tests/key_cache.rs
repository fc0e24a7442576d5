//! Issue 19: the API-key cache merges simultaneous lookups of one key. A
//! fresh Lambda environment serving many invocations at once (Managed
//! Instances) reads a key once, not once per invocation. Key reads are
//! counted at a proxy in front of the DynamoDB emulator.

use std::sync::Arc;

use axum::body::Body;
use ctxgate_tests::Gateway;
use ctxgate_tests::fault_proxy::{Fault, FaultProxy};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Requests at once, as one Managed Instances environment may serve.
const AT_ONCE: usize = 32;

async fn key(gw: &Gateway) -> String {
    let tenant = ctxgate_tests::unique("t");
    let k = ctxgate::auth::mint_key(&tenant, "test", &[], None, ctxgate::now_secs()).unwrap();
    gw.state.store.put_key(&k.record).await.unwrap();
    k.secret
}

/// `GET /v1/models` with `key`, `AT_ONCE` times at once; the statuses.
async fn at_once(gw: &Arc<Gateway>, key: &str) -> Vec<u16> {
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (gw, key) = (gw.clone(), key.to_owned());
            tokio::spawn(async move {
                let req = http::Request::get("/v1/models")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap();
                let resp = gw.router.clone().oneshot(req).await.unwrap();
                let status = resp.status().as_u16();
                resp.into_body().collect().await.unwrap();
                status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

async fn gateway() -> (Arc<Gateway>, FaultProxy) {
    let (gw, proxy) = ctxgate_tests::proxied_gateway("", &[]).await;
    (Arc::new(gw), proxy)
}

#[tokio::test]
async fn concurrent_requests_with_one_fresh_key_read_it_once() {
    let (gw, proxy) = gateway().await;
    let fresh = key(&gw).await;
    // The read's answer is held until every request has arrived, so that
    // without merging each would have sent its own.
    let hold = proxy.hold("GetItem");
    let requests = tokio::spawn({
        let (gw, fresh) = (gw.clone(), fresh.clone());
        async move { at_once(&gw, &fresh).await }
    });
    hold.reached.notified().await;
    proxy.heal();
    hold.release.notify_one();
    assert_eq!(requests.await.unwrap(), vec![200; AT_ONCE]);
    assert_eq!(
        proxy.calls("GetItem"),
        1,
        "one key read for {AT_ONCE} requests"
    );

    // Later requests within the cache's lifetime read nothing.
    assert_eq!(at_once(&gw, &fresh).await, vec![200; AT_ONCE]);
    assert_eq!(proxy.calls("GetItem"), 1);

    // An unknown key: one read, every request refused, as before.
    let before = proxy.calls("GetItem");
    let unknown = format!("{}{}", ctxgate::auth::KEY_PREFIX, "x".repeat(43));
    assert_eq!(at_once(&gw, &unknown).await, vec![401; AT_ONCE]);
    assert_eq!(proxy.calls("GetItem") - before, 1);
}

#[tokio::test]
async fn a_failed_read_reaches_every_waiter_and_is_not_kept() {
    let (gw, proxy) = gateway().await;
    // What one request's failed read costs (the SDK's own attempts).
    let alone = key(&gw).await;
    proxy.fail("GetItem", Fault::ServerError, None);
    let (status, _, _) = gw.call("GET", "/v1/models", Some(&alone), None).await;
    assert_eq!(status, 503);
    let one_read = proxy.calls("GetItem");
    assert!(one_read >= 1);

    // Many at once share one failed read: each gets the error.
    let fresh = key(&gw).await;
    assert_eq!(at_once(&gw, &fresh).await, vec![503; AT_ONCE]);
    assert_eq!(proxy.calls("GetItem"), 2 * one_read, "one read for all");

    // The failure was not cached: once the store is back, the key works.
    proxy.heal();
    let (status, _, body) = gw.call("GET", "/v1/models", Some(&fresh), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.calls("GetItem"), 2 * one_read + 1);
}
