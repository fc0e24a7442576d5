//! `POST /mcp`, ctxgate as an MCP server, driven with raw JSON-RPC over HTTP
//! through the router: both protocol eras, auth and its challenges, Origin
//! and Host, the Protected Resource Metadata, 405/202, bad input, and the
//! own tools (chat on a stored conversation, conversations, usage) on both
//! stores.

use std::sync::Arc;

use ctxgate::store::Store;
use ctxgate_tests::{Gateway, dynamo_store, embedded_store};
use http::HeaderMap;
use serde_json::{Value, json};

const CURRENT: &str = "2026-07-28";
const LEGACY: &str = "2025-06-18";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": CURRENT,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// A 2026-07-28 request: `_meta` version and the standard headers.
async fn current(
    gw: &Gateway,
    key: &str,
    method: &str,
    name: Option<&str>,
    mut params: Value,
) -> (u16, HeaderMap, Value) {
    params["_meta"] = meta();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut headers = vec![
        ("host", "localhost"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", CURRENT),
        ("mcp-method", method),
    ];
    if let Some(n) = name {
        headers.push(("mcp-name", n));
    }
    gw.call_raw(
        "POST",
        "/mcp",
        Some(key),
        &headers,
        body.to_string().into_bytes(),
    )
    .await
}

/// A legacy request: the version header only, no session.
async fn legacy(gw: &Gateway, key: &str, body: Value) -> (u16, HeaderMap, Value) {
    gw.call_raw(
        "POST",
        "/mcp",
        Some(key),
        &[
            ("host", "localhost"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", LEGACY),
        ],
        body.to_string().into_bytes(),
    )
    .await
}

fn raw_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("host", "localhost"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", LEGACY),
    ]
}

fn gateway(store: Arc<dyn Store>) -> Gateway {
    Gateway::new(store, &[])
}

const ALL: &[&str] = &[
    "mcp",
    "chat",
    "conversations:read",
    "conversations:write",
    "usage:read",
];

#[tokio::test]
async fn both_eras_list_the_own_tools_statelessly() {
    let (store, _dir) = embedded_store();
    let gw = gateway(store);
    let key = gw.key("acme", ALL).await;

    let (status, headers, body) = current(&gw, &key, "tools/list", None, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.get("mcp-session-id").is_none());
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "chat",
            "list_conversations",
            "get_conversation",
            "delete_conversation",
            "get_usage"
        ]
    );
    assert_eq!(body["result"]["resultType"], "complete");
    assert_eq!(body["result"]["ttlMs"], 60000);
    assert_eq!(body["result"]["cacheScope"], "private");
    let chat = &body["result"]["tools"][0]["inputSchema"];
    assert_eq!(chat["additionalProperties"], false);
    assert_eq!(chat["required"], json!(["model", "message"]));

    let (status, _, body) = current(&gw, &key, "server/discover", None, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"]["capabilities"]["tools"].is_object(),
        "{body}"
    );

    // Legacy: initialize answers without a session; any request works alone.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, headers, body) = legacy(&gw, &key, init).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["protocolVersion"], LEGACY);
    assert!(headers.get("mcp-session-id").is_none());
    let (status, _, body) = legacy(
        &gw,
        &key,
        json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
    )
    .await;
    assert_eq!((status, &body["result"]), (200, &json!({})), "{body}");
    let (status, _, body) = legacy(
        &gw,
        &key,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 5);
    assert!(
        body["result"].get("resultType").is_none(),
        "legacy peers get no resultType: {body}"
    );

    // Notifications: 202; GET and DELETE: 405.
    let (status, _, _) = legacy(
        &gw,
        &key,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    for method in ["GET", "DELETE"] {
        let (status, _, _) = gw
            .call_raw(method, "/mcp", Some(&key), &raw_headers(), Vec::new())
            .await;
        assert_eq!(status, 405, "{method}");
    }
}

#[tokio::test]
async fn a_header_that_disagrees_with_the_body_is_refused() {
    let (store, _dir) = embedded_store();
    let gw = gateway(store);
    let key = gw.key("acme", ALL).await;
    let mut params = json!({"name": "get_usage", "arguments": {}});
    params["_meta"] = meta();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let (status, _, body) = gw
        .call_raw(
            "POST",
            "/mcp",
            Some(&key),
            &[
                ("host", "localhost"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", CURRENT),
                ("mcp-method", "tools/list"),
            ],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
}

#[tokio::test]
async fn auth_origin_host_and_metadata() {
    let (store, _dir) = embedded_store();
    let gw = gateway(store);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();

    let (status, headers, _) = gw
        .call_raw(
            "POST",
            "/mcp",
            None,
            &raw_headers(),
            ping.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer resource_metadata=\"http://localhost/.well-known/oauth-protected-resource/mcp\""
    );

    let no_mcp = gw.key("acme", &["chat"]).await;
    let (status, headers, body) = gw
        .call_raw(
            "POST",
            "/mcp",
            Some(&no_mcp),
            &raw_headers(),
            ping.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "insufficient_scope");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );

    let key = gw.key("acme", &["mcp"]).await;
    let mut with_origin = raw_headers();
    with_origin.push(("origin", "https://evil.example"));
    let (status, _, body) = gw
        .call_raw(
            "POST",
            "/mcp",
            Some(&key),
            &with_origin,
            ping.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["param"], "origin");

    let mut other_host = raw_headers();
    other_host[0] = ("host", "evil.example");
    let (status, _, body) = gw
        .call_raw(
            "POST",
            "/mcp",
            Some(&key),
            &other_host,
            ping.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["param"], "host");

    let (status, _, body) = gw
        .call_raw(
            "POST",
            "/mcp",
            Some(&key),
            &raw_headers(),
            ping.into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let (status, _, body) = gw
            .call_raw("GET", path, None, &[("host", "localhost:8787")], Vec::new())
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["resource"], "http://localhost:8787/mcp");
        assert_eq!(body["bearer_methods_supported"], json!(["header"]));
        assert!(
            body["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("mcp"))
        );
        assert!(body["authorization_servers"].is_array());
    }
}

#[tokio::test]
async fn configured_origins_resource_and_authorization_servers() {
    let (store, _dir) = embedded_store();
    let gw = Gateway::with_toml(
        store,
        r#"
[mcp_server]
allowed_origins = ["https://app.example.com"]
allowed_hosts = ["api.example.com"]
resource = "https://api.example.com/mcp"
authorization_servers = ["https://auth.example.com"]
"#,
        &[],
    );
    let key = gw.key("acme", &["mcp"]).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let mut h = raw_headers();
    h[0] = ("host", "api.example.com");
    h.push(("origin", "https://app.example.com"));
    let (status, _, body) = gw
        .call_raw("POST", "/mcp", Some(&key), &h, ping.clone().into_bytes())
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, _) = gw
        .call_raw("POST", "/mcp", None, &h, ping.into_bytes())
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/mcp\""
    );
    let (_, _, body) = gw
        .call_raw(
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(body["resource"], "https://api.example.com/mcp");
    assert_eq!(
        body["authorization_servers"],
        json!(["https://auth.example.com"])
    );
}

#[tokio::test]
async fn bad_input_gets_the_spec_errors_and_never_a_5xx() {
    let (store, _dir) = embedded_store();
    let gw = gateway(store);
    let key = gw.key("acme", ALL).await;
    let send = |body: Vec<u8>| {
        let gw = &gw;
        let key = key.clone();
        async move {
            gw.call_raw("POST", "/mcp", Some(&key), &raw_headers(), body)
                .await
        }
    };
    let (status, _, body) = send(b"{not json".to_vec()).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{body}"
    );
    for envelope in [
        json!([]),
        json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 1}),
        json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": 7}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": 3}),
    ] {
        let (status, _, body) = send(envelope.to_string().into_bytes()).await;
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (400, Some(-32600)),
            "{envelope}: {body}"
        );
    }
    let (status, _, body) = send(vec![b' '; 9 * 1024 * 1024]).await;
    assert_eq!(status, 413, "{body}");

    // Accept and Content-Type: refused as JSON-RPC errors naming the header.
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    for (header, value, status, field) in [
        ("accept", "application/json", 406, "accept"),
        ("content-type", "text/plain", 415, "content-type"),
    ] {
        let mut headers: Vec<(&str, &str)> = raw_headers()
            .into_iter()
            .filter(|(k, _)| *k != header)
            .collect();
        headers.push((header, value));
        let (got, _, body) = gw
            .call_raw(
                "POST",
                "/mcp",
                Some(&key),
                &headers,
                ping.clone().into_bytes(),
            )
            .await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], -32600, "{body}");
        assert_eq!(body["error"]["data"]["field"], field, "{body}");
    }

    let (status, _, body) = send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "no/such/method"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert!(status < 500, "{status}");
    assert_eq!(body["error"]["code"], -32601, "{body}");

    let call = |name: &str, args: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": args}})
        .to_string()
        .into_bytes()
    };
    let (status, _, body) = send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert!(status < 500, "{status}");
    assert_eq!(
        body["error"]["code"], -32602,
        "a call without a name: {body}"
    );
    let (status, _, body) = send(call("no_such_tool", json!({}))).await;
    assert!(status < 500, "{status}");
    assert_eq!(body["error"]["code"], -32602, "{body}");

    // Invalid arguments: an isError result naming the field; nothing stored.
    for (args, field) in [
        (json!({"message": "hi"}), "model"),
        (json!({"model": "echo", "message": 3}), "message"),
        (
            json!({"model": "echo", "message": "hi", "colour": "red"}),
            "colour",
        ),
        (
            json!({"model": "echo", "message": "hi", "conversation_id": "bad id!"}),
            "conversation_id",
        ),
        (
            json!({"model": "echo", "message": "hi", "mcp_servers": "crm"}),
            "mcp_servers",
        ),
    ] {
        let (status, _, body) = send(call("chat", args.clone())).await;
        assert_eq!(status, 200, "{body}");
        let r = &body["result"];
        assert_eq!(r["isError"], true, "{args}: {body}");
        assert_eq!(
            r["structuredContent"]["error"]["field"], field,
            "{args}: {body}"
        );
    }
    let (_, _, body) = send(call("list_conversations", json!({}))).await;
    assert_eq!(
        body["result"]["structuredContent"]["data"],
        json!([]),
        "{body}"
    );
}

/// `chat` twice on one conversation: the second turn's prompt carries the
/// first, as the stored conversation shows; then the conversation tools and
/// resources; a scope the key lacks is an isError result.
async fn chat_remembers(store: Arc<dyn Store>) {
    let gw = gateway(store);
    let key = gw.key("acme", ALL).await;
    let conv = ctxgate_tests::unique("mcp");
    for text in ["my name is Ada", "what is my name?"] {
        let (status, _, body) = current(
            &gw,
            &key,
            "tools/call",
            Some("chat"),
            json!({"name": "chat", "arguments":
                {"model": "echo", "message": text, "conversation_id": conv}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let r = &body["result"];
        assert_eq!(r["isError"], false, "{body}");
        assert_eq!(r["structuredContent"]["conversation_id"], conv.as_str());
        assert_eq!(r["structuredContent"]["model"], "echo");
        assert!(
            r["content"][0]["text"].as_str().unwrap().contains(text),
            "{body}"
        );
    }
    let (_, _, body) = current(
        &gw,
        &key,
        "tools/call",
        Some("get_conversation"),
        json!({"name": "get_conversation", "arguments": {"conversation_id": conv}}),
    )
    .await;
    let messages = &body["result"]["structuredContent"]["messages"]["data"];
    assert_eq!(messages.as_array().map(Vec::len), Some(4), "{body}");
    assert_eq!(messages[0]["content"], "my name is Ada", "{body}");

    let (_, _, body) = current(&gw, &key, "resources/list", None, json!({})).await;
    assert_eq!(
        body["result"]["resources"][0]["uri"],
        format!("ctxgate://conversations/{conv}"),
        "{body}"
    );
    let uri = format!("ctxgate://conversations/{conv}");
    let (_, _, body) = current(&gw, &key, "resources/read", Some(&uri), json!({"uri": uri})).await;
    let text = body["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    let stored: Value = serde_json::from_str(text).unwrap();
    assert_eq!(stored["id"], conv.as_str());
    let (_, _, body) = current(&gw, &key, "resources/templates/list", None, json!({})).await;
    assert_eq!(
        body["result"]["resourceTemplates"][0]["uriTemplate"],
        "ctxgate://conversations/{id}"
    );

    let (_, _, body) = current(
        &gw,
        &key,
        "tools/call",
        Some("get_usage"),
        json!({"name": "get_usage", "arguments": {}}),
    )
    .await;
    assert_eq!(body["result"]["isError"], false, "{body}");
    assert_eq!(body["result"]["structuredContent"]["tenant"], "acme");

    // Another tenant sees nothing of it.
    let other = gw.key("globex", ALL).await;
    let (_, _, body) = current(
        &gw,
        &other,
        "tools/call",
        Some("get_conversation"),
        json!({"name": "get_conversation", "arguments": {"conversation_id": conv}}),
    )
    .await;
    assert_eq!(body["result"]["isError"], true, "{body}");

    // A missing scope is an isError result and deletes nothing.
    let read_only = gw.key("acme", &["mcp", "conversations:read"]).await;
    let (_, _, body) = current(
        &gw,
        &read_only,
        "tools/call",
        Some("delete_conversation"),
        json!({"name": "delete_conversation", "arguments": {"conversation_id": conv}}),
    )
    .await;
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["error"]["code"],
        "insufficient_scope"
    );
    let (_, _, body) = current(
        &gw,
        &key,
        "tools/call",
        Some("get_conversation"),
        json!({"name": "get_conversation", "arguments": {"conversation_id": conv}}),
    )
    .await;
    assert_eq!(
        body["result"]["isError"], false,
        "the refused delete changed nothing: {body}"
    );
    let (_, _, body) = current(
        &gw,
        &key,
        "tools/call",
        Some("delete_conversation"),
        json!({"name": "delete_conversation", "arguments": {"conversation_id": conv}}),
    )
    .await;
    assert_eq!(body["result"]["isError"], false, "{body}");
    let (_, _, body) = current(
        &gw,
        &key,
        "tools/call",
        Some("get_conversation"),
        json!({"name": "get_conversation", "arguments": {"conversation_id": conv}}),
    )
    .await;
    assert_eq!(body["result"]["isError"], true, "{body}");
}

#[tokio::test]
async fn chat_remembers_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    chat_remembers(store).await;
}

#[tokio::test]
async fn chat_remembers_on_dynamodb() {
    chat_remembers(dynamo_store().await).await;
}

/// A JWT calls `/mcp` only when its audience is the endpoint's resource; the
/// API's own audience is for the HTTP routes; the PRM names the issuer.
#[tokio::test]
async fn a_jwt_must_be_issued_for_the_mcp_resource() {
    let issuer = ctxgate_tests::jwt::Issuer::start(false).await;
    let config = format!(
        "[jwt]\nissuer = \"{}\"\naudience = [\"ctxgate-api\"]\njwks_url = \"{}\"\njwks_refetch_seconds = 0\n\
         [mcp_server]\nresource = \"https://api.example.com/mcp\"\nallowed_hosts = [\"localhost\"]\n",
        issuer.issuer, issuer.jwks_url
    );
    let (store, _dir) = embedded_store();
    let gw = Gateway::with_toml(store, &config, &[]);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let send = |token: String| {
        let gw = &gw;
        let ping = ping.clone();
        async move {
            gw.call_raw(
                "POST",
                "/mcp",
                Some(&token),
                &raw_headers(),
                ping.into_bytes(),
            )
            .await
        }
    };
    let for_mcp = issuer.rs256(&issuer.claims("acme", "https://api.example.com/mcp", "mcp"));
    let (status, _, body) = send(for_mcp).await;
    assert_eq!(status, 200, "{body}");
    let for_api = issuer.rs256(&issuer.claims("acme", "ctxgate-api", "mcp"));
    let (status, headers, body) = send(for_api.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audience"),
        "{body}"
    );
    assert!(headers.contains_key("www-authenticate"));
    let no_scope = issuer.rs256(&issuer.claims("acme", "https://api.example.com/mcp", "chat"));
    let (status, _, _) = send(no_scope).await;
    assert_eq!(status, 403);
    // The API's audience still works on the HTTP routes.
    let (status, _, _) = gw.call("GET", "/v1/models", Some(&for_api), None).await;
    assert_eq!(status, 200);
    let (_, _, body) = gw
        .call_raw(
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(body["authorization_servers"], json!([issuer.issuer]));
}

/// rmcp's own client against the router served on a loopback port, in both
/// lifecycles (discover, and the legacy handshake): tools listed, `chat`
/// answered, an unknown tool a protocol error.
#[tokio::test]
async fn rmcp_client_in_both_lifecycles() {
    use rmcp::model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
    };
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let (store, _dir) = embedded_store();
    let gw = gateway(store);
    let key = gw.key("acme", ALL).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = gw.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    for mode in [
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        ClientLifecycleMode::Initialize,
    ] {
        let legacy = matches!(mode, ClientLifecycleMode::Initialize);
        let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
            .auth_header(key.clone());
        let transport = StreamableHttpClientTransport::from_config(config);
        let mut info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("test", "1"),
        );
        if legacy {
            info.protocol_version = ProtocolVersion::V_2025_11_25;
        }
        let client = info
            .serve_with_lifecycle(transport, mode)
            .await
            .unwrap_or_else(|e| panic!("legacy={legacy}: {e}"));
        let tools = client.list_all_tools().await.unwrap();
        assert_eq!(tools.len(), 5, "legacy={legacy}");
        let args = json!({"model": "echo", "message": "hello there"});
        let r = client
            .call_tool(
                CallToolRequestParams::new("chat")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(false), "legacy={legacy}: {r:?}");
        assert_eq!(r.structured_content.unwrap()["model"], "echo");
        let unknown = client
            .call_tool(CallToolRequestParams::new("no_such_tool"))
            .await;
        assert!(unknown.is_err(), "legacy={legacy}");
        client.cancel().await.unwrap();
    }
    server.abort();
}

#[tokio::test]
async fn the_conformance_fixtures_are_served_only_under_their_test_flag() {
    let (store, dir) = embedded_store();
    let plain = gateway(store.clone());
    let key = plain.key("acme", ALL).await;

    let call = json!({"name": "test_simple_text", "arguments": {}});
    let (status, _, body) = current(
        &plain,
        &key,
        "tools/call",
        Some("test_simple_text"),
        call.clone(),
    )
    .await;
    // An unknown tool: a JSON-RPC error in a 200, as for any tool name.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"]["code"], -32602, "{body}");
    let (status, _, body) = current(&plain, &key, "prompts/list", None, json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!(-32601)),
        "{body}"
    );
    let (_, _, body) = current(&plain, &key, "server/discover", None, json!({})).await;
    assert!(
        body["result"]["capabilities"]["prompts"].is_null(),
        "{body}"
    );
    let read = json!({"uri": "test://static-text"});
    let (_, _, body) = current(
        &plain,
        &key,
        "resources/read",
        Some("test://static-text"),
        read.clone(),
    )
    .await;
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert_eq!(body["error"]["data"]["uri"], "test://static-text", "{body}");

    let path = dir.path().join("fixtures.toml");
    std::fs::write(&path, "[mcp_server]\nconformance_fixtures = true\n").unwrap();
    let fixtures = Gateway::new(store, &[("CTXGATE_CONFIG", path.to_str().unwrap())]);
    let (status, _, body) = current(
        &fixtures,
        &key,
        "tools/call",
        Some("test_simple_text"),
        call.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "This is a simple text response for testing."
    );
    let (_, _, body) = current(&fixtures, &key, "prompts/list", None, json!({})).await;
    assert_eq!(
        body["result"]["prompts"].as_array().unwrap().len(),
        5,
        "{body}"
    );
    let (_, _, body) = current(
        &fixtures,
        &key,
        "resources/read",
        Some("test://static-text"),
        read,
    )
    .await;
    assert_eq!(
        body["result"]["contents"][0]["mimeType"], "text/plain",
        "{body}"
    );
    // The flag adds a surface; it takes nothing away from authentication.
    let (status, _, _) = current(&fixtures, "", "tools/call", Some("test_simple_text"), call).await;
    assert_eq!(status, 401);
}
