//! How messages are stored, versioned. Messages and system prompts are
//! stored as the provider-neutral [`model`](crate::model), format
//! [`MESSAGE_FORMAT`]; items written before it (OpenAI Chat messages and
//! usage, with no version) are read through the OpenAI Chat codec, so
//! conversations stored by earlier releases keep working on both stores.
//!
//! A stored message is written with its version `v` before the message
//! itself (the struct's field order), so a reader knows the format when it
//! reaches the message and parses it once, as that format: a message met
//! before any `v` is format 1. A system prompt is written as
//! `{"v": 2, "messages": [...]}`; format 1 wrote a bare list.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::{StoredMessage, TurnInfo};
use crate::model::{FinishReason, Message};
use crate::wire::openai_chat::{self, types};

/// The format version written with every stored message: the model.
pub const MESSAGE_FORMAT: u32 = 2;

/// Answer metadata as format 1 wrote it: usage in OpenAI's terms.
#[derive(Deserialize)]
struct LegacyTurn {
    provider: String,
    // OpenAI's names (`stop`, `length`, `tool_calls`, `content_filter`),
    // which the model's reasons read as they are.
    finish_reason: Option<FinishReason>,
    usage: types::Usage,
    latency_ms: u64,
    #[serde(default)]
    redactions: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
}

impl From<LegacyTurn> for TurnInfo {
    fn from(t: LegacyTurn) -> Self {
        TurnInfo {
            provider: t.provider,
            finish_reason: t.finish_reason,
            usage: openai_chat::decode_usage(&t.usage),
            latency_ms: t.latency_ms,
            redactions: t.redactions,
        }
    }
}

impl<'de> Deserialize<'de> for StoredMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = StoredMessage;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stored message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StoredMessage, A::Error> {
        let mut version: Option<u32> = None;
        let (mut seq, mut message, mut tokens, mut created, mut model, mut turn) =
            (None, None, None, None, None, None);
        let (mut tool, mut response) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            let modern = version.is_some_and(|v| v >= MESSAGE_FORMAT);
            match key.as_str() {
                "seq" => seq = Some(map.next_value()?),
                "v" => version = Some(map.next_value()?),
                "message" if modern => message = Some(map.next_value::<Message>()?),
                "message" => {
                    // Through a tree: request bodies are parsed that way
                    // already, so the OpenAI types' parser is not compiled
                    // twice for items only old conversations hold.
                    let tree: serde_json::Value = map.next_value()?;
                    let legacy: types::ChatMessage =
                        serde_json::from_value(tree).map_err(de::Error::custom)?;
                    message = Some(openai_chat::decode_message(&legacy));
                }
                "tokens" => tokens = map.next_value()?,
                "created" => created = Some(map.next_value()?),
                "model" => model = map.next_value()?,
                "turn" if modern => turn = map.next_value::<Option<TurnInfo>>()?,
                "turn" => turn = map.next_value::<Option<LegacyTurn>>()?.map(TurnInfo::from),
                "tool" => tool = map.next_value()?,
                "response" => response = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(StoredMessage {
            seq: seq.ok_or_else(|| de::Error::missing_field("seq"))?,
            format: MESSAGE_FORMAT,
            message: message.ok_or_else(|| de::Error::missing_field("message"))?,
            tokens,
            created: created.ok_or_else(|| de::Error::missing_field("created"))?,
            model,
            turn,
            tool,
            response,
        })
    }
}

/// A system prompt as stored: `{"v": 2, "messages": [...]}`.
pub struct SystemPrompt<'a>(pub &'a [Message]);

impl Serialize for SystemPrompt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("v", &MESSAGE_FORMAT)?;
        m.serialize_entry("messages", self.0)?;
        m.end()
    }
}

/// Writes a system prompt as [`SystemPrompt`] (for `serialize_with`).
pub fn serialize_system<S: Serializer>(msgs: &[Message], s: S) -> Result<S::Ok, S::Error> {
    SystemPrompt(msgs).serialize(s)
}

/// Reads a stored system prompt of either format.
pub fn system<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Message>, D::Error> {
    d.deserialize_any(SystemVisitor)
}

struct SystemVisitor;

impl<'de> Visitor<'de> for SystemVisitor {
    type Value = Vec<Message>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stored system prompt")
    }

    /// Format 1: a bare list of OpenAI Chat messages (read through a tree,
    /// as format-1 messages are).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Message>, A::Error> {
        let mut out = Vec::new();
        while let Some(tree) = seq.next_element::<serde_json::Value>()? {
            let m: types::ChatMessage = serde_json::from_value(tree).map_err(de::Error::custom)?;
            out.push(openai_chat::decode_message(&m));
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Message>, A::Error> {
        let mut messages = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "messages" => messages = Some(map.next_value::<Vec<Message>>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        messages.ok_or_else(|| de::Error::missing_field("messages"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Block, Role, ToolCall};

    // Issue 13, point 4: a message stored as the model reads back as it was;
    // one stored before it (no `v`) reads through the OpenAI codec.
    #[test]
    fn both_formats_read() {
        let mut m = StoredMessage::new(3, Message::text(Role::Assistant, "hi"), 7);
        m.message.content.push(Block::ToolCall(ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "{}".into(),
            cache: None,
        }));
        m.turn = Some(TurnInfo {
            provider: "p".into(),
            finish_reason: Some(FinishReason::ToolCalls),
            usage: crate::model::Usage::new(5, 2).with_details(1, 0),
            latency_ms: 9,
            redactions: Default::default(),
        });
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.starts_with(r#"{"seq":3,"v":2,"message":"#), "{text}");
        assert_eq!(serde_json::from_str::<StoredMessage>(&text).unwrap(), m);

        let legacy = json!({"seq": 3, "message": {"role": "assistant", "content": "hi",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "tokens": null, "created": 7, "model": null,
            "turn": {"provider": "p", "finish_reason": "tool_calls", "latency_ms": 9,
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 1}}}});
        let read: StoredMessage = serde_json::from_str(&legacy.to_string()).unwrap();
        assert_eq!(read, m);
    }

    // Issue 13, point 4: a system prompt of either format.
    #[test]
    fn system_prompts_of_both_formats_read() {
        #[derive(Serialize, Deserialize)]
        struct Holder {
            #[serde(serialize_with = "serialize_system", deserialize_with = "system")]
            system: Vec<Message>,
        }
        let msgs = vec![
            Message::text(Role::System, "be brief"),
            Message::text(Role::Developer, "and kind"),
        ];
        let text = serde_json::to_string(&Holder {
            system: msgs.clone(),
        })
        .unwrap();
        assert!(
            text.starts_with(r#"{"system":{"v":2,"messages":["#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Holder>(&text).unwrap().system, msgs);
        let legacy = r#"{"system":[{"role":"system","content":"be brief"},
            {"role":"developer","content":[{"type":"text","text":"and kind"}]}]}"#;
        let read = serde_json::from_str::<Holder>(legacy).unwrap().system;
        assert_eq!(read[0], msgs[0]);
        assert_eq!(read[1].text_content(), "and kind");
    }
}
