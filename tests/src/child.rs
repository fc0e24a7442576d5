//! Test servers run as child processes (the Python CRM server, the mock Bedrock
//! endpoint, the local server): started, their listening URL read from their first
//! stdout line, their stderr kept for failure messages.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// A started child server.
pub struct Listening {
    /// The process, killed when dropped.
    pub child: Child,
    /// The URL its first stdout line gave.
    pub url: String,
    /// Everything it wrote on stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

/// Spawns `command` with piped output and reads its first stdout line, which `url_of`
/// turns into its URL; a child that dies or prints anything else panics with `what`
/// and its stderr.
pub async fn spawn_listening(
    mut command: Command,
    what: &str,
    url_of: impl Fn(&str) -> Option<String>,
) -> Listening {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));

    // Drained so that a chatty child never blocks on a full pipe, and kept for the
    // panic message below.
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().expect("piped stderr");
    let sink = stderr.clone();
    let drained = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });

    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    // A bound, not a wait: the line comes as soon as it listens, or EOF if it dies.
    let read = tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line)).await;
    let url = url_of(line.trim()).filter(|_| matches!(read, Ok(Ok(n)) if n > 0));
    let Some(url) = url else {
        let _ = child.kill().await;
        // Whatever it printed before dying, once the pipe is closed.
        let _ = child.wait().await;
        let _ = drained.await;
        panic!(
            "{what} did not start: stdout {line:?}, stderr:\n{}",
            stderr.lock().unwrap()
        );
    };
    // Nothing more is read from stdout; keep the pipe open and drained.
    tokio::spawn(async move {
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest).await;
    });
    Listening { child, url, stderr }
}

/// The local server's binary: `CTXGATE_BIN`, else the `ctxgate` beside the test's own
/// directory (target/debug/deps/<test> -> target/debug/ctxgate); panics saying how to
/// build it when it is not there.
pub fn local_server_binary() -> PathBuf {
    let path = std::env::var_os("CTXGATE_BIN").map_or_else(
        || {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("ctxgate")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} was not built: run `cargo build -p ctxgate` (scripts/test.sh does) or set CTXGATE_BIN",
        path.display()
    );
    path
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads the local server's stderr until it logs that it listens (panicking with
/// what it said if it exits first), then keeps reading it in the background; the
/// task's result is every line, for checks once the server has exited.
pub async fn await_local_server(child: &mut Child) -> tokio::task::JoinHandle<Vec<String>> {
    let mut log = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut seen = Vec::new();
    loop {
        let Some(line) = log.next_line().await.unwrap() else {
            panic!("ctxgate serve exited before listening: {seen:#?}");
        };
        let ready = line.contains("ctxgate listening");
        seen.push(line);
        if ready {
            break;
        }
    }
    tokio::spawn(async move {
        while let Ok(Some(line)) = log.next_line().await {
            seen.push(line);
        }
        seen
    })
}

/// `ctxgate serve` on the embedded store in `data` with the configuration file
/// `config`, on a free loopback port, awaited until it listens: the process (killed
/// when dropped), its base URL, and its log tail ([`await_local_server`]).
pub async fn start_local_server(
    data: &Path,
    config: &Path,
) -> (Child, String, tokio::task::JoinHandle<Vec<String>>) {
    let port = free_port();
    let mut child = Command::new(local_server_binary())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CTXGATE_STORE", "embedded")
        .env("CTXGATE_DATA_DIR", data)
        .env("CTXGATE_CONFIG", config)
        .env("CTXGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let tail = await_local_server(&mut child).await;
    (child, format!("http://127.0.0.1:{port}"), tail)
}
