//! Response processor: finds sensitive data (PII, secrets, tenant terms) in text and
//! redacts or blocks it according to a tenant [`Policy`], separately for each [`Place`].
//!
//! Build a [`Redactor`] once per policy (all regexes are compiled then, and invalid tenant
//! regexes are reported as [`ConfigError`]); it is `Send + Sync` and cheap to clone, so it
//! can be shared across requests. Nothing here logs, and counts carry no matched values.
//!
//! ```rust,ignore
//! // Not compiled as a doctest so the module can move between crates unchanged;
//! // the same steps run in `tests::doc_example`.
//! let policy = Policy { response: Action::Redact, ..Policy::default() };
//! let redactor = Redactor::new(&policy)?;
//! let out = redactor.apply("mail bob@example.com", Place::Response)?;
//! assert_eq!(out.text, "mail [EMAIL]");
//! ```
//!
//! Performance: built-in patterns are compiled once per process. One byte pass finds the
//! digit clusters, so phone/card/SSN/IPv4/IBAN regexes only run on those short slices, and
//! only where the digit count allows (e.g. cards need 13); the other detectors are
//! literal-prefixed regex searches. About 10-20 µs per 10 KB of ordinary prose in release
//! at opt-level 3 or "s"; measured with
//! `cargo test --release -- --ignored --nocapture bench_scan_10kb` (and `bench_adversarial`
//! for 100 KB worst cases).

mod category;
mod checksums;
mod custom;
mod detectors;
mod extent;
mod fold;
mod overlap;
mod policy;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;

pub use self::category::Category;
pub use self::extent::Tracker;
pub use self::fold::{folded_len, is_format_char};
pub use self::policy::{Action, ConfigError, PatternConfig, Place, Policy};

use self::custom::CustomDetectors;
use self::extent::Extents;

/// One detected span of sensitive data; byte offsets into the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was found.
    pub category: Category,
    /// Byte offset of the first byte (on a char boundary).
    pub start: usize,
    /// Byte offset one past the last byte (on a char boundary).
    pub end: usize,
}

/// Text after redaction, with how many values of each category were replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted<'a> {
    /// The redacted text; borrowed when nothing was replaced.
    pub text: Cow<'a, str>,
    /// Replacements per category (never the values themselves).
    pub counts: BTreeMap<Category, u32>,
}

/// The policy blocks this text: it contains a category whose action here is `Block`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blocked by redaction policy: text contains {category}")]
pub struct Blocked {
    /// The category that caused the block (the first one in the text).
    pub category: Category,
}

/// A compiled policy: detects, redacts and blocks.
#[derive(Debug, Clone)]
pub struct Redactor {
    places: [Action; 3],
    overrides: BTreeMap<Category, Action>,
    custom: CustomDetectors,
    /// Per place: whether any category is not `Off`, so `apply` can skip scanning.
    active: [bool; 3],
    /// What each detector can span, for stream redaction.
    extents: Extents,
}

fn place_index(place: Place) -> usize {
    match place {
        Place::Response => 0,
        Place::Stored => 1,
        Place::Upstream => 2,
    }
}

impl Redactor {
    /// Validates and compiles `policy`.
    pub fn new(policy: &Policy) -> Result<Redactor, ConfigError> {
        let custom = CustomDetectors::new(policy)?;
        let mut overrides = BTreeMap::new();
        for (key, action) in &policy.categories {
            let name = key.to_ascii_lowercase();
            let category = Category::builtin_from_name(&name)
                .or_else(|| custom.category(&name).cloned())
                .ok_or_else(|| ConfigError::UnknownCategory { name: key.clone() })?;
            overrides.insert(category, *action);
        }
        let places =
            [Place::Response, Place::Stored, Place::Upstream].map(|p| policy.place_action(p));
        let any_override = overrides.values().any(|a| *a != Action::Off);
        let active = places.map(|a| a != Action::Off || any_override);
        detectors::warm_up();
        let extents = Extents::new(custom.extent_patterns());
        Ok(Redactor {
            places,
            overrides,
            custom,
            active,
            extents,
        })
    }

    /// The effective action for a category in a place (override, else the place's action).
    pub fn action(&self, category: &Category, place: Place) -> Action {
        self.overrides
            .get(category)
            .copied()
            .unwrap_or(self.places[place_index(place)])
    }

    /// All findings of every detector, whatever the policy's actions, overlaps resolved,
    /// sorted by start.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        overlap::resolve(text, self.detect(text, &|_| true))
    }

    /// Whether anything is detected for `place` at all (its action or any override is not `Off`).
    pub fn is_active(&self, place: Place) -> bool {
        self.active[place_index(place)]
    }

    /// Applies the policy for `place`: `Block` wins over everything, `Redact` replaces
    /// values with placeholders, `Off` leaves them (and does not count them).
    pub fn apply<'a>(&self, text: &'a str, place: Place) -> Result<Redacted<'a>, Blocked> {
        let kept = self.findings(text, place)?;
        Ok(replace(text, &kept))
    }

    /// The findings `apply` would replace for `place`, non-overlapping and sorted by start;
    /// `Blocked` if any finding's action there is `Block`.
    pub fn findings(&self, text: &str, place: Place) -> Result<Vec<Finding>, Blocked> {
        let raw = self.raw_findings(text, 0, place);
        self.settle(text, raw, place)
    }

    /// Every finding (overlaps unresolved) of the categories not `Off` in `place` that
    /// starts at or after byte `from` of `text`; the text before `from` is context.
    pub fn raw_findings(&self, text: &str, from: usize, place: Place) -> Vec<Finding> {
        if !self.active[place_index(place)] || text.len() <= from {
            return Vec::new();
        }
        // Off categories are not even detected, so they cannot shadow a redacted one.
        let mut raw = self.detect(text, &|c| self.action(c, place) != Action::Off);
        raw.retain(|f| f.start >= from);
        raw
    }

    /// Resolves raw findings of `text` for `place`: `Blocked` if any of them is blocked
    /// there (the first by position), else the non-overlapping ones to replace.
    pub fn settle(
        &self,
        text: &str,
        raw: Vec<Finding>,
        place: Place,
    ) -> Result<Vec<Finding>, Blocked> {
        // Any blocked value blocks, even one overlapped by a longer redacted span.
        if let Some(f) = raw
            .iter()
            .filter(|f| self.action(&f.category, place) == Action::Block)
            .min_by_key(|f| (f.start, f.category.priority()))
        {
            return Err(Blocked {
                category: f.category.clone(),
            });
        }
        Ok(overlap::resolve(text, raw))
    }

    /// Follows a stream's text from absolute offset `at`: where a match may still be
    /// in progress (see [`Tracker`]).
    pub fn tracker(&self, at: usize) -> Tracker {
        Tracker::new(&self.extents, at)
    }

    /// Detects in what a reader sees: format characters dropped, compatibility forms
    /// folded; spans are mapped back to the original text.
    fn detect(&self, text: &str, enabled: &dyn Fn(&Category) -> bool) -> Vec<Finding> {
        let Some(folded) = fold::fold(text) else {
            return self.detect_plain(text, enabled);
        };
        let mut raw = self.detect_plain(&folded.view, enabled);
        for f in &mut raw {
            f.start = folded.start(f.start);
            f.end = folded.end(f.end);
        }
        raw
    }

    fn detect_plain(&self, text: &str, enabled: &dyn Fn(&Category) -> bool) -> Vec<Finding> {
        let mut raw = Vec::new();
        detectors::detect(text, enabled, &mut raw);
        self.custom.detect(text, enabled, &mut raw);
        raw
    }
}

/// `text` with each of `findings` (non-overlapping, sorted, on char boundaries, as
/// [`Redactor::findings`] returns them) replaced by its category's placeholder.
pub fn replace<'a>(text: &'a str, findings: &[Finding]) -> Redacted<'a> {
    if findings.is_empty() {
        return Redacted {
            text: Cow::Borrowed(text),
            counts: BTreeMap::new(),
        };
    }
    let mut out = String::with_capacity(text.len());
    let mut counts = BTreeMap::new();
    let mut pos = 0;
    for f in findings {
        out.push_str(&text[pos..f.start]);
        out.push_str(&f.category.placeholder());
        *counts.entry(f.category.clone()).or_insert(0u32) += 1;
        pos = f.end;
    }
    out.push_str(&text[pos..]);
    Redacted {
        text: Cow::Owned(out),
        counts,
    }
}
