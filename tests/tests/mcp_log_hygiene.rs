//! MCP servers' header values and what tools return never reach the logs:
//! listing and calls that succeed and fail, every log line captured at the
//! most verbose level the gateway allows. (One test per binary: the log
//! subscriber is process-global.)

use std::time::Duration;

use ctxgate::mcp::Outcome;
use ctxgate_tests::mcp_server::{McpFixture, Revision, mcp, tool_call};

#[tokio::test]
async fn no_header_value_or_tool_result_reaches_the_logs() {
    let capture = ctxgate_tests::LogCapture::default();
    let sink = capture.clone();
    ctxgate::telemetry::init_with("trace", move || sink.clone());

    for revision in [Revision::Current, Revision::Legacy] {
        let server = McpFixture::start(revision).await;
        let (mcp, _dir) = mcp(|_| {});
        let mut spec = server.spec("crm");
        spec.headers
            .push(("X-Api-Key".to_owned(), "k-HEADERSECRET-77".to_owned()));
        let tb = mcp.toolbox("acme", vec![spec.clone()]).await;
        for (name, args, outcome) in [
            ("crm__get_customer", r#"{"id":"ARGSECRET-1"}"#, Outcome::Ok),
            ("crm__broken", "{}", Outcome::ToolError),
            ("crm__garbled", "{}", Outcome::Malformed),
            ("crm__big", r#"{"size": 10}"#, Outcome::Ok),
        ] {
            assert_eq!(tb.call(&tool_call("1", name, args)).await.outcome, outcome);
        }
        drop(tb);
        // The list was dropped after the malformed answer: listed again, then
        // a call past a short limit.
        mcp.toolbox("acme", vec![spec.clone()]).await;
        let mut short = spec.clone();
        short.timeout = Duration::from_millis(300);
        let tb = mcp.toolbox("acme", vec![short]).await;
        let run = tb.call(&tool_call("2", "crm__hang", "{}")).await;
        assert_eq!(run.outcome, Outcome::TimedOut);
        drop(tb);
        // A wrong credential: 401 while listing.
        spec.headers[0].1 = "Bearer WRONG-TOKEN-SECRET".to_owned();
        let tb = mcp.toolbox("globex", vec![spec]).await;
        assert_eq!(tb.unavailable().len(), 1);
    }

    let logs = capture.text();
    assert!(logs.contains("MCP tool call failed"), "nothing captured");
    assert!(logs.contains("MCP server unavailable"));
    for secret in [
        "good-token",
        "WRONG-TOKEN-SECRET",
        "k-HEADERSECRET-77",
        "ARGSECRET-1",
        "Ada Lovelace",
        "CRM database is offline",
        "oops",
        "xxxxxxxxxx",
    ] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}
