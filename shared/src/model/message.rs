//! Messages made of content blocks.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::WireFormat;

/// Who a message is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application.
    System,
    /// Instructions (OpenAI's newer name; kept apart so it round-trips).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// Tool results, as a message of their own (OpenAI's shape; Anthropic
    /// carries the same blocks in a user message).
    Tool,
}

impl Role {
    /// Whether the message is an instruction (system or developer).
    pub fn is_instruction(self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

/// One message: a role and its content blocks, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// The content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Block>,
    /// Optional participant name (OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message of one text block.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![Block::text(text)],
            name: None,
        }
    }

    /// The text blocks joined with newlines (no media, calls or reasoning).
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for t in self.content.iter().filter_map(Block::as_text) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
        out
    }

    /// Whether the message opens a turn: a user message that is not only
    /// tool results (which belong to the turn of their calls).
    pub fn starts_turn(&self) -> bool {
        self.role == Role::User
            && (self.content.is_empty()
                || self
                    .content
                    .iter()
                    .any(|b| !matches!(b, Block::ToolResult(_))))
    }

    /// Removes every cache hint (a client's hints apply to its request, not
    /// to the history it is stored in). Opaque blocks keep theirs: they are
    /// kept as sent.
    pub fn clear_cache_hints(&mut self) {
        for b in &mut self.content {
            let hint = match b {
                Block::Text { cache, .. } => cache,
                Block::Image(i) => &mut i.cache,
                Block::Document(d) => &mut d.cache,
                Block::ToolCall(c) => &mut c.cache,
                Block::ToolResult(r) => {
                    for p in &mut r.content {
                        match p {
                            ToolResultPart::Text { cache, .. } => *cache = None,
                            ToolResultPart::Image(i) => i.cache = None,
                            ToolResultPart::Document(d) => d.cache = None,
                            ToolResultPart::Opaque(_) => {}
                        }
                    }
                    &mut r.cache
                }
                _ => continue,
            };
            *hint = None;
        }
    }

    /// The tool calls the message makes, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.content.iter().filter_map(|b| match b {
            Block::ToolCall(c) => Some(c),
            _ => None,
        })
    }
}

/// A provider's prompt-cache hint on a block, tool or instruction: the
/// prefix up to and including it may be cached.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheHint {
    /// How long the entry should live (`5m`, `1h`); the provider's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl CacheHint {
    /// A hint for `ttl`, written as the provider's default when it is one.
    pub fn new(ttl: CacheTtl) -> Self {
        Self {
            ttl: (ttl != CacheTtl::default()).then(|| ttl.as_str().to_owned()),
        }
    }

    /// How long the entry lives: an unknown or absent TTL is the provider's default.
    pub fn lifetime(&self) -> CacheTtl {
        self.ttl
            .as_deref()
            .and_then(CacheTtl::parse)
            .unwrap_or_default()
    }
}

/// How long a provider keeps a prompt-cache entry. Ordered by length: a
/// provider wants longer-lived entries before shorter ones in a prompt.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum CacheTtl {
    /// Five minutes from last use (the provider's default; writes cost 1.25x input).
    #[default]
    #[serde(rename = "5m")]
    FiveMinutes,
    /// One hour (writes cost 2x input).
    #[serde(rename = "1h")]
    OneHour,
}

impl CacheTtl {
    /// The wire spelling: `5m` or `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTtl::FiveMinutes => "5m",
            CacheTtl::OneHour => "1h",
        }
    }

    /// Reads the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "5m" => Some(CacheTtl::FiveMinutes),
            "1h" => Some(CacheTtl::OneHour),
            _ => None,
        }
    }
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Citations a provider attached (kept as sent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
        /// Cache hint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<CacheHint>,
    },
    /// An image.
    Image(Image),
    /// A document or file (PDF, plain text, a provider file id).
    Document(Document),
    /// Audio input.
    Audio {
        /// Base64 data.
        data: String,
        /// `wav`, `mp3`, ...
        format: String,
    },
    /// A tool call made by the model.
    ToolCall(ToolCall),
    /// The result of a tool call.
    ToolResult(ToolResult),
    /// The model's reasoning, visible or not.
    Reasoning {
        /// The reasoning text (empty when only a signature or encrypted content came).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        /// The provider's signature over it (Anthropic `thinking.signature`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        /// Reasoning the provider returned encrypted (Anthropic `redacted_thinking.data`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<String>,
    },
    /// The model declined to answer.
    Refusal {
        /// Its explanation.
        text: String,
    },
    /// A block of one wire format that the model has no type for, kept as
    /// sent: a provider speaking the same format gets it back unchanged.
    Opaque(Opaque),
}

impl Block {
    /// A text block with no citations or cache hint.
    pub fn text(text: impl Into<String>) -> Self {
        Block::Text {
            text: text.into(),
            citations: None,
            cache: None,
        }
    }

    /// The text of a text block.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Block::Text { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The block's cache hint, where the block can carry one.
    pub fn cache(&self) -> Option<&CacheHint> {
        match self {
            Block::Text { cache, .. } => cache.as_ref(),
            Block::Image(i) => i.cache.as_ref(),
            Block::Document(d) => d.cache.as_ref(),
            Block::ToolCall(c) => c.cache.as_ref(),
            Block::ToolResult(r) => r.cache.as_ref(),
            _ => None,
        }
    }
}

/// Where media comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
    /// A URL the provider fetches.
    Url {
        /// `https://...`.
        url: String,
    },
    /// Inline base64 data.
    Base64 {
        /// `image/png`, `application/pdf`, ...; empty when the sender gave none.
        media_type: String,
        /// The data.
        data: String,
    },
    /// Inline plain text (a text document).
    Text {
        /// `text/plain`, ...
        media_type: String,
        /// The text.
        data: String,
    },
    /// A file already uploaded to the provider.
    File {
        /// The provider's file id.
        file_id: String,
    },
}

/// An image block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Where the image is.
    pub source: MediaSource,
    /// OpenAI's `detail` (`low`, `high`, `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Cache hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheHint>,
}

/// A document block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Where the document is.
    pub source: MediaSource,
    /// File name (OpenAI `file.filename`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Title (Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Context about the document (Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Citation settings (Anthropic `citations`, kept as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Value>,
    /// Cache hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheHint>,
}

/// A tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id, echoed by the result.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text, exactly as the model produced them (they may
    /// not be valid JSON; OpenAI passes them on as a string).
    pub arguments: String,
    /// Cache hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheHint>,
}

/// A tool's result, answering one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The call it answers.
    pub call_id: String,
    /// What the tool returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ToolResultPart>,
    /// Whether the tool failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// Cache hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheHint>,
}

impl ToolResult {
    /// The text parts joined with newlines.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|p| match p {
                ToolResultPart::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }
}

/// One part of a tool result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolResultPart {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Cache hint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<CacheHint>,
    },
    /// An image.
    Image(Image),
    /// A document.
    Document(Document),
    /// A part of one wire format the model has no type for.
    Opaque(Opaque),
}

/// A piece of one wire format kept as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opaque {
    /// The format it came in.
    pub format: WireFormat,
    /// The JSON as sent.
    pub value: Value,
}
