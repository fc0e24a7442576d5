//! Gateway benchmarks; run `scripts/bench.sh`, which builds the release
//! binaries first and passes their directory in `CTXGATE_RELEASE_DIR`.
//!
//! Prints three tables: release binary sizes; Lambda cold start of the chat
//! function (process start to its first Runtime API poll, and to the answer
//! of its first invocation) against a local Runtime API; and chat-turn
//! latency through the local server (`echo` model, embedded store) over
//! 10,000 sequential requests on one keep-alive connection.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ctxgate_tests::runtime_api::{RuntimeApi, RuntimeEvent};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const REQUESTS: usize = 10_000;
const WARMUP: usize = 500;
const COLD_STARTS: usize = 20;

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
                RuntimeEvent::Response { at, body, .. } => {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["statusCode"], 200, "health invocation failed: {v}");
                    first.push(at - start);
                    break;
                }
                RuntimeEvent::Error { id, body, .. } => {
                    panic!("function reported an error for {id}: {body:?}")
                }
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
}

async fn local_server(dir: &Path) {
    let data = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = [
        ("CTXGATE_STORE", "embedded".to_owned()),
        ("CTXGATE_DATA_DIR", data.path().display().to_string()),
        ("CTXGATE_LISTEN", format!("127.0.0.1:{port}")),
        ("RUST_LOG", "warn".to_owned()),
    ];
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
        .envs(env.clone())
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
    // Keep draining the access log so the server never blocks on stderr.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

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
    // `cargo bench` passes --bench; there is nothing to filter.
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
}
