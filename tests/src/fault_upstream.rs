//! A scriptable upstream provider on loopback that misbehaves on purpose.
//! It speaks raw HTTP/1.1 over TCP so that it can do what a well-behaved
//! server framework cannot: reset a connection, hang, cut a body short.
//! Each request takes the next fault from its script; with the script empty
//! it answers a normal completion in its wire format (OpenAI or Anthropic).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The wire format of successful answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI Chat Completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// One misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally after a delay.
    Delay(Duration),
    /// Answer with this status, an optional `Retry-After`, and a JSON error body.
    Status(u16, Option<&'static str>),
    /// Close the connection with a TCP reset, no answer.
    Reset,
    /// Read the request and never answer.
    Hang,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 announcing a longer body than is sent, then close.
    Truncated,
    /// 200 with an HTML page.
    WrongContentType,
}

/// A running fault server.
pub struct FaultUpstream {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    script: Arc<Mutex<VecDeque<Fault>>>,
    requests: Arc<AtomicUsize>,
}

impl FaultUpstream {
    /// Starts a server answering in `format`.
    pub async fn start(format: Format) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let script: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let requests: Arc<AtomicUsize> = Arc::default();
        let (s, r) = (script.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move { serve(socket, format, s, r).await });
            }
        });
        Self {
            url,
            script,
            requests,
        }
    }

    /// Replaces the script: one fault per coming request, in order.
    pub fn script(&self, faults: Vec<Fault>) {
        *self.script.lock().unwrap() = faults.into();
        self.requests.store(0, Ordering::SeqCst);
    }

    /// Requests received since the script was set.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request (headers and `Content-Length` body); `false` at EOF.
async fn read_request(socket: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return true;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn success(format: Format) -> String {
    match format {
        Format::OpenAi => serde_json::json!({
            "id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "fine"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        }),
        Format::Anthropic => serde_json::json!({
            "id": "msg_f", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "fine"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 5, "output_tokens": 1}
        }),
    }
    .to_string()
}

async fn respond(socket: &mut TcpStream, status: u16, extra: &str, ctype: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn serve(
    mut socket: TcpStream,
    format: Format,
    script: Arc<Mutex<VecDeque<Fault>>>,
    requests: Arc<AtomicUsize>,
) {
    if !read_request(&mut socket).await {
        return;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let fault = script.lock().unwrap().pop_front();
    let json = "application/json";
    match fault {
        None => respond(&mut socket, 200, "", json, &success(format)).await,
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            respond(&mut socket, 200, "", json, &success(format)).await;
        }
        Some(Fault::Status(status, retry_after)) => {
            let extra = retry_after.map_or(String::new(), |r| format!("retry-after: {r}\r\n"));
            let body = r#"{"error":{"message":"injected failure","type":"server_error"}}"#;
            respond(&mut socket, status, &extra, json, body).await;
        }
        Some(Fault::Reset) => {
            // A zero linger makes close send RST at once (it cannot block,
            // which is what the deprecation warns about for non-zero values).
            #[allow(deprecated)]
            let _ = socket.set_linger(Some(Duration::ZERO));
            drop(socket);
        }
        Some(Fault::Hang) => {
            // Hold the connection open until the client gives up.
            let mut sink = [0u8; 64];
            while let Ok(n) = socket.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        Some(Fault::MalformedJson) => respond(&mut socket, 200, "", json, "{\"choices\": [").await,
        Some(Fault::Truncated) => {
            let body = success(format);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len() + 100
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body.as_bytes()[..body.len() / 2]).await;
            let _ = socket.shutdown().await;
        }
        Some(Fault::WrongContentType) => {
            respond(
                &mut socket,
                200,
                "",
                "text/html",
                "<html><body>Bad gateway</body></html>",
            )
            .await;
        }
    }
}
