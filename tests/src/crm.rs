//! The example CRM MCP server (examples/crm/server.py, official Python `mcp` SDK) as a
//! child process on a free loopback port, for end-to-end tests of ctxgate's MCP tools.
//!
//! The Python comes from `CTXGATE_TEST_PYTHON` (scripts/test.sh exports the test venv's),
//! else the test venv at `$CTXGATE_CACHE/venv` or `~/.cache/ctxgate/venv`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::child::{Listening, spawn_listening};

/// The protocol revision of the server's current mode.
pub const CURRENT_REVISION: &str = "2026-07-28";
/// The newest revision the legacy mode negotiates in `initialize`.
pub const LEGACY_REVISION: &str = "2025-11-25";

/// Which protocol era the server speaks (it refuses the other one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmMode {
    /// 2026-07-28: stateless, no `initialize`, answers `server/discover`.
    Current,
    /// 2025-11-25 and 2025-06-18: `initialize`, then `Mcp-Session-Id` on every request.
    Legacy,
}

impl CrmMode {
    fn arg(self) -> &'static str {
        match self {
            CrmMode::Current => "current",
            CrmMode::Legacy => "legacy",
        }
    }
}

/// A running CRM server; killed when dropped.
pub struct CrmServer {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    /// The mode it was started in.
    pub mode: CrmMode,
    child: Child,
    stderr: Arc<Mutex<String>>,
    session: tokio::sync::Mutex<Option<String>>,
    next_id: AtomicU64,
}

impl CrmServer {
    /// Starts the server; with `token`, every request needs `Authorization: Bearer TOKEN`.
    /// Returns once it accepts connections (it prints its URL then).
    pub async fn start(mode: CrmMode, token: Option<&str>) -> CrmServer {
        Self::start_with(mode, token, &[]).await
    }

    /// As `start`, with more options of server.py: `["--hang", "list_orders"]` (its calls
    /// never answer), `["--rendezvous", "2"]` (the first 2 calls answer only once both are
    /// in flight: proof of concurrency without timing), `["--tools-ttl-ms", "0"]`.
    pub async fn start_with(mode: CrmMode, token: Option<&str>, options: &[&str]) -> CrmServer {
        let mut command = Command::new(python());
        command
            .arg(script())
            .args(["--host", "127.0.0.1", "--port", "0", "--mode", mode.arg()])
            .args(options);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let Listening {
            child, url, stderr, ..
        } = spawn_listening(
            command,
            &format!("examples/crm/server.py ({mode:?})"),
            |line| line.strip_prefix("listening on ").map(str::to_owned),
        )
        .await;
        CrmServer {
            url,
            mode,
            child,
            stderr,
            session: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends one JSON-RPC request the way this mode wants it, straight over HTTP (no MCP
    /// client), and returns the JSON-RPC response with the HTTP status. Current: the
    /// stateless envelope (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` headers and
    /// `params._meta`). Legacy: `initialize` + `notifications/initialized` on first use,
    /// then `Mcp-Session-Id` and `MCP-Protocol-Version` on every request. `headers` are
    /// added to each request (e.g. `Authorization`).
    pub async fn rpc(
        &self,
        http: &reqwest::Client,
        headers: &[(&str, &str)],
        method: &str,
        params: Value,
    ) -> (u16, Value) {
        let mut params = params;
        let mut extra: Vec<(String, String)> = Vec::new();
        match self.mode {
            CrmMode::Current => {
                params
                    .as_object_mut()
                    .expect("params are an object")
                    .insert("_meta".into(), current_meta());
                extra.push(("mcp-protocol-version".into(), CURRENT_REVISION.into()));
                extra.push(("mcp-method".into(), method.into()));
                if let Some(name) = params.get("name").and_then(Value::as_str) {
                    extra.push(("mcp-name".into(), name.into()));
                }
            }
            CrmMode::Legacy => {
                let session = self.legacy_session(http, headers).await;
                extra.push(("mcp-session-id".into(), session));
                extra.push(("mcp-protocol-version".into(), LEGACY_REVISION.into()));
            }
        }
        // Ids are unique per server: a legacy session routes answers by id.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = post(http, &self.url, headers, &extra, &body).await;
        let status = response.status().as_u16();
        (status, jsonrpc_body(response).await)
    }

    /// The legacy session id, opened with `initialize` on first use.
    async fn legacy_session(&self, http: &reqwest::Client, headers: &[(&str, &str)]) -> String {
        let mut session = self.session.lock().await;
        if let Some(id) = session.as_ref() {
            return id.clone();
        }
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": LEGACY_REVISION,
            "capabilities": {},
            "clientInfo": {"name": "ctxgate-tests", "version": "1"},
        }});
        let response = post(http, &self.url, headers, &[], &init).await;
        assert_eq!(response.status(), 200, "initialize was refused");
        let id = response
            .headers()
            .get("mcp-session-id")
            .expect("initialize answers with an Mcp-Session-Id")
            .to_str()
            .unwrap()
            .to_owned();
        let answer = jsonrpc_body(response).await;
        assert_eq!(answer["result"]["protocolVersion"], LEGACY_REVISION);
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let extra = [
            ("mcp-session-id".to_owned(), id.clone()),
            (
                "mcp-protocol-version".to_owned(),
                LEGACY_REVISION.to_owned(),
            ),
        ];
        let ack = post(http, &self.url, headers, &extra, &initialized).await;
        assert_eq!(ack.status(), 202);
        *session = Some(id.clone());
        id
    }

    /// `127.0.0.1:PORT`, for a config's allow-list or a URL of another path.
    pub fn authority(&self) -> &str {
        let rest = self.url.strip_prefix("http://").unwrap_or(&self.url);
        rest.split('/').next().unwrap_or(rest)
    }

    /// What the server wrote to stderr so far (uvicorn and SDK warnings, tracebacks).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills the server and waits for it to exit: its URL then refuses connections
    /// ("the server is down").
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// The Python that has the `mcp` SDK.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("CTXGATE_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("CTXGATE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/ctxgate")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache/ctxgate"));
    let venv = cache.join("venv/bin/python");
    if venv.exists() {
        venv
    } else {
        panic!(
            "no Python with the mcp SDK: set CTXGATE_TEST_PYTHON, or run scripts/test.sh once to create {}",
            venv.display()
        )
    }
}

/// examples/crm/server.py in this checkout.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/crm/server.py")
}

/// The per-request envelope of the current revision, for `params._meta`.
pub fn current_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": CURRENT_REVISION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "ctxgate-tests", "version": "1"},
    })
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    extra: &[(String, String)],
    body: &Value,
) -> reqwest::Response {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    for (name, value) in extra {
        request = request.header(name, value);
    }
    request.send().await.expect("the CRM server answers")
}

/// The JSON-RPC message of a response, whole JSON or the first `data:` of an SSE stream.
pub async fn jsonrpc_body(response: reqwest::Response) -> Value {
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let text = response.text().await.expect("a body");
    if !sse {
        return serde_json::from_str(&text).unwrap_or(Value::Null);
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message.get("id").is_some())
        .unwrap_or(Value::Null)
}
