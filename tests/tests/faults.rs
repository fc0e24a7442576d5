//! The fault-injection suite: every row of (fault x provider format) through
//! the real handlers and the emulator, checking what the client sees, how
//! many upstream attempts were made, and that the store holds exactly the
//! turns that succeeded. Streamed rows live with the streaming tests.

use std::time::Duration;

use ctxgate_tests::fault_upstream::{Fault, FaultUpstream, Format};
use ctxgate_tests::{Gateway, dynamo_store};
use serde_json::Value;

/// Fast backoff, one-second attempts, a five-second deadline.
const CONFIG: &str = "
upstream_timeout_seconds = 1
first_byte_timeout_seconds = 1
deadline_seconds = 5
[retry]
base_delay_ms = 10
max_delay_ms = 20
";

async fn gateway(upstream: &FaultUpstream, format: Format, config: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let openai = format!("{}/v1", upstream.url);
    let (openai, anthropic) = match format {
        Format::OpenAi => (openai.as_str(), "http://127.0.0.1:9"),
        Format::Anthropic => ("http://127.0.0.1:9/v1", upstream.url.as_str()),
    };
    Gateway::new(
        dynamo_store().await,
        &[
            ("OPENAI_BASE_URL", openai),
            ("ANTHROPIC_BASE_URL", anthropic),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("CTXGATE_CONFIG", path.to_str().unwrap()),
        ],
    )
}

/// (faults, client status, error code, upstream attempts)
fn table() -> Vec<(Vec<Fault>, u16, &'static str, usize)> {
    use Fault::*;
    vec![
        (vec![Delay(Duration::from_millis(100))], 200, "", 1),
        (vec![Status(500, None)], 200, "", 2),
        (vec![Status(502, None), Status(504, None)], 200, "", 3),
        (vec![Status(503, None); 3], 502, "upstream_unavailable", 3),
        (vec![Status(529, None)], 200, "", 2),
        (vec![Status(429, Some("0"))], 200, "", 2),
        // Asked to wait longer than the deadline allows: no retry, Retry-After passed on.
        (
            vec![Status(429, Some("30"))],
            429,
            "upstream_rate_limited",
            1,
        ),
        (vec![Status(400, None)], 400, "upstream_rejected", 1),
        (vec![Status(404, None)], 404, "upstream_rejected", 1),
        (vec![Status(422, None)], 422, "upstream_rejected", 1),
        (vec![Status(401, None)], 502, "provider_auth_failed", 1),
        (vec![Reset], 200, "", 2),
        (vec![Reset; 3], 502, "upstream_unreachable", 3),
        (vec![Hang], 200, "", 2),
        (vec![Hang; 3], 504, "upstream_timeout", 3),
        (vec![MalformedJson], 502, "upstream_bad_response", 1),
        (vec![Truncated], 502, "upstream_bad_response", 1),
        (vec![WrongContentType], 502, "upstream_bad_response", 1),
    ]
}

async fn run_table(format: Format, model: &str) {
    let upstream = FaultUpstream::start(format).await;
    let gw = gateway(&upstream, format, CONFIG).await;
    let key = gw.key("acme", &[]).await;
    let mut report = Vec::new();
    for (i, (faults, status, code, attempts)) in table().into_iter().enumerate() {
        let conv = format!("row-{i}");
        upstream.script(faults.clone());
        let (got, headers, body) = gw.chat(&key, model, Some(&conv), "hello").await;
        let row = format!("{faults:?}");
        assert_eq!(got, status, "{row}: {body}");
        if status != 200 {
            assert_eq!(body["error"]["code"], code, "{row}");
        }
        if code == "upstream_rate_limited" {
            assert_eq!(headers["retry-after"], "30", "{row}");
        }
        assert_eq!(upstream.requests(), attempts, "{row}: upstream attempts");
        let stored = gw
            .state
            .store
            .load_conversation("acme", &conv, ctxgate::now_secs())
            .await
            .unwrap();
        let want = if status == 200 { 2 } else { 0 };
        assert_eq!(stored.messages.len(), want, "{row}: stored messages");
        report.push(format!("| {row} | {got} {code} | {attempts} |"));
    }
    println!("{model}:\n{}", report.join("\n"));
}

#[tokio::test]
async fn every_fault_row_openai() {
    run_table(Format::OpenAi, "openai/gpt-4o").await;
}

#[tokio::test]
async fn every_fault_row_anthropic() {
    run_table(Format::Anthropic, "anthropic/claude-haiku-4-5").await;
}

#[tokio::test]
async fn a_fallback_chain_moves_on_and_says_who_answered() {
    let openai = FaultUpstream::start(Format::OpenAi).await;
    let anthropic = FaultUpstream::start(Format::Anthropic).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "{CONFIG}\n[aliases]\nsmart = [\"openai/gpt-4.1\", \"anthropic/claude-sonnet-4-5\"]\n"
        ),
    )
    .unwrap();
    let openai_url = format!("{}/v1", openai.url);
    let gw = Gateway::new(
        dynamo_store().await,
        &[
            ("OPENAI_BASE_URL", openai_url.as_str()),
            ("ANTHROPIC_BASE_URL", anthropic.url.as_str()),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("CTXGATE_CONFIG", path.to_str().unwrap()),
        ],
    );
    let key = gw.key("acme", &[]).await;
    openai.script(vec![Fault::Status(503, None); 3]);
    anthropic.script(vec![]);
    let (status, headers, body) = gw.chat(&key, "smart", Some("fb"), "hi").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "anthropic/claude-sonnet-4-5");
    assert_eq!(headers["x-ctxgate-model"], "anthropic/claude-sonnet-4-5");
    assert_eq!((openai.requests(), anthropic.requests()), (3, 1));
    let (_, _, conv) = gw
        .call(
            "GET",
            "/v1/conversations/fb?order=desc&limit=1",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        conv["messages"]["data"][0]["model"],
        "anthropic/claude-sonnet-4-5"
    );
    assert_eq!(conv["messages"]["data"][0]["provider"], "anthropic");
    // The request's own mistakes do not fall back.
    openai.script(vec![Fault::Status(400, None)]);
    anthropic.script(vec![]);
    let (status, _, _) = gw.chat(&key, "smart", Some("fb2"), "hi").await;
    assert_eq!(status, 400);
    assert_eq!((openai.requests(), anthropic.requests()), (1, 0));
    // A bad key on the first provider falls back at once.
    openai.script(vec![Fault::Status(401, None)]);
    let (status, _, body) = gw.chat(&key, "smart", None, "hi").await;
    assert_eq!(
        (status, body["model"].as_str()),
        (200, Some("anthropic/claude-sonnet-4-5"))
    );
    assert_eq!(openai.requests(), 1);
    // GET /v1/models lists the chain as the gateway's own.
    let (_, _, models) = gw.call("GET", "/v1/models", Some(&key), None).await;
    let smart = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "smart")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(smart["owned_by"], "ctxgate");
}

#[tokio::test]
async fn the_deadline_bounds_retries_and_fallbacks_together() {
    let upstream = FaultUpstream::start(Format::OpenAi).await;
    let config = "
upstream_timeout_seconds = 30
first_byte_timeout_seconds = 30
deadline_seconds = 1
[aliases]
both = [\"openai/gpt-4o\", \"openai/gpt-4.1\"]
";
    let gw = gateway(&upstream, Format::OpenAi, config).await;
    let key = gw.key("acme", &[]).await;
    upstream.script(vec![Fault::Hang, Fault::Hang]);
    let started = std::time::Instant::now();
    let (status, _, body) = gw.chat(&key, "both", Some("late"), "hi").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert_eq!(
        upstream.requests(),
        1,
        "no time was left for another attempt"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let stored = gw
        .state
        .store
        .load_conversation("acme", "late", ctxgate::now_secs())
        .await
        .unwrap();
    assert!(stored.messages.is_empty());
}
