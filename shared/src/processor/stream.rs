//! Stream-safe redaction: text deltas pass through the response policy, and
//! what goes out is exactly what redacting the whole answer at once would
//! give, however the answer is split into chunks.
//!
//! Text is sent once nothing that comes later can change what is found in
//! it. The detectors themselves say where that is: a [`Tracker`] steps their
//! extents (see `redact::extent`) over the text as it arrives and reports the
//! earliest position from which a match could still start or grow (a word
//! that may turn into an email, "Bearer " and the token after it, an open
//! PEM block, a tenant pattern or denylist term half seen), plus the last two
//! characters, which decide whether a value before them is whole. A bounded
//! left context is kept after text was sent, so keyword detectors ("secret"
//! before an AWS secret key) and neighbour checks see what a whole-text scan
//! sees; it is cut only where no match can straddle the cut.
//!
//! Cost is linear in the answer for any chunking: the tracker steps each byte
//! once, and the text is rescanned only when what it would release is a
//! quarter of what it rescans (or the buffer has grown by an eighth since a
//! scan that released little).

use crate::processor::Counts;
use crate::redact::{Blocked, Finding, Place, Redactor, Tracker, replace};

/// Folded bytes of left context kept before the sent point: more than any
/// detector looks back (an AWS secret starts less than 70 bytes after the
/// start of its "secret" keyword; "version" before an IPv4 is 7 letters and
/// at most 8 separators).
const LEFT_CONTEXT: usize = 96;
/// Past this much held-back text, text goes out even though a match might
/// still be in progress (a multi-megabyte base64 blob), so memory stays bounded;
/// only there can the stream differ from the whole answer.
pub const MAX_PENDING: usize = 1 << 20;

/// The response policy applied to a stream of text.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    place: Place,
    /// Created at a text's first delta and dropped at its end, so that its
    /// DFA caches go back to the pool between texts; never for a whole answer.
    tracker: Option<Tracker>,
    /// A whole answer: everything is held until [`Self::flush`], which
    /// redacts it in one pass (no byte-by-byte tracking, nothing sent early).
    whole: bool,
    /// The text from absolute offset `base`: left context, then what is held.
    buf: String,
    base: usize,
    /// Absolute offset up to which text was sent.
    sent: usize,
    /// No rescan before the buffer is this long (after a scan that released little).
    rescan_at: usize,
    counts: Counts,
}

impl StreamRedactor {
    /// A redactor for `place`; `None` when the policy detects nothing there,
    /// so text can pass through untouched and undelayed.
    pub fn new(redactor: &Redactor, place: Place) -> Option<Self> {
        Self::with_mode(redactor, place, false)
    }

    /// [`Self::new`] for an answer sent whole: [`Self::push`] holds
    /// everything and [`Self::flush`] gives the text redacted as a whole,
    /// which is what the stream would have sent, without its cost per byte.
    pub fn whole(redactor: &Redactor, place: Place) -> Option<Self> {
        Self::with_mode(redactor, place, true)
    }

    fn with_mode(redactor: &Redactor, place: Place, whole: bool) -> Option<Self> {
        redactor.is_active(place).then(|| Self {
            redactor: redactor.clone(),
            place,
            tracker: None,
            whole,
            buf: String::new(),
            base: 0,
            sent: 0,
            rescan_at: 0,
            counts: Counts::default(),
        })
    }

    /// Takes the next text delta; returns the redacted text that is safe to
    /// send now (possibly empty).
    pub fn push(&mut self, text: &str) -> Result<String, Blocked> {
        if self.whole {
            self.buf.push_str(text);
            return Ok(String::new());
        }
        // Between texts the buffer is empty: the new text starts at `sent`.
        let at = self.base + self.buf.len();
        let tracker = self
            .tracker
            .get_or_insert_with(|| self.redactor.tracker(at));
        tracker.feed(text);
        self.buf.push_str(text);
        let end = self.base + self.buf.len();
        let forced = end - self.sent > MAX_PENDING;
        let cap = tracker.cap();
        let ready = match tracker.hold() {
            Some(h) if !forced => h.min(cap),
            _ => cap,
        };
        if ready <= self.sent {
            return Ok(String::new());
        }
        // Rescanning costs the whole buffer: only when it releases a fair share.
        let worth = (ready - self.sent) * 4 >= self.buf.len() && self.buf.len() >= self.rescan_at;
        if !worth && !forced {
            return Ok(String::new());
        }
        let from = self.sent - self.base;
        let raw = self.redactor.raw_findings(&self.buf, from, self.place);
        let mut cut = ready - self.base;
        // No finding may straddle the cut: move it back to the start of any that
        // does (forward past it when forced), until none does.
        loop {
            let straddling = raw.iter().filter(|f| f.start < cut && cut < f.end);
            let next = if forced {
                straddling.map(|f| f.end).max()
            } else {
                straddling.map(|f| f.start).min()
            };
            match next {
                Some(n) => cut = n,
                None => break,
            }
        }
        let released = cut.saturating_sub(from);
        self.rescan_at = if released * 8 < self.buf.len() {
            self.buf.len() + self.buf.len() / 8
        } else {
            0
        };
        if cut <= from {
            return Ok(String::new());
        }
        let out = self.emit(cut, raw)?;
        if forced && let Some(tracker) = self.tracker.as_mut() {
            tracker.forget_before(self.sent);
        }
        self.trim();
        Ok(out)
    }

    /// The end of the text: everything held back, redacted. A later push starts
    /// a new text.
    pub fn flush(&mut self) -> Result<String, Blocked> {
        let from = self.sent - self.base;
        let raw = self.redactor.raw_findings(&self.buf, from, self.place);
        let out = self.emit(self.buf.len(), raw)?;
        self.base = self.sent;
        self.buf.clear();
        self.tracker = None;
        self.rescan_at = 0;
        Ok(out)
    }

    /// What was replaced so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Redacts and sends the buffer from the sent point to `cut` (relative).
    fn emit(&mut self, cut: usize, raw: Vec<Finding>) -> Result<String, Blocked> {
        let from = self.sent - self.base;
        let inside: Vec<Finding> = raw.into_iter().filter(|f| f.end <= cut).collect();
        let kept = self.redactor.settle(&self.buf, inside, self.place)?;
        let out = replace(&self.buf[from..cut], &shift(&kept, from));
        self.counts.add(self.place, out.counts);
        let text = out.text.into_owned();
        self.sent = self.base + cut;
        Ok(text)
    }

    /// Drops left context beyond what detectors look back at, at a clean position.
    fn trim(&mut self) {
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        let held = &self.buf[self.sent - self.base..];
        let held_view = crate::redact::folded_len(held);
        let sent_view = tracker.view_len() - held_view;
        let Some(keep_from) = sent_view
            .checked_sub(LEFT_CONTEXT)
            .and_then(|v| tracker.take_clean(v))
        else {
            return;
        };
        if keep_from > self.base && keep_from <= self.sent {
            self.buf.drain(..keep_from - self.base);
            self.base = keep_from;
        }
    }
}

/// `findings` with offsets made relative to `from`.
fn shift(findings: &[Finding], from: usize) -> Vec<Finding> {
    findings
        .iter()
        .map(|f| Finding {
            category: f.category.clone(),
            start: f.start - from,
            end: f.end - from,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{Action, Category, Policy};

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
    fn a_whole_answer_is_held_then_redacted_like_the_whole_text() {
        let r = redactor();
        for text in SAMPLES {
            let whole = r.apply(text, Place::Response).unwrap();
            let mut s = StreamRedactor::whole(&r, Place::Response).unwrap();
            for c in text.chars() {
                assert_eq!(s.push(&c.to_string()).unwrap(), "", "{text:?}");
            }
            assert_eq!(s.flush().unwrap(), whole.text, "{text:?}");
            let mut expected = Counts::default();
            expected.add(Place::Response, whole.counts);
            assert_eq!(s.counts(), &expected, "{text:?}");
            // A second text after the first: held and redacted on its own.
            assert_eq!(s.push(text).unwrap(), "");
            assert_eq!(s.flush().unwrap(), whole.text, "{text:?}");
        }
    }

    #[test]
    fn a_stream_keeps_no_tracker_between_texts() {
        let r = redactor();
        let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
        assert!(s.tracker.is_none());
        let mut out = s.push("mail bob@example.com ").unwrap();
        assert!(s.tracker.is_some());
        out.push_str(&s.flush().unwrap());
        assert!(
            s.tracker.is_none(),
            "the tracker (and its DFA caches) is given back"
        );
        out.push_str(&s.push("then call 415-555-2671 ok").unwrap());
        out.push_str(&s.flush().unwrap());
        let expected = r
            .apply("mail bob@example.com ", Place::Response)
            .unwrap()
            .text
            + r.apply("then call 415-555-2671 ok", Place::Response)
                .unwrap()
                .text;
        assert_eq!(out, expected);
    }

    #[test]
    fn holds_back_only_a_short_tail() {
        let r = redactor();
        let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(10);
        let out = s.push(&prose).unwrap();
        // The hold-back, widened at most to the start of the word it falls in.
        // Only the last characters, which decide whether a value before them is whole.
        let held = prose.len() - out.len();
        assert!(held <= "dog. ".len(), "held back {held} bytes");
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

    // ---- Issue 12, point 8: streamed output equals the whole answer redacted ----

    /// A policy with every built-in detector redacting, tenant patterns (one with
    /// whitespace and longer than any fixed hold-back, one with `\b` and `^`) and
    /// denylist terms (one longer than any fixed hold-back).
    fn tenant_policy(action: Action) -> Policy {
        Policy {
            response: action,
            patterns: vec![
                crate::redact::PatternConfig {
                    name: "employee_id".into(),
                    regex: "EMP-[0-9]{6}".into(),
                },
                crate::redact::PatternConfig {
                    name: "case_ref".into(),
                    regex: "CASE-[0-9]{4}(?: [A-Z]{3,8}){12}".into(),
                },
                crate::redact::PatternConfig {
                    name: "ticket".into(),
                    regex: r"(?m)^TICKET [0-9]+\b".into(),
                },
            ],
            denylist: vec![
                "project bluebird".into(),
                "the quick brown fox jumps over the lazy dog near the riverbank at dawn on tuesday"
                    .into(),
                "zeta".into(),
            ],
            ..Policy::default()
        }
    }

    /// A realistic RS256 JWT of about 1k characters.
    fn long_jwt() -> String {
        let payload: String = (0..700)
            .map(|i| {
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i * 7 % 64],
                )
            })
            .collect();
        let sig: String = (0..342)
            .map(|i| {
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        [i * 13 % 64],
                )
            })
            .collect();
        format!("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{payload}.{sig}")
    }

    /// Samples for every detector, with keyword context, long tokens, tenant terms,
    /// disguises and near misses.
    fn samples() -> Vec<String> {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let opaque: String = (0..600)
            .map(|i| {
                char::from(
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[i * 11 % 62],
                )
            })
            .collect();
        let mut v: Vec<String> = SAMPLES.iter().map(|s| s.to_string()).collect();
        v.extend([
            format!("aws_secret_access_key={secret}\nregion=eu-west-1"),
            format!("AWS_SECRET_ACCESS_KEY = \"{secret}\" done"),
            format!("the secret key is {secret}."),
            format!("value {secret} has no keyword"),
            format!("Authorization: Bearer {} ok", long_jwt()),
            format!("Authorization: Bearer    {opaque}7 end"),
            format!("curl -H 'authorization: bearer sk-proj-{opaque}'"),
            "Use a Bearer token here, Bearer YOUR_API_KEY".to_string(),
            format!("token {} alone", long_jwt()),
            "mails a@b.io, c.d+e@sub.example.org and x@y".to_string(),
            "nums 4111-1111-1111-1111 and 378282246310005 and 1234567812345678".to_string(),
            "ips 10.0.0.1-10.0.0.9, version 1.2.3.4 and 1.2.3.4.5".to_string(),
            "ibans GB82 WEST 1234 5698 7654 32 and BE68 5390 0754 7034 ABCD".to_string(),
            "pem -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nAAAA\nThat is all.".to_string(),
            "staff EMP-123456 and EMP-12 on Project\nBluebird, zeta and zetas".to_string(),
            "ref CASE-1234 ALPHA BRAVO CHARLIE DELTA ECHO FOXTROT GOLF HOTEL INDIA JULIET KILO LIMA end".to_string(),
            "note: The quick brown fox jumps over the lazy dog near the riverbank at dawn on\n  Tuesday, again".to_string(),
            "TICKET 42 opened\nsee TICKET 43 and\nTICKET 44x".to_string(),
            // Point 10 disguises: fullwidth digits, zero-width and bidi characters inside values.
            "card ４１１１ １１１１ １１１１ １１１１ ok".to_string(),
            "key AKIA\u{200B}IOSFODNN7\u{00AD}EXAMPLE ok".to_string(),
            "mail bob\u{202E}@exa\u{2060}mple.com ok".to_string(),
            "Project\u{200B} Bluebird and ｚｅｔａ".to_string(),
        ]);
        v
    }

    /// The whole-text result: (text, counts), or the blocked category.
    fn whole(r: &Redactor, text: &str) -> Result<(String, Counts), String> {
        match r.apply(text, Place::Response) {
            Ok(out) => {
                let mut counts = Counts::default();
                counts.add(Place::Response, out.counts);
                Ok((out.text.into_owned(), counts))
            }
            Err(b) => Err(b.category.to_string()),
        }
    }

    /// The streamed result for `text` cut into `chunks` (byte lengths, on char boundaries).
    fn streamed(r: &Redactor, pieces: &[&str]) -> Result<(String, Counts), String> {
        let mut s = StreamRedactor::new(r, Place::Response).unwrap();
        let mut out = String::new();
        for p in pieces {
            out.push_str(&s.push(p).map_err(|b| b.category.to_string())?);
        }
        out.push_str(&s.flush().map_err(|b| b.category.to_string())?);
        Ok((out, s.counts().clone()))
    }

    fn boundaries(text: &str) -> Vec<usize> {
        (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect()
    }

    /// Every sample under `policy`: each 2-way split, char-by-char, and 20 random
    /// chunkings (fixed seed) give the whole-text output and counts (or the same
    /// block). Returns how many chunkings were compared.
    fn streamed_equals_whole(policy: &Policy, seed: u64) -> usize {
        let mut seed = seed;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let r = Redactor::new(policy).unwrap();
        let mut compared = 0usize;
        let samples = samples();
        for text in &samples {
            let want = whole(&r, text);
            let cuts = boundaries(text);
            for &at in &cuts {
                let got = streamed(&r, &[&text[..at], &text[at..]]);
                assert_eq!(got, want, "{text:?} split at {at}");
                compared += 1;
            }
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(streamed(&r, &pieces), want, "{text:?} char by char");
            compared += 1;
            for round in 0..20 {
                let mut pieces = Vec::new();
                let mut from = 0;
                while from < text.len() {
                    let max = 1 + (rand() % 24) as usize;
                    let to = cuts
                        .iter()
                        .copied()
                        .filter(|&c| c > from && c <= from + max)
                        .max()
                        .unwrap_or_else(|| cuts.iter().copied().find(|&c| c > from).unwrap());
                    pieces.push(&text[from..to]);
                    from = to;
                }
                assert_eq!(streamed(&r, &pieces), want, "{text:?} random round {round}");
                compared += 1;
            }
        }
        eprintln!(
            "streamed vs whole: {} samples, {} categories enabled, {compared} chunkings compared",
            samples.len(),
            Category::BUILTIN.len() + policy.patterns.len(),
        );
        compared
    }

    #[test]
    fn streamed_equals_whole_when_redacting() {
        // Issue 12, point 8: every detector, tenant pattern and denylist term, every split.
        assert!(streamed_equals_whole(&tenant_policy(Action::Redact), 0x9E37_79B9_7F4A_7C15) > 0);
        // The samples do hold what they are meant to: the comparison is not vacuous.
        let r = Redactor::new(&tenant_policy(Action::Redact)).unwrap();
        let all: String = samples().iter().map(|t| whole(&r, t).unwrap().0).collect();
        for placeholder in [
            "[EMAIL]",
            "[PHONE]",
            "[CARD]",
            "[IBAN]",
            "[SSN]",
            "[IPV4]",
            "[AWS_ACCESS_KEY]",
            "[AWS_SECRET_KEY]",
            "[PRIVATE_KEY]",
            "[TOKEN]",
            "[JWT]",
            "[DENYLIST]",
            "[EMPLOYEE_ID]",
            "[CASE_REF]",
            "[TICKET]",
        ] {
            assert!(all.contains(placeholder), "no sample yields {placeholder}");
        }
        assert!(
            !all.contains("riverbank") && !all.contains("FOXTROT"),
            "{all}"
        );
    }

    #[test]
    fn streamed_equals_whole_when_blocking() {
        // Issue 12, point 8: a stream is blocked exactly when the whole answer is, for
        // the same category, and sends no blocked value before the block.
        assert!(streamed_equals_whole(&tenant_policy(Action::Block), 0x2545_F491_4F6C_DD1D) > 0);
    }

    #[test]
    fn keyword_detectors_keep_their_keyword_across_chunks() {
        // Issue 12, point 8: "secret" and "Bearer" went out before the value arrived,
        // so an AWS secret key and a long opaque bearer token were sent in clear.
        let r = redactor();
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let token = format!("sk-proj-{}", "AbCdEf0123456789".repeat(20));
        let text = format!(
            "the secret, as the console printed it earlier today, is {secret}. \
             Authorization: Bearer {token} and Bearer {}",
            long_jwt()
        );
        let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
        let mut out = String::new();
        for c in text.chars() {
            out.push_str(&s.push(&c.to_string()).unwrap());
        }
        out.push_str(&s.flush().unwrap());
        assert_eq!(
            out,
            "the secret, as the console printed it earlier today, is [AWS_SECRET_KEY]. \
             Authorization: Bearer [TOKEN] and Bearer [JWT]"
        );
        assert_eq!(
            s.counts().header(),
            "response:aws_secret_key=1,bearer=1,jwt=1"
        );
    }

    #[test]
    fn one_char_chunks_without_whitespace_stay_linear() {
        // Issue 12, point 9: 64 KB in one-character chunks, no whitespace, finishes
        // (the timing itself is in the bench), and comes out as the whole would.
        let r = Redactor::new(&tenant_policy(Action::Redact)).unwrap();
        let text: String = "abcdefghij0123456789.-_"
            .chars()
            .cycle()
            .take(64 * 1024)
            .collect();
        let want = whole(&r, &text).unwrap();
        let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
        let mut out = String::new();
        for c in text.chars() {
            out.push_str(&s.push(&c.to_string()).unwrap());
        }
        out.push_str(&s.flush().unwrap());
        assert_eq!(out, want.0);
    }

    #[test]
    fn text_after_a_closed_key_block_flows_again() {
        // Issue 12, point 8: an open PEM block is held to its END line (its extent
        // depends on whether one follows), and no longer than that.
        let r = redactor();
        let mut s = StreamRedactor::new(&r, Place::Response).unwrap();
        let mut out = s
            .push("key -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n")
            .unwrap();
        assert!("key ".starts_with(&out), "{out}");
        out.push_str(
            &s.push("-----END RSA PRIVATE KEY----- and then a long tail of ordinary prose")
                .unwrap(),
        );
        assert!(
            out.starts_with("key [PRIVATE_KEY] and then a long tail"),
            "{out}"
        );
        out.push_str(&s.flush().unwrap());
        assert_eq!(
            out,
            "key [PRIVATE_KEY] and then a long tail of ordinary prose"
        );
    }
}
