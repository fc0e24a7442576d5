//! Tenant-defined detectors: named regex patterns and a denylist of terms.

use std::fmt;
use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use super::Finding;
use super::category::Category;
use super::fold::fold_char;
use super::policy::{ConfigError, Policy};

/// Compiled-size cap for one tenant regex, so a config cannot take unbounded memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Compiled-size cap for the whole denylist.
const DENYLIST_SIZE_LIMIT: usize = 8 << 20;

/// Compiled custom patterns and denylist of one policy.
#[derive(Clone)]
pub(super) struct CustomDetectors {
    patterns: Vec<(Category, Regex)>,
    denylist: Option<Regex>,
    denylist_terms: usize,
}

impl CustomDetectors {
    /// The regexes whose matches the stream redactor must see whole: every pattern and
    /// the denylist.
    pub(super) fn extent_patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|(_, re)| re.as_str().to_owned())
            .chain(self.denylist.as_ref().map(|re| re.as_str().to_owned()))
            .collect()
    }
}

// Hand-written so that printing a redactor never reveals the tenant's terms or patterns.
impl fmt::Debug for CustomDetectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.patterns.iter().map(|(c, _)| c.as_str()).collect();
        f.debug_struct("CustomDetectors")
            .field("patterns", &names)
            .field("denylist_terms", &self.denylist_terms)
            .finish()
    }
}

impl CustomDetectors {
    /// Validates and compiles the policy's patterns and denylist.
    pub(super) fn new(policy: &Policy) -> Result<Self, ConfigError> {
        let mut patterns: Vec<(Category, Regex)> = Vec::with_capacity(policy.patterns.len());
        for p in &policy.patterns {
            let name = p.name.to_ascii_lowercase();
            let well_formed = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !well_formed {
                return Err(ConfigError::InvalidPatternName {
                    name: p.name.clone(),
                });
            }
            if Category::builtin_from_name(&name).is_some()
                || patterns.iter().any(|(c, _)| c.as_str() == name)
            {
                return Err(ConfigError::DuplicatePatternName {
                    name: p.name.clone(),
                });
            }
            let re = RegexBuilder::new(&p.regex)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|source| ConfigError::InvalidPattern {
                    name: p.name.clone(),
                    source,
                })?;
            if re.is_match("") {
                return Err(ConfigError::EmptyMatch {
                    name: p.name.clone(),
                });
            }
            patterns.push((Category::Custom(Arc::from(name)), re));
        }
        Ok(CustomDetectors {
            patterns,
            denylist: build_denylist(&policy.denylist)?,
            denylist_terms: policy.denylist.len(),
        })
    }

    /// The category of the custom pattern with this lowercase name.
    pub(super) fn category(&self, name: &str) -> Option<&Category> {
        self.patterns
            .iter()
            .map(|(c, _)| c)
            .find(|c| c.as_str() == name)
    }

    /// Appends raw findings of the enabled custom patterns and the denylist to `out`.
    pub(super) fn detect(
        &self,
        text: &str,
        enabled: &dyn Fn(&Category) -> bool,
        out: &mut Vec<Finding>,
    ) {
        for (category, re) in &self.patterns {
            if !enabled(category) {
                continue;
            }
            for m in re.find_iter(text).filter(|m| !m.is_empty()) {
                out.push(Finding {
                    category: category.clone(),
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
        if let Some(re) = &self.denylist
            && enabled(&Category::Denylist)
        {
            let mut from = 0;
            while let Some(m) = re.find_at(text, from) {
                if whole_word(text, m.start(), m.end()) {
                    out.push(Finding {
                        category: Category::Denylist,
                        start: m.start(),
                        end: m.end(),
                    });
                    from = m.end();
                } else {
                    // Retry later: a rejected hit may hide a valid one. No hit can start
                    // inside a word (its left edge would be glued), so skip the whole word.
                    let rest = &text[m.start()..];
                    let word_len: usize = rest
                        .chars()
                        .take_while(|&c| is_word(c))
                        .map(char::len_utf8)
                        .sum();
                    let step = rest.chars().next().map_or(1, char::len_utf8);
                    from = m.start() + word_len.max(step);
                }
                if from > text.len() {
                    break;
                }
            }
        }
    }
}

/// One case-insensitive alternation of all terms; inner whitespace matches any whitespace
/// run so "project  bluebird" or a line break between the words still counts.
fn build_denylist(terms: &[String]) -> Result<Option<Regex>, ConfigError> {
    if terms.is_empty() {
        return Ok(None);
    }
    let mut alts = Vec::with_capacity(terms.len());
    for term in terms {
        // Terms are compared with folded text, so they are folded the same way.
        let mut folded = String::with_capacity(term.len());
        term.chars().for_each(|c| fold_char(c, &mut folded));
        let words: Vec<String> = folded.split_whitespace().map(regex::escape).collect();
        if words.is_empty() {
            return Err(ConfigError::EmptyDenylistTerm);
        }
        alts.push(words.join(r"\s+"));
    }
    // Longest first, so the leftmost-first alternation prefers "project bluebird" over "project".
    alts.sort_by_key(|a| std::cmp::Reverse(a.len()));
    let pattern = format!("(?i)(?:{})", alts.join("|"));
    RegexBuilder::new(&pattern)
        .size_limit(DENYLIST_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(ConfigError::Denylist)
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// True unless the match is glued to a word character where the term itself has one.
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let word = is_word;
    let matched = &text[start..end];
    let first = matched.chars().next();
    let last = matched.chars().next_back();
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let left_ok = !(first.is_some_and(word) && before.is_some_and(word));
    let right_ok = !(last.is_some_and(word) && after.is_some_and(word));
    left_ok && right_ok
}

#[cfg(test)]
mod tests {
    use super::super::policy::PatternConfig;
    use super::*;

    fn policy(patterns: &[(&str, &str)], denylist: &[&str]) -> Policy {
        Policy {
            patterns: patterns
                .iter()
                .map(|(n, r)| PatternConfig {
                    name: n.to_string(),
                    regex: r.to_string(),
                })
                .collect(),
            denylist: denylist.iter().map(|s| s.to_string()).collect(),
            ..Policy::default()
        }
    }

    fn hits(d: &CustomDetectors, text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.detect(text, &|_| true, &mut out);
        out.into_iter()
            .map(|f| {
                (
                    f.category.as_str().to_string(),
                    text[f.start..f.end].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn custom_pattern_matches() {
        let d = CustomDetectors::new(&policy(&[("Employee_ID", "EMP-[0-9]{6}")], &[])).unwrap();
        assert_eq!(
            hits(&d, "ids EMP-123456 and EMP-12"),
            [("employee_id".to_string(), "EMP-123456".to_string())]
        );
        assert!(d.category("employee_id").is_some());
        assert!(format!("{d:?}").contains("employee_id"));
    }

    #[test]
    fn denylist_whole_words_case_insensitive() {
        let d = CustomDetectors::new(&policy(&[], &["project bluebird", "Zeta", "ÄBC"])).unwrap();
        let text = "PROJECT   Bluebird, zeta; zetas, alphazeta, project\nbluebird, äbc!";
        let found: Vec<String> = hits(&d, text).into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            found,
            ["PROJECT   Bluebird", "zeta", "project\nbluebird", "äbc"]
        );
        // The terms never show up in debug output.
        let dbg = format!("{d:?}");
        assert!(!dbg.to_lowercase().contains("bluebird"), "{dbg}");
    }

    #[test]
    fn config_errors_are_typed() {
        let bad = CustomDetectors::new(&policy(&[("broken", "EMP-[0-9")], &[]));
        assert!(
            matches!(bad, Err(ConfigError::InvalidPattern { ref name, .. }) if name == "broken")
        );
        assert!(matches!(
            CustomDetectors::new(&policy(&[("empty", "x*")], &[])),
            Err(ConfigError::EmptyMatch { .. })
        ));
        assert!(matches!(
            CustomDetectors::new(&policy(&[("9lives", "x")], &[])),
            Err(ConfigError::InvalidPatternName { .. })
        ));
        assert!(matches!(
            CustomDetectors::new(&policy(&[("email", "x")], &[])),
            Err(ConfigError::DuplicatePatternName { .. })
        ));
        assert!(matches!(
            CustomDetectors::new(&policy(&[("a", "x"), ("A", "y")], &[])),
            Err(ConfigError::DuplicatePatternName { .. })
        ));
        assert!(matches!(
            CustomDetectors::new(&policy(&[], &["  "])),
            Err(ConfigError::EmptyDenylistTerm)
        ));
        assert!(matches!(
            CustomDetectors::new(&policy(&[("huge", "[0-9]{1000}{1000}")], &[])),
            Err(ConfigError::InvalidPattern { .. })
        ));
    }
}
