//! Issue 19, point 1: usage is never lost on a graceful shutdown. The real
//! local server (`ctxgate serve`, built by `cargo build -p ctxgate`; scripts/test.sh
//! does, or set `CTXGATE_BIN`) runs many concurrent stateless turns on the
//! embedded store, gets SIGTERM in the middle of them, stops accepting,
//! finishes what is in flight, flushes its usage batches and exits. Its
//! interval flush is set to an hour, so every row in the store afterwards
//! was written by that last flush; they must count exactly the turns that
//! got a whole 200, and the budget exactly their tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ctxgate::store::embedded::EmbeddedStore;
use ctxgate::store::{CounterKey, CounterStore, KeyStore};
use ctxgate_tests::child::start_local_server;
use serde_json::json;

const TENANT: &str = "loaded";
const WORKERS: usize = 24;
/// Turns answered before SIGTERM is sent.
const BEFORE_SIGNAL: u64 = 150;

/// One turn; `true` when it was answered whole with a 200 (a stream up to
/// its `[DONE]`), `None` when the server no longer took it.
async fn turn(client: &reqwest::Client, base: &str, key: &str, n: u64) -> Option<bool> {
    let stream = n.is_multiple_of(2);
    let body = json!({"model": "echo", "stream": stream, "max_tokens": 50,
                      "messages": [{"role": "user", "content": format!("turn {n}")}]});
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    Some(status == 200 && (!stream || text.contains("[DONE]")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_loses_no_usage() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ctxgate.toml");
    std::fs::write(
        &config,
        format!("usage_flush_ms = 3600000\n[tenants.{TENANT}]\ntokens_per_day = 100000000\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let started = ctxgate::now_secs();
    let key = {
        let store = EmbeddedStore::open(&data).unwrap();
        let k = ctxgate::auth::mint_key(TENANT, "load", &[], None, started).unwrap();
        store.put_key(&k.record).await.unwrap();
        k.secret
    };
    let (mut child, base, tail) = start_local_server(&data, &config).await;
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let signalled = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (base, key, ok, refused, stop, next, signalled) = (
            base.clone(),
            key.clone(),
            ok.clone(),
            refused.clone(),
            stop.clone(),
            next.clone(),
            signalled.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                match turn(&client, &base, &key, n).await {
                    Some(true) => {
                        if ok.fetch_add(1, Ordering::SeqCst) + 1 == BEFORE_SIGNAL {
                            signalled.notify_one();
                        }
                    }
                    Some(false) => panic!("turn {n} failed while the server ran"),
                    // Refused or cut: the server is going away.
                    None => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    signalled.notified().await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let log = tail.await.unwrap();
    assert!(status.success(), "exit {status:?}: {log:#?}");
    assert!(
        log.iter().any(|l| l.contains("usage flushed")),
        "no flush at shutdown: {log:#?}"
    );

    let answered = ok.load(Ordering::SeqCst);
    let store = EmbeddedStore::open(&data).unwrap();
    let (from, to) = (
        ctxgate::usage::day(started),
        ctxgate::usage::day(ctxgate::now_secs()),
    );
    let rows = store.usage(TENANT, &from, &to).await.unwrap();
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    let tokens: u64 = rows.iter().map(|r| r.total_tokens).sum();
    let mut spent = 0;
    for day in [&from, &to] {
        spent += store
            .counter_get(&CounterKey {
                pk: format!("T#{TENANT}#B"),
                sk: format!("{day}#tokens"),
            })
            .await
            .unwrap();
        if from == to {
            break;
        }
    }
    println!(
        "SIGTERM after {BEFORE_SIGNAL} turns, {WORKERS} concurrent clients: {answered} turns \
         answered 200, {} refused once it stopped accepting; usage rows count {requests} \
         requests, {tokens} tokens; the budget counter holds {spent}",
        refused.load(Ordering::SeqCst)
    );
    assert!(answered >= BEFORE_SIGNAL);
    assert_eq!(
        requests, answered,
        "usage rows count every answered turn, once"
    );
    assert_eq!(
        spent, tokens as i64,
        "every reservation settled to its usage"
    );
}
