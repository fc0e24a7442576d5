//! Opaque page cursors: a small JSON value in base64url, carrying a tag that
//! binds it to whose pages it walks (a tenant, a conversation), so a cursor
//! never opens another's.

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use std::collections::HashMap;

use crate::ApiError;

/// A page's `limit` from the query: `default` when absent, else 1 to `max`.
pub fn page_limit(
    q: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", format!("'limit' must be an integer 1..={max}"))
            }),
    }
}

/// The tag of a cursor of `domain` over `scope` (tenant, then any narrower
/// parts): a hash, so the cursor shows neither.
pub fn tag(domain: &str, scope: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    for part in scope {
        h.update([0]);
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

/// A cursor's text.
pub fn encode<T: Serialize>(cursor: &T) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// A cursor read back; the caller checks its tag (and its position).
pub fn decode<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// The error of any cursor that is not one this API issued for this caller.
pub fn invalid() -> ApiError {
    ApiError::invalid(
        "cursor",
        "invalid cursor: pass the next_cursor of a previous page",
    )
}
