//! Upstream Server-Sent Events to model events: the SSE framing is parsed by
//! `eventsource-stream` (events split across network reads at any byte,
//! UTF-8 included), each event's meaning by the provider's stream decoder.

use std::collections::VecDeque;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt, stream};

use super::{EventStream, ProviderError};
use crate::model::Event;
use crate::wire::{DecodeError, Step, StreamDecoder};

/// Decodes an upstream SSE body into model events. Reading stops at the
/// first error or once the decoder is done, and the upstream body is dropped
/// with the returned stream (which cancels the request).
pub fn events<S, D>(provider: &str, body: S, decoder: D) -> EventStream
where
    S: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
    D: StreamDecoder,
{
    let state = State {
        events: Box::pin(body.eventsource()),
        decoder,
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
                Some(Ok(ev)) => st
                    .decoder
                    .event(&ev.event, &ev.data, &mut out)
                    .map_err(|e| decode_error(&st.provider, e)),
                Some(Err(EventStreamError::Transport(e))) => Err(e),
                Some(Err(_)) => Err(ProviderError::BadResponse {
                    provider: st.provider.clone(),
                    detail: "malformed event stream".into(),
                }),
                None => st
                    .decoder
                    .end(&mut out)
                    .map(|()| Step::Done)
                    .map_err(|e| decode_error(&st.provider, e)),
            };
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

/// A decoder's failure as a provider failure.
pub fn decode_error(provider: &str, e: DecodeError) -> ProviderError {
    match e {
        DecodeError::Malformed(detail) => ProviderError::BadResponse {
            provider: provider.to_owned(),
            detail,
        },
        DecodeError::Reported(kind) => ProviderError::Stream {
            provider: provider.to_owned(),
            kind,
        },
    }
}

type Events<S> = std::pin::Pin<Box<eventsource_stream::EventStream<S>>>;

struct State<S, D> {
    events: Events<S>,
    decoder: D,
    queue: VecDeque<Event>,
    error: Option<ProviderError>,
    finished: bool,
    provider: String,
}
