//! The CRM MCP server fixture (tests/src/crm.rs) starts in both modes and answers raw
//! HTTP the way each protocol era wants it, and refuses the other era.

use ctxgate_tests::crm::{CURRENT_REVISION, CrmMode, CrmServer, current_meta, jsonrpc_body};
use serde_json::{Value, json};

fn tool_names(answer: &Value) -> Vec<String> {
    let mut names: Vec<String> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn both_modes_list_and_call_the_tools() {
    let http = reqwest::Client::new();
    for mode in [CrmMode::Current, CrmMode::Legacy] {
        let crm = CrmServer::start(mode, None).await;
        assert!(crm.url.starts_with("http://127.0.0.1:") && crm.url.ends_with("/mcp"));
        assert!(crm.authority().starts_with("127.0.0.1:"));

        let (status, tools) = crm.rpc(&http, &[], "tools/list", json!({})).await;
        assert_eq!(status, 200, "{mode:?}: {tools}");
        assert_eq!(
            tool_names(&tools),
            ["get_customer", "list_orders", "search_kb"],
            "{mode:?}"
        );

        let args = json!({"name": "get_customer", "arguments": {"customer_id": "c-1001"}});
        let (status, found) = crm.rpc(&http, &[], "tools/call", args).await;
        assert_eq!(status, 200, "{mode:?}: {found}");
        assert_eq!(found["result"]["isError"], false);
        assert_eq!(found["result"]["structuredContent"]["name"], "Ada Lovelace");

        let args = json!({"name": "get_customer", "arguments": {"customer_id": "c-0"}});
        let (status, missing) = crm.rpc(&http, &[], "tools/call", args).await;
        assert_eq!(status, 200, "{mode:?}: {missing}");
        assert_eq!(missing["result"]["isError"], true);
        let text = missing["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("Unknown customer_id 'c-0'"), "{text}");
    }
}

#[tokio::test]
async fn the_current_mode_is_stateless_and_refuses_initialize() {
    let http = reqwest::Client::new();
    let crm = CrmServer::start(CrmMode::Current, None).await;

    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": current_meta()}});
    let response = http
        .post(&crm.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", CURRENT_REVISION)
        .header("mcp-method", "server/discover")
        .body(discover.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());
    let answer = jsonrpc_body(response).await;
    assert_eq!(
        answer["result"]["supportedVersions"],
        json!([CURRENT_REVISION])
    );

    // The tool list's freshness hint: 60 s unless told otherwise.
    let (_, tools) = crm.rpc(&http, &[], "tools/list", json!({})).await;
    assert_eq!(tools["result"]["ttlMs"], 60_000);
    let quick = CrmServer::start_with(CrmMode::Current, None, &["--tools-ttl-ms", "0"]).await;
    let (_, tools) = quick.rpc(&http, &[], "tools/list", json!({})).await;
    assert_eq!(tools["result"]["ttlMs"], 0);

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let response = http
        .post(&crm.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer = jsonrpc_body(response).await;
    assert_eq!(answer["error"]["code"], -32022);
    assert_eq!(
        answer["error"]["data"]["supported"],
        json!([CURRENT_REVISION])
    );
}

#[tokio::test]
async fn the_legacy_mode_refuses_the_current_revision() {
    let http = reqwest::Client::new();
    let crm = CrmServer::start(CrmMode::Legacy, None).await;
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": current_meta()}});
    let response = http
        .post(&crm.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", CURRENT_REVISION)
        .header("mcp-method", "server/discover")
        .body(discover.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("mcp-session-id").is_none());
}

#[tokio::test]
async fn a_token_is_required_and_a_stopped_server_refuses_connections() {
    let http = reqwest::Client::new();
    for mode in [CrmMode::Current, CrmMode::Legacy] {
        let mut crm = CrmServer::start(mode, Some("t0ken")).await;
        let response = http
            .post(&crm.url)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{mode:?}");

        let auth = [("authorization", "Bearer t0ken")];
        let (status, tools) = crm.rpc(&http, &auth, "tools/list", json!({})).await;
        assert_eq!(status, 200, "{mode:?}: {tools}");
        assert_eq!(tool_names(&tools).len(), 3);

        crm.stop().await;
        let refused = http.post(&crm.url).body("{}").send().await;
        assert!(refused.unwrap_err().is_connect(), "{mode:?}");
    }
}

#[tokio::test]
async fn rendezvous_calls_answer_together_in_both_modes() {
    let http = reqwest::Client::new();
    for mode in [CrmMode::Current, CrmMode::Legacy] {
        let crm = CrmServer::start_with(mode, None, &["--rendezvous", "2"]).await;
        let one = json!({"name": "get_customer", "arguments": {"customer_id": "c-1001"}});
        let two = json!({"name": "search_kb", "arguments": {"query": "refund"}});
        // Neither answers until both are in flight.
        let ((s1, a1), (s2, a2)) = tokio::join!(
            crm.rpc(&http, &[], "tools/call", one),
            crm.rpc(&http, &[], "tools/call", two)
        );
        assert_eq!((s1, s2), (200, 200), "{mode:?}: {a1} {a2}");
        assert_eq!(a1["result"]["isError"], false);
        assert_eq!(
            a2["result"]["structuredContent"]["articles"][0]["article_id"],
            "kb-101"
        );
    }
}
