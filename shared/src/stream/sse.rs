//! Upstream Server-Sent Events to [`Delta`]s: the SSE framing is parsed by
//! `eventsource-stream` (events split across network reads at any byte,
//! UTF-8 included), each event's meaning by a provider's [`Translator`].

use std::collections::VecDeque;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt, stream};

use super::{Delta, DeltaStream};
use crate::provider::ProviderError;

/// What a translator wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    More,
    /// The answer is complete; stop reading.
    Done,
}

/// The meaning of one provider's stream events.
pub trait Translator: Send + 'static {
    /// Handles one event (`event` is empty for unnamed events), appending deltas.
    fn event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<Delta>,
    ) -> Result<Step, ProviderError>;

    /// The upstream body ended before [`Step::Done`]: whether that is a complete answer.
    fn end(&mut self, out: &mut Vec<Delta>) -> Result<(), ProviderError>;
}

/// Translates an upstream SSE body into deltas. Reading stops at the first
/// error or once the translator is done, and the upstream body is dropped
/// with the returned stream (which cancels the request).
pub fn deltas<S, T>(provider: &str, body: S, translator: T) -> DeltaStream
where
    S: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
    T: Translator,
{
    let state = State {
        events: Box::pin(body.eventsource()),
        translator,
        queue: VecDeque::new(),
        error: None,
        finished: false,
        provider: provider.to_owned(),
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(d) = st.queue.pop_front() {
                return Some((Ok(d), st));
            }
            if let Some(e) = st.error.take() {
                return Some((Err(e), st));
            }
            if st.finished {
                return None;
            }
            let mut out = Vec::new();
            let step = match st.events.next().await {
                Some(Ok(ev)) => st.translator.event(&ev.event, &ev.data, &mut out),
                Some(Err(EventStreamError::Transport(e))) => Err(e),
                Some(Err(_)) => Err(ProviderError::BadResponse {
                    provider: st.provider.clone(),
                    detail: "malformed event stream".into(),
                }),
                None => st.translator.end(&mut out).map(|()| Step::Done),
            };
            // Deltas decoded before an error still go out first.
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

type Events<S> = std::pin::Pin<Box<eventsource_stream::EventStream<S>>>;

struct State<S, T> {
    events: Events<S>,
    translator: T,
    queue: VecDeque<Delta>,
    error: Option<ProviderError>,
    finished: bool,
    provider: String,
}
