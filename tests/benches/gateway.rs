//! Gateway benchmarks; run `scripts/bench.sh`, which builds the release
//! binaries first and passes their directory in `CTXGATE_RELEASE_DIR`.
//!
//! Prints four tables: release binary sizes; Lambda cold start of the chat
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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ctxgate_tests::runtime_api::{RuntimeApi, RuntimeEvent};
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
    for bin in ["ctxgate-chat", "ctxgate-models", "ctxgate"] {
        let len = std::fs::metadata(dir.join(bin))
            .map(|m| m.len())
            .unwrap_or(0);
        println!("| {bin} | {:.2} MB |", len as f64 / 1_000_000.0);
    }
}

async fn cold_starts(dir: &Path) {
    let event = include_str!("../fixtures/apigw_http_v2.json");
    let mut health: serde_json::Value = serde_json::from_str(event).unwrap();
    health["rawPath"] = json!("/health");
    health["requestContext"]["http"]["method"] = json!("GET");
    let mut ready = Vec::new();
    let mut first = Vec::new();
    let mut warm = Vec::new();
    for i in 0..COLD_STARTS {
        let mut rt = RuntimeApi::start().await;
        rt.invoke(&format!("req-{i}"), health.to_string());
        let start = Instant::now();
        let mut child = Command::new(dir.join("ctxgate-chat"))
            .env_clear()
            .envs(rt.lambda_env("ctxgate-chat"))
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
            .expect("start ctxgate-chat");
        loop {
            match rt.events.recv().await.expect("runtime events") {
                RuntimeEvent::Next(at) if ready.len() == i => ready.push(at - start),
                RuntimeEvent::Next(_) => {}
                RuntimeEvent::Response { at, stream, .. } => {
                    // The chat function streams; the fixture splits off the prelude.
                    let prelude = stream.expect("a streamed response").prelude;
                    assert_eq!(prelude["statusCode"], 200, "health failed: {prelude}");
                    first.push(at - start);
                    break;
                }
                RuntimeEvent::Error { id, body, .. } => {
                    panic!("function reported an error for {id}: {body:?}")
                }
            }
        }
        // The same process, warm: invocation queued -> streamed answer complete.
        for j in 0..WARM_INVOCATIONS {
            let sent = Instant::now();
            rt.invoke(&format!("req-{i}-{j}"), health.to_string());
            match rt.outcome().await {
                RuntimeEvent::Response { at, stream, .. } => {
                    assert_eq!(stream.expect("streamed").prelude["statusCode"], 200);
                    warm.push(at - sent)
                }
                other => panic!("warm invocation: {other:?}"),
            }
        }
        child.kill().await.ok();
    }
    println!(
        "\n### Chat function cold start ({COLD_STARTS} runs, local Runtime API, DynamoDB + Secrets Manager clients built)\n"
    );
    println!("| measure | runs | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|");
    summary("process start -> first /next (ready)", ready, ms);
    summary("process start -> first response", first, ms);
    summary("warm invocation -> streamed answer complete", warm, ms);
}

/// The local server on the embedded store under `data_dir`, on a free port,
/// with a freshly minted key; waits until it listens and keeps draining its
/// access log so it never blocks on stderr.
async fn start_server(
    dir: &Path,
    data_dir: &Path,
    extra_env: &[(&str, String)],
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
    env.extend(extra_env.iter().cloned());
    let out = Command::new(dir.join("ctxgate"))
        .args(["keys", "create", "--tenant", "bench"])
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
    let mut server = Command::new(dir.join("ctxgate"))
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
    let (mut server, port, key) = start_server(dir, data.path(), &[]).await;

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
    let dir = PathBuf::from(
        std::env::var("CTXGATE_RELEASE_DIR")
            .expect("run scripts/bench.sh (sets CTXGATE_RELEASE_DIR)"),
    );
    println!(
        "## ctxgate benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    sizes(&dir);
    cold_starts(&dir).await;
    local_server(&dir).await;
    streaming(&dir).await;
    stream_redaction();
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

const STREAMS: usize = 300;
const CHUNKS: usize = 20;

/// A mock OpenAI upstream whose streamed answers the benchmark writes chunk
/// by chunk: each request hands its body's sender to the benchmark.
async fn stream_upstream() -> (
    String,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<Bytes>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move || {
        let tx = tx.clone();
        async move {
            let (body_tx, body_rx) = mpsc::unbounded_channel::<Bytes>();
            tx.send(body_tx).unwrap();
            let body = futures_util::stream::unfold(body_rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
            });
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
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

fn upstream_chunk(i: usize) -> Bytes {
    // Longer than the redaction hold-back, so each chunk's start flows at once.
    let text =
        format!("[{i}] the quick brown fox jumps over the lazy dog, again and again and again. ");
    let chunk =
        json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// Streams `STREAMS` answers of `CHUNKS` chunks from `url`, writing each
/// upstream chunk only once the client has the previous one, and returns
/// the upstream-write to client-arrival times: first chunks, then the rest.
async fn stream_latencies(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    senders: &mut mpsc::UnboundedReceiver<mpsc::UnboundedSender<Bytes>>,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut first = Vec::with_capacity(STREAMS);
    let mut rest = Vec::with_capacity(STREAMS * (CHUNKS - 1));
    for n in 0..STREAMS + 20 {
        let mut req = client
            .post(url)
            .json(&json!({"model": "openai/gpt-4o-mini", "stream": true,
            "messages": [{"role": "user", "content": "stream please"}]}));
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
        // Response headers reached the client (through the gateway, they follow the upstream's).
        arrived.recv().await.unwrap();
        let mut seen = String::new();
        for i in 0..CHUNKS {
            let marker = format!("[{i}]");
            let sent = Instant::now();
            upstream.send(upstream_chunk(i)).unwrap();
            let at = loop {
                let (at, chunk) = arrived.recv().await.unwrap();
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(&marker) {
                    break at;
                }
            };
            seen.clear();
            if n >= 20 {
                if i == 0 {
                    first.push(at - sent)
                } else {
                    rest.push(at - sent)
                }
            }
        }
        upstream
            .send(Bytes::from_static(b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":20,\"total_tokens\":25}}\n\ndata: [DONE]\n\n"))
            .unwrap();
        drop(upstream);
        reader.await.unwrap();
    }
    (first, rest)
}

async fn streaming(dir: &Path) {
    let (upstream, mut senders) = stream_upstream().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    println!(
        "\n### Streaming through the local server (mock OpenAI upstream, {STREAMS} streams of {CHUNKS} chunks, each chunk written once the client has the previous one)\n"
    );
    println!(
        "| path | measure | samples | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|---|"
    );
    let (first, rest) = stream_latencies(
        &client,
        &format!("{upstream}/v1/chat/completions"),
        None,
        &mut senders,
    )
    .await;
    let direct = (percentile_of(&first, 0.5), percentile_of(&rest, 0.5));
    summary("direct to the mock | first chunk", first, us);
    summary("direct to the mock | each later chunk", rest, us);
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
        let extra = [
            ("CTXGATE_CONFIG", cfg.display().to_string()),
            ("OPENAI_BASE_URL", format!("{upstream}/v1")),
            ("OPENAI_API_KEY", "sk-bench".to_owned()),
        ];
        let (mut server, port, key) = start_server(dir, &data.path().join("db"), &extra).await;
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
        let (first, rest) = stream_latencies(&client, &url, Some(&key), &mut senders).await;
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
        server.kill().await.ok();
    }
}

fn percentile_of(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, p)
}
