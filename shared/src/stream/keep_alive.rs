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

/// `deltas`, with a [`Beat::Silence`] after every `every` without an item.
pub fn watch(deltas: DeltaStream, every: Duration) -> impl Stream<Item = Beat> + Send {
    stream::unfold(deltas, move |mut deltas| async move {
        match tokio::time::timeout(every, deltas.next()).await {
            Ok(Some(item)) => Some((Beat::Item(item), deltas)),
            Ok(None) => None,
            Err(_) => Some((Beat::Silence, deltas)),
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
        let beats: Vec<Beat> = watch(slow, INTERVAL).collect().await;
        assert!(matches!(beats[0], Beat::Silence));
        assert!(matches!(beats[1], Beat::Silence));
        assert!(matches!(&beats[2], Beat::Item(Ok(Delta::Text(t))) if t == "late"));
        assert_eq!(beats.len(), 3);
    }
}
