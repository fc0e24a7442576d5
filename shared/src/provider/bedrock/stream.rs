//! ConverseStream answers: AWS's binary event-stream framing (prelude and
//! message CRCs, checked by `aws-smithy-eventstream`'s frame decoder, frames
//! split across network reads at any byte), then each event's JSON
//! (`messageStart`, `contentBlockStart/Delta/Stop`, `messageStop`,
//! `metadata`) as model events. Exception frames end the stream with the
//! exception's type, never its message.
//!
//! Converse opens only tool blocks with `contentBlockStart`; text and
//! reasoning blocks begin with their first delta, so they are opened there.

use std::collections::VecDeque;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use serde_json::Value;

use crate::capped::Caps;
use crate::model::{BlockDelta, BlockStart, Event};
use crate::provider::sse::decode_error;
use crate::provider::{EventStream, ProviderError};
use crate::wire::bedrock::{finish_reason, usage};
use crate::wire::{DecodeError, Step, StreamDecoder, json_error};

/// The media type of a ConverseStream answer.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// What kind of block is open at an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    /// A tool call, and whether any of its input arrived.
    Tool(bool),
    Reasoning,
    Encrypted,
}

/// Decoder state for one ConverseStream answer's events.
#[derive(Debug, Default)]
pub struct EventDecoder {
    open: Vec<(u32, Open)>,
    stopped: bool,
}

impl EventDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn kind(&mut self, index: u32) -> Option<&mut Open> {
        self.open
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, o)| o)
    }

    /// Opens a text or reasoning block at its first delta.
    fn ensure(&mut self, index: u32, kind: Open, start: BlockStart, out: &mut Vec<Event>) {
        if self.kind(index).is_none() {
            self.open.push((index, kind));
            out.push(Event::BlockStart {
                index,
                block: start,
            });
        }
    }
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(format!("invalid ConverseStream event: {what}"))
}

impl StreamDecoder for EventDecoder {
    fn event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Event>,
    ) -> Result<Step, DecodeError> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            DecodeError::Malformed(format!("invalid ConverseStream event: {}", json_error(&e)))
        })?;
        let index = || {
            v["contentBlockIndex"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| malformed("no contentBlockIndex"))
        };
        match event {
            "messageStart" => out.push(Event::Start {
                id: None,
                model: None,
            }),
            "contentBlockStart" => {
                let index = index()?;
                if let Some(t) = v["start"].get("toolUse") {
                    self.open.push((index, Open::Tool(false)));
                    out.push(Event::BlockStart {
                        index,
                        block: BlockStart::ToolCall {
                            id: t["toolUseId"].as_str().unwrap_or_default().to_owned(),
                            name: t["name"].as_str().unwrap_or_default().to_owned(),
                        },
                    });
                }
            }
            "contentBlockDelta" => {
                let index = index()?;
                let d = &v["delta"];
                if let Some(text) = d["text"].as_str() {
                    self.ensure(index, Open::Text, BlockStart::Text, out);
                    if !text.is_empty() {
                        out.push(Event::BlockDelta {
                            index,
                            delta: BlockDelta::Text(text.to_owned()),
                        });
                    }
                } else if let Some(input) = d["toolUse"]["input"].as_str() {
                    match self.kind(index) {
                        Some(Open::Tool(seen)) => *seen = true,
                        _ => return Err(malformed("tool input for a block that is no tool call")),
                    }
                    if !input.is_empty() {
                        out.push(Event::BlockDelta {
                            index,
                            delta: BlockDelta::Arguments(input.to_owned()),
                        });
                    }
                } else if let Some(r) = d.get("reasoningContent") {
                    if let Some(data) = r["redactedContent"].as_str() {
                        let start = BlockStart::EncryptedReasoning {
                            data: data.to_owned(),
                        };
                        self.ensure(index, Open::Encrypted, start, out);
                    } else {
                        self.ensure(index, Open::Reasoning, BlockStart::Reasoning, out);
                        let delta = match (r["text"].as_str(), r["signature"].as_str()) {
                            (Some(t), _) if !t.is_empty() => Some(BlockDelta::Reasoning(t.into())),
                            (_, Some(s)) if !s.is_empty() => Some(BlockDelta::Signature(s.into())),
                            _ => None,
                        };
                        out.extend(delta.map(|delta| Event::BlockDelta { index, delta }));
                    }
                }
            }
            "contentBlockStop" => {
                let index = index()?;
                match self.kind(index) {
                    // A tool called without input still gets valid JSON arguments.
                    Some(Open::Tool(seen @ false)) => {
                        *seen = true;
                        out.push(Event::BlockDelta {
                            index,
                            delta: BlockDelta::Arguments("{}".into()),
                        });
                    }
                    Some(_) => {}
                    None => return Ok(Step::More),
                }
                out.push(Event::BlockStop { index });
            }
            "messageStop" => {
                self.stopped = true;
                out.push(Event::Finish {
                    reason: finish_reason(v["stopReason"].as_str()),
                    stop_sequence: None,
                });
            }
            // The last event: usage (and metrics) of the whole answer.
            "metadata" => {
                if v["usage"].is_object() {
                    out.push(Event::Usage(usage(&v["usage"])));
                }
                return Ok(if self.stopped { Step::Done } else { Step::More });
            }
            // Event types added later.
            _ => {}
        }
        Ok(Step::More)
    }

    fn end(&mut self, _out: &mut Vec<Event>) -> Result<(), DecodeError> {
        if self.stopped {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "the stream ended before messageStop".into(),
            ))
        }
    }
}

/// The error type an exception frame reports, as a short token the gateway
/// maps like other providers' (`rate_limit_error` and `overloaded_error`
/// are retried by clients).
pub fn exception_kind(exception: &str) -> &'static str {
    match exception {
        "throttlingException" => "rate_limit_error",
        "serviceUnavailableException" => "overloaded_error",
        "modelStreamErrorException" => "model_stream_error",
        "validationException" => "validation_error",
        "internalServerException" => "internal_server_error",
        _ => "error",
    }
}

/// A string header of a frame.
fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// One frame's meaning: an event for the decoder, or an exception.
fn frame<D: StreamDecoder>(
    decoder: &mut D,
    m: &Message,
    out: &mut Vec<Event>,
) -> Result<Step, DecodeError> {
    match header(m, ":message-type") {
        Some("event") => {
            let data = std::str::from_utf8(m.payload())
                .map_err(|_| malformed("a payload is not UTF-8"))?;
            decoder.event(header(m, ":event-type").unwrap_or_default(), data, out)
        }
        Some("exception") => Err(DecodeError::Reported(
            exception_kind(header(m, ":exception-type").unwrap_or_default()).into(),
        )),
        Some("error") => Err(DecodeError::Reported("error".into())),
        _ => Err(malformed("a frame without a known :message-type")),
    }
}

/// Decodes an upstream event-stream body into model events, capped per
/// frame (`caps.event`) and in total (`caps.stream`). Reading stops at the
/// first error or once the decoder is done; dropping the stream drops the body.
pub fn events<S, D>(provider: &str, body: S, caps: Caps, decoder: D) -> EventStream
where
    S: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
    D: StreamDecoder,
{
    let state = State {
        body: Box::pin(body),
        frames: MessageFrameDecoder::new(),
        buf: BytesMut::new(),
        at_frame_start: true,
        read: 0,
        caps,
        decoder,
        queue: VecDeque::new(),
        error: None,
        finished: false,
        provider: provider.to_owned(),
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok(e), st));
            }
            if let Some(e) = st.error.take() {
                return Some((Err(e), st));
            }
            if st.finished {
                return None;
            }
            let mut out = Vec::new();
            let step = st.step(&mut out).await;
            // Events decoded before an error still go out first.
            st.queue.extend(out);
            match step {
                Ok(step) => st.finished = step == Step::Done,
                Err(e) => {
                    st.finished = true;
                    st.error = Some(e);
                }
            }
        }
    }))
}

type Body = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

struct State<D> {
    body: Body,
    frames: MessageFrameDecoder,
    buf: BytesMut,
    /// Whether the buffer starts at a frame's prelude (its length not yet checked).
    at_frame_start: bool,
    read: usize,
    caps: Caps,
    decoder: D,
    queue: VecDeque<Event>,
    error: Option<ProviderError>,
    finished: bool,
    provider: String,
}

impl<D: StreamDecoder> State<D> {
    fn bad(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::BadResponse {
            provider: self.provider.clone(),
            detail: detail.into(),
        }
    }

    /// Decodes the frames already buffered, else reads more of the body.
    async fn step(&mut self, out: &mut Vec<Event>) -> Result<Step, ProviderError> {
        loop {
            if self.at_frame_start && self.buf.len() >= 4 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len as usize > self.caps.event {
                    return Err(self.bad(format!(
                        "event stream frame passed the {}-byte cap",
                        self.caps.event
                    )));
                }
                self.at_frame_start = false;
            }
            match self.frames.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(m)) => {
                    self.at_frame_start = true;
                    let step = frame(&mut self.decoder, &m, out)
                        .map_err(|e| decode_error(&self.provider, e))?;
                    if step == Step::Done || !out.is_empty() {
                        return Ok(step);
                    }
                    continue;
                }
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => {
                    tracing::warn!(provider = %self.provider, error = %e, "bad event-stream frame");
                    return Err(self.bad("malformed event stream frame (length or CRC)"));
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.read += chunk.len();
                    if self.read > self.caps.stream {
                        return Err(self.bad(format!(
                            "event stream passed the {}-byte cap",
                            self.caps.stream
                        )));
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(e),
                None if self.buf.is_empty() && self.at_frame_start => {
                    return self
                        .decoder
                        .end(out)
                        .map(|()| Step::Done)
                        .map_err(|e| decode_error(&self.provider, e));
                }
                None => return Err(self.bad("the event stream ended inside a frame")),
            }
        }
    }
}
