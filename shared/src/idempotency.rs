//! Idempotent retries: a request carrying an `Idempotency-Key` header is
//! run once per tenant and key. A repeat with the same body gets the stored
//! response (without calling the provider or storing anything again); a repeat
//! with another body is a 422; a repeat while the first is still running is a
//! 409. Records are kept 24 hours. Only successes are kept: a failed request
//! gives its claim back, so retrying it runs it again.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::ApiError;
use crate::store::{
    ConversationStore, IdempotencyClaim, IdempotencyRequest, IdempotencyStore, StoredResponse,
};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The header marking a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a completed request is remembered.
pub const KEEP_SECS: i64 = 24 * 3600;
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;

/// A claim this request holds on its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The client's key.
    pub key: String,
    /// This attempt's token.
    pub token: String,
}

/// What the request should do.
pub enum Begin {
    /// Run it, then complete or release the claim.
    Run(Claim),
    /// Send this stored response (after [`check_replay`]).
    Replay(StoredResponse),
}

/// The key from the headers: 1-255 visible ASCII characters, or none.
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid(
            "Idempotency-Key",
            format!("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"),
        )
    };
    let key = v.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// What a request does: its route, the headers that change its meaning (the
/// conversation it continues), and its exact body, hashed.
pub fn fingerprint(route: &str, headers: &HeaderMap, meaningful: &[&str], body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    for name in meaningful {
        h.update([0]);
        if let Some(v) = headers.get(*name) {
            h.update([1]);
            h.update(v.as_bytes());
        }
    }
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// Claims `key` for a request, or answers from what an earlier one left.
/// `lease_secs` bounds how long a claim blocks repeats if its holder dies.
pub async fn begin(
    store: &dyn IdempotencyStore,
    tenant: &str,
    key: String,
    fingerprint: &str,
    now: i64,
    lease_secs: i64,
) -> Result<Begin, ApiError> {
    let token = crate::ids::random_token::<16>("");
    let req = IdempotencyRequest {
        key: &key,
        fingerprint,
        token: &token,
        now,
        lease_until: now + lease_secs,
        expires_at: now + KEEP_SECS,
    };
    match store.idempotency_claim(tenant, &req).await? {
        IdempotencyClaim::Acquired => Ok(Begin::Run(Claim { key, token })),
        IdempotencyClaim::Replay(stored) => Ok(Begin::Replay(stored)),
        IdempotencyClaim::InProgress => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still in progress; retry later",
            )
            .with_param("Idempotency-Key");
            e.retry_after = Some("1".into());
            Err(e)
        }
        IdempotencyClaim::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
        .with_param("Idempotency-Key")),
    }
}

/// Gives a claimed key back, so a retry runs (failures are not remembered).
pub async fn release(store: &dyn IdempotencyStore, tenant: &str, claim: &Claim) {
    if let Err(e) = store
        .idempotency_release(tenant, &claim.key, &claim.token)
        .await
    {
        tracing::warn!(error = %e, "could not release an idempotency key");
    }
}

/// The response kept for replay: status, body and the headers that matter.
pub fn keep(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    names: &[&str],
) -> StoredResponse {
    StoredResponse {
        status: status.as_u16(),
        headers: names
            .iter()
            .filter_map(|n| {
                let v = headers.get(*n)?.to_str().ok()?;
                Some((n.to_string(), v.to_owned()))
            })
            .collect(),
        body: String::from_utf8_lossy(body).into_owned(),
        conversation: None,
    }
}

/// Refuses the replay of a turn whose conversation life is gone (deleted,
/// or expired and started over): a 409, so the client knows the answer it
/// asks for no longer exists rather than getting it back from deleted data.
pub async fn check_replay(
    store: &dyn ConversationStore,
    tenant: &str,
    stored: &StoredResponse,
    now: i64,
) -> Result<(), ApiError> {
    let Some((id, life)) = &stored.conversation else {
        return Ok(());
    };
    let meta = store.conversation_meta(tenant, id).await?;
    if meta.is_some_and(|m| m.is_live(now) && m.life == *life) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "invalid_request_error",
        "conversation_deleted",
        "the conversation this request was stored in has been deleted since; its answer is not replayed",
    )
    .with_param("Idempotency-Key"))
}

/// A stored response, marked as replayed.
pub fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, stored.body).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in stored.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(k, v);
        }
    }
    h.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii() {
        let mut h = HeaderMap::new();
        assert_eq!(key_from(&h).unwrap(), None);
        h.insert(HEADER, HeaderValue::from_static("order-42/retry#1"));
        assert_eq!(key_from(&h).unwrap().as_deref(), Some("order-42/retry#1"));
        h.insert(HEADER, HeaderValue::from_static("has space"));
        assert_eq!(
            key_from(&h).unwrap_err().param.as_deref(),
            Some("Idempotency-Key")
        );
        h.insert(HEADER, HeaderValue::from_str(&"k".repeat(256)).unwrap());
        assert!(key_from(&h).is_err());
    }

    #[test]
    fn fingerprints_bind_route_headers_and_body() {
        let none = HeaderMap::new();
        let mut conv = HeaderMap::new();
        conv.insert("x-conversation-id", HeaderValue::from_static("c1"));
        let h = ["x-conversation-id"];
        let a = fingerprint("/v1/chat/completions", &none, &h, b"{}");
        assert_eq!(a, fingerprint("/v1/chat/completions", &none, &h, b"{}"));
        assert_ne!(a, fingerprint("/v1/chat/completions", &none, &h, b"{ }"));
        assert_ne!(a, fingerprint("/v1/other", &none, &h, b"{}"));
        assert_ne!(a, fingerprint("/v1/chat/completions", &conv, &h, b"{}"));
        let mut empty = HeaderMap::new();
        empty.insert("x-conversation-id", HeaderValue::from_static(""));
        assert_ne!(a, fingerprint("/v1/chat/completions", &empty, &h, b"{}"));
    }
}
