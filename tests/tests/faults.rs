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
    let openai = format!("{}/v1", upstream.url);
    let (openai, anthropic) = match format {
        Format::OpenAi => (openai.as_str(), "http://127.0.0.1:9"),
        Format::Anthropic => ("http://127.0.0.1:9/v1", upstream.url.as_str()),
    };
    Gateway::with_toml(
        dynamo_store().await,
        config,
        &[
            ("OPENAI_BASE_URL", openai),
            ("ANTHROPIC_BASE_URL", anthropic),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ],
    )
}

/// How many messages the conversation `conv` of tenant `acme` holds.
async fn stored_messages(gw: &Gateway, conv: &str) -> usize {
    gw.state
        .store
        .load_conversation("acme", conv, ctxgate::now_secs())
        .await
        .unwrap()
        .messages
        .len()
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
        // Issue 12, point 15: a refused key is never retried.
        (vec![Status(403, None)], 502, "provider_auth_failed", 1),
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
        let stored = stored_messages(&gw, &conv).await;
        let want = if status == 200 { 2 } else { 0 };
        assert_eq!(stored, want, "{row}: stored messages");
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

/// A gateway whose alias `smart` falls back from an OpenAI to an Anthropic upstream.
async fn chain_gateway() -> (Gateway, FaultUpstream, FaultUpstream) {
    let openai = FaultUpstream::start(Format::OpenAi).await;
    let anthropic = FaultUpstream::start(Format::Anthropic).await;
    let config = format!(
        "{CONFIG}\n[aliases]\nsmart = [\"openai/gpt-4.1\", \"anthropic/claude-sonnet-4-5\"]\n"
    );
    let openai_url = format!("{}/v1", openai.url);
    let gw = Gateway::with_toml(
        dynamo_store().await,
        &config,
        &[
            ("OPENAI_BASE_URL", openai_url.as_str()),
            ("ANTHROPIC_BASE_URL", anthropic.url.as_str()),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ],
    );
    (gw, openai, anthropic)
}

#[tokio::test]
async fn a_fallback_chain_moves_on_and_says_who_answered() {
    let (gw, openai, anthropic) = chain_gateway().await;
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
    let stored = stored_messages(&gw, "late").await;
    assert_eq!(stored, 0);
}

/// How a streamed request ended for the client.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The whole answer and `[DONE]`.
    Done,
    /// An error event inside a 200 stream (the answer had started).
    ErrorEvent(String),
    /// A JSON error before any byte of an answer.
    Refused(u16, String),
}

async fn stream_once(gw: &Gateway, key: &str, model: &str, conv: &str) -> Ended {
    let body = serde_json::json!({"model": model, "conversation_id": conv, "stream": true,
        "messages": [{"role": "user", "content": "hello"}]});
    let (status, headers, text) = gw.call_text("/v1/chat/completions", key, &[], body).await;
    if status != 200 {
        let v: Value = serde_json::from_str(&text).unwrap();
        return Ended::Refused(status, v["error"]["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(headers["content-type"], "text/event-stream");
    if text.ends_with("data: [DONE]\n\n") {
        // Chunks may merge (the stream redactor holds a little back): the text is whole.
        let said: String = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|e| {
                e["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(said, "fine");
        return Ended::Done;
    }
    let last = text
        .trim_end()
        .rsplit("\n\n")
        .next()
        .and_then(|e| e.strip_prefix("data: "))
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .unwrap_or(Value::Null);
    Ended::ErrorEvent(last["error"]["code"].as_str().unwrap_or("?").to_owned())
}

/// The streamed table: every row of the non-streamed one, with the same
/// outcome (all of them happen before the client's first byte, where a
/// stream can still fall back, retry or refuse with a JSON error), then the
/// faults only a stream can have. Issue 12, point 15: built from `table()`,
/// so the two tables cannot drift apart.
fn streamed_table() -> Vec<(Vec<Fault>, Ended, usize)> {
    use Fault::*;
    let mut rows: Vec<(Vec<Fault>, Ended, usize)> = table()
        .into_iter()
        .map(|(faults, status, code, attempts)| {
            let ended = if status == 200 {
                Ended::Done
            } else {
                Ended::Refused(status, code.to_owned())
            };
            (faults, ended, attempts)
        })
        .collect();
    // Once the answer has started, nothing is retried: the stream ends with an error.
    rows.push((
        vec![StreamCut],
        Ended::ErrorEvent("upstream_bad_response".into()),
        1,
    ));
    rows.push((
        vec![StreamError],
        Ended::ErrorEvent("upstream_stream_error".into()),
        1,
    ));
    rows
}

async fn run_streamed_table(format: Format, model: &str) {
    let rows = streamed_table();
    let upstream = FaultUpstream::start(format).await;
    let gw = gateway(&upstream, format, CONFIG).await;
    let key = gw.key("acme", &[]).await;
    let mut report = Vec::new();
    for (i, (faults, want, attempts)) in rows.into_iter().enumerate() {
        let conv = format!("s-row-{i}");
        upstream.script(faults.clone());
        let got = stream_once(&gw, &key, model, &conv).await;
        let row = format!("{faults:?}");
        report.push(format!("| {row} | {got:?} | {} |", upstream.requests()));
        assert_eq!(got, want, "{row}");
        assert_eq!(upstream.requests(), attempts, "{row}: upstream attempts");
        let stored = stored_messages(&gw, &conv).await;
        let want_stored = if got == Ended::Done { 2 } else { 0 };
        assert_eq!(stored, want_stored, "{row}: stored messages");
    }
    println!("{model} (streamed):\n{}", report.join("\n"));
}

#[tokio::test]
async fn every_fault_row_streamed_openai() {
    run_streamed_table(Format::OpenAi, "openai/gpt-4o").await;
}

#[tokio::test]
async fn every_fault_row_streamed_anthropic() {
    run_streamed_table(Format::Anthropic, "anthropic/claude-haiku-4-5").await;
}

#[tokio::test]
async fn an_idempotent_stream_replays_what_was_sent() {
    let upstream = FaultUpstream::start(Format::OpenAi).await;
    let gw = gateway(&upstream, Format::OpenAi, CONFIG).await;
    let key = gw.key("acme", &[]).await;
    let body = serde_json::json!({"model": "openai/gpt-4o", "conversation_id": "idem-s",
        "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let send = |b: Value| {
        let (gw, key) = (&gw, key.clone());
        async move {
            gw.call_text(
                "/v1/chat/completions",
                &key,
                &[("idempotency-key", "s-1")],
                b,
            )
            .await
        }
    };
    upstream.script(vec![]);
    let (status, _, first) = send(body.clone()).await;
    assert_eq!(status, 200);
    assert!(first.ends_with("data: [DONE]\n\n"));
    let (status, headers, again) = send(body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(again, first, "the same events, byte for byte");
    assert_eq!(upstream.requests(), 1);
    let stored = stored_messages(&gw, "idem-s").await;
    assert_eq!(stored, 2);
    // A stream that failed gives its key back: the retry runs.
    upstream.script(vec![Fault::StreamError]);
    let other = serde_json::json!({"model": "openai/gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": "again"}]});
    let (_, _, failed) = gw
        .call_text(
            "/v1/chat/completions",
            &key,
            &[("idempotency-key", "s-2")],
            other.clone(),
        )
        .await;
    assert!(failed.contains("upstream_stream_error"));
    let (status, headers, retried) = gw
        .call_text(
            "/v1/chat/completions",
            &key,
            &[("idempotency-key", "s-2")],
            other,
        )
        .await;
    assert_eq!(status, 200);
    assert!(headers.get("idempotent-replayed").is_none());
    assert!(retried.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_streamed_fallback_moves_on_before_the_first_byte() {
    let (gw, openai, anthropic) = chain_gateway().await;
    let key = gw.key("acme", &[]).await;
    openai.script(vec![Fault::Status(503, None); 3]);
    anthropic.script(vec![]);
    let body = serde_json::json!({"model": "smart", "conversation_id": "sfb", "stream": true,
        "messages": [{"role": "user", "content": "hello"}]});
    let (status, headers, text) = gw.call_text("/v1/chat/completions", &key, &[], body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ctxgate-model"], "anthropic/claude-sonnet-4-5");
    assert!(text.contains("\"model\":\"anthropic/claude-sonnet-4-5\""));
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!((openai.requests(), anthropic.requests()), (3, 1));
}
