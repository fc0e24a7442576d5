//! Stream-safe redaction: text deltas pass through the response policy with
//! only a short tail held back, so a value split across chunks (a card
//! number, an email) is still found whole, and everything else flows on.
//!
//! The text before a cut point goes out once no finding can still reach
//! across it. The cut is placed [`HOLD_BACK`] bytes before the end (the
//! longest built-in pattern with a bounded length), then moved back to the
//! start of a whitespace-free run it falls into (emails, tokens and JWTs
//! have no length bound but no spaces either), then back to the start of any
//! finding that spans it (an unterminated private-key block holds back until
//! its END line). Tenant patterns longer than the hold-back that contain
//! whitespace are the one case this does not cover.

use crate::processor::Counts;
use crate::redact::{Blocked, Place, Redactor, replace};

/// Bytes always held back: the longest bounded built-in match (an
/// international phone number in groups: 65 bytes), rounded up.
pub const HOLD_BACK: usize = 72;
/// Past this much held-back text the cut ignores whitespace-free runs, so a
/// pathological answer (a huge base64 blob) cannot make scanning quadratic.
pub const MAX_PENDING: usize = 64 * 1024;

/// The response policy applied to a stream of text.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    place: Place,
    pending: String,
    counts: Counts,
}

impl StreamRedactor {
    /// A redactor for `place`; `None` when the policy detects nothing there,
    /// so text can pass through untouched and undelayed.
    pub fn new(redactor: &Redactor, place: Place) -> Option<Self> {
        redactor.is_active(place).then(|| Self {
            redactor: redactor.clone(),
            place,
            pending: String::new(),
            counts: Counts::default(),
        })
    }

    /// Takes the next text delta; returns the redacted text that is safe to
    /// send now (possibly empty).
    pub fn push(&mut self, text: &str) -> Result<String, Blocked> {
        self.pending.push_str(text);
        let findings = self.redactor.findings(&self.pending, self.place)?;
        let p = &self.pending;
        let len = p.len();
        let forced = len > MAX_PENDING;
        let mut cut = floor_boundary(p, len.saturating_sub(HOLD_BACK));
        if !forced && cut > 0 && cut < len {
            let inside_run = |i: usize| p[i..].chars().next().is_some_and(|c| !c.is_whitespace());
            if inside_run(cut) {
                cut = p[..cut]
                    .char_indices()
                    .rev()
                    .find(|(_, c)| c.is_whitespace())
                    .map_or(0, |(i, c)| i + c.len_utf8());
            }
        }
        // Findings never overlap, so one pass from the end settles the cut.
        for f in findings.iter().rev() {
            if f.start < cut && cut < f.end {
                cut = if forced { f.end } else { f.start };
            }
        }
        Ok(self.emit(cut, &findings))
    }

    /// The end of the text: everything held back, redacted.
    pub fn flush(&mut self) -> Result<String, Blocked> {
        let findings = self.redactor.findings(&self.pending, self.place)?;
        Ok(self.emit(self.pending.len(), &findings))
    }

    /// What was replaced so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    fn emit(&mut self, cut: usize, findings: &[crate::redact::Finding]) -> String {
        if cut == 0 {
            return String::new();
        }
        let inside: Vec<_> = findings.iter().filter(|f| f.end <= cut).cloned().collect();
        let out = replace(&self.pending[..cut], &inside);
        self.counts.add(self.place, out.counts);
        let text = out.text.into_owned();
        self.pending.drain(..cut);
        text
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{Action, Policy};

    fn redactor() -> Redactor {
        Redactor::new(&Policy {
            response: Action::Redact,
            ..Policy::default()
        })
        .unwrap()
    }

    /// Feeds `text` in two pieces split at `at` and returns the output.
    fn split_at(r: &Redactor, text: &str, at: usize) -> String {
        let mut s = StreamRedactor::new(r, Place::Response).unwrap();
        let mut out = s.push(&text[..at]).unwrap();
        out.push_str(&s.push(&text[at..]).unwrap());
        out.push_str(&s.flush().unwrap());
        out
    }

    const SAMPLES: &[&str] = &[
        "mail bob.smith@example.com today",
        "card 4111 1111 1111 1111 thanks",
        "card 4111111111111111.",
        "call +49 30 901820 or (030) 901820 now",
        "us 415-555-2671 ok",
        "ssn 123-45-6789 ok",
        "ip 192.168.10.42 ok",
        "iban DE89 3704 0044 0532 0130 00 ok",
        "key AKIAIOSFODNN7EXAMPLE ok",
        "auth Bearer sk-abc123def456ghi done",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end",
        "pem -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83+/abc=\n-----END RSA PRIVATE KEY----- bye",
        "plain prose with no secrets, é and 日本 included",
    ];

    #[test]
    fn every_sample_split_at_every_position_redacts_like_the_whole() {
        let r = redactor();
        for text in SAMPLES {
            let whole = r.apply(text, Place::Response).unwrap().text.into_owned();
            for at in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                assert_eq!(split_at(&r, text, at), whole, "{text:?} split at {at}");
            }
        }
    }

    #[test]
    fn byte_by_byte_chunks_redact_like_the_whole() {
        let r = redactor();
        for text in SAMPLES {
            let whole = r.apply(text, Place::Response).unwrap().text.into_owned();
            let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
            let mut out = String::new();
            for c in text.chars() {
                out.push_str(&s.push(&c.to_string()).unwrap());
            }
            out.push_str(&s.flush().unwrap());
            assert_eq!(out, whole, "{text:?}");
        }
    }

    #[test]
    fn holds_back_only_a_short_tail() {
        let r = redactor();
        let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(10);
        let out = s.push(&prose).unwrap();
        // The hold-back, widened at most to the start of the word it falls in.
        let held = prose.len() - out.len();
        assert!(held <= HOLD_BACK + "quick".len(), "held back {held} bytes");
        assert_eq!(out + &s.flush().unwrap(), prose);
    }

    #[test]
    fn counts_and_blocks() {
        let r = redactor();
        let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
        s.push("write to bob@exa").unwrap();
        s.push("mple.com please").unwrap();
        s.flush().unwrap();
        assert_eq!(s.counts().header(), "response:email=1");

        let blocking = Redactor::new(&Policy {
            response: Action::Block,
            ..Policy::default()
        })
        .unwrap();
        let mut s = StreamRedactor::new(&blocking, Place::Response).unwrap();
        let first = s.push("card 4111 1111 ").unwrap();
        assert!(!first.contains("4111"));
        assert!(s.push("1111 1111 ok").is_err() || s.flush().is_err());
    }

    #[test]
    fn off_policy_needs_no_stream_redactor() {
        let r = Redactor::new(&Policy::default()).unwrap();
        assert!(StreamRedactor::new(&r, Place::Response).is_none());
    }
}
