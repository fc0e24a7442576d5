//! Idempotency-Key records: claims, completed responses, replays.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A completed idempotent request, stored with its response.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyDone {
    /// The client's key.
    pub key: String,
    /// The claim token the request holds.
    pub token: String,
    /// The response to replay.
    pub response: StoredResponse,
    /// When the record may be forgotten.
    pub expires_at: i64,
}

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers worth replaying (conversation id, redaction counts).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
    /// The conversation (id, life) the response's turn was stored in: a
    /// replay is refused once that life is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<(String, u64)>,
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// The caller now owns the key; it must complete or release it.
    Acquired,
    /// A request with the same body already completed: its response.
    Replay(StoredResponse),
    /// A request with the same key and body is still running.
    InProgress,
    /// The key was used with a different body.
    Mismatch,
}

/// An idempotency claim to make.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest<'a> {
    /// The client's key.
    pub key: &'a str,
    /// Hash of what the request does (route and body).
    pub fingerprint: &'a str,
    /// A random token naming this attempt.
    pub token: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// Until when the claim is held before another attempt may take it over.
    pub lease_until: i64,
    /// When the record may be forgotten.
    pub expires_at: i64,
}

/// Largest response body kept for an idempotent replay (one item); a larger
/// one is replaced by [`unreplayable`].
pub const MAX_REPLAY_BYTES: usize = 300_000;

/// The response kept for replay: itself, or a fixed 409 naming the
/// conversation when it is too large to keep (the turn is stored; the client
/// reads the answer there instead of paying for it twice).
pub fn unreplayable(r: &StoredResponse) -> StoredResponse {
    if r.body.len() <= MAX_REPLAY_BYTES {
        return r.clone();
    }
    let body = serde_json::json!({"error": {
        "message": "this request completed, but its response was too large to keep for replay; read the conversation instead",
        "type": "invalid_request_error",
        "param": "Idempotency-Key",
        "code": "idempotent_response_too_large",
    }});
    StoredResponse {
        status: 409,
        headers: r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-conversation-id"))
            .cloned()
            .collect(),
        body: body.to_string(),
        conversation: r.conversation.clone(),
    }
}

/// The idempotency record as both stores keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of route and body.
    pub fingerprint: String,
    /// The attempt holding the claim.
    pub token: String,
    /// Until when the claim is held.
    pub lease_until: i64,
    /// When the record may be forgotten.
    pub expires_at: i64,
    /// The response, once the request completed.
    #[serde(default)]
    pub response: Option<StoredResponse>,
}

impl IdempotencyRecord {
    /// What a new claim meets when this record is stored (`None`: it may take it).
    pub fn claim_outcome(&self, req: &IdempotencyRequest<'_>) -> Option<IdempotencyClaim> {
        if self.expires_at <= req.now {
            return None;
        }
        if self.fingerprint != req.fingerprint {
            return Some(IdempotencyClaim::Mismatch);
        }
        match &self.response {
            Some(r) => Some(IdempotencyClaim::Replay(r.clone())),
            // A claim whose lease ran out belongs to an attempt that died.
            None if self.lease_until <= req.now => None,
            None => Some(IdempotencyClaim::InProgress),
        }
    }

    /// A fresh claim.
    pub fn claim(req: &IdempotencyRequest<'_>) -> Self {
        Self {
            fingerprint: req.fingerprint.to_owned(),
            token: req.token.to_owned(),
            lease_until: req.lease_until,
            expires_at: req.expires_at,
            response: None,
        }
    }
}

/// Idempotency-Key claims: claim, complete, release.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims an idempotency key, or reports what an earlier request left.
    async fn idempotency_claim(
        &self,
        tenant: &str,
        req: &IdempotencyRequest<'_>,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the response of a claimed key (requests that store no turn).
    async fn idempotency_complete(
        &self,
        tenant: &str,
        done: &IdempotencyDone,
    ) -> Result<(), StoreError>;

    /// Gives a claimed key up (the request failed), so a retry can run.
    async fn idempotency_release(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_replays_become_a_fixed_409() {
        let small = StoredResponse {
            status: 200,
            headers: vec![("x-conversation-id".into(), "c".into())],
            body: "{}".into(),
            conversation: Some(("c".into(), 3)),
        };
        assert_eq!(unreplayable(&small), small);
        let big = StoredResponse {
            body: "x".repeat(MAX_REPLAY_BYTES + 1),
            headers: vec![
                ("x-conversation-id".into(), "c".into()),
                ("content-type".into(), "text/event-stream".into()),
            ],
            ..small.clone()
        };
        let kept = unreplayable(&big);
        assert_eq!(kept.status, 409);
        assert!(kept.body.contains("idempotent_response_too_large"));
        assert_eq!(kept.headers, small.headers);
        assert_eq!(kept.conversation, small.conversation);
    }
}
