//! The sweeper: DynamoDB's TTL removes an expired conversation's header;
//! this purges the messages that header numbered. It runs as its own Lambda
//! function on the table's stream (old images, filtered to TTL removals of
//! `META` items), so expired conversations leave nothing behind even when no
//! one ever touches them again. Purging is idempotent, so a retried batch is
//! harmless; a failure fails the batch and Lambda retries it.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::AppState;
use crate::store::{ConversationMeta, Store, StoreError, conversation_count_key};

/// A conversation header the stream reports removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its tenant.
    pub tenant: String,
    /// Its id.
    pub id: String,
    /// First message slot of its life.
    pub first_seq: u64,
    /// End of its message slots (exclusive).
    pub next_seq: u64,
    /// Whether it counted as a stored conversation (not a delete's tombstone).
    pub counted: bool,
}

/// The removed conversation headers in a DynamoDB stream event; other
/// records (inserts, messages, keys, counters) are skipped.
pub fn removed_heads(event: &Value) -> Vec<Removed> {
    let records = event["Records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    records
        .iter()
        .filter(|r| r["eventName"] == "REMOVE")
        .filter_map(|r| {
            let old = &r["dynamodb"]["OldImage"];
            if old["SK"]["S"] != "META" {
                return None;
            }
            let pk = old["PK"]["S"].as_str()?;
            let (tenant, id) = pk.strip_prefix("T#")?.split_once("#C#")?;
            let meta: ConversationMeta = serde_json::from_str(old["doc"]["S"].as_str()?).ok()?;
            Some(Removed {
                tenant: tenant.to_owned(),
                id: id.to_owned(),
                first_seq: meta.first_seq,
                next_seq: meta.next_seq,
                counted: !meta.is_tombstone(),
            })
        })
        .collect()
}

/// Purges the messages of every removed header in `event`.
pub async fn sweep(store: &dyn Store, event: &Value) -> Result<usize, StoreError> {
    let removed = removed_heads(event);
    for r in &removed {
        // A head removed by a client's DELETE numbered nothing left to purge.
        if r.next_seq > r.first_seq
            && let Err(e) = store
                .purge_messages(&r.tenant, &r.id, r.first_seq, r.next_seq)
                .await
        {
            // Named so an operator can finish the purge once the batch lands
            // in the failure queue (infra/README.md).
            tracing::error!(tenant = %r.tenant, conversation = %r.id, error = %e, "purge failed");
            return Err(e);
        }
        // An expired conversation leaves the tenant's count (a tombstone left it
        // when it was deleted). A retried batch may give back twice: the count
        // errs low, never locking a tenant out.
        if r.counted {
            store
                .counter_add(&conversation_count_key(&r.tenant), -1, None, None)
                .await?;
        }
    }
    Ok(removed.len())
}

/// Runs the sweeper as a Lambda function on the table's stream (concurrent
/// batches under `AWS_LAMBDA_MAX_CONCURRENCY`, as the HTTP functions are).
pub async fn run_lambda(state: Arc<AppState>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run_concurrent(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let state = state.clone();
            async move {
                let swept = sweep(&*state.store, &event.payload).await?;
                tracing::info!(conversations = swept, "swept expired conversations");
                Ok::<_, lambda_runtime::Error>(json!({ "swept": swept }))
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ttl_removed_heads_are_swept() {
        let doc = r#"{"version":4,"first_seq":6,"next_seq":14,"turns":4,"tokens":9,"created":1,"updated":2}"#;
        let event = json!({"Records": [
            {"eventName": "REMOVE", "dynamodb": {"OldImage": {
                "PK": {"S": "T#acme#C#trip-1"}, "SK": {"S": "META"}, "doc": {"S": doc}}}},
            {"eventName": "REMOVE", "dynamodb": {"OldImage": {
                "PK": {"S": "T#acme#C#trip-1"}, "SK": {"S": "M#000000000003"}}}},
            {"eventName": "MODIFY", "dynamodb": {"OldImage": {
                "PK": {"S": "T#acme#C#x"}, "SK": {"S": "META"}, "doc": {"S": doc}}}},
            {"eventName": "REMOVE", "dynamodb": {"OldImage": {
                "PK": {"S": "K#abc"}, "SK": {"S": "META"}}}}
        ]});
        assert_eq!(
            removed_heads(&event),
            vec![Removed {
                tenant: "acme".into(),
                id: "trip-1".into(),
                first_seq: 6,
                next_seq: 14,
                counted: true,
            }]
        );
        assert!(removed_heads(&json!({})).is_empty());
    }
}
