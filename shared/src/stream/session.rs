//! One streamed answer on its way to the client: deltas in, OpenAI chunk
//! events out (text through the stream redactor), the complete answer
//! assembled alongside for storage and accounting.

use bytes::Bytes;
use futures_util::StreamExt;

use super::assemble::Assembler;
use super::chunk::{ChunkMeta, DONE, error_event};
use super::redact::StreamRedactor;
use super::{Delta, DeltaStream};
use crate::ApiError;
use crate::processor::Counts;
use crate::provider::Completion;
use crate::redact::Blocked;

/// The field a blocked answer is reported on.
pub const BLOCKED_PARAM: &str = "choices[0].delta.content";

/// The state of one streamed answer.
#[derive(Debug)]
pub struct Session {
    meta: ChunkMeta,
    redactor: Option<StreamRedactor>,
    assembler: Assembler,
    finish_sent: bool,
}

impl Session {
    /// A session; `redactor` applies the response policy to text (`None`: off).
    pub fn new(
        meta: ChunkMeta,
        redactor: Option<StreamRedactor>,
        canonical_arguments: bool,
    ) -> Self {
        Self {
            meta,
            redactor,
            assembler: Assembler::new(canonical_arguments),
            finish_sent: false,
        }
    }

    /// The first event: the assistant role.
    pub fn start(&self) -> Bytes {
        self.meta.role()
    }

    /// Takes one delta, appending the events to send now to `out`.
    pub fn push(&mut self, delta: Delta, out: &mut Vec<Bytes>) -> Result<(), Blocked> {
        self.assembler.push(&delta);
        match &delta {
            Delta::Text(t) => match self.redactor.as_mut() {
                Some(r) => {
                    let safe = r.push(t)?;
                    if !safe.is_empty() {
                        out.push(self.meta.text(&safe));
                    }
                }
                None => out.push(self.meta.text(t)),
            },
            Delta::ToolCall { index, id, name } => {
                self.flush_text(out)?;
                out.push(self.meta.tool_call(*index, id, name));
            }
            Delta::ToolArguments { index, fragment } => {
                out.push(self.meta.tool_arguments(*index, fragment));
            }
            Delta::Finish(reason) => {
                self.flush_text(out)?;
                if !self.finish_sent {
                    self.finish_sent = true;
                    out.push(self.meta.finish(*reason));
                }
            }
            Delta::Usage(_) => {}
        }
        Ok(())
    }

    fn flush_text(&mut self, out: &mut Vec<Bytes>) -> Result<(), Blocked> {
        if let Some(r) = self.redactor.as_mut() {
            let rest = r.flush()?;
            if !rest.is_empty() {
                out.push(self.meta.text(&rest));
            }
        }
        Ok(())
    }

    /// The upstream completed: appends the remaining events (held-back text,
    /// the finish chunk if none came, the usage chunk if asked for; not
    /// `[DONE]`, which goes out once the turn is stored) and returns the answer.
    pub fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(Completion, Counts), Blocked> {
        self.flush_text(out)?;
        let completion = std::mem::take(&mut self.assembler).finish();
        if !self.finish_sent {
            out.push(self.meta.finish(completion.finish_reason));
        }
        if let Some(u) = self.meta.usage(&completion.usage) {
            out.push(u);
        }
        let counts = self
            .redactor
            .as_ref()
            .map(|r| r.counts().clone())
            .unwrap_or_default();
        Ok((completion, counts))
    }

    /// What was generated before a failure, for settling its cost.
    pub fn assembler(&self) -> &Assembler {
        &self.assembler
    }
}

/// Renders a whole delta stream as the client would receive it (no storage,
/// no keep-alives): the gateway's translation, for tests and benchmarks.
pub async fn render(mut deltas: DeltaStream, session: Session) -> Vec<u8> {
    let mut session = session;
    let mut body = session.start().to_vec();
    let mut out = Vec::new();
    while let Some(item) = deltas.next().await {
        let step = match item {
            Ok(d) => session
                .push(d, &mut out)
                .map_err(|b| ApiError::blocked(&b, BLOCKED_PARAM)),
            Err(e) => Err(ApiError::from(e)),
        };
        for b in out.drain(..) {
            body.extend_from_slice(&b);
        }
        if let Err(e) = step {
            body.extend_from_slice(&error_event(&e));
            return body;
        }
    }
    match session.end(&mut out) {
        Ok(_) => {
            for b in out.drain(..) {
                body.extend_from_slice(&b);
            }
            body.extend_from_slice(DONE);
        }
        Err(b) => body.extend_from_slice(&error_event(&ApiError::blocked(&b, BLOCKED_PARAM))),
    }
    body
}
