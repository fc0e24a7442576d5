//! Upstream bodies read with a size cap: chunk by chunk, stopping at the
//! cap, so a provider (or an issuer) that sends gigabytes costs at most the
//! cap in memory. Streamed answers are capped per event and in total.

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// Why a capped body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body passed the cap.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The transport failed (kind only, never content).
    #[error("body could not be read ({0})")]
    Read(&'static str),
}

/// The size caps of upstream bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// A whole non-streamed answer.
    pub body: usize,
    /// One event of a streamed answer.
    pub event: usize,
    /// A whole streamed answer.
    pub stream: usize,
}

/// Largest upstream error body read (only a short `type`/`code` is kept from it).
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// A reqwest error's kind, for logs (its text may name URLs but carries no body).
pub fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_redirect() {
        "redirect"
    } else if e.is_decode() || e.is_body() {
        "body"
    } else {
        "request"
    }
}

/// Reads `resp`'s body, failing once it passes `cap` bytes.
pub async fn read(mut resp: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut buf = BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > cap {
                    return Err(BodyError::TooLarge(cap));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(BodyError::Read(error_kind(&e))),
        }
    }
}

/// Passes an event stream's bytes through, failing once the stream passes
/// `caps.stream` bytes or one event (bytes since the last blank line)
/// passes `caps.event`. Linear in the bytes seen.
pub fn sse<S, E>(
    body: S,
    caps: Caps,
    too_large: impl Fn(usize) -> E + Send + 'static,
) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    use futures_util::StreamExt;
    let mut total = 0usize;
    let mut event = EventSize::default();
    let mut failed = false;
    body.map(move |item| {
        let chunk = item?;
        total += chunk.len();
        if total > caps.stream {
            return Err(too_large(caps.stream));
        }
        if event.feed(&chunk) > caps.event {
            return Err(too_large(caps.event));
        }
        Ok(chunk)
    })
    .take_while(move |item| {
        // Nothing is read after the first error.
        let go = !failed;
        failed |= item.is_err();
        std::future::ready(go)
    })
}

/// The size of the event being read: bytes since the last blank line
/// (lines end at CRLF, CR or LF, as in the SSE grammar).
#[derive(Debug, Default)]
struct EventSize {
    len: usize,
    line: usize,
    prev_cr: bool,
}

impl EventSize {
    /// Feeds bytes; returns the largest event size reached within them.
    fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut max = self.len;
        for &b in bytes {
            let cr = std::mem::replace(&mut self.prev_cr, b == b'\r');
            match b {
                // The LF of a CRLF: already counted with its CR.
                b'\n' if cr => {}
                b'\r' | b'\n' if self.line == 0 => self.len = 0,
                b'\r' | b'\n' => {
                    self.line = 0;
                    self.len += 1;
                }
                _ => {
                    self.line += 1;
                    self.len += 1;
                }
            }
            max = max.max(self.len);
        }
        max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_blank_lines_in_every_line_ending() {
        for sep in ["\n\n", "\r\r", "\r\n\r\n", "\n\r\n"] {
            let mut e = EventSize::default();
            let text = format!("data: 12345{sep}").repeat(100);
            // One event plus its line end, never the sum of many.
            assert_eq!(e.feed(text.as_bytes()), 12, "{sep:?}");
        }
        // A CRLF alone is one line end, not the end of the event.
        let mut e = EventSize::default();
        assert_eq!(e.feed(b"data: a\r\ndata: b"), 15);
    }

    // Issue 12, point 6: an endless event stream stops at the cap, per event
    // and in total, whatever the chunking.
    #[tokio::test]
    async fn streams_stop_at_their_caps() {
        use futures_util::{StreamExt, stream};
        let caps = Caps {
            body: 0,
            event: 100,
            stream: 1000,
        };
        let endless_event =
            stream::iter(std::iter::repeat(Ok::<_, usize>(Bytes::from_static(b"x"))));
        let out: Vec<_> = sse(endless_event, caps, |n| n).collect().await;
        assert_eq!(out.len(), 101);
        assert_eq!(out.last().unwrap().as_ref().unwrap_err(), &100);
        let many_events = stream::iter(std::iter::repeat(Ok::<_, usize>(Bytes::from_static(
            b"data: {}\n\n",
        ))));
        let out: Vec<_> = sse(many_events, caps, |n| n).collect().await;
        assert_eq!(out.len(), 101);
        assert_eq!(out.last().unwrap().as_ref().unwrap_err(), &1000);
    }
}
