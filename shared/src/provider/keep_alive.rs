//! Marks long upstream silences so the client side can send SSE keep-alive
//! comments; proxies and clients otherwise drop an idle connection.

use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};

use super::{EventStream, ProviderError};
use crate::model::Event;

/// How long the upstream may stay silent before a keep-alive goes out.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// One step of a stream watched for silences.
#[derive(Debug)]
pub enum Beat {
    /// The upstream sent something.
    Item(Result<Event, ProviderError>),
    /// Nothing arrived for a whole interval.
    Silence,
}

/// `events`, with a [`Beat::Silence`] after every `every` without an item;
/// after `give_up` of silence it ends with a timeout error (and drops the
/// upstream), since a stream has no overall deadline short enough to do it.
pub fn watch(
    events: EventStream,
    every: Duration,
    give_up: Duration,
    provider: String,
) -> impl Stream<Item = Beat> + Send {
    let state = Some((events, Duration::ZERO));
    stream::unfold(state, move |state| {
        let provider = provider.clone();
        async move {
            let (mut events, silent) = state?;
            let wait = every.min(give_up.saturating_sub(silent));
            match tokio::time::timeout(wait, events.next()).await {
                Ok(Some(item)) => Some((Beat::Item(item), Some((events, Duration::ZERO)))),
                Ok(None) => None,
                Err(_) if silent + wait >= give_up => {
                    Some((Beat::Item(Err(ProviderError::Timeout { provider })), None))
                }
                Err(_) => Some((Beat::Silence, Some((events, silent + wait)))),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Short real intervals; the assertions are on the order of beats, not on time.
    const TICK: Duration = Duration::from_millis(10);

    #[tokio::test]
    async fn silence_is_reported_then_items_flow() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let upstream: EventStream = Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|d| (Ok(d), rx))
        }));
        let mut beats = Box::pin(watch(upstream, TICK, Duration::from_secs(3600), "p".into()));
        assert!(matches!(beats.next().await, Some(Beat::Silence)));
        // Queued before the next wait starts, so it is what comes next.
        tx.send(Event::Usage(Default::default())).unwrap();
        assert!(matches!(
            beats.next().await,
            Some(Beat::Item(Ok(Event::Usage(_))))
        ));
        drop(tx);
        assert!(beats.next().await.is_none());
    }

    #[tokio::test]
    async fn a_silent_upstream_times_out_and_is_dropped() {
        let silent: EventStream = Box::pin(stream::pending());
        let beats: Vec<Beat> = watch(silent, TICK, 3 * TICK, "p".into()).collect().await;
        assert_eq!(beats.len(), 3, "{beats:?}");
        assert!(beats[..2].iter().all(|b| matches!(b, Beat::Silence)));
        assert!(matches!(
            &beats[2],
            Beat::Item(Err(ProviderError::Timeout { provider })) if provider == "p"
        ));
    }
}
