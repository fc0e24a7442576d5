//! Token estimates for text the provider has not counted yet (new user
//! messages, system prompts, tool results). Provider-reported counts win
//! wherever they exist; this only has to be close and cheap.
//!
//! The estimate follows how BPE tokenizers (OpenAI's o200k, Anthropic's)
//! split text: a common word with its leading space is one token, long words
//! split every few letters, digits go in groups of up to three, punctuation
//! mostly stands alone, and CJK text costs about a token per character.
//! `tests/tests/token_estimate.rs` measures it against o200k_base on a mixed
//! sample and states the error.

use crate::model::{Block, Document, MediaSource, Message, ToolResultPart};

/// Tokens a message costs beyond its text (role, separators), as in OpenAI's
/// published counting recipe.
pub const MESSAGE_OVERHEAD: u64 = 4;

/// Tokens charged for an image part whose size is unknown (a mid-size image).
const IMAGE_TOKENS: u64 = 765;

/// Estimated tokens of a text.
pub fn estimate_text(text: &str) -> u64 {
    let mut tokens = 0u64;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphabetic() && !is_cjk(c) {
            let (mut len, mut ascii) = (1u64, c.is_ascii());
            while let Some(n) = chars.next_if(|n| n.is_alphabetic() && !is_cjk(*n)) {
                len += 1;
                ascii &= n.is_ascii();
            }
            // Common words are one token with their leading space; long or
            // rare ones split into pieces of about six letters. Other scripts
            // (Cyrillic, Greek...) have fewer whole words in the vocabulary.
            tokens += if ascii {
                if len <= 8 { 1 } else { 1 + (len - 5) / 6 }
            } else {
                1 + len / 5
            };
        } else if c.is_ascii_digit() {
            let mut len = 1u64;
            while chars.next_if(char::is_ascii_digit).is_some() {
                len += 1;
            }
            tokens += len.div_ceil(3);
        } else if c.is_whitespace() {
            // A single space joins the next word; runs of whitespace (indentation,
            // blank lines) merge into about one token.
            let mut run = 1u64;
            while chars.next_if(|c| c.is_whitespace()).is_some() {
                run += 1;
            }
            if run > 1 || c == '\n' {
                tokens += 1;
            }
        } else if c.is_ascii() {
            // Punctuation: pairs like `",` or `::` often merge; count runs by halves.
            let mut run = 1u64;
            while chars
                .next_if(|c| c.is_ascii_punctuation() && !matches!(c, '"' | '\''))
                .is_some()
            {
                run += 1;
            }
            tokens += run.div_ceil(2);
        } else if is_cjk(c) {
            // CJK text: about two tokens for every three characters.
            let mut len = 1u64;
            while chars.next_if(|c| is_cjk(*c)).is_some() {
                len += 1;
            }
            tokens += (len * 2).div_ceil(3);
        } else {
            // Symbols, emoji, CJK punctuation: one each.
            tokens += 1;
        }
    }
    tokens
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x3040..=0x30FF     // hiragana, katakana
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // hangul syllables
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF00..=0xFFEF) // full-width forms
}

/// Estimated tokens of one message: its text, media, tool calls and results,
/// reasoning and the per-message overhead.
pub fn estimate(m: &Message) -> u64 {
    let blocks: u64 = m.content.iter().map(estimate_block).sum();
    blocks + m.name.as_deref().map_or(0, estimate_text) + MESSAGE_OVERHEAD
}

/// Estimated tokens of several model messages.
pub fn estimate_all(messages: &[Message]) -> u64 {
    messages.iter().map(estimate).sum()
}

/// Estimated tokens of tool definitions (their JSON: names, descriptions, schemas).
pub fn estimate_tools(tools: &[crate::model::Tool]) -> u64 {
    tools
        .iter()
        .map(|t| estimate_text(&serde_json::to_string(t).unwrap_or_default()))
        .sum()
}

fn estimate_block(b: &Block) -> u64 {
    match b {
        Block::Text { text, .. } | Block::Refusal { text } => estimate_text(text),
        Block::Image(_) => IMAGE_TOKENS,
        Block::Audio { data, format } => {
            estimate_text(&serde_json::json!({"data": data, "format": format}).to_string()) / 4
        }
        Block::Document(d) => estimate_document(d),
        Block::ToolCall(c) => estimate_text(&c.name) + estimate_text(&c.arguments) + 3,
        Block::ToolResult(r) => r
            .content
            .iter()
            .map(|p| match p {
                ToolResultPart::Text { text, .. } => estimate_text(text),
                ToolResultPart::Image(_) => IMAGE_TOKENS,
                ToolResultPart::Document(d) => estimate_document(d),
                ToolResultPart::Opaque(o) => estimate_text(&o.value.to_string()),
            })
            .sum(),
        Block::Reasoning {
            text, encrypted, ..
        } => estimate_text(text) + encrypted.as_deref().map_or(0, |e| e.len() as u64 / 4),
        Block::Opaque(o) => estimate_text(&o.value.to_string()),
    }
}

fn estimate_document(d: &Document) -> u64 {
    let data = match &d.source {
        MediaSource::Url { url } => url,
        MediaSource::Base64 { data, .. } | MediaSource::Text { data, .. } => data,
        MediaSource::File { file_id } => file_id,
    };
    estimate_text(data) + d.filename.as_deref().map_or(0, estimate_text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, ToolCall};

    #[test]
    fn plain_english_is_about_a_token_per_word() {
        assert_eq!(estimate_text(""), 0);
        assert_eq!(estimate_text("hello world"), 2);
        assert_eq!(estimate_text("The quick brown fox."), 5);
        assert_eq!(estimate_text("1234567"), 3);
        assert_eq!(estimate_text("東京"), 2);
        assert_eq!(estimate_text("internationalisation"), 3);
    }

    #[test]
    fn messages_count_overhead_and_tool_calls() {
        let m = Message::text(Role::User, "hi");
        assert_eq!(estimate(&m), 1 + MESSAGE_OVERHEAD);
        let mut call = Message::text(Role::Assistant, "");
        call.content.push(Block::ToolCall(ToolCall {
            id: "c".into(),
            name: "lookup".into(),
            arguments: r#"{"q":"x"}"#.into(),
            cache: None,
        }));
        assert!(estimate(&call) > MESSAGE_OVERHEAD + 3);
    }
}
