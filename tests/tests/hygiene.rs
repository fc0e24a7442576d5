//! Secrets and content never reach logs, metrics or traces: one full session
//! with a known API key, provider key, JWT and message text, every log line
//! captured at the most verbose level the gateway allows, the session's
//! metrics read at `/metrics` and every span exported over OTLP to a
//! collector fake, none of those strings in any of them (the EMF records of
//! a Lambda binary are checked in lambda_binaries.rs).
//! (One test per binary: the log subscriber is process-global.)

use ctxgate_tests::jwt::Issuer;
use ctxgate_tests::{Gateway, MockUpstream, Reply, dynamo_store, reported_users};
use serde_json::json;

const PROVIDER_KEY: &str = "sk-proj-PROVIDERSECRET0123456789";
const MESSAGE: &str = "my card is 4111 1111 1111 1111 and my secret is swordfish-42";

#[tokio::test]
async fn no_secret_or_content_reaches_the_logs() {
    let capture = ctxgate_tests::LogCapture::default();
    let sink = capture.clone();
    let collector = ctxgate_tests::otlp::Collector::start().await;
    // SAFETY: set before the tracer (or anything else) reads the environment.
    unsafe { std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url) };
    ctxgate::telemetry::init_with("trace", move || sink.clone());
    assert!(ctxgate::trace::enabled());

    let upstream = MockUpstream::start(|r| {
        if r.body["messages"].to_string().contains("fail-auth") {
            return Reply::status(
                401,
                &format!(
                    r#"{{"error":{{"message":"Incorrect API key provided: {PROVIDER_KEY}"}}}}"#
                ),
            );
        }
        if r.body["messages"].to_string().contains("fail-500") {
            return Reply::status(500, "Traceback (most recent call last): internal-node-7f3a");
        }
        if r.body["stream"] == true {
            // Echoes the user's text as a stream, then breaks off mid-event
            // when asked to, so both the success and the failure paths log.
            let text = reported_users(&r.body);
            let chunk = json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
            let end = if text.contains("cut-stream") {
                "data: {\"choices\"".to_owned()
            } else {
                "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_owned()
            };
            return Reply {
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
                body: format!("data: {chunk}\n\n{end}"),
                delay: std::time::Duration::ZERO,
                gate: None,
            };
        }
        Reply::json(ctxgate_tests::openai_completion(
            &reported_users(&r.body),
            10,
            5,
        ))
    })
    .await;
    let issuer = Issuer::start(true).await;
    let toml = format!(
        "[jwt]\nissuer = \"{}\"\naudience = [\"api\"]\njwks_url = \"{}\"\n",
        issuer.issuer, issuer.jwks_url
    );
    let base = format!("{}/v1", upstream.url);
    let store = dynamo_store().await;
    let gw = Gateway::with_toml(
        store.clone(),
        &toml,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", PROVIDER_KEY)],
    );
    let api_key = gw.key("acme", &["chat", "admin", "usage:read"]).await;
    let jwt = issuer.rs256(&issuer.claims("acme", "api", "chat"));

    let mut responses = Vec::new();
    for (cred, text) in [
        (&api_key, MESSAGE),
        (&jwt, "second turn swordfish-42"),
        (&api_key, "fail-auth"),
        (&api_key, "fail-500"),
    ] {
        let body = json!({"model": "openai/gpt-4o-mini", "conversation_id": "hygiene", "messages": [{"role": "user", "content": text}]});
        responses.push(
            gw.call("POST", "/v1/chat/completions", Some(cred), Some(body))
                .await,
        );
    }
    for text in [MESSAGE, "cut-stream swordfish-42"] {
        let body = json!({"model": "openai/gpt-4o-mini", "conversation_id": "hygiene-stream",
            "stream": true, "messages": [{"role": "user", "content": text}]});
        let (status, _, _) = gw
            .call("POST", "/v1/chat/completions", Some(&api_key), Some(body))
            .await;
        assert_eq!(status, 200);
    }
    // The same turn through the MCP endpoint's `chat` tool.
    let mcp_key = gw.key("acme", &["mcp", "chat"]).await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "chat",
        "arguments": {"model": "openai/gpt-4o-mini", "conversation_id": "hygiene-mcp", "message": MESSAGE},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}},
    }});
    let (status, _, answer) = gw
        .call_raw(
            "POST",
            "/mcp",
            Some(&mcp_key),
            &[
                ("host", "localhost"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "chat"),
            ],
            call.to_string().into_bytes(),
        )
        .await;
    assert_eq!(
        (status, &answer["result"]["isError"]),
        (200, &json!(false)),
        "{answer}"
    );
    assert_eq!(responses[0].0, 200);
    assert_eq!(responses[1].0, 200);
    assert_eq!(responses[2].0, 502);
    assert_eq!(responses[3].0, 502);
    let (status, _, created) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&api_key),
            Some(json!({"name": "ci", "scopes": ["chat"]})),
        )
        .await;
    assert_eq!(status, 201);
    let new_secret = created["key"].as_str().unwrap().to_owned();
    responses.push(gw.call("GET", "/v1/usage", Some(&api_key), None).await);
    responses.push(
        gw.call("GET", "/v1/models", Some("cgk_wrong-key-material"), None)
            .await,
    );
    responses.push(
        gw.call("GET", "/v1/models", Some(&format!("{jwt}x")), None)
            .await,
    );

    let logs = capture.text();
    assert!(
        logs.lines().count() > 10,
        "the capture saw the session:\n{logs}"
    );
    assert!(logs.contains("\"message\":\"request\""));
    // The /mcp access line names the chat tool's model and usage, as /v1/chat's does.
    let mcp_line = logs
        .lines()
        .find(|l| l.contains("\"path\":\"/mcp\"") && l.contains("\"message\":\"request\""))
        .expect("an access line for /mcp");
    assert!(
        mcp_line.contains("\"model\":\"openai/gpt-4o-mini\""),
        "{mcp_line}"
    );
    assert!(mcp_line.contains("\"prompt_tokens\":10"), "{mcp_line}");
    let signature = jwt.rsplit('.').next().unwrap();
    // The session's credentials and content, searched for in logs, spans and metrics.
    let secrets = [
        api_key.as_str(),
        PROVIDER_KEY,
        jwt.as_str(),
        signature,
        new_secret.as_str(),
        "swordfish-42",
        "4111 1111",
    ];
    for secret in secrets.into_iter().chain(["cgk_wrong-key-material"]) {
        assert!(!logs.contains(secret), "found {secret:?} in the logs");
    }
    // Nor in any exported span (the raw protobuf bytes are searched).
    ctxgate::trace::flush().await;
    assert!(
        collector
            .spans()
            .iter()
            .any(|s| s.name.starts_with("chat ")),
        "the session's provider calls were traced"
    );
    let exported = String::from_utf8_lossy(&collector.raw().concat()).into_owned();
    for secret in secrets
        .into_iter()
        .chain(["cgk_wrong-key-material", "Bearer"])
    {
        assert!(
            !exported.contains(secret),
            "found {secret:?} in an exported span"
        );
    }
    // Error bodies carry no stack traces, upstream bodies or internal identifiers.
    for (status, _, body) in &responses[2..] {
        let text = body.to_string();
        for leak in [
            PROVIDER_KEY,
            "Traceback",
            "internal-node",
            "panicked",
            "src/",
            "T#acme",
        ] {
            assert!(
                !text.contains(leak),
                "{status} response leaks {leak:?}: {text}"
            );
        }
    }
    // Nor does any metric: the session's metrics, as `/metrics` exposes them,
    // name no key, tenant, conversation, request id or content.
    let (status, headers, metrics) = gw
        .call_raw_text("GET", "/metrics", Some(&api_key), &[], Vec::new())
        .await;
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("ctxgate_requests_total{"), "{metrics}");
    assert!(metrics.contains("class=\"upstream\""), "{metrics}");
    let request_id = headers["x-request-id"].to_str().unwrap();
    for secret in secrets.into_iter().chain(["acme", "hygiene", request_id]) {
        assert!(!metrics.contains(secret), "found {secret:?} in the metrics");
    }
    // Every response carries a request id.
    let (_, headers, _) = gw.call("GET", "/health", None, None).await;
    assert!(headers.contains_key("x-request-id"));
    let _ = store;
}
