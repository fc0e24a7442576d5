//! Built-in detectors. A regex finds candidates cheaply; code then checks the context
//! (neighbouring characters) and checksums, which keeps the regexes simple and linear and
//! keeps false positives low.

use std::sync::LazyLock;

use regex::Regex;

use super::Finding;
use super::category::Category;
use super::checksums::{iban_length, iban_valid, luhn_valid};

/// Compiled built-in patterns, shared by every `Redactor` in the process.
struct Builtins {
    email: Regex,
    phone_intl: Regex,
    phone_nanp: Regex,
    phone_trunk: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    aws_access: Regex,
    secret_word: Regex,
    pk_begin: Regex,
    pk_end: Regex,
    bearer: Regex,
    jwt: Regex,
}

fn compile(pattern: &str) -> Regex {
    // The patterns are constants covered by the tests, so failure is a programming error.
    Regex::new(pattern).expect("built-in redaction pattern compiles")
}

const EMAIL: &str = r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,24}";
const IBAN: &str = r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?";
const AWS_ACCESS: &str = r"(?:AKIA|ASIA)[A-Z0-9]{16}";
const SECRET_WORD: &str = r"(?i)secret";
const PK_BEGIN: &str = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----";
const PK_END: &str = r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----";
const BEARER: &str = r"(?i)bearer[ \t]+[A-Za-z0-9\-._~+/]+=*";
const JWT: &str = r"eyJ[A-Za-z0-9_\-]{7,}(?:\.[A-Za-z0-9_\-]*){2,4}";

/// What each detector's matches can span, for the stream redactor (see `extent`): the
/// regexes run over the whole text, a digit cluster (see `candidates`), and runs of
/// word or token characters (a denylist hit is judged by the word around it, an AWS
/// secret is a 40-character token run after a keyword that `SECRET_WORD` covers).
pub(super) const EXTENTS: [&str; 8] = [
    EMAIL,
    r"[+(]?[0-9]+(?:[ .\-()/]{1,2}[0-9]+)*",
    IBAN,
    AWS_ACCESS,
    SECRET_WORD,
    BEARER,
    JWT,
    r"[\w/+]+",
];

/// A private-key block: BEGIN line to the first END line; one never closed is held
/// until the text ends (its extent depends on there being no END after it).
pub(super) const PRIVATE_KEY_EXTENT: &str = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.)*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----";

// Digits are written [0-9]: Unicode \d would also match other scripts' digits.
static BUILTINS: LazyLock<Builtins> = LazyLock::new(|| Builtins {
    // Unicode \w in the local part so "josé@example.com" is found whole; ASCII TLD.
    email: compile(EMAIL),
    // "+" then country code and groups; separators are optional so "+4930901820" matches.
    phone_intl: compile(r"\+[0-9]{1,3}(?:[ .\-]?\([0-9]{1,4}\))?(?:[ .\-]?[0-9]{1,8}){1,6}"),
    // North American 3-3-4, optionally "1-" prefixed, area code optionally in parentheses.
    phone_nanp: compile(
        r"(?:1[ .\-])?(?:\([0-9]{3}\)[ .\-]?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}",
    ),
    // National numbers with a trunk 0, e.g. "020 7946 0958", "(030) 901820", "0049 30 901820".
    phone_trunk: compile(
        r"(?:\(0[0-9]{1,4}\)[ \-]?|0[0-9]{1,4}[ \-])[0-9]{2,8}(?:[ \-][0-9]{2,8}){0,3}",
    ),
    // Contiguous 13-19 digits, or groups of 4 (Amex 4-6-5 too) split by one space or dash.
    card: compile(r"[0-9]{13,19}|[0-9]{4}[ \-][0-9]{4,6}[ \-][0-9]{4,5}(?:[ \-][0-9]{1,4}){0,2}"),
    // Anchored: run only at candidate starts. Country, check digits, then BBAN in optional
    // groups of four; the exact length is fixed later from the country.
    iban: compile(&format!("^{IBAN}")),
    ssn: compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}"),
    ipv4: compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"),
    aws_access: compile(AWS_ACCESS),
    secret_word: compile(SECRET_WORD),
    pk_begin: compile(PK_BEGIN),
    pk_end: compile(PK_END),
    bearer: compile(BEARER),
    jwt: compile(JWT),
});

/// Forces compilation of the built-in patterns (otherwise done on first use).
pub(super) fn warm_up() {
    LazyLock::force(&BUILTINS);
}

/// A maximal run of ASCII digits joined by at most two separator bytes (space . - ( ) /),
/// plus a leading `+` or `(`. Every phone, card, SSN and IPv4 candidate lies inside one,
/// so those regexes only run on these short slices instead of the whole text.
struct Cluster {
    start: usize,
    end: usize,
    digits: usize,
    dots: usize,
    dashes: usize,
}

/// Where the numeric detectors should look.
struct Candidates {
    clusters: Vec<Cluster>,
    /// Byte offsets of "two uppercase letters + two digits", where an IBAN may start.
    iban_starts: Vec<usize>,
}

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'.' | b'-' | b'(' | b')' | b'/')
}

/// True if any of the eight bytes is an ASCII digit. Branch-free SWAR ("has byte between"
/// from Bit Twiddling Hacks), so skipping digit-free prose is fast even where the compiler
/// does not vectorise (the gateway's release profile uses opt-level "s").
fn has_digit(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // Bytes strictly between b'0' - 1 and b'9' + 1.
    const BELOW: u64 = (b'0' - 1) as u64;
    const ABOVE: u64 = (b'9' + 1) as u64;
    let low7 = word & (ONES * 0x7F);
    ((ONES * (0x7F + ABOVE) - low7) & !word & (low7 + ONES * (0x7F - BELOW)) & HIGH) != 0
}

fn candidates(text: &str) -> Candidates {
    let b = text.as_bytes();
    let n = b.len();
    let mut out = Candidates {
        clusters: Vec::new(),
        iban_starts: Vec::new(),
    };
    let mut i = 0;
    while i < n {
        if let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok())
            && !has_digit(u64::from_le_bytes(chunk))
        {
            i += 8;
            continue;
        }
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        if i >= 2
            && b[i - 1].is_ascii_uppercase()
            && b[i - 2].is_ascii_uppercase()
            && b.get(i + 1).is_some_and(u8::is_ascii_digit)
        {
            out.iban_starts.push(i - 2);
        }
        let start = if i > 0 && matches!(b[i - 1], b'+' | b'(') {
            i - 1
        } else {
            i
        };
        let mut c = Cluster {
            start,
            end: i,
            digits: 0,
            dots: 0,
            dashes: 0,
        };
        let mut j = i;
        loop {
            while j < n && b[j].is_ascii_digit() {
                c.digits += 1;
                j += 1;
            }
            c.end = j;
            let mut k = j;
            while k < n && k - j < 2 && is_sep(b[k]) {
                k += 1;
            }
            if k == j || !b.get(k).is_some_and(u8::is_ascii_digit) {
                break;
            }
            c.dots += b[j..k].iter().filter(|&&x| x == b'.').count();
            c.dashes += b[j..k].iter().filter(|&&x| x == b'-').count();
            j = k;
        }
        i = c.end;
        out.clusters.push(c);
    }
    out
}

/// Runs the built-in detectors for which `enabled` is true, appending raw (possibly
/// overlapping) findings to `out`.
pub(super) fn detect(text: &str, enabled: &dyn Fn(&Category) -> bool, out: &mut Vec<Finding>) {
    let b = &*BUILTINS;
    let mut push = |category: Category, start: usize, end: usize| {
        out.push(Finding {
            category,
            start,
            end,
        });
    };
    let numeric = [
        Category::Phone,
        Category::Card,
        Category::Iban,
        Category::Ssn,
        Category::Ipv4,
    ];
    if numeric.iter().any(enabled) {
        let cand = candidates(text);
        let on = |c: Category| enabled(&c);
        for c in &cand.clusters {
            if on(Category::Phone) {
                phones(b, text, c, &mut push);
            }
            if c.digits >= 13 && on(Category::Card) {
                cards(b, text, c, &mut push);
            }
            if c.digits >= 9 && c.dashes >= 2 && on(Category::Ssn) {
                ssns(b, text, c, &mut push);
            }
            if c.digits >= 4 && c.dots >= 3 && on(Category::Ipv4) {
                ipv4s(b, text, c, &mut push);
            }
        }
        if on(Category::Iban) {
            ibans(b, text, &cand.iban_starts, &mut push);
        }
    }
    if text.contains('@') && enabled(&Category::Email) {
        emails(b, text, &mut push);
    }
    if enabled(&Category::PrivateKey) {
        private_keys(b, text, &mut push);
    }
    if enabled(&Category::AwsAccessKey) {
        for m in b.aws_access.find_iter(text) {
            if !is_alnum(prev_char(text, m.start())) && !is_alnum(next_char(text, m.end())) {
                push(Category::AwsAccessKey, m.start(), m.end());
            }
        }
    }
    if enabled(&Category::AwsSecretKey) {
        aws_secrets(b, text, &mut push);
    }
    if enabled(&Category::Bearer) {
        bearers(b, text, &mut push);
    }
    if enabled(&Category::Jwt) {
        jwts(b, text, &mut push);
    }
}

type Push<'a> = dyn FnMut(Category, usize, usize) + 'a;

fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i).and_then(|s| s.chars().next_back())
}

fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

fn is_alnum(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn is_digit(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}

/// True if `start..end` is a whole number-like token: not glued to letters or digits, and
/// not continued by one of `cont` followed by a digit (e.g. "1.2.3.4" inside "1.2.3.4.5").
fn number_bounded(text: &str, start: usize, end: usize, cont: &[char]) -> bool {
    let before = prev_char(text, start);
    if is_alnum(before) {
        return false;
    }
    if let Some(c) = before
        && cont.contains(&c)
        && is_digit(prev_char(text, start - c.len_utf8()))
    {
        return false;
    }
    let after = next_char(text, end);
    if is_alnum(after) {
        return false;
    }
    if let Some(c) = after
        && cont.contains(&c)
        && is_digit(next_char(text, end + c.len_utf8()))
    {
        return false;
    }
    true
}

fn count_digits(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

fn emails(b: &Builtins, text: &str, push: &mut Push<'_>) {
    for m in b.email.find_iter(text) {
        let s = m.as_str();
        // Leading dots belong to the surrounding prose ("...bob@x.org"), not the address.
        let lead = s.len() - s.trim_start_matches('.').len();
        if s[lead..].starts_with('@') || is_alnum(next_char(text, m.end())) {
            continue;
        }
        push(Category::Email, m.start() + lead, m.end());
    }
}

/// Characters that glue a phone number to something that is not a phone number (a sum,
/// a price, an id, a path). A comma is fine here ("Bob,415-555-2671" in CSV); a comma
/// after a digit is caught by `number_bounded`.
fn phone_prefix_ok(text: &str, start: usize) -> bool {
    !matches!(
        prev_char(text, start),
        Some('+' | '$' | '€' | '£' | '¥' | '#' | '@' | '.' | '/' | '-')
    )
}

/// Matches of `re` inside one cluster, as (start offset in `text`, matched text).
fn in_cluster<'a>(
    re: &'a Regex,
    text: &'a str,
    c: &Cluster,
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    let base = c.start;
    // Cluster bounds are ASCII bytes, hence char boundaries; `get` keeps this panic-free.
    let slice = text.get(c.start..c.end).unwrap_or("");
    re.find_iter(slice)
        .map(move |m| (base + m.start(), m.as_str()))
}

fn phones(b: &Builtins, text: &str, c: &Cluster, push: &mut Push<'_>) {
    const CONT: &[char] = &['.', '-', '/', ',', ':'];
    let ok = |start: usize, s: &str| {
        phone_prefix_ok(text, start) && number_bounded(text, start, start + s.len(), CONT)
    };
    if c.digits >= 9 && text.as_bytes().get(c.start) == Some(&b'+') {
        for (start, s) in in_cluster(&b.phone_intl, text, c) {
            let digits = count_digits(s);
            // A single dot is a decimal ("+3.14159265"), not a separator.
            let dots = s.matches('.').count();
            if (9..=15).contains(&digits) && dots != 1 && ok(start, s) {
                push(Category::Phone, start, start + s.len());
            }
        }
    }
    if c.digits >= 10 {
        for (start, s) in in_cluster(&b.phone_nanp, text, c) {
            let ds: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
            // Drop the optional leading country "1" to get the 10-digit number.
            let ten = &ds[ds.len().saturating_sub(10)..];
            // Real area codes and exchanges start with 2-9.
            let plausible = ten.len() == 10 && ten[0] >= b'2' && ten[3] >= b'2';
            if plausible && ok(start, s) {
                push(Category::Phone, start, start + s.len());
            }
        }
    }
    if c.digits >= 9 {
        for (start, s) in in_cluster(&b.phone_trunk, text, c) {
            let digits = count_digits(s);
            // After the area code all separators must agree ("05-01-2024 10" is not a phone).
            let rest = s.rsplit(')').next().unwrap_or(s);
            let mut seps = rest.chars().filter(|c| matches!(c, ' ' | '-'));
            let consistent = match seps.next() {
                Some(first) => seps.all(|c| c == first),
                None => true,
            };
            // "00" is the international prefix ("0049 30 901820"): allow a full E.164 length.
            let max = if s.starts_with("00") { 15 } else { 11 };
            if (9..=max).contains(&digits) && consistent && ok(start, s) {
                push(Category::Phone, start, start + s.len());
            }
        }
    }
}

fn cards(b: &Builtins, text: &str, c: &Cluster, push: &mut Push<'_>) {
    for (start, s) in in_cluster(&b.card, text, c) {
        // A trailing group may be unrelated ("... 1111 2024"): try the whole match, then
        // without its last group.
        let mut end = s.len();
        loop {
            let cand = &s[..end];
            if card_plausible(cand) && number_bounded(text, start, start + end, &['.', '-', '/']) {
                push(Category::Card, start, start + end);
                break;
            }
            match cand.rfind([' ', '-']) {
                Some(i) if count_digits(&cand[..i]) >= 13 => end = i,
                _ => break,
            }
        }
    }
}

fn card_plausible(s: &str) -> bool {
    let digits = count_digits(s);
    let mut seps = s.chars().filter(|c| !c.is_ascii_digit());
    let consistent = match seps.next() {
        Some(first) => seps.all(|c| c == first),
        None => true,
    };
    // Issuer ranges in use start with 2-6 (Mastercard 2-series, Amex/JCB/Diners 3, Visa 4,
    // Mastercard/Maestro 5, Discover/UnionPay 6): order ids starting 0/1/7-9 are skipped.
    (13..=19).contains(&digits)
        && consistent
        && matches!(s.as_bytes().first(), Some(b'2'..=b'6'))
        && luhn_valid(s)
}

fn ibans(b: &Builtins, text: &str, starts: &[usize], push: &mut Push<'_>) {
    // Longest IBAN (34) written in groups of four with single spaces.
    const MAX_WRITTEN: usize = 42;
    let mut last_end = 0;
    for &start in starts {
        if start < last_end || is_alnum(prev_char(text, start)) {
            continue;
        }
        let mut stop = (start + MAX_WRITTEN).min(text.len());
        while !text.is_char_boundary(stop) {
            stop -= 1;
        }
        let Some(m) = text.get(start..stop).and_then(|w| b.iban.find(w)) else {
            continue;
        };
        let s = m.as_str();
        let Some(len) = s.get(..2).and_then(iban_length) else {
            continue;
        };
        // Cut the match at the country's registered length; the rest is other text.
        let mut compact = String::with_capacity(34);
        let mut end = start;
        for (i, ch) in s.char_indices() {
            if compact.len() == len {
                break;
            }
            if ch != ' ' {
                compact.push(ch);
                end = start + i + ch.len_utf8();
            }
        }
        if compact.len() == len && !is_alnum(next_char(text, end)) && iban_valid(&compact) {
            push(Category::Iban, start, end);
            last_end = end;
        }
    }
}

fn ssns(b: &Builtins, text: &str, c: &Cluster, push: &mut Push<'_>) {
    for (start, s) in in_cluster(&b.ssn, text, c) {
        // The pattern is ASCII-only, so byte slicing is on char boundaries.
        let area = &s[0..3];
        let group = &s[4..6];
        let serial = &s[7..11];
        let valid = area != "000"
            && area != "666"
            && !area.starts_with('9')
            && group != "00"
            && serial != "0000";
        if valid && number_bounded(text, start, start + s.len(), &['.', '-', '/']) {
            push(Category::Ssn, start, start + s.len());
        }
    }
}

fn ipv4s(b: &Builtins, text: &str, c: &Cluster, push: &mut Push<'_>) {
    for (start, s) in in_cluster(&b.ipv4, text, c) {
        let octets_ok = s.split('.').all(|o| {
            // "01" is rejected: leading zeros are read as octal by some parsers.
            (o.len() == 1 || !o.starts_with('0')) && o.parse::<u8>().is_ok()
        });
        let end = start + s.len();
        if octets_ok && number_bounded(text, start, end, &['.']) && !after_version_word(text, start)
        {
            push(Category::Ipv4, start, end);
        }
    }
}

/// True if the word just before `start` says a version number follows ("version 1.2.3.4").
fn after_version_word(text: &str, start: usize) -> bool {
    // At most a few separators: a bounded look-back keeps the answer the same for a
    // stream redactor, which keeps only a bounded left context.
    let mut before = &text[..start];
    for _ in 0..8 {
        match before.strip_suffix([' ', ':', '=']) {
            Some(rest) => before = rest,
            None => break,
        }
    }
    let word_start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphabetic())
        .last()
        .map_or(before.len(), |(i, _)| i);
    let word = &before[word_start..];
    [
        "version", "versions", "ver", "v", "release", "firmware", "build",
    ]
    .iter()
    .any(|w| word.eq_ignore_ascii_case(w))
}

fn private_keys(b: &Builtins, text: &str, push: &mut Push<'_>) {
    let mut from = 0;
    // Once no END follows, none follows a later BEGIN either: remembering that keeps many
    // unterminated BEGIN lines linear instead of quadratic.
    let mut end_missing = false;
    while let Some(begin) = b.pk_begin.find_at(text, from) {
        let found = if end_missing {
            None
        } else {
            b.pk_end.find_at(text, begin.end())
        };
        let end = match found {
            Some(e) => e.end(),
            // Truncated block (e.g. a cut-off response): take the base64 lines that follow.
            None => {
                end_missing = true;
                unterminated_key_end(text, begin.end())
            }
        };
        push(Category::PrivateKey, begin.start(), end);
        from = end;
    }
}

fn unterminated_key_end(text: &str, body_start: usize) -> usize {
    let mut end = body_start;
    let mut pos = body_start;
    let mut in_headers = false;
    for (n, line) in text[body_start..].split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        // The rest of the BEGIN line is normally empty.
        let skip = n == 0 && content.trim().is_empty();
        let header = content.starts_with("Proc-Type:") || content.starts_with("DEK-Info:");
        let body = !content.is_empty()
            && content
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
        let blank_after_header = in_headers && content.is_empty();
        if !(skip || header || body || blank_after_header) {
            break;
        }
        in_headers = header;
        if !skip {
            end = pos + content.len();
        }
        pos += line.len();
    }
    end
}

fn aws_secrets(b: &Builtins, text: &str, push: &mut Push<'_>) {
    // How far after the keyword the value may start ("aws_secret_access_key = '...").
    const WINDOW: usize = 64;
    // Value characters are ASCII, so token edges are always char boundaries.
    let is_tok = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let bytes = text.as_bytes();
    let n = bytes.len();
    for kw in b.secret_word.find_iter(text) {
        let limit = (kw.end() + WINDOW).min(n);
        let mut i = kw.end();
        // Skip the rest of a word the keyword is part of ("SecretAccessKey").
        while i < n && is_tok(bytes[i]) {
            i += 1;
        }
        while i < limit {
            if !is_tok(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && is_tok(bytes[i]) {
                i += 1;
            }
            let v = &bytes[start..i];
            if v.len() != 40 || bytes.get(i) == Some(&b'=') {
                continue;
            }
            // AWS secrets are random base64: mixed case plus digits or symbols. This rules
            // out hex digests (lowercase) and words.
            let upper = v.iter().any(u8::is_ascii_uppercase);
            let lower = v.iter().any(u8::is_ascii_lowercase);
            let other = v.iter().any(|c| !c.is_ascii_alphabetic());
            if upper && lower && other {
                push(Category::AwsSecretKey, start, i);
                break;
            }
        }
    }
}

fn bearers(b: &Builtins, text: &str, push: &mut Push<'_>) {
    for m in b.bearer.find_iter(text) {
        if is_alnum(prev_char(text, m.start())) {
            continue;
        }
        let s = m.as_str();
        let Some(ws) = s.find([' ', '\t']) else {
            continue;
        };
        let tok_off = s.len() - s[ws..].trim_start_matches([' ', '\t']).len();
        // A sentence-ending dot is not part of the token.
        let token = s[tok_off..].trim_end_matches('.');
        let has_digit = token.bytes().any(|c| c.is_ascii_digit());
        let mixed = token.bytes().any(|c| c.is_ascii_uppercase())
            && token.bytes().any(|c| c.is_ascii_lowercase());
        // Prose like "a Bearer token" or "Bearer YOUR_API_KEY" is not a credential.
        let looks_secret = (token.len() >= 8 && has_digit) || (token.len() >= 16 && mixed);
        if looks_secret && !is_alnum(next_char(text, m.end())) {
            let start = m.start() + tok_off;
            push(Category::Bearer, start, start + token.len());
        }
    }
}

fn jwts(b: &Builtins, text: &str, push: &mut Push<'_>) {
    for m in b.jwt.find_iter(text) {
        let mut s = m.as_str();
        // Keep three segments for JWS, five for JWE; drop empty extras (a sentence's dot).
        while s.matches('.').count() > 2 && s.ends_with('.') {
            s = &s[..s.len() - 1];
        }
        let header = s.split('.').next().unwrap_or("");
        let before = prev_char(text, m.start());
        let glued = is_alnum(before) || matches!(before, Some('-' | '.'));
        if !glued && !is_alnum(next_char(text, m.end())) && jwt_header_ok(header) {
            push(Category::Jwt, m.start(), m.start() + s.len());
        }
    }
}

/// True if the base64url header decodes to the start of a JSON object with a key.
fn jwt_header_ok(header: &str) -> bool {
    let take = header.len().min(64) / 4 * 4;
    let mut out = Vec::with_capacity(take / 4 * 3);
    for chunk in header.as_bytes()[..take].chunks(4) {
        let mut n = 0u32;
        for &c in chunk {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return false,
            };
            n = (n << 6) | u32::from(v);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    out.starts_with(b"{\"") && out.windows(2).any(|w| w == b"\":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Category, String)> {
        let mut out = Vec::new();
        detect(text, &|_| true, &mut out);
        let mut v: Vec<_> = out
            .into_iter()
            .map(|f| (f.category, text[f.start..f.end].to_string()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn cats(text: &str, cat: Category) -> Vec<String> {
        found(text)
            .into_iter()
            .filter(|(c, _)| *c == cat)
            .map(|(_, s)| s)
            .collect()
    }

    #[test]
    fn has_digit_matches_every_byte_in_every_lane() {
        for lane in 0..8 {
            for v in 0..=255u8 {
                let mut bytes = [b'x'; 8];
                bytes[lane] = v;
                let word = u64::from_le_bytes(bytes);
                assert_eq!(has_digit(word), v.is_ascii_digit(), "lane {lane} byte {v}");
            }
        }
        // No carry or borrow leaks between neighbouring lanes.
        for a in 0..=255u8 {
            for c in 0..=255u8 {
                let word = u64::from_le_bytes([b'x', a, c, 0xFF, 0x80, 0xB0, 0xB9, b'/']);
                assert_eq!(has_digit(word), a.is_ascii_digit() || c.is_ascii_digit());
            }
        }
    }

    #[test]
    fn email_true_and_false_positives() {
        assert_eq!(
            cats("Mail john.doe+tag@example.co.uk today.", Category::Email),
            ["john.doe+tag@example.co.uk"]
        );
        assert_eq!(
            cats("josé@exämple.com", Category::Email),
            ["josé@exämple.com"]
        );
        assert_eq!(cats("...bob@x.org", Category::Email), ["bob@x.org"]);
        assert!(cats("user@localhost and @handle and a@b.c1", Category::Email).is_empty());
    }

    #[test]
    fn phone_true_positives() {
        for p in [
            "+44 20 7946 0958",
            "+1 (415) 555-2671",
            "415-555-2671",
            "(415) 555 2671",
            "+49 30 901820",
            "+4930901820",
            "1-415-555-2671",
            "+44 (0)20 7946 0958",
            "020 7946 0958",
            "0049 30 901820",
        ] {
            let text = format!("Call {p}, thanks.");
            assert_eq!(cats(&text, Category::Phone), [p], "{text}");
        }
        assert_eq!(
            cats("tel:+44 20 7946 0958", Category::Phone),
            ["+44 20 7946 0958"]
        );
        assert_eq!(
            cats("Bob,415-555-2671,NY", Category::Phone),
            ["415-555-2671"]
        );
        assert_eq!(
            cats("phone=415.555.2671", Category::Phone),
            ["415.555.2671"]
        );
    }

    #[test]
    fn phone_false_positives() {
        for t in [
            "We have 42 apples and 1234567 pears.",
            "In 1999 and 2024 it cost $1,299.99 or 49.95 EUR.",
            "Upgrade to 1.2.3 or 10.20.30 now.",
            "Due 2024-05-01, ship 2024-05-03T10:00.",
            "Order 12345678901234 and 9876543210 shipped.",
            "Pi is +3.14159265358 roughly.",
            "Invoice 123-456-7890 uses area code 1.",
            "Dates 05-01-2024 10 people.",
            "Price +$5, score +12 3",
            "Total 1,415-555-2671 units and $415-555-2671",
            "Offset +05:30 and ID-415-555-2671",
        ] {
            assert!(cats(t, Category::Phone).is_empty(), "{t}: {:?}", found(t));
        }
    }

    #[test]
    fn card_luhn_and_formats() {
        for c in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "3782 822463 10005",
            "5555555555554444",
        ] {
            let text = format!("card: {c}.");
            assert_eq!(cats(&text, Category::Card), [c], "{text}");
        }
        assert_eq!(
            cats("pay 4111 1111 1111 1111 2025", Category::Card),
            ["4111 1111 1111 1111"]
        );
        for t in [
            "order 1234567812345678",
            "card 4111111111111112",
            "mixed 4111 1111-1111 1111",
            "long 41111111111111110000",
            "id 0000000000000000",
        ] {
            assert!(cats(t, Category::Card).is_empty(), "{t}");
        }
    }

    #[test]
    fn iban_checksum() {
        assert_eq!(
            cats("IBAN: GB82 WEST 1234 5698 7654 32, ok", Category::Iban),
            ["GB82 WEST 1234 5698 7654 32"]
        );
        assert_eq!(
            cats("to DE89370400440532013000.", Category::Iban),
            ["DE89370400440532013000"]
        );
        assert_eq!(
            cats("BE68 5390 0754 7034 ABCD", Category::Iban),
            ["BE68 5390 0754 7034"]
        );
        for t in [
            "GB83 WEST 1234 5698 7654 32",
            "DE89370400440532013001",
            "XX89370400440532013000",
            "DE893704004405320130001",
        ] {
            assert!(cats(t, Category::Iban).is_empty(), "{t}");
        }
    }

    #[test]
    fn ssn_ranges() {
        assert_eq!(cats("SSN 123-45-6789.", Category::Ssn), ["123-45-6789"]);
        for t in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "1123-45-6789",
            "123-45-67890",
            "123456789",
        ] {
            assert!(cats(t, Category::Ssn).is_empty(), "{t}");
        }
    }

    #[test]
    fn ipv4_vs_versions() {
        assert_eq!(
            cats("host 192.168.0.1:8080", Category::Ipv4),
            ["192.168.0.1"]
        );
        assert_eq!(cats("ip=10.0.0.255.", Category::Ipv4), ["10.0.0.255"]);
        assert_eq!(
            cats("10.0.0.1-10.0.0.9", Category::Ipv4),
            ["10.0.0.1", "10.0.0.9"]
        );
        for t in [
            "256.1.1.1",
            "1.2.3.4.5",
            "version 1.2.3.4",
            "v1.2.3.4",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.1234",
        ] {
            assert!(cats(t, Category::Ipv4).is_empty(), "{t}");
        }
    }

    #[test]
    fn aws_keys() {
        assert_eq!(
            cats("key AKIAIOSFODNN7EXAMPLE here", Category::AwsAccessKey),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        assert_eq!(
            cats("ASIAY34FZKBOKMUTVV7A", Category::AwsAccessKey),
            ["ASIAY34FZKBOKMUTVV7A"]
        );
        assert!(cats("XAKIAIOSFODNN7EXAMPLE", Category::AwsAccessKey).is_empty());
        assert!(cats("AKIAIOSFODNN7EXAMPL", Category::AwsAccessKey).is_empty());

        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for t in [
            format!("aws_secret_access_key={secret}"),
            format!("AWS_SECRET_ACCESS_KEY = \"{secret}\""),
            format!("the secret key is {secret}."),
        ] {
            assert_eq!(cats(&t, Category::AwsSecretKey), [secret], "{t}");
        }
        // No keyword nearby, hex digest, or keyword too far away.
        assert!(cats(&format!("value {secret}"), Category::AwsSecretKey).is_empty());
        assert!(
            cats(
                "secret: da39a3ee5e6b4b0d3255bfef95601890afd80709",
                Category::AwsSecretKey
            )
            .is_empty()
        );
        let far = format!("secret{}{secret}", " word".repeat(20));
        assert!(cats(&far, Category::AwsSecretKey).is_empty());
    }

    #[test]
    fn private_key_blocks() {
        let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83+/abc=\n-----END RSA PRIVATE KEY-----";
        let text = format!("key:\n{block}\nthanks");
        assert_eq!(cats(&text, Category::PrivateKey), [block]);
        let pkcs8 = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
        assert_eq!(cats(pkcs8, Category::PrivateKey), [pkcs8]);
        // Truncated: the base64 lines are taken, the prose after them is not.
        let cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nAAAA\nThat is all.";
        assert_eq!(
            cats(cut, Category::PrivateKey),
            ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nAAAA"]
        );
        assert!(
            cats(
                "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
                Category::PrivateKey
            )
            .is_empty()
        );
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

    #[test]
    fn bearer_and_jwt() {
        assert_eq!(
            cats("Authorization: Bearer sk-abc123def456ghi", Category::Bearer),
            ["sk-abc123def456ghi"]
        );
        assert_eq!(
            cats("bearer abcd1234efgh.", Category::Bearer),
            ["abcd1234efgh"]
        );
        for t in [
            "Use a Bearer token here",
            "Bearer YOUR_API_KEY",
            "token_type: bearer",
            "Bearer <token>",
        ] {
            assert!(cats(t, Category::Bearer).is_empty(), "{t}");
        }
        assert_eq!(cats(&format!("jwt {JWT}."), Category::Jwt), [JWT]);
        assert_eq!(cats(&format!("Bearer {JWT}"), Category::Jwt), [JWT]);
        for t in [
            "see eyJunkfoo.bar.baz",
            "a.b.c and foo.bar.baz",
            "version 1.2.3",
            "eyJhbGciOiJIUzI1NiJ9 alone",
        ] {
            assert!(cats(t, Category::Jwt).is_empty(), "{t}");
        }
    }
}
