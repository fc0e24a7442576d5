//! Gateway benchmarks; run `scripts/bench.sh`, which builds the release
//! binaries first and passes their directory in `CTXGATE_RELEASE_DIR`.
//!
//! Prints tables: release binary sizes; Lambda cold start of the chat
//! function (process start to its first Runtime API poll, and to the answer
//! of its first invocation; then warm invocations of the same process) against
//! a local Runtime API; chat-turn latency
//! through the local server (`echo` model, embedded store) over 10,000
//! sequential requests on one keep-alive connection; and streaming latency
//! through the local server against a mock OpenAI upstream (its first byte
//! to the client's first content byte, and the delay added to each chunk);
//! and stream redaction in process (time per KB at 4, 16 and 64 KB, by
//! chunking). `cargo bench -p ctxgate-tests --bench gateway -- stream-redaction`
//! runs the last table alone (no release binaries needed).
//!
//! Issue 16 adds two: the cold start of the `mcp` function (buffered), and a
//! federated MCP `tools/call` through the local server's `POST /mcp` against
//! the same call straight to the MCP server (an rmcp server on loopback),
//! alternating. `-- mcp` runs those two alone (release binaries needed);
//! `-- cold` the chat function's cold-start table alone.
//!
//! Issue 19 adds the side-by-side table (`side_by_side.rs`): a stateless turn
//! through the local server against calling its mock upstream directly, at
//! fixed open-loop rates and closed-loop concurrencies, with the gateway's CPU
//! per request, its throughput on one core and its peak RSS. `-- side-by-side`
//! runs it alone; `-- smoke` runs it at tiny sizes (`scripts/bench.sh --smoke`).
//!
//! Issue 20 adds the provider-streams table: the time each provider's stream
//! translator adds per streamed event, in process (Bedrock's binary event
//! stream against OpenAI's SSE). `-- provider-streams` runs it alone (no
//! release binaries needed). The streaming table has Bedrock rows (a
//! ConverseStream mock), and `stream_events.rs` the streamed-events table:
//! a whole stream through the local server against `bench-upstream` directly,
//! Bedrock next to OpenAI, per stream and per event. `-- stream-events` runs
//! it alone; `-- smoke` runs it at tiny sizes too.

// Under gateway/ so that cargo does not take it for a bench target of its own.
#[path = "gateway/side_by_side.rs"]
mod side_by_side;
#[path = "gateway/stream_events.rs"]
mod stream_events;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ctxgate_tests::runtime_api::{RuntimeApi, RuntimeEvent};
use ctxgate_tests::streamed_answer;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

const REQUESTS: usize = 10_000;
const WARMUP: usize = 500;
const COLD_STARTS: usize = 20;
const WARM_INVOCATIONS: usize = 10;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn summary(name: &str, mut samples: Vec<Duration>, fmt: fn(Duration) -> String) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "| {name} | {} | {} | {} | {} | {} | {} |",
        samples.len(),
        fmt(percentile(&samples, 0.50)),
        fmt(percentile(&samples, 0.90)),
        fmt(percentile(&samples, 0.99)),
        fmt(*samples.last().unwrap()),
        fmt(mean)
    );
}

fn sizes(dir: &Path) {
    println!("\n### Release binaries (stripped)\n\n| binary | size |\n|---|---|");
    for bin in ["ctxgate-chat", "ctxgate-models", "ctxgate-mcp", "ctxgate"] {
        let len = std::fs::metadata(dir.join(bin))
            .map(|m| m.len())
            .unwrap_or(0);
        println!("| {bin} | {:.2} MB |", len as f64 / 1_000_000.0);
    }
}

/// What one function's cold starts measured.
struct ColdStarts {
    /// Process start to its first Runtime API poll.
    ready: Vec<Duration>,
    /// Process start to the answer of its first invocation.
    first: Vec<Duration>,
    /// Warm invocations of the same processes: queued to answer complete.
    warm: Vec<Duration>,
}

/// `COLD_STARTS` fresh processes of the function `bin` against a local
/// Runtime API, each answering `event` once cold and `WARM_INVOCATIONS` times
/// warm; `check` asserts each answer is the expected one.
async fn cold_start_runs(
    dir: &Path,
    bin: &str,
    event: &serde_json::Value,
    check: impl Fn(&RuntimeEvent),
) -> ColdStarts {
    let mut ready = Vec::new();
    let mut first = Vec::new();
    let mut warm = Vec::new();
    for i in 0..COLD_STARTS {
        let mut rt = RuntimeApi::start().await;
        rt.invoke(&format!("req-{i}"), event.to_string());
        let start = Instant::now();
        let mut child = Command::new(dir.join(bin))
            .env_clear()
            .envs(rt.lambda_env(bin))
            .envs([
                ("CTXGATE_STORE", "dynamodb"),
                ("CTXGATE_TABLE", "ctxgate"),
                ("CTXGATE_SECRET_ID", "ctxgate/provider-keys"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "bench"),
                ("AWS_SECRET_ACCESS_KEY", "bench"),
                ("RUST_LOG", "warn"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        loop {
            match rt.events.recv().await.expect("runtime events") {
                RuntimeEvent::Next(at) if ready.len() == i => ready.push(at - start),
                RuntimeEvent::Next(_) => {}
                RuntimeEvent::Error { id, body, .. } => {
                    panic!("{bin} reported an error for {id}: {body:?}")
                }
                answer @ RuntimeEvent::Response { at, .. } => {
                    check(&answer);
                    first.push(at - start);
                    break;
                }
            }
        }
        // The same process, warm: invocation queued -> answer complete.
        for j in 0..WARM_INVOCATIONS {
            let sent = Instant::now();
            rt.invoke(&format!("req-{i}-{j}"), event.to_string());
            match rt.outcome().await {
                answer @ RuntimeEvent::Response { at, .. } => {
                    check(&answer);
                    warm.push(at - sent)
                }
                other => panic!("{bin} warm invocation: {other:?}"),
            }
        }
        child.kill().await.ok();
    }
    ColdStarts { ready, first, warm }
}

/// Prints one function's cold-start table; `warm` names its warm row.
fn cold_start_table(title: &str, runs: ColdStarts, warm: &str) {
    println!("\n### {title}\n");
    println!("| measure | runs | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|");
    summary("process start -> first /next (ready)", runs.ready, ms);
    summary("process start -> first response", runs.first, ms);
    summary(warm, runs.warm, ms);
}

/// An API Gateway HTTP API (v2) event for `method path`, with `headers` added.
fn apigw_event(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> serde_json::Value {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/apigw_http_v2.json")).unwrap();
    event["rawPath"] = json!(path);
    event["routeKey"] = json!(format!("{method} {path}"));
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["routeKey"] = json!(format!("{method} {path}"));
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    event["body"] = json!(body);
    event
}

async fn cold_starts(dir: &Path) {
    let event = include_str!("../fixtures/apigw_http_v2.json");
    let mut health: serde_json::Value = serde_json::from_str(event).unwrap();
    health["rawPath"] = json!("/health");
    health["requestContext"]["http"]["method"] = json!("GET");
    let runs = cold_start_runs(dir, "ctxgate-chat", &health, |answer| {
        // The chat function streams; the fixture splits off the prelude.
        let RuntimeEvent::Response { stream, .. } = answer else {
            unreachable!()
        };
        let prelude = &stream.as_ref().expect("a streamed response").prelude;
        assert_eq!(prelude["statusCode"], 200, "health failed: {prelude}");
    })
    .await;
    cold_start_table(
        &format!(
            "Chat function cold start ({COLD_STARTS} runs, local Runtime API, DynamoDB + Secrets Manager clients built)"
        ),
        runs,
        "warm invocation -> streamed answer complete",
    );
}

/// Issue 16: the `mcp` function, buffered. Each invocation is what an MCP
/// client sends first: a `tools/list` without a credential, which runs the
/// endpoint's host check and authentication and is answered 401 with the
/// challenge naming the Protected Resource Metadata (no store round trip,
/// like the chat function's `/health`).
async fn mcp_cold_starts(dir: &Path) {
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": mcp_meta()}});
    let event = apigw_event(
        "POST",
        "/mcp",
        &[
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", MCP_REVISION),
            ("mcp-method", "tools/list"),
        ],
        Some(body.to_string()),
    );
    let runs = cold_start_runs(dir, "ctxgate-mcp", &event, |answer| {
        // Buffered: the invocation response is the whole API Gateway response document.
        let RuntimeEvent::Response { body, stream, .. } = answer else {
            unreachable!()
        };
        assert!(stream.is_none(), "the mcp function answers buffered");
        let doc: serde_json::Value = serde_json::from_slice(body).expect("a response document");
        assert_eq!(doc["statusCode"], 401, "{doc}");
        let challenge = doc["headers"]["www-authenticate"].as_str().unwrap_or("");
        assert!(challenge.contains("resource_metadata="), "{doc}");
    })
    .await;
    cold_start_table(
        &format!(
            "MCP function cold start ({COLD_STARTS} runs, local Runtime API, DynamoDB + Secrets Manager clients built; each invocation an unauthenticated `tools/list` on POST /mcp, answered 401 with its challenge, buffered)"
        ),
        runs,
        "warm invocation -> answer complete",
    );
}

/// The local server on the embedded store under `data_dir`, on a free port,
/// with a freshly minted key (`scopes`, or the default ones when empty);
/// waits until it listens and keeps draining its access log so it never
/// blocks on stderr.
async fn start_server(
    dir: &Path,
    data_dir: &Path,
    extra_env: &[(&str, String)],
    scopes: &[&str],
) -> (tokio::process::Child, u16, String) {
    start_server_pinned(dir, data_dir, extra_env, scopes, None).await
}

/// [`start_server`], the server started under `taskset -c cpus` when given
/// (so that its runtime sizes itself to those cores).
async fn start_server_pinned(
    dir: &Path,
    data_dir: &Path,
    extra_env: &[(&str, String)],
    scopes: &[&str],
    cpus: Option<&str>,
) -> (tokio::process::Child, u16, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut env = vec![
        ("CTXGATE_STORE", "embedded".to_owned()),
        ("CTXGATE_DATA_DIR", data_dir.display().to_string()),
        ("CTXGATE_LISTEN", format!("127.0.0.1:{port}")),
        ("RUST_LOG", "warn".to_owned()),
    ];
    // `CTXGATE_METRICS=off cargo bench ...`: the same tables with the request
    // metrics off (issue 21's cost of metrics), else the local default.
    if let Ok(metrics) = std::env::var("CTXGATE_METRICS") {
        env.push(("CTXGATE_METRICS", metrics));
    }
    // `TOKIO_WORKER_THREADS=1 cargo bench ...`: the server's runtime on one
    // worker thread (no wake-ups between workers), else one per core.
    if let Ok(workers) = std::env::var("TOKIO_WORKER_THREADS") {
        env.push(("TOKIO_WORKER_THREADS", workers));
    }
    env.extend(extra_env.iter().cloned());
    let mut args = vec!["keys", "create", "--tenant", "bench"];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let out = Command::new(dir.join("ctxgate"))
        .args(args)
        .env_clear()
        .envs(env.clone())
        .output()
        .await
        .unwrap();
    let key = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let mut server = match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(dir.join("ctxgate"));
            c
        }
        None => Command::new(dir.join("ctxgate")),
    };
    let mut server = server
        .arg("serve")
        .env_clear()
        .envs(env)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("ctxgate listening") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, port, key)
}

async fn local_server(dir: &Path) {
    let data = tempfile::tempdir().unwrap();
    let (mut server, port, key) = start_server(dir, data.path(), &[], &[]).await;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let turn = |i: usize, stored: bool| {
        let mut body = json!({"model": "echo", "messages": [{"role": "user", "content": format!("benchmark turn {i}: the quick brown fox")}]});
        if stored {
            // 1,000 conversations of 10 turns each: every turn loads its history and stores a turn.
            body["conversation_id"] = json!(format!("bench-{}", i % 1000));
        }
        body
    };
    println!(
        "\n### Chat turn through the local server (echo model, embedded store, {REQUESTS} sequential requests, one keep-alive connection)\n"
    );
    println!("| case | requests | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|");
    for (name, stored) in [
        ("stateless turn", false),
        ("stored conversation turn", true),
    ] {
        for i in 0..WARMUP {
            let r = client
                .post(&url)
                .bearer_auth(&key)
                .json(&turn(i + 1_000_000, stored))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
        let mut samples = Vec::with_capacity(REQUESTS);
        let wall = Instant::now();
        for i in 0..REQUESTS {
            let body = turn(i, stored);
            let t = Instant::now();
            let r = client
                .post(&url)
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            r.bytes().await.unwrap();
            samples.push(t.elapsed());
            assert_eq!(status, 200);
        }
        let rps = REQUESTS as f64 / wall.elapsed().as_secs_f64();
        summary(&format!("{name} ({rps:.0} req/s)"), samples, us);
    }
    let pid = server.id().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .to_owned();
    println!(
        "\nLocal server peak resident memory after the run: {}",
        hwm.trim_start_matches("VmHWM:").trim()
    );
    server.kill().await.ok();
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; the only filter is the in-process table.
    if std::env::args().any(|a| a == "stream-redaction") {
        stream_redaction();
        return;
    }
    if std::env::args().any(|a| a == "provider-streams") {
        provider_streams().await;
        return;
    }
    let dir = PathBuf::from(
        std::env::var("CTXGATE_RELEASE_DIR")
            .expect("run scripts/bench.sh (sets CTXGATE_RELEASE_DIR)"),
    );
    // `-- smoke`: the side-by-side table at tiny sizes, against whichever
    // build CTXGATE_RELEASE_DIR holds (scripts/bench.sh --smoke: the debug one).
    if std::env::args().any(|a| a == "smoke") {
        side_by_side::run(&dir, &side_by_side::SMOKE, "debug build, smoke sizes").await;
        streaming(&dir, SMOKE_STREAM_RUNS).await;
        stream_events::run(&dir, &stream_events::SMOKE, "debug build, smoke sizes").await;
        return;
    }
    // `-- stream-events`: issue 20's streamed-events table alone.
    if std::env::args().any(|a| a == "stream-events") {
        stream_events::run(&dir, &stream_events::FULL, "release build").await;
        return;
    }
    // `-- side-by-side`: issue 19's table alone.
    if std::env::args().any(|a| a == "side-by-side") {
        side_by_side::run(&dir, &side_by_side::FULL, "release build").await;
        return;
    }
    // `-- streaming`: the streaming table alone (the release binaries still needed).
    if std::env::args().any(|a| a == "streaming") {
        streaming(&dir, STREAM_RUNS).await;
        return;
    }
    // `-- cold`: the chat function's cold-start table alone (issue 19).
    if std::env::args().any(|a| a == "cold") {
        cold_starts(&dir).await;
        return;
    }
    // `-- mcp`: issue 16's tables alone (the release binaries still needed).
    if std::env::args().any(|a| a == "mcp") {
        mcp_cold_starts(&dir).await;
        mcp_federation(&dir).await;
        return;
    }
    println!(
        "## ctxgate benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    sizes(&dir);
    cold_starts(&dir).await;
    mcp_cold_starts(&dir).await;
    local_server(&dir).await;
    side_by_side::run(&dir, &side_by_side::FULL, "release build").await;
    streaming(&dir, STREAM_RUNS).await;
    stream_events::run(&dir, &stream_events::FULL, "release build").await;
    mcp_federation(&dir).await;
    stream_redaction();
    provider_streams().await;
}

/// Issue 20: the time a provider's stream translator takes per event (one
/// event per network read, as upstreams send them): framing, JSON and the
/// model events, until the answer is complete. Bedrock's binary event
/// stream (`aws-smithy-eventstream`'s frame decoder, both CRCs checked)
/// against OpenAI's SSE (`eventsource-stream`), the same text in 1,000 deltas.
async fn provider_streams() {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    use ctxgate::provider::{EventStream, ProviderError, bedrock, openai, sse};
    use futures_util::StreamExt;

    const EVENTS: usize = 1000;
    const RUNS: usize = 200;
    let frame = |kind: &'static str, payload: serde_json::Value| {
        let mut m = Message::new(Bytes::from(payload.to_string()));
        for (k, v) in [
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ] {
            m = m.add_header(Header::new(k, HeaderValue::String(v.into())));
        }
        let mut out = Vec::new();
        write_message_to(&m, &mut out).unwrap();
        Bytes::from(out)
    };
    let mut converse = vec![frame("messageStart", json!({"role": "assistant"}))];
    let mut chat = Vec::new();
    for i in 0..EVENTS {
        let text = format!("word{i} ");
        converse.push(frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": text}}),
        ));
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
        chat.push(Bytes::from(format!("data: {chunk}\n\n")));
    }
    converse.extend([
        frame("contentBlockStop", json!({"contentBlockIndex": 0})),
        frame("messageStop", json!({"stopReason": "end_turn"})),
        frame(
            "metadata",
            json!({"usage": {"inputTokens": 10, "outputTokens": 1000, "totalTokens": 1010}, "metrics": {"latencyMs": 1}}),
        ),
    ]);
    let last = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1000, "total_tokens": 1010}});
    chat.push(Bytes::from(format!("data: {last}\n\ndata: [DONE]\n\n")));
    let caps = ctxgate::capped::Caps {
        body: 16 << 20,
        event: 1 << 20,
        stream: 64 << 20,
    };
    let body = |chunks: &Vec<Bytes>| {
        futures_util::stream::iter(chunks.clone().into_iter().map(Ok::<_, ProviderError>))
    };
    let drain = |s: EventStream| async move {
        let n = s.map(|e| e.expect("a good stream")).count().await;
        assert!(n > EVENTS);
    };
    println!("\n### Provider stream translators (in process): time per streamed event\n");
    println!(
        "| provider (wire) | events | runs | p50 per event | p90 per event |\n|---|---|---|---|---|"
    );
    for name in ["bedrock (event stream)", "openai (SSE)"] {
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            if name.starts_with("bedrock") {
                let d = bedrock::stream::EventDecoder::new();
                drain(bedrock::stream::events("bedrock", body(&converse), caps, d)).await;
            } else {
                let d = openai::stream::ChunkDecoder::new();
                drain(sse::events("openai", body(&chat), d)).await;
            }
            samples.push(started.elapsed() / EVENTS as u32);
        }
        samples.sort();
        let ns = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6);
        println!(
            "| {name} | {EVENTS} | {RUNS} | {} | {} |",
            ns(percentile(&samples, 0.5)),
            ns(percentile(&samples, 0.9))
        );
    }
}

/// Issue 12, point 9: stream redaction costs time proportional to the text,
/// whatever the chunking. Time per KB for one text at 4, 16 and 64 KB: the
/// same figure in each column means linear.
fn stream_redaction() {
    use ctxgate::processor::stream::StreamRedactor;
    use ctxgate::redact::{Action, Place, Policy, Redactor};

    let compiled = Instant::now();
    let redactor = Redactor::new(&Policy {
        response: Action::Redact,
        stored: Action::Redact,
        ..Policy::default()
    })
    .unwrap();
    let compiled = compiled.elapsed();
    let prose = "Write to bob@example.com or call 415-555-2671 about card 4111 1111 1111 1111; \
                 the quick brown fox jumps over the lazy dog. ";
    let dense = "abcdefghij0123456789.-_ABCDEFGHIJklmnop/+";
    println!("\n### Stream redaction (default policy, in process): time per KB of answer\n");
    println!("| text | chunks | 4 KB | 16 KB | 64 KB |\n|---|---|---|---|---|");
    for (name, unit) in [("no whitespace", dense), ("prose with values", prose)] {
        for (chunk_name, chunk) in [("1 character", 1), ("16 bytes (typical)", 16)] {
            let mut cells = Vec::new();
            for kb in [4usize, 16, 64] {
                let text: String = unit.chars().cycle().take(kb * 1024).collect();
                let pieces: Vec<&str> = text
                    .as_bytes()
                    .chunks(chunk)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                let mut runs = Vec::new();
                let started = Instant::now();
                while runs.len() < 5
                    && (runs.is_empty() || started.elapsed() < Duration::from_secs(2))
                {
                    let t = Instant::now();
                    let mut s = StreamRedactor::new(&redactor, Place::Response).unwrap();
                    let mut out = 0;
                    for p in &pieces {
                        out += s.push(p).unwrap().len();
                    }
                    out += s.flush().unwrap().len();
                    runs.push(t.elapsed());
                    assert!(out > 0);
                }
                runs.sort();
                let per_kb = runs[runs.len() / 2] / kb as u32;
                cells.push(format!("{:.1} µs", per_kb.as_secs_f64() * 1e6));
            }
            println!("| {name} | {chunk_name} | {} |", cells.join(" | "));
        }
    }
    println!(
        "\nCompiling the policy (detectors and their stream extents, once per tenant at start-up): {:.2} ms",
        compiled.as_secs_f64() * 1e3
    );
}

const CHUNKS: usize = 20;

/// Streams measured per row of the streaming table, after `warmup` more.
#[derive(Clone, Copy)]
struct StreamRuns {
    streams: usize,
    warmup: usize,
}

/// The figures.
const STREAM_RUNS: StreamRuns = StreamRuns {
    streams: 300,
    warmup: 20,
};

/// That every row still works (`-- smoke`).
const SMOKE_STREAM_RUNS: StreamRuns = StreamRuns {
    streams: 2,
    warmup: 1,
};

/// A mock upstream whose streamed answers the benchmark writes chunk by
/// chunk: each request hands its body's sender to the benchmark. A
/// ConverseStream path answers as Bedrock's event stream, any other as SSE.
async fn stream_upstream() -> (
    String,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<Bytes>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let tx = tx.clone();
        async move {
            let content_type = if uri.path().ends_with("/converse-stream") {
                streamed_answer::EVENT_STREAM
            } else {
                "text/event-stream"
            };
            let (body_tx, body_rx) = mpsc::unbounded_channel::<Bytes>();
            tx.send(body_tx).unwrap();
            let body = futures_util::stream::unfold(body_rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
            });
            axum::response::Response::builder()
                .header("content-type", content_type)
                .body(axum::body::Body::from_stream(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // As providers do: no Nagle delay on small event writes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

/// The wire a streamed answer travels: the client's front door and the
/// upstream's format.
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    /// OpenAI Chat Completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Bedrock ConverseStream (upstream only: no door speaks it).
    Bedrock,
}

/// The Bedrock model the streaming table asks for, and its ConverseStream path.
const BEDROCK_MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
const BEDROCK_STREAM_PATH: &str =
    "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream";

impl Wire {
    /// The request body a client of this door sends (a Responses client: [`responses_request`]).
    fn request(self, model: &str) -> serde_json::Value {
        match self {
            Wire::OpenAi => json!({"model": model, "stream": true,
                "messages": [{"role": "user", "content": "stream please"}]}),
            Wire::Anthropic => json!({"model": model, "stream": true, "max_tokens": 1000,
                "messages": [{"role": "user", "content": "stream please"}]}),
            // The Converse body (the model is in the path).
            Wire::Bedrock => json!({"inferenceConfig": {"maxTokens": 1000},
                "messages": [{"role": "user", "content": [{"text": "stream please"}]}]}),
        }
    }

    /// Upstream chunk `i` of an answer in this format (Anthropic's first
    /// carries the message and block openings, as Anthropic sends them at once).
    fn chunk(self, i: usize) -> Bytes {
        // Longer than the redaction hold-back, so each chunk's start flows at once.
        let text = format!(
            "[{i}] the quick brown fox jumps over the lazy dog, again and again and again. "
        );
        match self {
            Wire::OpenAi => {
                let chunk = json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
                Bytes::from(format!("data: {chunk}\n\n"))
            }
            Wire::Anthropic => {
                let delta = json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}});
                let mut out = String::new();
                if i == 0 {
                    let start = json!({"type": "message_start", "message": {"id": "msg_b", "type": "message",
                        "role": "assistant", "model": "m", "content": [], "stop_reason": null,
                        "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}});
                    out.push_str(&format!("event: message_start\ndata: {start}\n\n"));
                    out.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
                }
                out.push_str(&format!("event: content_block_delta\ndata: {delta}\n\n"));
                Bytes::from(out)
            }
            Wire::Bedrock => streamed_answer::bedrock_delta(i, &text),
        }
    }

    /// The end of an answer in this format.
    fn end(self) -> Bytes {
        match self {
            Wire::OpenAi => Bytes::from_static(b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":20,\"total_tokens\":25}}\n\ndata: [DONE]\n\n"),
            Wire::Bedrock => streamed_answer::bedrock_end(CHUNKS),
            Wire::Anthropic => Bytes::from_static(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        }
    }
}

/// The streamed request body an Anthropic Messages client sends.
fn messages_request(model: &str) -> serde_json::Value {
    Wire::Anthropic.request(model)
}

/// The streamed request body a Responses API client sends.
fn responses_request(model: &str) -> serde_json::Value {
    json!({"model": model, "stream": true, "input": "stream please"})
}

/// Streams `runs` answers of `CHUNKS` chunks from `url`, writing each
/// upstream chunk only once the client has the previous one, and returns
/// the upstream-write to client-arrival times: first chunks, then the rest.
async fn stream_latencies(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    senders: &mut mpsc::UnboundedReceiver<mpsc::UnboundedSender<Bytes>>,
    body: serde_json::Value,
    upstream_wire: Wire,
    runs: StreamRuns,
) -> (Vec<Duration>, Vec<Duration>) {
    let StreamRuns { streams, warmup } = runs;
    let mut first = Vec::with_capacity(streams);
    let mut rest = Vec::with_capacity(streams * (CHUNKS - 1));
    for n in 0..streams + warmup {
        let mut req = client.post(url).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<(Instant, Bytes)>();
        let reader = tokio::spawn(async move {
            let mut resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            arrived_tx.send((Instant::now(), Bytes::new())).unwrap();
            while let Some(chunk) = resp.chunk().await.unwrap() {
                arrived_tx.send((Instant::now(), chunk)).unwrap();
            }
        });
        let upstream = senders.recv().await.unwrap();
        // Response headers reached the client (through the gateway, they follow the
        // upstream's). Not for Bedrock: the gateway answers once the first event is in (an
        // exception frame in its place is retried), so its first chunk goes at once, and its
        // first-chunk row also holds the gateway's response headers.
        if upstream_wire != Wire::Bedrock {
            arrived.recv().await.unwrap();
        }
        let mut seen = String::new();
        for i in 0..CHUNKS {
            let marker = format!("[{i}]");
            let sent = Instant::now();
            upstream.send(upstream_wire.chunk(i)).unwrap();
            let at = loop {
                let (at, chunk) = arrived.recv().await.unwrap();
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(&marker) {
                    break at;
                }
            };
            seen.clear();
            if n >= warmup {
                if i == 0 {
                    first.push(at - sent)
                } else {
                    rest.push(at - sent)
                }
            }
        }
        upstream.send(upstream_wire.end()).unwrap();
        drop(upstream);
        reader.await.unwrap();
    }
    (first, rest)
}

async fn streaming(dir: &Path, runs: StreamRuns) {
    let (upstream, mut senders) = stream_upstream().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    println!(
        "\n### Streaming through the local server (mock upstream speaking OpenAI's, Anthropic's or Bedrock's wire, {} streams of {CHUNKS} chunks each, each chunk written once the client has the previous one)\n",
        runs.streams
    );
    println!(
        "| path | measure | samples | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|---|"
    );
    let (first, rest) = stream_latencies(
        &client,
        &format!("{upstream}/v1/chat/completions"),
        None,
        &mut senders,
        Wire::OpenAi.request("gpt-4o-mini"),
        Wire::OpenAi,
        runs,
    )
    .await;
    let direct = (percentile_of(&first, 0.5), percentile_of(&rest, 0.5));
    summary("direct to the mock | first chunk", first, us);
    summary("direct to the mock | each later chunk", rest, us);
    let (first, rest) = stream_latencies(
        &client,
        &format!("{upstream}/v1/messages"),
        None,
        &mut senders,
        Wire::Anthropic.request("claude-sonnet-4-5"),
        Wire::Anthropic,
        runs,
    )
    .await;
    let direct_anthropic = (percentile_of(&first, 0.5), percentile_of(&rest, 0.5));
    summary("direct to the Anthropic mock | first chunk", first, us);
    summary("direct to the Anthropic mock | each later chunk", rest, us);
    let (first, rest) = stream_latencies(
        &client,
        &format!("{upstream}{BEDROCK_STREAM_PATH}"),
        None,
        &mut senders,
        Wire::Bedrock.request(BEDROCK_MODEL),
        Wire::Bedrock,
        runs,
    )
    .await;
    let direct_bedrock = (percentile_of(&first, 0.5), percentile_of(&rest, 0.5));
    summary("direct to the Bedrock mock | first chunk", first, us);
    summary("direct to the Bedrock mock | each later chunk", rest, us);
    for (name, policy) in [
        (
            "gateway, redaction off",
            "response = \"off\"\nstored = \"off\"\n",
        ),
        (
            "gateway, default redaction",
            "response = \"redact\"\nstored = \"redact\"\n",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let cfg = data.path().join("ctxgate.toml");
        std::fs::write(&cfg, format!("[redaction]\n{policy}")).unwrap();
        let mut extra = vec![
            ("CTXGATE_CONFIG", cfg.display().to_string()),
            ("OPENAI_BASE_URL", format!("{upstream}/v1")),
            ("OPENAI_API_KEY", "sk-bench".to_owned()),
        ];
        extra.extend(bedrock_env(&upstream));
        let (mut server, port, key) = start_server(dir, &data.path().join("db"), &extra, &[]).await;
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
        let (first, rest) = stream_latencies(
            &client,
            &url,
            Some(&key),
            &mut senders,
            Wire::OpenAi.request("openai/gpt-4o-mini"),
            Wire::OpenAi,
            runs,
        )
        .await;
        stream_rows(name, first, rest, direct);
        // Issue 20: the same door to a Bedrock upstream (SigV4-signed ConverseStream).
        let (first, rest) = stream_latencies(
            &client,
            &url,
            Some(&key),
            &mut senders,
            Wire::OpenAi.request(&format!("bedrock/{BEDROCK_MODEL}")),
            Wire::Bedrock,
            runs,
        )
        .await;
        stream_rows(
            &format!("{name} -> Bedrock upstream"),
            first,
            rest,
            direct_bedrock,
        );
        server.kill().await.ok();
    }
    // The Anthropic Messages door (default redaction), to each upstream wire.
    let data = tempfile::tempdir().unwrap();
    let extra = [
        ("OPENAI_BASE_URL", format!("{upstream}/v1")),
        ("OPENAI_API_KEY", "sk-bench".to_owned()),
        ("ANTHROPIC_BASE_URL", upstream.clone()),
        ("ANTHROPIC_API_KEY", "sk-ant-bench".to_owned()),
    ];
    let (mut server, port, key) = start_server(dir, &data.path().join("db"), &extra, &[]).await;
    for (door, path, body) in [
        (
            "Messages",
            "/v1/messages",
            messages_request as fn(&str) -> serde_json::Value,
        ),
        ("Responses", "/v1/responses", responses_request),
    ] {
        let url = format!("http://127.0.0.1:{port}{path}");
        for (upstream_name, upstream_wire, model, direct) in [
            (
                "Anthropic",
                Wire::Anthropic,
                "anthropic/claude-sonnet-4-5",
                direct_anthropic,
            ),
            ("OpenAI", Wire::OpenAi, "openai/gpt-4o-mini", direct),
        ] {
            let (first, rest) = stream_latencies(
                &client,
                &url,
                Some(&key),
                &mut senders,
                body(model),
                upstream_wire,
                runs,
            )
            .await;
            stream_rows(
                &format!("{door} door -> {upstream_name} upstream"),
                first,
                rest,
                direct,
            );
        }
    }
    server.kill().await.ok();
}

/// The environment that points the gateway's built-in `bedrock` provider at
/// the mock `upstream`, signing with the test credentials (the mock checks no
/// signature: `tests/python/mock_bedrock.py` does, in the tests).
fn bedrock_env(upstream: &str) -> [(&'static str, String); 5] {
    use ctxgate_tests::bedrock::{ACCESS_KEY, REGION, SECRET_KEY};
    [
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", upstream.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        // The environment's credentials come first in the chain; never probe IMDS.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// A gateway path's streaming rows: its latencies, and what it adds over
/// reading the mock of its upstream wire directly (`direct`: p50s of the
/// first and the later chunks).
fn stream_rows(
    name: &str,
    first: Vec<Duration>,
    rest: Vec<Duration>,
    direct: (Duration, Duration),
) {
    let added = (
        percentile_of(&first, 0.5).saturating_sub(direct.0),
        percentile_of(&rest, 0.5).saturating_sub(direct.1),
    );
    summary(
        &format!("{name} | upstream first byte -> client first content byte"),
        first,
        us,
    );
    summary(&format!("{name} | each later chunk"), rest, us);
    println!(
        "| {name} | added by the gateway (p50 minus direct p50) | first {} | each later chunk {} | | | | |",
        us(added.0),
        us(added.1)
    );
}

fn percentile_of(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, p)
}

/// The MCP revision the benchmark's requests speak.
const MCP_REVISION: &str = "2026-07-28";
/// Federated calls measured, and direct calls (after `MCP_WARMUP` of each).
const MCP_CALLS: usize = 2_000;
const MCP_WARMUP: usize = 200;
/// Direct and federated calls alternate in batches of this many, so drift
/// (CPU frequency, the page cache, the audit table growing) hits both.
const MCP_BATCH: usize = 100;

/// The per-request `_meta` of a 2026-07-28 request.
fn mcp_meta() -> serde_json::Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MCP_REVISION,
        "io.modelcontextprotocol/clientInfo": {"name": "ctxgate-bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// One 2026-07-28 `tools/call` of `tool` at `url` as a plain JSON-RPC POST
/// (the standard headers and `_meta`): its time to the complete answer, the
/// HTTP status and the JSON-RPC answer.
async fn mcp_post(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    tool: &str,
    id: usize,
) -> (Duration, u16, serde_json::Value) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": "ping"}, "_meta": mcp_meta()}});
    let t = Instant::now();
    let r = client
        .post(url)
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MCP_REVISION)
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    let took = t.elapsed();
    let answer = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{tool}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (took, status, answer)
}

/// [`mcp_post`] of a tool that answers: its time and its first text block
/// (checked: a result, not an error).
async fn mcp_tools_call(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    tool: &str,
    id: usize,
) -> (Duration, String) {
    let (took, status, answer) = mcp_post(client, url, bearer, tool, id).await;
    assert_eq!(status, 200, "{tool}: {answer}");
    assert!(
        answer["result"]["isError"] != json!(true) && answer["result"]["content"].is_array(),
        "{tool}: {answer}"
    );
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (took, text)
}

/// [`mcp_post`] of a name that is no tool: its time (checked: -32602).
async fn mcp_unknown_call(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    tool: &str,
    id: usize,
) -> Duration {
    let (took, status, answer) = mcp_post(client, url, bearer, tool, id).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (200, &json!(-32602)),
        "{tool}: {answer}"
    );
    took
}

/// Issue 16: a federated `tools/call` through ctxgate's `POST /mcp` against
/// the same call straight to the MCP server, on loopback, alternating.
async fn mcp_federation(dir: &Path) {
    use ctxgate_tests::mcp_server::{GOOD_TOKEN, McpFixture, Revision};

    // A real rmcp Streamable HTTP server (2026-07-28, JSON answers) in this
    // process; its `echo` tool answers at once.
    let fixture = McpFixture::start(Revision::Current).await;
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("ctxgate.toml");
    // The fixture is plain http on 127.0.0.1.
    std::fs::write(&cfg, "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n").unwrap();
    let extra = [("CTXGATE_CONFIG", cfg.display().to_string())];
    let (mut server, port, admin) =
        start_server(dir, &data.path().join("db"), &extra, &["admin", "mcp"]).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // Registered as a tenant does in production (the store, its credential
    // in the credentials file), and a key with only the `mcp` scope (a key
    // mints only scopes it has itself).
    let r = client
        .post(format!("{base}/v1/admin/mcp-servers"))
        .bearer_auth(&admin)
        .json(&json!({"name": "crm", "url": fixture.url().as_str(),
            "headers": {"Authorization": GOOD_TOKEN}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = client
        .post(format!("{base}/v1/admin/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "bench-mcp", "scopes": ["mcp"]}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();

    let direct_url = fixture.url().to_string();
    let gateway_url = format!("{base}/mcp");
    let upstream_token = GOOD_TOKEN.trim_start_matches("Bearer ");
    let direct = |id| mcp_tools_call(&client, &direct_url, upstream_token, "echo", id);
    let federated = |id| mcp_tools_call(&client, &gateway_url, &key, "crm__echo", id);

    // Warm-up: connections, and the first federated call lists the server's
    // tools (to resolve the name); the list is then cached.
    let lists_before = fixture.lists();
    for i in 0..MCP_WARMUP {
        let (_, a) = direct(i).await;
        let (_, b) = federated(i).await;
        assert_eq!(a, b, "the federated result is the server's");
    }
    let list_pages = fixture.lists() - lists_before;

    let seen_before = fixture.seen().len();
    let mut d = Vec::with_capacity(MCP_CALLS);
    let mut f = Vec::with_capacity(MCP_CALLS);
    let mut own = Vec::with_capacity(MCP_CALLS);
    let mut unknown = Vec::with_capacity(MCP_CALLS);
    let mut id = MCP_WARMUP;
    while f.len() < MCP_CALLS {
        for _ in 0..MCP_BATCH {
            d.push(direct(id).await.0);
            id += 1;
        }
        for _ in 0..MCP_BATCH {
            f.push(federated(id).await.0);
            id += 1;
        }
        for _ in 0..MCP_BATCH {
            own.push(mcp_unknown_call(&client, &gateway_url, &key, "nope", id).await);
            id += 1;
        }
        for _ in 0..MCP_BATCH {
            unknown.push(mcp_unknown_call(&client, &gateway_url, &key, "crm__nope", id).await);
            id += 1;
        }
    }
    // What reached the server during the measured run: the direct calls'
    // requests, then what each federated call cost upstream.
    let seen: Vec<_> = fixture.seen().split_off(seen_before);
    let lists_during = fixture.lists() - lists_before - list_pages;
    let mut methods = std::collections::BTreeMap::<String, usize>::new();
    for s in &seen {
        *methods.entry(s.method.clone()).or_default() += 1;
    }
    let handling: Vec<Duration> = seen
        .iter()
        .filter(|s| s.method == "tools/call")
        .map(|s| s.handling)
        .collect();

    println!(
        "\n### Federated MCP `tools/call` through the local server (rmcp server on loopback, `echo` tool, 2026-07-28, {MCP_CALLS} calls each way after {MCP_WARMUP}, alternating in batches of {MCP_BATCH}, one keep-alive connection each; every federated call also writes its audit row to the embedded store)\n"
    );
    println!("| path | calls | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|");
    let added = (
        percentile_of(&f, 0.5).saturating_sub(percentile_of(&d, 0.5)),
        percentile_of(&f, 0.99).saturating_sub(percentile_of(&d, 0.99)),
    );
    summary("direct to the MCP server (`echo`)", d, us);
    summary("through ctxgate's POST /mcp (`crm__echo`)", f, us);
    println!(
        "| added by ctxgate (through minus direct) | | p50 {} | | p99 {} | | |",
        us(added.0),
        us(added.1)
    );
    summary(
        "through ctxgate, `nope` (no such tool: the endpoint, auth, rmcp's server side)",
        own,
        us,
    );
    summary(
        "through ctxgate, `crm__nope` (+ the server resolved, its cached list, an audit row)",
        unknown,
        us,
    );
    summary(
        "the server's own handling of a `tools/call` (both paths)",
        handling,
        us,
    );
    let per_call: Vec<String> = methods
        .iter()
        .map(|(m, n)| {
            let m = if m.is_empty() { "(no method)" } else { m };
            format!("{m} {n}")
        })
        .collect();
    println!(
        "\nRequests the MCP server received during the measured calls ({} direct + {} federated): {}; `tools/list` pages: {list_pages} during the warm-up, {lists_during} during the run.",
        MCP_CALLS,
        MCP_CALLS,
        per_call.join(", ")
    );

    // Every federated call was audited, the unknown name too.
    let mut counts = std::collections::BTreeMap::<(String, String, String), usize>::new();
    let mut cursor = String::new();
    loop {
        let r = client
            .get(format!("{base}/v1/admin/mcp-calls?limit=500{cursor}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: serde_json::Value = r.json().await.unwrap();
        for row in page["data"].as_array().expect("audit rows") {
            let field = |f: &str| row[f].as_str().unwrap_or_default().to_owned();
            *counts
                .entry((field("server"), field("tool"), field("outcome")))
                .or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) if page["has_more"] == true => cursor = format!("&cursor={next}"),
            _ => break,
        }
    }
    let key = |s: &str, t: &str, o: &str| (s.to_owned(), t.to_owned(), o.to_owned());
    let expected = std::collections::BTreeMap::from([
        (key("crm", "echo", "ok"), MCP_WARMUP + MCP_CALLS),
        (key("", "crm__nope", "unknown_tool"), MCP_CALLS),
    ]);
    assert_eq!(counts, expected, "the audit rows");
    server.kill().await.ok();
}
