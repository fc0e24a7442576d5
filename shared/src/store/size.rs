//! Item sizes and counts, shared by both stores so that they refuse the same things.

use super::{ConversationMeta, MAX_ITEM_BYTES, StoreError, StoredMessage, TurnWrite};
use crate::model::Message;

/// Bytes a message occupies as a DynamoDB item (names + values), used by both
/// stores so that they refuse the same things.
pub fn message_item_bytes(tenant: &str, id: &str, msg: &StoredMessage) -> usize {
    let json = serde_json::to_vec(msg)
        .map(|v| v.len())
        .unwrap_or(usize::MAX / 2);
    // PK, SK and attribute names around the JSON document.
    tenant.len() + id.len() + 64 + json
}

/// Bytes of a conversation header item.
pub fn meta_item_bytes(tenant: &str, id: &str, meta: &ConversationMeta) -> usize {
    let json = serde_json::to_vec(meta)
        .map(|v| v.len())
        .unwrap_or(usize::MAX / 2);
    // PK, SK, the listing index keys and attribute names.
    2 * (tenant.len() + id.len()) + 160 + json
}

/// Bytes of a message document one DynamoDB item carries; a larger message
/// is split across items (see [`split_parts`]), so no answer a provider can
/// produce is refused for its size after it was paid for.
pub const PART_BYTES: usize = 350_000;

/// Items one DynamoDB transaction may hold.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Items of a turn besides its messages: header, conversation count, two
/// usage rows (answer and summary), idempotency record, Responses API record.
pub const TURN_OVERHEAD_ITEMS: usize = 6;

/// `text` cut into pieces of at most `max` bytes, on character boundaries.
pub fn split_parts(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

/// Items a message takes on DynamoDB (one per [`PART_BYTES`] of its document).
pub fn message_items_count(msg: &StoredMessage) -> usize {
    let json = serde_json::to_vec(msg).map(|v| v.len()).unwrap_or(0);
    json.div_ceil(PART_BYTES).max(1)
}

/// Items a request message will take once stored: its JSON plus the stored
/// message's own fields (seq, tokens, created), counted without copying it.
pub fn request_message_items(msg: &Message) -> usize {
    /// More than `{"seq":..,"v":2,"message":,"tokens":..,"created":..,"model":null}` takes.
    const STORED_FIELDS: usize = 128;
    let mut counter = ByteCount(0);
    let json = serde_json::to_writer(&mut counter, msg).map_or(usize::MAX / 2, |()| counter.0);
    (json + STORED_FIELDS).div_ceil(PART_BYTES).max(1)
}

/// A writer that only counts bytes.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuses a turn that cannot be stored: a header over the item limit (the
/// header is never split), or more items than one transaction holds. Callers
/// check both before the provider is called (see `context::prepare`).
pub fn check_turn_size(tenant: &str, id: &str, turn: &TurnWrite) -> Result<(), StoreError> {
    let meta = meta_item_bytes(tenant, id, &turn.meta);
    if meta > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge {
            what: "the conversation header (system prompt, summary, metadata)",
            bytes: meta,
            limit: MAX_ITEM_BYTES,
        });
    }
    let items = 1
        + turn.messages.iter().map(message_items_count).sum::<usize>()
        + turn.usage.len()
        + usize::from(turn.idempotency.is_some())
        + usize::from(turn.creates)
        + usize::from(turn.response.is_some());
    if items > MAX_TRANSACTION_ITEMS {
        return Err(StoreError::TooLarge {
            what: "the turn (items of one transaction)",
            bytes: items,
            limit: MAX_TRANSACTION_ITEMS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    #[test]
    fn parts_cut_on_character_boundaries_and_rejoin() {
        let text = "aé€𝄞".repeat(1000);
        for max in [4, 5, 7, 100, 4096] {
            let parts = split_parts(&text, max);
            assert!(parts.iter().all(|p| p.len() <= max && !p.is_empty()));
            assert_eq!(parts.concat(), text);
        }
        assert_eq!(split_parts("", 10), [""]);
    }

    #[test]
    fn a_request_message_is_counted_as_it_will_be_stored() {
        for len in [0, 10, PART_BYTES - 200, PART_BYTES, 3 * PART_BYTES] {
            let m = Message::text(Role::User, "x".repeat(len));
            let stored = message_items_count(&StoredMessage {
                tokens: Some(u64::MAX),
                ..StoredMessage::new(u64::MAX, m.clone(), i64::MAX)
            });
            assert!(request_message_items(&m) >= stored, "{len}");
        }
    }
}
