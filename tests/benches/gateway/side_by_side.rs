//! Issue 19: a stateless turn through the local server side by side with
//! the same request sent straight to the mock upstream it calls, over the
//! same connection count in the same run, driven by `oha` (a load generator
//! that corrects for coordinated omission: at a fixed rate each request's
//! latency counts from when it was due, not from when it was sent).
//!
//! Rows: fixed open-loop rates, then closed-loop concurrencies, then the
//! floor (one connection through `bench-floor`, a proxy on the same HTTP
//! stack that only forwards: what any gateway on these crates adds here),
//! then stored turns on the embedded store (one and eight connections,
//! requests sent by the bench itself, since each turn names its
//! conversation; the direct and gateway sides alternate in batches), the
//! same with `embedded_fsync = "after-answer"`, then the
//! closed loop with the server on one core (`taskset -c 0`; the load
//! generator and the mock on the other). For each: added latency at p50, p90
//! and p99 (through minus direct, percentile by percentile), the gateway's
//! throughput, its CPU per request (user + system time from
//! `/proc/<pid>/stat` over the run, divided by the requests) and the errors
//! (any answer but 200, or a transport error). Then the servers' peak RSS.
//!
//! Any error, a server that died, or a missing `oha` fails the run (after
//! the table is printed); speed never does.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How much load one run applies.
pub struct Sizes {
    /// Open-loop rates (requests per second), each over `OPEN_CONNECTIONS`.
    pub rates: &'static [u32],
    /// How long each open-loop run lasts, in seconds.
    pub open_seconds: f64,
    /// Closed-loop concurrencies (connections, each with one request in flight).
    pub concurrencies: &'static [u32],
    /// Requests per closed-loop run.
    pub closed_requests: u32,
    /// Concurrency of the one-core run.
    pub one_core_concurrency: u32,
    /// Requests of the one-core run.
    pub one_core_requests: u32,
    /// Unmeasured requests on each path before its first measured run.
    pub warmup: u32,
}

/// The full run's sizes (`scripts/bench.sh`).
pub const FULL: Sizes = Sizes {
    rates: &[1_000, 5_000],
    open_seconds: 10.0,
    concurrencies: &[1, 8, 32],
    closed_requests: 30_000,
    one_core_concurrency: 32,
    one_core_requests: 30_000,
    warmup: 2_000,
};

/// The smoke run's sizes (`scripts/bench.sh --smoke`): the same machinery,
/// a few hundred requests per row.
pub const SMOKE: Sizes = Sizes {
    rates: &[1_000],
    open_seconds: 0.2,
    concurrencies: &[1, 8],
    closed_requests: 200,
    one_core_concurrency: 8,
    one_core_requests: 200,
    warmup: 50,
};

/// Connections of the open-loop runs: enough that the rate, not the
/// connections, bounds the load.
const OPEN_CONNECTIONS: u32 = 32;

/// The request both paths receive (the mock ignores it and answers at once).
const TURN: &str = r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"benchmark turn: the quick brown fox"}]}"#;

/// What one `oha` run measured.
struct Run {
    /// Latency percentiles p50, p90, p99, in seconds.
    p: [f64; 3],
    requests_per_sec: f64,
    /// Answers other than 200, and transport errors, by kind.
    errors: Vec<String>,
    /// Requests answered 200.
    ok: u64,
}

/// The load: an open-loop rate, or a closed-loop concurrency.
#[derive(Clone, Copy)]
enum Load {
    Open { rate: u32, requests: u32 },
    Closed { connections: u32, requests: u32 },
}

impl Load {
    fn requests(self) -> u32 {
        match self {
            Load::Open { requests, .. } | Load::Closed { requests, .. } => requests,
        }
    }

    fn connections(self) -> u32 {
        match self {
            Load::Open { .. } => OPEN_CONNECTIONS,
            Load::Closed { connections, .. } => connections,
        }
    }
}

/// The `oha` binary: `CTXGATE_OHA` (scripts/bench.sh installs it and sets
/// it), else `oha` on the PATH.
fn oha_path() -> PathBuf {
    let path = std::env::var_os("CTXGATE_OHA")
        .map(PathBuf::from)
        .unwrap_or_else(|| "oha".into());
    let found = std::process::Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the load generator `oha` is missing ({}): run scripts/bench.sh, which installs it",
        path.display()
    );
    path
}

/// `command` under `taskset -c cpus` when `cpus` is given.
fn pinned(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// One `oha` run of `load` against `url` (bearer `key`), pinned to `cpus`.
async fn oha(oha: &Path, url: &str, key: &str, load: Load, cpus: Option<&str>) -> Run {
    let mut cmd = pinned(oha, cpus);
    cmd.args(["--no-tui", "--output-format", "json", "-m", "POST"])
        .args(["-T", "application/json", "-d", TURN])
        .args(["-H", &format!("authorization: Bearer {key}")])
        .args(["-c", &load.connections().to_string()])
        .args(["-n", &load.requests().to_string()]);
    if let Load::Open { rate, .. } = load {
        // Latency counted from each request's due time: no coordinated omission.
        cmd.args(["-q", &rate.to_string(), "--latency-correction"]);
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run oha");
    assert!(
        out.status.success(),
        "oha failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "oha's JSON summary: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let pct = |k: &str| doc["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN);
    let mut errors = Vec::new();
    let mut ok = 0;
    for (status, n) in doc["statusCodeDistribution"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let n = n.as_u64().unwrap_or(0);
        if status == "200" {
            ok += n;
        } else {
            errors.push(format!("{n} x {status}"));
        }
    }
    for (error, n) in doc["errorDistribution"].as_object().into_iter().flatten() {
        errors.push(format!("{n} x {error}"));
    }
    if ok + errors.len() as u64 == 0 {
        errors.push("no answer at all".to_owned());
    }
    Run {
        p: [pct("p50"), pct("p90"), pct("p99")],
        requests_per_sec: doc["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        errors,
        ok,
    }
}

/// The mock upstream (`tests/src/bin/bench-upstream.rs`), pinned to `cpus`
/// with `threads` workers when given; its base URL.
async fn upstream(cpus: Option<&str>, threads: Option<usize>) -> (Child, String) {
    let mut cmd = pinned(Path::new(env!("CARGO_BIN_EXE_bench-upstream")), cpus);
    if let Some(n) = threads {
        cmd.env("BENCH_UPSTREAM_THREADS", n.to_string());
    }
    listening(cmd, "the mock upstream").await
}

/// The pass-through proxy (`tests/src/bin/bench-floor.rs`) in front of
/// `upstream`: the floor under any gateway on the same HTTP stack; its base URL.
async fn floor(upstream: &str) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench-floor"));
    cmd.arg(upstream);
    listening(cmd, "the floor proxy").await
}

/// Starts a fixture that prints `listening on <addr>` first; it and its base URL.
async fn listening(mut cmd: Command, what: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{what}'s address"));
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{what} said {line:?}"))
        .to_owned();
    (child, format!("http://{addr}"))
}

/// User + system CPU time of process `pid` so far, in seconds.
fn cpu_seconds(pid: u32, ticks_per_sec: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e} (has the server died?)"));
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime the 14th, stime the 15th.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a tick count");
    (ticks(11) + ticks(12)) / ticks_per_sec
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/<pid>/stat`.
fn ticks_per_sec() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}

/// Peak resident set size of process `pid` (`VmHWM`).
fn peak_rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map_or_else(|| "?".to_owned(), |v| v.trim().to_owned())
}

/// A latency in µs, or in ms or s (marked) once it is that large.
fn latency(s: f64) -> String {
    match s.abs() {
        a if a < 0.01 => format!("{:.0}", s * 1e6),
        a if a < 10.0 => format!("{:.0} ms", s * 1e3),
        _ => format!("{s:.0} s"),
    }
}

/// Panics when `server` has exited: a crashed server breaks the bench.
fn alive(server: &mut Child, what: &str) {
    if let Ok(Some(status)) = server.try_wait() {
        panic!("{what} exited during the benchmark: {status}");
    }
}

/// One row: `load` direct to the mock, then through the gateway.
#[allow(clippy::too_many_arguments)]
async fn row(
    name: &str,
    oha_bin: &Path,
    direct_url: &str,
    gateway_url: &str,
    key: &str,
    server: &mut Child,
    load: Load,
    driver_cpus: Option<&str>,
    ticks: f64,
    failures: &mut Vec<String>,
) {
    let direct = oha(oha_bin, direct_url, key, load, driver_cpus).await;
    let pid = server.id().expect("the server's pid");
    let cpu_before = cpu_seconds(pid, ticks);
    let through = oha(oha_bin, gateway_url, key, load, driver_cpus).await;
    let cpu = cpu_seconds(pid, ticks) - cpu_before;
    alive(server, "the server under load");
    print_row(name, load, &direct, &through, cpu, failures);
}

/// Prints one row of the table; its errors join `failures`.
fn print_row(
    name: &str,
    load: Load,
    direct: &Run,
    through: &Run,
    cpu: f64,
    failures: &mut Vec<String>,
) {
    let three = |p: [f64; 3]| format!("{} / {} / {}", latency(p[0]), latency(p[1]), latency(p[2]));
    let added = [0, 1, 2].map(|i| through.p[i] - direct.p[i]);
    let mut errors = direct
        .errors
        .iter()
        .map(|e| format!("direct {e}"))
        .chain(through.errors.iter().map(|e| format!("ctxgate {e}")))
        .collect::<Vec<_>>();
    if errors.is_empty() {
        errors.push("0".to_owned());
    } else {
        failures.push(format!("{name}: {}", errors.join(", ")));
    }
    // An open loop the gateway could not keep up with: its latencies are
    // the queue's growth over the run, not the gateway's cost.
    let saturated = match load {
        Load::Open { rate, .. } if through.requests_per_sec < 0.95 * rate as f64 => {
            " (ctxgate saturated)"
        }
        _ => "",
    };
    println!(
        "| {name}{saturated} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.3} ms | {} |",
        load.connections(),
        load.requests(),
        three(direct.p),
        three(through.p),
        three(added),
        direct.requests_per_sec,
        through.requests_per_sec,
        cpu * 1e3 / through.ok.max(1) as f64,
        errors.join(", ")
    );
}

/// Conversations the stored-turn row spreads its turns over (each turn
/// reads its conversation's history and stores itself).
const CONVERSATIONS: u32 = 1_000;

/// A stored turn's body: turn `i` goes to conversation `i % CONVERSATIONS`.
fn stored_turn(i: u32) -> String {
    format!(
        r#"{{"model":"openai/gpt-4o-mini","conversation_id":"bench-{}","messages":[{{"role":"user","content":"benchmark turn {i}: the quick brown fox"}}]}}"#,
        i % CONVERSATIONS
    )
}

/// What one closed-loop batch measured, unsummarised.
#[derive(Default)]
struct Batch {
    /// Requests sent.
    requests: u64,
    /// Seconds per request answered.
    latencies: Vec<f64>,
    /// Answers other than 200, and transport errors.
    errors: Vec<String>,
    /// Wall time of the batch, in seconds.
    elapsed: f64,
}

impl Batch {
    /// Adds `other`'s requests to these.
    fn merge(&mut self, other: Batch) {
        self.requests += other.requests;
        self.latencies.extend(other.latencies);
        self.errors.extend(other.errors);
        self.elapsed += other.elapsed;
    }

    /// Percentiles and throughput over every request merged in.
    fn run(mut self) -> Run {
        self.latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            self.latencies
                .get(
                    ((self.latencies.len() as f64 * p) as usize)
                        .min(self.latencies.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or(f64::NAN)
        };
        Run {
            p: [pct(0.5), pct(0.9), pct(0.99)],
            requests_per_sec: self.requests as f64 / self.elapsed,
            ok: self.requests - self.errors.len() as u64,
            errors: self.errors,
        }
    }
}

/// The requests `range` over `connections` keep-alive connections, each
/// with one request in flight; request `i` goes on connection
/// `i % connections` with the body `body(i)`: what `oha` measures in a
/// closed loop (it sends one fixed body, and a stored turn needs its own
/// conversation ids).
async fn closed_loop(
    url: &str,
    key: &str,
    range: std::ops::Range<u32>,
    connections: u32,
    body: fn(u32) -> String,
) -> Batch {
    let started = std::time::Instant::now();
    let lanes = (0..connections).map(|lane| {
        let (url, key, range) = (url.to_owned(), key.to_owned(), range.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("a client");
            let mut batch = Batch::default();
            for i in range.filter(|i| i % connections == lane) {
                batch.requests += 1;
                let t = std::time::Instant::now();
                let sent = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body(i))
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let status = r.status();
                        let read = r.bytes().await;
                        batch.latencies.push(t.elapsed().as_secs_f64());
                        if status != 200 || read.is_err() {
                            batch.errors.push(format!("1 x {status}"));
                        }
                    }
                    Err(e) => batch.errors.push(format!("1 x {e}")),
                }
            }
            batch
        })
    });
    let mut all = Batch::default();
    for lane in futures_util::future::join_all(lanes.collect::<Vec<_>>()).await {
        all.merge(lane.expect("a load lane"));
    }
    all.elapsed = started.elapsed().as_secs_f64();
    all
}

/// Batches each stored-turn row alternates between its two sides, so that
/// the machine's drift over the row weighs on both alike.
const STORED_BATCHES: u32 = 10;

/// A stored-turn row: `requests` turns over [`CONVERSATIONS`]
/// conversations on the embedded store, `connections` at a time (no two
/// connections share a conversation), against the same bodies sent
/// straight to the mock, the two sides alternating in
/// [`STORED_BATCHES`] batches.
#[allow(clippy::too_many_arguments)]
async fn stored_row(
    what: &str,
    direct_url: &str,
    gateway_url: &str,
    key: &str,
    server: &mut Child,
    requests: u32,
    connections: u32,
    ticks: f64,
    failures: &mut Vec<String>,
) {
    // Turn i goes to conversation i % CONVERSATIONS on connection i % connections.
    assert_eq!(
        CONVERSATIONS % connections,
        0,
        "connections share conversations"
    );
    let name = format!(
        "stored turn (embedded store{what}), closed loop, {connections} in flight, sides alternating"
    );
    let pid = server.id().expect("the server's pid");
    let (mut direct, mut through, mut cpu) = (Batch::default(), Batch::default(), 0.0);
    let size = requests.div_ceil(STORED_BATCHES);
    for start in (0..requests).step_by(size as usize) {
        let range = start..(start + size).min(requests);
        direct.merge(closed_loop(direct_url, key, range.clone(), connections, stored_turn).await);
        let cpu_before = cpu_seconds(pid, ticks);
        through.merge(closed_loop(gateway_url, key, range, connections, stored_turn).await);
        cpu += cpu_seconds(pid, ticks) - cpu_before;
    }
    alive(server, "the local server");
    print_row(
        &name,
        Load::Closed {
            connections,
            requests,
        },
        &direct.run(),
        &through.run(),
        cpu,
        failures,
    );
}

/// Warms `url` up with a closed loop whose figures are dropped.
async fn warm(oha_bin: &Path, url: &str, key: &str, requests: u32, cpus: Option<&str>) {
    let run = oha(
        oha_bin,
        url,
        key,
        Load::Closed {
            connections: 8,
            requests,
        },
        cpus,
    )
    .await;
    assert!(
        run.errors.is_empty(),
        "warm-up of {url}: {}",
        run.errors.join(", ")
    );
}

/// The side-by-side table at `sizes`; `build` says which build of the
/// server ran (the smoke run uses the debug build).
pub async fn run(dir: &Path, sizes: &Sizes, build: &str) {
    let oha_bin = oha_path();
    let ticks = ticks_per_sec();
    let mut failures = Vec::new();

    println!(
        "\n### Stateless turn side by side: through the local server ({build}) against calling its mock upstream directly\n"
    );
    println!(
        "Mock OpenAI upstream answering at once (`bench-upstream`), the same request both ways, `oha` as the client; open-loop rows count each request's latency from when it was due (`--latency-correction`). Latencies in µs unless marked; added = through minus direct, percentile by percentile. The floor row runs the one-connection load through `bench-floor` instead of ctxgate: a proxy on the same HTTP stack that only forwards (its CPU in the CPU column).\n"
    );
    println!(
        "| load | connections | requests | direct p50 / p90 / p99 | through ctxgate p50 / p90 / p99 | added p50 / p90 / p99 | direct req/s | ctxgate req/s | ctxgate CPU per request | errors |\n|---|---|---|---|---|---|---|---|---|---|"
    );

    // Both cores shared by the client, the mock and the server.
    let (_mock, mock_url) = upstream(None, None).await;
    let data = tempfile::tempdir().unwrap();
    let extra = [
        ("OPENAI_BASE_URL", format!("{mock_url}/v1")),
        ("OPENAI_API_KEY", "sk-bench".to_owned()),
    ];
    let (mut server, port, key) =
        super::start_server_pinned(dir, data.path(), &extra, &[], None).await;
    let gateway_url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let direct_url = format!("{mock_url}/v1/chat/completions");
    warm(&oha_bin, &direct_url, &key, sizes.warmup, None).await;
    warm(&oha_bin, &gateway_url, &key, sizes.warmup, None).await;
    for &rate in sizes.rates {
        let load = Load::Open {
            rate,
            requests: (rate as f64 * sizes.open_seconds) as u32,
        };
        row(
            &format!("open loop, {rate}/s"),
            &oha_bin,
            &direct_url,
            &gateway_url,
            &key,
            &mut server,
            load,
            None,
            ticks,
            &mut failures,
        )
        .await;
    }
    for &connections in sizes.concurrencies {
        let load = Load::Closed {
            connections,
            requests: sizes.closed_requests,
        };
        row(
            &format!("closed loop, {connections} in flight"),
            &oha_bin,
            &direct_url,
            &gateway_url,
            &key,
            &mut server,
            load,
            None,
            ticks,
            &mut failures,
        )
        .await;
    }
    // The floor: one connection through a proxy that only forwards, on the
    // same HTTP stack; what ctxgate adds beyond it is ctxgate's own work.
    let (mut floor_proxy, floor_url) = floor(&mock_url).await;
    let floor_url = format!("{floor_url}/v1/chat/completions");
    warm(&oha_bin, &floor_url, &key, sizes.warmup, None).await;
    row(
        "floor: pass-through proxy on the same HTTP stack (`bench-floor`), closed loop, 1 in flight",
        &oha_bin,
        &direct_url,
        &floor_url,
        &key,
        &mut floor_proxy,
        Load::Closed {
            connections: 1,
            requests: sizes.closed_requests,
        },
        None,
        ticks,
        &mut failures,
    )
    .await;
    floor_proxy.kill().await.ok();
    // Issue 19: a stored turn adds at most 1 ms at p50 (embedded store);
    // with several in flight, their commits share fsyncs.
    for connections in [1, 8] {
        stored_row(
            "",
            &direct_url,
            &gateway_url,
            &key,
            &mut server,
            (sizes.closed_requests / 3).max(connections),
            connections,
            ticks,
            &mut failures,
        )
        .await;
    }
    let rss = peak_rss(server.id().unwrap());
    server.kill().await.ok();

    // The same rows with `embedded_fsync = "after-answer"`: a turn is
    // answered once committed, its fsync right after.
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("ctxgate.toml");
    std::fs::write(&config, "embedded_fsync = \"after-answer\"\n").unwrap();
    let extra = [
        ("OPENAI_BASE_URL", format!("{mock_url}/v1")),
        ("OPENAI_API_KEY", "sk-bench".to_owned()),
        ("CTXGATE_CONFIG", config.display().to_string()),
    ];
    let store = data.path().join("store");
    let (mut server, port, key) = super::start_server_pinned(dir, &store, &extra, &[], None).await;
    let gateway_url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    warm(&oha_bin, &gateway_url, &key, sizes.warmup, None).await;
    for connections in [1, 8] {
        stored_row(
            ", fsync after the answer",
            &direct_url,
            &gateway_url,
            &key,
            &mut server,
            (sizes.closed_requests / 3).max(connections),
            connections,
            ticks,
            &mut failures,
        )
        .await;
    }
    server.kill().await.ok();

    // The server alone on core 0; the client and the mock (one worker) on core 1.
    let (_mock, mock_url) = upstream(Some("1"), Some(1)).await;
    let data = tempfile::tempdir().unwrap();
    let extra = [
        ("OPENAI_BASE_URL", format!("{mock_url}/v1")),
        ("OPENAI_API_KEY", "sk-bench".to_owned()),
    ];
    let (mut server, port, key) =
        super::start_server_pinned(dir, data.path(), &extra, &[], Some("0")).await;
    let gateway_url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let direct_url = format!("{mock_url}/v1/chat/completions");
    warm(&oha_bin, &direct_url, &key, sizes.warmup, Some("1")).await;
    warm(&oha_bin, &gateway_url, &key, sizes.warmup, Some("1")).await;
    let connections = sizes.one_core_concurrency;
    row(
        &format!("closed loop, {connections} in flight, server on one core"),
        &oha_bin,
        &direct_url,
        &gateway_url,
        &key,
        &mut server,
        Load::Closed {
            connections,
            requests: sizes.one_core_requests,
        },
        Some("1"),
        ticks,
        &mut failures,
    )
    .await;
    let rss_one_core = peak_rss(server.id().unwrap());
    server.kill().await.ok();

    println!(
        "\nLocal server peak resident memory (VmHWM): {rss} after the rows on both cores, {rss_one_core} after the one-core row."
    );
    assert!(
        failures.is_empty(),
        "the side-by-side bench broke: {}",
        failures.join("; ")
    );
}
