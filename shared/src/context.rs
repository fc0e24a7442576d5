//! The context manager: loads a conversation's stored messages in front of
//! a request's new ones, and stores the finished turn atomically.
//!
//! System prompt rule: a conversation keeps one system prompt (its system and
//! developer messages). A request that carries system/developer messages
//! replaces it for this turn and from then on; a request without keeps the
//! stored one. The system prompt always goes first upstream, then the stored
//! history, then the request's other messages; it is never stored as history.

use std::time::Duration;

use crate::provider::Completion;
use crate::store::{
    self, ConversationMeta, MAX_ITEM_BYTES, Store, StoreError, StoredMessage, TurnWrite,
};
use crate::wire::ChatMessage;

/// How many times a turn is re-read and re-tried after losing a race.
pub const MAX_WRITE_ATTEMPTS: u32 = 8;

/// A context failure.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The store failed or the turn kept losing races.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A new message would not fit in one stored item.
    #[error("{param} is too large to store")]
    MessageTooLarge {
        /// The message's field path.
        param: String,
        /// Its stored size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// A conversation turn in progress.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Conversation id.
    pub id: String,
    /// The header as read.
    meta: ConversationMeta,
    /// A replacement system prompt, if the request carried one.
    new_system: Option<Vec<ChatMessage>>,
    /// The request's non-system messages, to store before the answer.
    new_messages: Vec<ChatMessage>,
}

impl Turn {
    /// The request messages this turn will store, for the response processor.
    pub fn new_messages_mut(&mut self) -> &mut [ChatMessage] {
        &mut self.new_messages
    }

    /// A replacement system prompt this turn will store, if any.
    pub fn new_system_mut(&mut self) -> Option<&mut [ChatMessage]> {
        self.new_system.as_deref_mut()
    }
}

/// What to send upstream, and the turn to store afterwards (if any).
pub struct Prepared {
    /// The full prompt.
    pub prompt: Vec<ChatMessage>,
    /// Present when the request continues a stored conversation.
    pub turn: Option<Turn>,
}

/// Builds the prompt; with `conversation`, loads its history first.
pub async fn prepare(
    store: &dyn Store,
    tenant: &str,
    conversation: Option<&str>,
    messages: Vec<ChatMessage>,
    now: i64,
) -> Result<Prepared, ContextError> {
    let Some(id) = conversation else {
        return Ok(Prepared {
            prompt: messages,
            turn: None,
        });
    };
    // Check sizes before anything is spent on the provider.
    for (i, m) in messages.iter().enumerate() {
        let probe = StoredMessage {
            seq: 0,
            message: m.clone(),
            tokens: Some(0),
            created: now,
            model: None,
            expires_at: Some(now),
        };
        let bytes = store::message_item_bytes(tenant, id, &probe);
        if bytes > MAX_ITEM_BYTES {
            return Err(ContextError::MessageTooLarge {
                param: format!("messages[{i}]"),
                bytes,
                limit: MAX_ITEM_BYTES,
            });
        }
    }
    let conv = store.load_conversation(tenant, id, now).await?;
    let live = conv.meta.is_live(now);
    let (system, rest): (Vec<ChatMessage>, Vec<ChatMessage>) =
        messages.into_iter().partition(|m| m.role.is_instruction());
    let new_system = (!system.is_empty()).then_some(system);
    let stored_system = if live {
        conv.meta.system.clone()
    } else {
        Vec::new()
    };
    let mut prompt = Vec::with_capacity(conv.messages.len() + rest.len() + 2);
    prompt.extend(new_system.clone().unwrap_or(stored_system));
    prompt.extend(conv.messages.into_iter().map(|m| m.message));
    prompt.extend(rest.iter().cloned());
    Ok(Prepared {
        prompt,
        turn: Some(Turn {
            id: id.to_owned(),
            meta: conv.meta,
            new_system,
            new_messages: rest,
        }),
    })
}

fn turn_write(
    turn: &Turn,
    completion: &Completion,
    model: &str,
    retention: Option<i64>,
    now: i64,
) -> TurnWrite {
    let old = &turn.meta;
    let live = old.is_live(now);
    let expires_at = retention.map(|r| now + r);
    let mut seq = old.next_seq;
    let mut messages = Vec::with_capacity(turn.new_messages.len() + 1);
    for m in &turn.new_messages {
        messages.push(StoredMessage {
            seq,
            message: m.clone(),
            tokens: None,
            created: now,
            model: None,
            expires_at,
        });
        seq += 1;
    }
    messages.push(StoredMessage {
        seq,
        message: completion.message.clone(),
        tokens: Some(completion.usage.completion_tokens),
        created: now,
        model: Some(model.to_owned()),
        expires_at,
    });
    let system = match &turn.new_system {
        Some(s) => s.clone(),
        None if live => old.system.clone(),
        None => Vec::new(),
    };
    TurnWrite {
        expected_version: old.version,
        meta: ConversationMeta {
            version: old.version + 1,
            next_seq: seq + 1,
            turns: if live { old.turns + 1 } else { 1 },
            tokens: if live { old.tokens } else { 0 } + completion.usage.total_tokens,
            created: if live { old.created } else { now },
            updated: now,
            system,
            expires_at,
        },
        messages,
    }
}

/// Stores the turn (new messages + answer) with a version-conditioned write.
/// A lost race re-reads the header and appends at the new end, so turns never
/// interleave; after [`MAX_WRITE_ATTEMPTS`] the caller gets a conflict.
pub async fn commit(
    store: &dyn Store,
    tenant: &str,
    mut turn: Turn,
    completion: &Completion,
    model: &str,
    retention: Option<i64>,
    now: i64,
) -> Result<(), ContextError> {
    for attempt in 0..MAX_WRITE_ATTEMPTS {
        let write = turn_write(&turn, completion, model, retention, now);
        match store.append_turn(tenant, &turn.id, &write).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict) => {
                turn.meta = store
                    .conversation_meta(tenant, &turn.id)
                    .await?
                    .unwrap_or_default();
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Jittered exponential backoff so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 5u64 << attempt.min(5);
    let jitter = u64::from(crate::ids::random_bytes::<1>()[0]) % base.max(1);
    Duration::from_millis(base / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FinishReason, Role, Usage};

    fn completion(text: &str) -> Completion {
        Completion {
            message: ChatMessage::text(Role::Assistant, text),
            finish_reason: FinishReason::Stop,
            usage: Usage::new(10, 2),
        }
    }

    #[test]
    fn a_turn_appends_after_the_stored_messages() {
        let meta = ConversationMeta {
            version: 3,
            next_seq: 6,
            turns: 3,
            tokens: 50,
            created: 1,
            updated: 2,
            system: vec![],
            expires_at: None,
        };
        let turn = Turn {
            id: "c".into(),
            meta,
            new_system: None,
            new_messages: vec![ChatMessage::text(Role::User, "q")],
        };
        let w = turn_write(&turn, &completion("a"), "echo", Some(100), 10);
        assert_eq!(w.expected_version, 3);
        assert_eq!(w.meta.version, 4);
        assert_eq!(
            w.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert_eq!(w.meta.next_seq, 8);
        assert_eq!(w.meta.turns, 4);
        assert_eq!(w.meta.tokens, 62);
        assert_eq!(w.meta.expires_at, Some(110));
        assert_eq!(w.messages[1].tokens, Some(2));
    }

    #[test]
    fn an_expired_conversation_starts_over_without_reusing_slots() {
        let meta = ConversationMeta {
            version: 3,
            next_seq: 6,
            turns: 3,
            tokens: 50,
            created: 1,
            updated: 2,
            system: vec![ChatMessage::text(Role::System, "old")],
            expires_at: Some(5),
        };
        let turn = Turn {
            id: "c".into(),
            meta,
            new_system: None,
            new_messages: vec![],
        };
        let w = turn_write(&turn, &completion("a"), "echo", None, 10);
        assert_eq!(w.meta.turns, 1);
        assert_eq!(w.meta.tokens, 12);
        assert!(w.meta.system.is_empty());
        assert_eq!(w.messages[0].seq, 6);
    }
}
