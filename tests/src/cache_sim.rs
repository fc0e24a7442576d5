//! Providers' prompt caches as mock upstreams keep them, close enough to the
//! real ones for the usage they report to show what a gateway's prompts
//! cost: Anthropic caches at explicit breakpoints and finds an earlier entry
//! by looking back up to 20 blocks from each; OpenAI caches any prefix it
//! saw before, from 1024 tokens on, in steps of 128. A token is four bytes
//! of the serialised prompt, for both.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

/// Tokens of `text`, as the mocks count them.
pub fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// One block of an Anthropic prompt as its cache sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Where it sits (`tools[0]`, `system[1]`, `messages[3].content[0]`) and
    /// what it holds, its `cache_control` left out.
    pub text: String,
    /// Its `cache_control`, if it has one.
    pub hint: Option<Value>,
}

/// The blocks of an Anthropic request in the order its cache reads them:
/// tools, system, then every message's content.
pub fn anthropic_units(body: &Value) -> Vec<Unit> {
    let mut out = Vec::new();
    let mut push = |place: String, v: &Value| {
        let mut v = v.clone();
        let hint = v.as_object_mut().and_then(|o| o.remove("cache_control"));
        out.push(Unit {
            text: format!("{place}={v}"),
            hint,
        });
    };
    for (i, t) in body["tools"].as_array().into_iter().flatten().enumerate() {
        push(format!("tools[{i}]"), t);
    }
    match &body["system"] {
        Value::String(s) => push("system[0]".into(), &json!({"type": "text", "text": s})),
        Value::Array(blocks) => {
            for (j, b) in blocks.iter().enumerate() {
                push(format!("system[{j}]"), b);
            }
        }
        _ => {}
    }
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let role = m["role"].as_str().unwrap_or_default();
        match &m["content"] {
            Value::String(s) => push(
                format!("messages[{i}]:{role}[0]"),
                &json!({"type": "text", "text": s}),
            ),
            Value::Array(blocks) => {
                for (j, b) in blocks.iter().enumerate() {
                    push(format!("messages[{i}]:{role}[{j}]"), b);
                }
            }
            _ => {}
        }
    }
    out
}

/// Running hashes of a prompt's prefixes: `hashes[k]` names units `..=k`.
fn prefix_hashes<'a>(units: impl Iterator<Item = &'a str>) -> Vec<u64> {
    let mut h = DefaultHasher::new();
    units
        .map(|u| {
            u.hash(&mut h);
            h.finish()
        })
        .collect()
}

/// What a cache did for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUse {
    /// Every input token.
    pub total: u64,
    /// Read from the cache.
    pub read: u64,
    /// Written to it.
    pub written: u64,
    /// Of those, written with the one-hour lifetime.
    pub written_1h: u64,
}

impl CacheUse {
    /// Anthropic's `usage` for it (`input_tokens` without the cache's).
    pub fn anthropic_usage(&self, output: u64) -> Value {
        json!({
            "input_tokens": self.total - self.read - self.written,
            "cache_read_input_tokens": self.read,
            "cache_creation_input_tokens": self.written,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.written - self.written_1h,
                "ephemeral_1h_input_tokens": self.written_1h,
            },
            "output_tokens": output,
        })
    }

    /// OpenAI's `usage` for it.
    pub fn openai_usage(&self, output: u64) -> Value {
        json!({
            "prompt_tokens": self.total,
            "completion_tokens": output,
            "total_tokens": self.total + output,
            "prompt_tokens_details": {"cached_tokens": self.read},
        })
    }
}

/// An Anthropic prompt cache.
#[derive(Debug)]
pub struct AnthropicCache {
    entries: HashSet<u64>,
    min_tokens: u64,
}

impl AnthropicCache {
    /// A cache that keeps prefixes of at least `min_tokens`.
    pub fn new(min_tokens: u64) -> Self {
        Self {
            entries: HashSet::new(),
            min_tokens,
        }
    }

    /// Serves one request: reads the longest entry found from a breakpoint,
    /// writes every breakpoint's prefix it does not hold.
    pub fn serve(&mut self, body: &Value) -> CacheUse {
        let units = anthropic_units(body);
        let hashes = prefix_hashes(units.iter().map(|u| u.text.as_str()));
        let mut upto = vec![0u64];
        for u in &units {
            upto.push(upto.last().unwrap() + tokens(&u.text));
        }
        let mut marks: Vec<usize> = (0..units.len())
            .filter(|&k| units[k].hint.is_some())
            .collect();
        if body.get("cache_control").is_some() && !units.is_empty() {
            marks.push(units.len() - 1);
        }
        let mut read_end = 0;
        for &b in &marks {
            let found = (b.saturating_sub(19)..=b)
                .rev()
                .find(|&k| self.entries.contains(&hashes[k]));
            if let Some(k) = found {
                read_end = read_end.max(k + 1);
            }
        }
        let read = upto[read_end];
        let mut written = 0;
        if let Some(&last) = marks.last()
            && upto[last + 1] >= self.min_tokens
            && last + 1 > read_end
        {
            written = upto[last + 1] - read;
        }
        for &b in &marks {
            if upto[b + 1] >= self.min_tokens {
                self.entries.insert(hashes[b]);
            }
        }
        let long = marks
            .last()
            .and_then(|&b| units[b].hint.as_ref())
            .is_some_and(|h| h["ttl"] == "1h");
        CacheUse {
            total: *upto.last().unwrap(),
            read,
            written,
            written_1h: if long { written } else { 0 },
        }
    }
}

/// An OpenAI prompt cache: every prefix of every prompt it served.
#[derive(Debug, Default)]
pub struct OpenAiCache {
    prompts: Vec<Vec<u64>>,
}

/// The parts of an OpenAI prompt, in order: each tool, then each message.
pub fn openai_units(body: &Value) -> Vec<String> {
    let tools = body["tools"].as_array().into_iter().flatten();
    let messages = body["messages"].as_array().into_iter().flatten();
    tools.chain(messages).map(Value::to_string).collect()
}

impl OpenAiCache {
    /// Serves one request: reads the longest prefix it served before, from
    /// 1024 tokens on, in steps of 128.
    pub fn serve(&mut self, body: &Value) -> CacheUse {
        let units = openai_units(body);
        let hashes = prefix_hashes(units.iter().map(String::as_str));
        let sizes: Vec<u64> = units.iter().map(|u| tokens(u)).collect();
        let common = self
            .prompts
            .iter()
            .map(|p| p.iter().zip(&hashes).take_while(|(a, b)| a == b).count())
            .max()
            .unwrap_or(0);
        let shared: u64 = sizes[..common].iter().sum();
        let read = if shared >= 1024 {
            1024 + (shared - 1024) / 128 * 128
        } else {
            0
        };
        self.prompts.push(hashes);
        CacheUse {
            total: sizes.iter().sum(),
            read,
            written: 0,
            written_1h: 0,
        }
    }
}
