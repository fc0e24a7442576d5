//! Tenant redaction policy as written in config, and the errors found when loading it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Leave the text as is and do not count it.
    #[default]
    Off,
    /// Replace the value with its category placeholder.
    Redact,
    /// Refuse the whole text.
    Block,
}

/// Where text is going; each place has its own action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// The response returned to the client.
    Response,
    /// What the gateway stores (logs, transcripts, cache).
    Stored,
    /// The request sent on to the LLM provider.
    Upstream,
}

/// A tenant's redaction policy; every field may be omitted (places default to `off`).
///
/// Note for TOML: `denylist` is a top-level key, so it must come before any
/// `[categories]` or `[[patterns]]` header (after one it would belong to that table, and
/// is rejected there as an unknown field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Action for text returned to the client.
    pub response: Action,
    /// Action for text the gateway stores.
    pub stored: Action,
    /// Action for text sent to the provider.
    pub upstream: Action,
    /// Per-category overrides, keyed by lowercase category or custom pattern name; an
    /// override applies in every place.
    pub categories: BTreeMap<String, Action>,
    /// Tenant-defined named regex patterns.
    pub patterns: Vec<PatternConfig>,
    /// Terms matched case-insensitively as whole words.
    pub denylist: Vec<String>,
}

/// A named custom pattern; findings are replaced with `[NAME]` (uppercased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Category name: ASCII letter first, then letters, digits or `_`.
    pub name: String,
    /// Regex in the syntax of the `regex` crate.
    pub regex: String,
}

impl Policy {
    /// The action configured for a place, before category overrides.
    pub fn place_action(&self, place: Place) -> Action {
        match place {
            Place::Response => self.response,
            Place::Stored => self.stored,
            Place::Upstream => self.upstream,
        }
    }
}

/// Why a policy could not be turned into a redactor.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A custom pattern's regex does not compile (or is too large).
    #[error("custom pattern `{name}` is not a valid regex: {source}")]
    InvalidPattern {
        /// The pattern's name.
        name: String,
        /// The regex compiler's error.
        #[source]
        source: regex::Error,
    },
    /// A custom pattern's regex matches the empty string, which would redact nothing usefully.
    #[error("custom pattern `{name}` matches the empty string")]
    EmptyMatch {
        /// The pattern's name.
        name: String,
    },
    /// A custom pattern name is not of the form `[A-Za-z][A-Za-z0-9_]*`.
    #[error(
        "custom pattern name `{name}` must start with a letter and contain only letters, digits and _"
    )]
    InvalidPatternName {
        /// The offending name.
        name: String,
    },
    /// A custom pattern name is used twice or is a built-in category name.
    #[error("custom pattern name `{name}` is already taken")]
    DuplicatePatternName {
        /// The offending name.
        name: String,
    },
    /// A `[categories]` key names neither a built-in category nor a custom pattern.
    #[error("unknown category `{name}` in policy")]
    UnknownCategory {
        /// The offending key.
        name: String,
    },
    /// A denylist entry is empty or only whitespace.
    #[error("denylist contains an empty term")]
    EmptyDenylistTerm,
    /// The denylist is too large to compile.
    #[error("denylist cannot be compiled: {0}")]
    Denylist(#[source] regex::Error),
}
