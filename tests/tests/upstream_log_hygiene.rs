//! Issue 12, point 6: nothing from an upstream's body reaches the logs.
//! Every log line is captured at the most verbose level while providers
//! answer with error bodies, unreadable success bodies and mid-stream errors
//! that carry a marker and something that looks like a key; neither appears
//! in the log, which still names the status.
//! (One test per binary: the log subscriber is process-global.)

use ctxgate_tests::{Gateway, MockUpstream, Reply, embedded_store};
use serde_json::json;

const MARKER: &str = "MARKER-9e107d9d";
const LOOKS_LIKE_KEY: &str = "sk-proj-LEAKEDKEY0123456789abcdef";

#[tokio::test]
async fn upstream_bodies_never_reach_the_logs() {
    let capture = ctxgate_tests::LogCapture::default();
    let sink = capture.clone();
    ctxgate::telemetry::init_with("trace", move || sink.clone());

    let upstream = MockUpstream::start(|_| Reply::status(500, "{}")).await;
    let (store, _data) = embedded_store();
    let gw = Gateway::with_toml(
        store,
        "[retry]\nattempts = 1\n",
        &[
            ("OPENAI_BASE_URL", &format!("{}/v1", upstream.url)),
            ("ANTHROPIC_BASE_URL", &upstream.url),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ],
    );
    let key = gw.key("acme", &[]).await;

    let error_body = format!(
        r#"{{"error":{{"message":"{MARKER} {LOOKS_LIKE_KEY}","type":"{MARKER} {LOOKS_LIKE_KEY}","code":"{MARKER}","param":"{MARKER}"}}}}"#
    );
    let bad_shape = format!(
        r#"{{"choices":[{{"message":{{"role":"{MARKER}"}}}}],"usage":{{"prompt_tokens":"{LOOKS_LIKE_KEY}"}}}}"#
    );
    let sse = |body: String| Reply {
        headers: vec![("content-type".into(), "text/event-stream".into())],
        ..Reply::status(200, &body)
    };
    let replies = vec![
        Reply::status(400, &error_body),
        Reply::status(401, &error_body),
        Reply::status(404, &error_body),
        Reply::status(422, &error_body),
        Reply::status(429, &error_body),
        Reply::status(500, &error_body),
        Reply::status(503, &format!("<html>{MARKER} {LOOKS_LIKE_KEY}</html>")),
        Reply::status(200, &bad_shape),
        Reply::status(200, &format!("{MARKER} {LOOKS_LIKE_KEY}")),
        sse(format!(
            "data: {{\"error\":{{\"type\":\"{MARKER}\",\"code\":\"{LOOKS_LIKE_KEY}\"}}}}\n\n"
        )),
        sse(format!(
            "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{MARKER} x\"}}}}\n\n"
        )),
        sse(format!(
            "data: {{\"choices\":[{{\"index\":\"{MARKER}\"}}]}}\n\n"
        )),
        sse(format!(
            "event: message_start\ndata: {{\"type\":\"{MARKER}\",\"message\":\"{LOOKS_LIKE_KEY}\"\n\n"
        )),
    ];
    let mut failures = 0;
    for reply in replies {
        for model in ["openai/gpt-4o", "anthropic/claude-haiku-4-5"] {
            for stream in [false, true] {
                let r = reply.clone();
                upstream.respond(move |_| r.clone());
                let body = json!({"model": model, "stream": stream,
                                  "messages": [{"role": "user", "content": "hello"}]});
                let (status, _, text) = gw.call_text("/v1/chat/completions", &key, &[], body).await;
                assert!(!text.contains(MARKER), "{status} {model}: {text}");
                assert!(!text.contains(LOOKS_LIKE_KEY), "{status} {model}: {text}");
                failures += usize::from(status >= 400 || text.contains("\"error\""));
            }
        }
    }
    assert!(failures >= 40, "the error paths ran: {failures}");

    let logs = capture.text();
    assert!(logs.contains("upstream error"), "errors are logged: {logs}");
    assert!(logs.contains("422"), "with their status");
    assert!(
        !logs.contains(MARKER),
        "an upstream body reached the logs:\n{logs}"
    );
    assert!(
        !logs.contains(LOOKS_LIKE_KEY),
        "a key-like value reached the logs"
    );
}
