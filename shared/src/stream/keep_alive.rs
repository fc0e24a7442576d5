//! Marks long upstream silences so the client side can send SSE keep-alive
//! comments; proxies and clients otherwise drop an idle connection.

use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};

use super::{Delta, DeltaStream};
use crate::provider::ProviderError;

/// How long the upstream may stay silent before a keep-alive goes out.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// One step of a stream watched for silences.
#[derive(Debug)]
pub enum Beat {
    /// The upstream sent something.
    Item(Result<Delta, ProviderError>),
    /// Nothing arrived for a whole interval.
    Silence,
}

/// `deltas`, with a [`Beat::Silence`] after every `every` without an item;
/// after `give_up` of silence it ends with a timeout error (and drops the
/// upstream), since a stream has no overall deadline short enough to do it.
pub fn watch(
    deltas: DeltaStream,
    every: Duration,
    give_up: Duration,
    provider: String,
) -> impl Stream<Item = Beat> + Send {
    let state = Some((deltas, Duration::ZERO));
    stream::unfold(state, move |state| {
        let provider = provider.clone();
        async move {
            let (mut deltas, silent) = state?;
            let wait = every.min(give_up.saturating_sub(silent));
            match tokio::time::timeout(wait, deltas.next()).await {
                Ok(Some(item)) => Some((Beat::Item(item), Some((deltas, Duration::ZERO)))),
                Ok(None) => None,
                Err(_) if silent + wait >= give_up => {
                    Some((Beat::Item(Err(ProviderError::Timeout { provider })), None))
                }
                Err(_) => Some((Beat::Silence, Some((deltas, silent + wait)))),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_is_reported_then_items_flow() {
        let slow: DeltaStream = Box::pin(stream::once(async {
            tokio::time::sleep(Duration::from_secs(40)).await;
            Ok(Delta::Text("late".into()))
        }));
        let beats: Vec<Beat> = watch(slow, INTERVAL, Duration::from_secs(60), "p".into())
            .collect()
            .await;
        assert!(matches!(beats[0], Beat::Silence));
        assert!(matches!(beats[1], Beat::Silence));
        assert!(matches!(&beats[2], Beat::Item(Ok(Delta::Text(t))) if t == "late"));
        assert_eq!(beats.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_times_out_and_is_dropped() {
        let silent: DeltaStream = Box::pin(stream::pending());
        let beats: Vec<Beat> = watch(silent, INTERVAL, Duration::from_secs(40), "p".into())
            .collect()
            .await;
        assert_eq!(beats.len(), 4, "{beats:?}");
        assert!(beats[..3].iter().all(|b| matches!(b, Beat::Silence)));
        assert!(matches!(
            &beats[3],
            Beat::Item(Err(ProviderError::Timeout { provider })) if provider == "p"
        ));
    }
}
