//! Stored responses of the Responses API: each is a turn of a conversation.
//! The record is only a pointer (which conversation, which life, which
//! slots), so deleting the conversation leaves no content behind in it; the
//! response's own fields ride on its answer message (`StoredMessage::response`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Where a stored response lives: a turn of one life of one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// The response's id (`resp_...`).
    pub id: String,
    /// The conversation the turn belongs to.
    pub conversation: String,
    /// The conversation's life the turn was written in.
    pub life: u64,
    /// The turn's first slot (its first input item).
    pub first_seq: u64,
    /// The first slot after the turn's input (the first model step).
    pub output_seq: u64,
    /// The turn's final answer's slot (the one carrying the response's fields).
    pub answer_seq: u64,
    /// The turn's last slot (tool results stored after the answer included).
    pub last_seq: u64,
    /// Unix seconds.
    pub created: i64,
    /// When the conversation's retention ends, as the turn set it.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl ResponseRecord {
    /// Whether the record may still be read at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// Stored responses. Keys begin with the tenant, so no lookup crosses tenants.
/// Records are written with their turn ([`super::TurnWrite::response`]).
#[async_trait]
pub trait ResponseStore: Send + Sync {
    /// One response of `tenant` (`None`: never stored, deleted, or expired).
    async fn get_response(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<ResponseRecord>, StoreError>;

    /// Forgets a response: `false` when there was none.
    async fn delete_response(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
}
