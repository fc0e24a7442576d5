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
    /// A streamed answer that stops in the middle of an event.
    StreamCut,
    /// A streamed answer that reports an error event after its first token.
    StreamError,
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

/// Reads one request (headers and `Content-Length` body); `None` at EOF,
/// else whether it asked for a stream.
async fn read_request(socket: &mut TcpStream) -> Option<bool> {
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
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: serde_json::Value =
                serde_json::from_slice(&buf[end + 4..]).unwrap_or_default();
            return Some(body["stream"] == true);
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
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

/// The events of a streamed answer "fine" in `format`: (head, tail), where a
/// fault may cut between or inside them.
fn stream_events(format: Format) -> (String, String) {
    match format {
        Format::OpenAi => (
            concat!(
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fi\"},\"finish_reason\":null}]}\n\n",
            )
            .to_owned(),
            concat!(
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ne\"},\"finish_reason\":\"stop\"}]}\n\n",
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
                "data: [DONE]\n\n",
            )
            .to_owned(),
        ),
        Format::Anthropic => (
            concat!(
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_f\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"fi\"}}\n\n",
            )
            .to_owned(),
            concat!(
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ne\"}}\n\n",
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            )
            .to_owned(),
        ),
    }
}

fn error_event(format: Format) -> &'static str {
    match format {
        Format::OpenAi => {
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n"
        }
        Format::Anthropic => {
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        }
    }
}

/// Writes a streamed answer's head and `body`, then closes.
async fn respond_stream(socket: &mut TcpStream, body: &str) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// A normal answer: a completion, or a whole stream when one was asked for.
async fn succeed(socket: &mut TcpStream, format: Format, streamed: bool) {
    if streamed {
        let (head, tail) = stream_events(format);
        respond_stream(socket, &format!("{head}{tail}")).await;
    } else {
        respond(socket, 200, "", "application/json", &success(format)).await;
    }
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
    let Some(streamed) = read_request(&mut socket).await else {
        return;
    };
    requests.fetch_add(1, Ordering::SeqCst);
    let fault = script.lock().unwrap().pop_front();
    let json = "application/json";
    match fault {
        None => succeed(&mut socket, format, streamed).await,
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            succeed(&mut socket, format, streamed).await;
        }
        Some(Fault::StreamCut) => {
            let (head, tail) = stream_events(format);
            respond_stream(&mut socket, &format!("{head}{}", &tail[..tail.len() / 3])).await;
        }
        Some(Fault::StreamError) => {
            let (head, _) = stream_events(format);
            respond_stream(&mut socket, &format!("{head}{}", error_event(format))).await;
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
