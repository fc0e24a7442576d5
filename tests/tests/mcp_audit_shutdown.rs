//! Issue 19, point 1, on the federated MCP path: audit rows are never lost
//! on a graceful shutdown. The real local server (`ctxgate serve`, built by
//! `cargo build -p ctxgate`; scripts/test.sh does, or set `CTXGATE_BIN`)
//! forwards many concurrent federated `tools/call`s on `POST /mcp` to an MCP
//! server on loopback, gets SIGTERM in the middle of them, finishes what is
//! in flight, waits for the audit writes (after the answers, on tasks the
//! last usage flush awaits) and exits. Every answered call has its row, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ctxgate::store::embedded::EmbeddedStore;
use ctxgate::store::{AuditStore, KeyStore};
use ctxgate_tests::child::start_local_server;
use ctxgate_tests::mcp_server::{GOOD_TOKEN, McpFixture, Revision};
use serde_json::{Value, json};

const TENANT: &str = "federated";
const WORKERS: usize = 16;
/// Calls answered before SIGTERM is sent.
const BEFORE_SIGNAL: u64 = 100;

/// One federated call; `true` when answered 200 with the tool's result,
/// `None` when the server no longer took it.
async fn call(client: &reqwest::Client, base: &str, key: &str, n: u64) -> Option<bool> {
    let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
        "params": {"name": "crm__echo", "arguments": {"q": format!("call {n}")}}});
    let resp = client
        .post(format!("{base}/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.ok()?;
    Some(status == 200 && v["result"]["isError"] != true && v["result"].is_object())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_loses_no_audit_row() {
    let crm = McpFixture::start(Revision::Current).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ctxgate.toml");
    std::fs::write(
        &config,
        format!(
            "usage_flush_ms = 3600000\n[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n\
             [tenants.{TENANT}.mcp_servers.crm]\nurl = \"{}\"\n\
             headers = {{ Authorization = \"{GOOD_TOKEN}\" }}\n",
            crm.url()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let started_ms = ctxgate::now_secs() * 1000;
    let key = {
        let store = EmbeddedStore::open(&data).unwrap();
        let scopes = ["mcp".to_owned()];
        let k =
            ctxgate::auth::mint_key(TENANT, "load", &scopes, None, ctxgate::now_secs()).unwrap();
        store.put_key(&k.record).await.unwrap();
        k.secret
    };
    let (mut child, base, tail) = start_local_server(&data, &config).await;
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let signalled = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (base, key, ok, stop, next, signalled) = (
            base.clone(),
            key.clone(),
            ok.clone(),
            stop.clone(),
            next.clone(),
            signalled.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                match call(&client, &base, &key, n).await {
                    Some(true) => {
                        if ok.fetch_add(1, Ordering::SeqCst) + 1 == BEFORE_SIGNAL {
                            signalled.notify_one();
                        }
                    }
                    Some(false) => panic!("call {n} failed while the server ran"),
                    // Refused or cut: the server is going away.
                    None => stop.store(true, Ordering::SeqCst),
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

    let answered = ok.load(Ordering::SeqCst);
    let store = EmbeddedStore::open(&data).unwrap();
    let to_ms = (ctxgate::now_secs() + 1) * 1000;
    let (mut rows, mut before) = (Vec::new(), None::<String>);
    loop {
        let page = store
            .list_calls(TENANT, started_ms, to_ms, 500, before.as_deref())
            .await
            .unwrap();
        before = page.records.last().map(|r| r.id.clone());
        rows.extend(page.records);
        if !page.has_more {
            break;
        }
    }
    let ok_rows = rows.iter().filter(|r| r.outcome == "ok").count() as u64;
    println!(
        "SIGTERM after {BEFORE_SIGNAL} federated calls, {WORKERS} concurrent clients: \
         {answered} calls answered; {} audit rows ({ok_rows} ok); the MCP server saw {} calls",
        rows.len(),
        crm.calls().len()
    );
    assert!(answered >= BEFORE_SIGNAL);
    assert_eq!(
        ok_rows, answered,
        "every answered call has its audit row, once"
    );
    assert_eq!(rows.len() as u64, ok_rows, "{rows:?}");
}
