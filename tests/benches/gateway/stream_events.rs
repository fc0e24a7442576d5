//! Issue 20: streamed events through the local server, Bedrock next to OpenAI. The mock
//! upstream is `bench-upstream` (`tests/src/bin/bench-upstream.rs`), which answers a
//! ConverseStream request with Bedrock's binary event stream and a streamed chat completion
//! with OpenAI's SSE, the same number of text deltas of the same text in both, at once. A client
//! streams a chat turn (`stream: true` on `/v1/chat/completions`) through the gateway, to
//! `bedrock/<model>` (SigV4-signed with test credentials, the mock reached through
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`) or to `openai/gpt-4o-mini`, and the same stream is read
//! from the mock directly, alternating one by one so that drift hits both sides.
//!
//! Per stream: from sending the request to the stream's last byte. Per event: the added time's
//! growth from the shorter stream to the longer one, divided by the events between them, so that
//! the turn's fixed cost (authentication, the turn's preparation, the usage row) drops out.

use std::path::Path;
use std::time::{Duration, Instant};

use ctxgate_tests::child::{Listening, spawn_listening};
use serde_json::json;
use tokio::process::Command;

use super::{bedrock_env, percentile_of, start_server, us};

/// How much the table runs.
pub struct Sizes {
    /// Streams measured per row, each way (after `warmup` of each).
    pub streams: usize,
    pub warmup: usize,
    /// Text deltas per stream: the short and the long stream.
    pub events: [usize; 2],
    /// Bytes of text per delta.
    pub bytes: usize,
}

/// The figures.
pub const FULL: Sizes = Sizes {
    streams: 300,
    warmup: 30,
    events: [1, 201],
    bytes: 80,
};

/// A few streams per row: that every row still works (`-- smoke`).
pub const SMOKE: Sizes = Sizes {
    streams: 3,
    warmup: 1,
    events: [1, 3],
    bytes: 80,
};

/// The Bedrock model the gateway is asked for (`bedrock/` before it).
const BEDROCK_MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

/// The upstream a row streams from.
#[derive(Clone, Copy)]
enum Upstream {
    OpenAi,
    Bedrock,
}

impl Upstream {
    fn name(self) -> &'static str {
        match self {
            Upstream::OpenAi => "OpenAI (SSE)",
            Upstream::Bedrock => "Bedrock (event stream)",
        }
    }

    /// The model a gateway client asks for.
    fn model(self) -> String {
        match self {
            Upstream::OpenAi => "openai/gpt-4o-mini".to_owned(),
            Upstream::Bedrock => format!("bedrock/{BEDROCK_MODEL}"),
        }
    }

    /// The direct request to the mock, as the gateway sends it (path and body shape).
    fn direct(self, client: &reqwest::Client, mock: &str) -> reqwest::RequestBuilder {
        let prompt = "stream please";
        match self {
            Upstream::OpenAi => client
                .post(format!("{mock}/v1/chat/completions"))
                .json(&json!({"model": "gpt-4o-mini", "stream": true,
                    "messages": [{"role": "user", "content": prompt}]})),
            Upstream::Bedrock => client
                .post(format!(
                    "{mock}/model/{}/converse-stream",
                    BEDROCK_MODEL.replace(':', "%3A")
                ))
                .header("accept", ctxgate_tests::streamed_answer::EVENT_STREAM)
                .json(
                    &json!({"messages": [{"role": "user", "content": [{"text": prompt}]}],
                    "inferenceConfig": {"maxTokens": 1000}}),
                ),
        }
    }

    /// The last bytes of a whole answer read directly.
    fn direct_end(self) -> &'static str {
        match self {
            Upstream::OpenAi => "data: [DONE]",
            // The last frame's event type (its payload and CRC follow).
            Upstream::Bedrock => "metadata",
        }
    }
}

/// One stream read to its end: its time, after checking that it is whole (status 200, the last
/// delta's marker, and `end`).
async fn one_stream(req: reqwest::RequestBuilder, last: &str, end: &str) -> Duration {
    let started = Instant::now();
    let mut resp = req.send().await.expect("a streamed answer");
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("the stream's body") {
        body.extend_from_slice(&chunk);
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(last) && text.contains(end),
        "a stream without {last:?} or {end:?}: {text}"
    );
    took
}

/// The mock upstream answering `events` deltas of `bytes` bytes; its URL.
async fn mock(events: usize, bytes: usize) -> Listening {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench-upstream"));
    cmd.env("BENCH_UPSTREAM_EVENTS", events.to_string())
        .env("BENCH_UPSTREAM_EVENT_BYTES", bytes.to_string());
    spawn_listening(cmd, "bench-upstream", |line| {
        line.strip_prefix("listening on ")
            .map(|addr| format!("http://{addr}"))
    })
    .await
}

/// Prints the table: per stream for each upstream and stream length, then per event.
pub async fn run(dir: &Path, sizes: &Sizes, build: &str) {
    let Sizes {
        streams,
        warmup,
        events,
        bytes,
    } = *sizes;
    println!("\n### Streamed events through the local server ({build}): Bedrock next to OpenAI\n");
    println!(
        "`bench-upstream` answering each stream at once ({bytes} bytes of text per delta, the same in both wires); a `stream: true` chat turn on `/v1/chat/completions` (default redaction) against the same stream read from the mock directly, alternating, {streams} streams each way per row after {warmup}. Per stream: request sent to the stream's last byte.\n"
    );
    println!(
        "| upstream | deltas per stream | direct p50 | through ctxgate p50 / p90 / p99 | added p50 per stream |\n|---|---|---|---|---|"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    // added p50 per stream, by upstream, for each stream length.
    let mut added = [[Duration::ZERO; 2]; 2];
    for (n, &deltas) in events.iter().enumerate() {
        let upstream = mock(deltas, bytes).await;
        let data = tempfile::tempdir().unwrap();
        let mut extra = vec![
            ("OPENAI_BASE_URL", format!("{}/v1", upstream.url)),
            ("OPENAI_API_KEY", "sk-bench".to_owned()),
        ];
        extra.extend(bedrock_env(&upstream.url));
        let (mut server, port, key) = start_server(dir, &data.path().join("db"), &extra, &[]).await;
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
        let last = format!("[{}]", deltas - 1);
        for (u, wire) in [Upstream::OpenAi, Upstream::Bedrock]
            .into_iter()
            .enumerate()
        {
            let through = || {
                client.post(&url).bearer_auth(&key).json(&json!({
                    "model": wire.model(), "stream": true,
                    "messages": [{"role": "user", "content": "stream please"}]}))
            };
            let (mut direct, mut gateway) = (Vec::new(), Vec::new());
            for i in 0..warmup + streams {
                let d = one_stream(
                    wire.direct(&client, &upstream.url),
                    &last,
                    wire.direct_end(),
                )
                .await;
                let g = one_stream(through(), &last, "data: [DONE]").await;
                if i >= warmup {
                    direct.push(d);
                    gateway.push(g);
                }
            }
            let (d50, g50) = (percentile_of(&direct, 0.5), percentile_of(&gateway, 0.5));
            added[u][n] = g50.saturating_sub(d50);
            println!(
                "| {} | {deltas} | {} | {} / {} / {} | {} |",
                wire.name(),
                us(d50),
                us(g50),
                us(percentile_of(&gateway, 0.9)),
                us(percentile_of(&gateway, 0.99)),
                us(added[u][n]),
            );
        }
        server.kill().await.ok();
    }
    let between = (events[1] - events[0]) as f64;
    println!(
        "\n| upstream | added per streamed event (added p50 per stream at {} deltas minus at {}, over {}) |\n|---|---|",
        events[1],
        events[0],
        events[1] - events[0]
    );
    for (u, wire) in [Upstream::OpenAi, Upstream::Bedrock]
        .into_iter()
        .enumerate()
    {
        let per_event = (added[u][1].as_secs_f64() - added[u][0].as_secs_f64()) / between;
        println!("| {} | {:.2} µs |", wire.name(), per_event * 1e6);
    }
}
