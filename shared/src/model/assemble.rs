//! Builds a complete answer from its events: the non-streamed answer is the
//! streamed one assembled, so both are stored and billed alike.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    Block, BlockDelta, BlockStart, Event, FinishReason, Message, Opaque, Response, Role, ToolCall,
    Usage,
};

/// A block being assembled.
#[derive(Debug)]
enum Partial {
    Text(String, Vec<Value>),
    Call(ToolCall),
    Reasoning(String, Option<String>),
    Encrypted(String),
    Refusal(String),
    /// A block of one format kept whole, and the input JSON streamed into
    /// it (a server tool's `input_json_delta`s).
    Opaque(Opaque, String),
}

/// Accumulates events into a [`Response`].
#[derive(Debug, Default)]
pub struct Assembler {
    id: Option<String>,
    model: Option<String>,
    blocks: BTreeMap<u32, Partial>,
    finish: Option<(FinishReason, Option<String>)>,
    usage: Option<Usage>,
    canonical_arguments: bool,
}

impl Assembler {
    /// An empty assembler. With `canonical_arguments`, tool arguments are
    /// re-serialised compactly at the end, as a provider that sends parsed
    /// arguments in its whole answers (Anthropic's `input`) produces them.
    pub fn new(canonical_arguments: bool) -> Self {
        Self {
            canonical_arguments,
            ..Self::default()
        }
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) {
        match event {
            Event::Start { id, model } => {
                self.id = self.id.take().or_else(|| id.clone());
                self.model = self.model.take().or_else(|| model.clone());
            }
            Event::BlockStart { index, block } => {
                let p = match block {
                    BlockStart::Text => Partial::Text(String::new(), Vec::new()),
                    BlockStart::ToolCall { id, name } => Partial::Call(ToolCall {
                        id: id.clone(),
                        name: name.clone(),
                        arguments: String::new(),
                        cache: None,
                    }),
                    BlockStart::Reasoning => Partial::Reasoning(String::new(), None),
                    BlockStart::EncryptedReasoning { data } => Partial::Encrypted(data.clone()),
                    BlockStart::Refusal => Partial::Refusal(String::new()),
                    BlockStart::Opaque(o) => Partial::Opaque(o.clone(), String::new()),
                };
                self.blocks.insert(*index, p);
            }
            Event::BlockDelta { index, delta } => self.delta(*index, delta),
            Event::BlockStop { .. } => {}
            Event::Finish {
                reason,
                stop_sequence,
            } => self.finish = Some((*reason, stop_sequence.clone())),
            Event::Usage(u) => self.usage = Some(*u),
        }
    }

    fn delta(&mut self, index: u32, delta: &BlockDelta) {
        // A delta for a block that never opened opens it (lenient providers).
        let block = self.blocks.entry(index).or_insert_with(|| match delta {
            BlockDelta::Arguments(_) => Partial::Call(ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
                cache: None,
            }),
            BlockDelta::Reasoning(_) | BlockDelta::Signature(_) => {
                Partial::Reasoning(String::new(), None)
            }
            BlockDelta::Refusal(_) => Partial::Refusal(String::new()),
            BlockDelta::Text(_) | BlockDelta::Citation(_) => {
                Partial::Text(String::new(), Vec::new())
            }
        });
        match (block, delta) {
            (Partial::Text(t, _), BlockDelta::Text(s)) => t.push_str(s),
            (Partial::Text(_, c), BlockDelta::Citation(v)) => c.push(v.clone()),
            (Partial::Call(c), BlockDelta::Arguments(s)) => c.arguments.push_str(s),
            (Partial::Opaque(_, input), BlockDelta::Arguments(s)) => input.push_str(s),
            (Partial::Reasoning(t, _), BlockDelta::Reasoning(s)) => t.push_str(s),
            (Partial::Reasoning(_, sig), BlockDelta::Signature(s)) => {
                sig.get_or_insert_with(String::new).push_str(s)
            }
            (Partial::Refusal(t), BlockDelta::Refusal(s) | BlockDelta::Text(s)) => t.push_str(s),
            _ => {}
        }
    }

    /// Usage, if the provider reported any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Everything generated so far as text (for estimating a cut answer's cost).
    pub fn generated_chars(&self) -> String {
        let mut s = String::new();
        for b in self.blocks.values() {
            match b {
                Partial::Text(t, _) | Partial::Reasoning(t, _) | Partial::Refusal(t) => {
                    s.push_str(t)
                }
                Partial::Call(c) => s.push_str(&c.arguments),
                Partial::Opaque(_, input) => s.push_str(input),
                Partial::Encrypted(_) => {}
            }
        }
        s
    }

    /// The complete answer. Empty text blocks are dropped, as a non-streamed
    /// answer has none.
    pub fn finish(self) -> Response {
        let canonical = self.canonical_arguments;
        let content = self
            .blocks
            .into_values()
            .filter_map(|b| match b {
                Partial::Text(t, _) if t.is_empty() => None,
                Partial::Text(text, c) => Some(Block::Text {
                    text,
                    citations: (!c.is_empty()).then_some(Value::Array(c)),
                    cache: None,
                }),
                Partial::Call(mut c) => {
                    if canonical && let Ok(v) = serde_json::from_str::<Value>(&c.arguments) {
                        c.arguments = v.to_string();
                    }
                    Some(Block::ToolCall(c))
                }
                Partial::Reasoning(text, signature) => Some(Block::Reasoning {
                    text,
                    signature,
                    encrypted: None,
                }),
                Partial::Encrypted(data) => Some(Block::Reasoning {
                    text: String::new(),
                    signature: None,
                    encrypted: Some(data),
                }),
                Partial::Refusal(text) => Some(Block::Refusal { text }),
                Partial::Opaque(mut o, input) => {
                    // The streamed input replaces the empty one the block
                    // started with, as the whole answer has it.
                    if let Ok(v) = serde_json::from_str::<Value>(&input)
                        && let Some(block) = o.value.as_object_mut()
                    {
                        block.insert("input".into(), v);
                    }
                    Some(Block::Opaque(o))
                }
            })
            .collect();
        let (finish, stop_sequence) = self.finish.unwrap_or((FinishReason::Stop, None));
        Response {
            id: self.id,
            model: self.model,
            message: Message {
                role: Role::Assistant,
                content,
                name: None,
            },
            finish,
            stop_sequence,
            usage_reported: self.usage.is_some(),
            usage: self.usage.unwrap_or_default(),
        }
    }
}

/// The events of a complete answer, in the order a stream would carry them:
/// for providers without streaming and for replaying a stored answer. The
/// usage, known from the start, comes first, so an answer cut on its way
/// (a redaction block) is charged what the provider reported.
pub fn events_of(response: &Response) -> Vec<Event> {
    let mut out = vec![Event::Start {
        id: response.id.clone(),
        model: response.model.clone(),
    }];
    if response.usage_reported {
        out.push(Event::Usage(response.usage));
    }
    for (i, b) in response.message.content.iter().enumerate() {
        let index = i as u32;
        let (start, deltas): (BlockStart, Vec<BlockDelta>) = match b {
            Block::Text {
                text, citations, ..
            } => {
                let mut d = vec![BlockDelta::Text(text.clone())];
                if let Some(Value::Array(c)) = citations {
                    d.extend(c.iter().cloned().map(BlockDelta::Citation));
                }
                (BlockStart::Text, d)
            }
            Block::ToolCall(c) => (
                BlockStart::ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                },
                vec![BlockDelta::Arguments(c.arguments.clone())],
            ),
            Block::Reasoning {
                encrypted: Some(data),
                ..
            } => (
                BlockStart::EncryptedReasoning { data: data.clone() },
                Vec::new(),
            ),
            Block::Reasoning {
                text, signature, ..
            } => {
                let mut d = vec![BlockDelta::Reasoning(text.clone())];
                d.extend(signature.clone().map(BlockDelta::Signature));
                (BlockStart::Reasoning, d)
            }
            Block::Refusal { text } => {
                (BlockStart::Refusal, vec![BlockDelta::Refusal(text.clone())])
            }
            Block::Opaque(o) => (BlockStart::Opaque(o.clone()), Vec::new()),
            // Media and tool results are never part of an answer.
            _ => continue,
        };
        out.push(Event::BlockStart {
            index,
            block: start,
        });
        out.extend(
            deltas
                .into_iter()
                .map(|delta| Event::BlockDelta { index, delta }),
        );
        out.push(Event::BlockStop { index });
    }
    out.push(Event::Finish {
        reason: response.finish,
        stop_sequence: response.stop_sequence.clone(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 13, point 3: a whole answer and its events assemble to the same answer.
    #[test]
    fn a_response_survives_its_own_events() {
        let r = Response {
            id: Some("msg_1".into()),
            model: Some("m".into()),
            message: Message {
                role: Role::Assistant,
                content: vec![
                    Block::Reasoning {
                        text: "think".into(),
                        signature: Some("sig".into()),
                        encrypted: None,
                    },
                    Block::Reasoning {
                        text: String::new(),
                        signature: None,
                        encrypted: Some("opaque".into()),
                    },
                    Block::text("hello"),
                    Block::ToolCall(ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: "{\"a\":1}".into(),
                        cache: None,
                    }),
                    Block::Refusal { text: "no".into() },
                ],
                name: None,
            },
            finish: FinishReason::ToolCalls,
            stop_sequence: None,
            usage: Usage {
                input: 10,
                output: 5,
                cache_read: 2,
                cache_write: 1,
                cache_write_1h: 0,
                reasoning: 3,
            },
            usage_reported: true,
        };
        let mut a = Assembler::new(false);
        for e in events_of(&r) {
            a.push(&e);
        }
        assert_eq!(a.finish(), r);
    }
}
