//! How messages are stored, versioned. Messages and system prompts are
//! stored as the provider-neutral [`model`](crate::model), format
//! [`MESSAGE_FORMAT`]; items written before it (no `v`, OpenAI Chat
//! messages and usage) are read through the OpenAI Chat codec, so
//! conversations stored by earlier releases keep working on both stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{StoredMessage, TurnInfo};
use crate::model::{FinishReason, Message, Usage};
use crate::wire::openai_chat::{self, types};

/// The format version written with every stored message: the model.
pub const MESSAGE_FORMAT: u32 = 2;

/// A stored message as read, before its format is known.
#[derive(Deserialize)]
pub(super) struct MessageDoc {
    seq: u64,
    #[serde(default)]
    v: u32,
    message: Value,
    #[serde(default)]
    tokens: Option<u64>,
    created: i64,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    turn: Option<TurnDoc>,
}

#[derive(Deserialize)]
struct TurnDoc {
    provider: String,
    // Format 1 wrote OpenAI's names (`stop`, `length`, `tool_calls`,
    // `content_filter`), which the model's reasons read as they are.
    finish_reason: Option<FinishReason>,
    usage: Value,
    latency_ms: u64,
    #[serde(default)]
    redactions: BTreeMap<String, BTreeMap<String, u32>>,
}

/// A message of format `v`.
fn message(v: u32, value: Value) -> Result<Message, serde_json::Error> {
    if v >= MESSAGE_FORMAT {
        return serde_json::from_value(value);
    }
    let legacy: types::ChatMessage = serde_json::from_value(value)?;
    Ok(openai_chat::decode_message(&legacy))
}

/// Usage of format `v`.
fn usage(v: u32, value: Value) -> Result<Usage, serde_json::Error> {
    if v >= MESSAGE_FORMAT {
        return serde_json::from_value(value);
    }
    let legacy: types::Usage = serde_json::from_value(value)?;
    Ok(openai_chat::decode_usage(&legacy))
}

impl TryFrom<MessageDoc> for StoredMessage {
    type Error = serde_json::Error;

    fn try_from(d: MessageDoc) -> Result<Self, Self::Error> {
        let turn = match d.turn {
            None => None,
            Some(t) => Some(TurnInfo {
                provider: t.provider,
                finish_reason: t.finish_reason,
                usage: usage(d.v, t.usage)?,
                latency_ms: t.latency_ms,
                redactions: t.redactions,
            }),
        };
        Ok(StoredMessage {
            seq: d.seq,
            format: MESSAGE_FORMAT,
            message: message(d.v, d.message)?,
            tokens: d.tokens,
            created: d.created,
            model: d.model,
            turn,
        })
    }
}

/// A stored system prompt: model messages, or (written before the model)
/// OpenAI Chat messages. A model message always has its content as blocks;
/// an OpenAI one whose content is a string or has parts the model does not
/// know is read through the codec.
pub fn system<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Message>, D::Error> {
    let values = Vec::<Value>::deserialize(d)?;
    values
        .into_iter()
        .map(|v| {
            let modern = v
                .get("content")
                .is_none_or(|c| c.is_array())
                .then(|| serde_json::from_value::<Message>(v.clone()).ok())
                .flatten();
            match modern {
                Some(m) => Ok(m),
                None => message(1, v),
            }
        })
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}
