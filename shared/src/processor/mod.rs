//! The response processor: applies a tenant's redaction policy to messages
//! on their way to the provider, into the store and back to the client, and
//! reports how many values of each category it replaced (never the values).

pub mod stream;

use std::collections::{BTreeMap, HashMap};

use crate::config::{Config, ConfigError};
use crate::model::{Block, Message, ToolResultPart};
use crate::redact::{Blocked, Category, Place, Redactor};

/// Compiled redactors: the default and any per-tenant ones.
pub struct Redactors {
    default: Redactor,
    by_tenant: HashMap<String, Redactor>,
}

impl Redactors {
    /// Compiles every configured policy (an invalid pattern fails start-up).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let compile = |who: &str, p| {
            Redactor::new(p).map_err(|e| ConfigError::Invalid(format!("{who} redaction: {e}")))
        };
        let default = compile("default", &config.redaction)?;
        let mut by_tenant = HashMap::new();
        for (tenant, t) in &config.tenants {
            if let Some(p) = &t.redaction {
                by_tenant.insert(tenant.clone(), compile(&format!("tenant {tenant}"), p)?);
            }
        }
        Ok(Self { default, by_tenant })
    }

    /// The redactor for `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> &Redactor {
        self.by_tenant.get(tenant).unwrap_or(&self.default)
    }
}

/// Replacements made, per place and category.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(pub BTreeMap<String, BTreeMap<String, u32>>);

impl Counts {
    /// Adds the replacements made in one text.
    pub fn add(&mut self, place: Place, found: BTreeMap<Category, u32>) {
        if found.is_empty() {
            return;
        }
        let entry = self.0.entry(place_name(place).to_owned()).or_default();
        for (category, n) in found {
            *entry.entry(category.as_str().to_owned()).or_default() += n;
        }
    }

    /// Adds every replacement counted in `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (place, cats) in &other.0 {
            let entry = self.0.entry(place.clone()).or_default();
            for (category, n) in cats {
                *entry.entry(category.clone()).or_default() += n;
            }
        }
    }

    /// Whether nothing was replaced.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `response:email=1,card=2;stored:card=2`, for the `x-ctxgate-redactions` header.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(place, cats)| {
                let list: Vec<String> = cats.iter().map(|(c, n)| format!("{c}={n}")).collect();
                format!("{place}:{}", list.join(","))
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

fn place_name(place: Place) -> &'static str {
    match place {
        Place::Response => "response",
        Place::Stored => "stored",
        Place::Upstream => "upstream",
    }
}

/// Applies `place`'s policy to the text of `messages` in place: their text
/// blocks, tool results' text, visible reasoning, and the participant
/// `name`, which is text the caller chose as well. Reasoning signed by its
/// provider cannot be changed (the signature would no longer hold), so a
/// signed reasoning block the policy would change is left out instead.
pub fn apply(
    redactor: &Redactor,
    messages: &mut [Message],
    place: Place,
    counts: &mut Counts,
) -> Result<(), Blocked> {
    for m in messages {
        if let Some(name) = m.name.as_mut() {
            redact_string(redactor, name, place, counts)?;
        }
        let mut unsigned = Vec::new();
        for (i, block) in m.content.iter_mut().enumerate() {
            match block {
                Block::Text { text, .. } => {
                    redact_string(redactor, text, place, counts)?;
                }
                Block::ToolResult(r) => {
                    for part in &mut r.content {
                        if let ToolResultPart::Text { text, .. } = part {
                            redact_string(redactor, text, place, counts)?;
                        }
                    }
                }
                Block::Reasoning {
                    text,
                    signature: Some(_),
                    ..
                } => {
                    let changed = redact_string(redactor, text, place, counts)?;
                    unsigned.extend(changed.then_some(i));
                }
                Block::Reasoning { text, .. } => {
                    redact_string(redactor, text, place, counts)?;
                }
                _ => {}
            }
        }
        for i in unsigned.into_iter().rev() {
            m.content.remove(i);
        }
    }
    Ok(())
}

/// Redacts one text in place; `true` when it changed.
fn redact_string(
    redactor: &Redactor,
    text: &mut String,
    place: Place,
    counts: &mut Counts,
) -> Result<bool, Blocked> {
    let out = redactor.apply(text, place)?;
    if out.counts.is_empty() {
        return Ok(false);
    }
    let replaced = out.text.into_owned();
    counts.add(place, out.counts);
    *text = replaced;
    Ok(true)
}
