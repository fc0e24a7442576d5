//! End-to-end tests of `Redactor` (policy per place, overlaps, counts, robustness).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::*;

/// A tiny serde data source standing in for TOML/JSON, so the tests need no extra crates.
mod value {
    use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
    use serde::de::{Deserializer, IntoDeserializer, Visitor};

    pub enum V {
        S(&'static str),
        L(Vec<V>),
        M(Vec<(&'static str, V)>),
    }

    impl<'de> IntoDeserializer<'de, Error> for V {
        type Deserializer = V;
        fn into_deserializer(self) -> V {
            self
        }
    }

    impl<'de> Deserializer<'de> for V {
        type Error = Error;

        fn deserialize_any<W: Visitor<'de>>(self, v: W) -> Result<W::Value, Error> {
            match self {
                V::S(s) => v.visit_str(s),
                V::L(items) => v.visit_seq(SeqDeserializer::new(items.into_iter())),
                V::M(entries) => v.visit_map(MapDeserializer::new(entries.into_iter())),
            }
        }

        fn deserialize_enum<W: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            v: W,
        ) -> Result<W::Value, Error> {
            match self {
                V::S(s) => IntoDeserializer::<Error>::into_deserializer(s)
                    .deserialize_enum(name, variants, v),
                other => other.deserialize_any(v),
            }
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    }
}

use value::V;

/// The brief's example policy (with `denylist` at top level, where TOML puts it when it
/// precedes the table headers).
fn example_policy() -> V {
    V::M(vec![
        ("response", V::S("redact")),
        ("stored", V::S("redact")),
        ("upstream", V::S("off")),
        ("denylist", V::L(vec![V::S("project bluebird")])),
        ("categories", V::M(vec![("ipv4", V::S("off"))])),
        (
            "patterns",
            V::L(vec![V::M(vec![
                ("name", V::S("employee_id")),
                ("regex", V::S("EMP-[0-9]{6}")),
            ])]),
        ),
    ])
}

fn redactor(policy: Policy) -> Redactor {
    Redactor::new(&policy).expect("valid policy")
}

fn all(action: Action) -> Policy {
    Policy {
        response: action,
        stored: action,
        upstream: action,
        ..Policy::default()
    }
}

#[test]
fn doc_example() {
    let policy = Policy {
        response: Action::Redact,
        ..Policy::default()
    };
    let redactor = redactor(policy);
    let out = redactor.apply("mail bob@example.com", Place::Response);
    assert_eq!(
        out.map(|r| r.text.into_owned()).as_deref(),
        Ok("mail [EMAIL]")
    );
}

#[test]
fn policy_deserializes_from_config_shape() {
    let policy = Policy::deserialize(example_policy()).expect("deserializes");
    assert_eq!(policy.response, Action::Redact);
    assert_eq!(policy.stored, Action::Redact);
    assert_eq!(policy.upstream, Action::Off);
    assert_eq!(policy.categories.get("ipv4"), Some(&Action::Off));
    assert_eq!(policy.patterns[0].name, "employee_id");
    assert_eq!(policy.denylist, ["project bluebird"]);

    let r = redactor(policy);
    let text = "EMP-123456 on Project Bluebird from 10.0.0.1, mail a@b.io";
    let out = r.apply(text, Place::Response).expect("not blocked");
    assert_eq!(
        out.text,
        "[EMPLOYEE_ID] on [DENYLIST] from 10.0.0.1, mail [EMAIL]"
    );
    let up = r.apply(text, Place::Upstream).expect("not blocked");
    assert!(matches!(up.text, Cow::Borrowed(_)));

    // Omitted fields default to off; unknown fields and actions are rejected.
    let empty = Policy::deserialize(V::M(vec![])).expect("deserializes");
    assert_eq!(empty, Policy::default());
    assert!(Policy::deserialize(V::M(vec![("respons", V::S("redact"))])).is_err());
    assert!(Policy::deserialize(V::M(vec![("response", V::S("mask"))])).is_err());
    let misplaced = V::M(vec![(
        "patterns",
        V::L(vec![V::M(vec![
            ("name", V::S("x")),
            ("regex", V::S("x")),
            ("denylist", V::L(vec![])),
        ])]),
    )]);
    assert!(Policy::deserialize(misplaced).is_err());
}

#[test]
fn actions_per_place() {
    let policy = Policy {
        response: Action::Redact,
        stored: Action::Block,
        upstream: Action::Off,
        ..Policy::default()
    };
    let r = redactor(policy);
    let text = "SSN 123-45-6789";
    let resp = r.apply(text, Place::Response).expect("redacted");
    assert_eq!(resp.text, "SSN [SSN]");
    assert_eq!(resp.counts, BTreeMap::from([(Category::Ssn, 1)]));
    assert_eq!(
        r.apply(text, Place::Stored),
        Err(Blocked {
            category: Category::Ssn
        })
    );
    let up = r.apply(text, Place::Upstream).expect("off");
    assert_eq!(up.text, text);
    assert!(up.counts.is_empty());
    // Clean text passes even where the policy blocks.
    let clean = r.apply("nothing to see", Place::Stored).expect("clean");
    assert!(matches!(clean.text, Cow::Borrowed("nothing to see")));
}

#[test]
fn category_overrides() {
    let mut policy = all(Action::Redact);
    policy.categories.insert("ipv4".into(), Action::Off);
    policy.categories.insert("CARD".into(), Action::Block);
    let r = redactor(policy);
    assert_eq!(r.action(&Category::Ipv4, Place::Response), Action::Off);
    assert_eq!(r.action(&Category::Email, Place::Response), Action::Redact);
    let out = r.apply("10.1.2.3 and x@y.com", Place::Stored).expect("ok");
    assert_eq!(out.text, "10.1.2.3 and [EMAIL]");
    assert_eq!(out.counts, BTreeMap::from([(Category::Email, 1)]));
    let blocked = r.apply("x@y.com pays with 4111 1111 1111 1111", Place::Response);
    assert_eq!(
        blocked.map(|_| ()),
        Err(Blocked {
            category: Category::Card
        })
    );

    // An override turns a category on in a place that is otherwise off.
    let mut only_keys = all(Action::Off);
    only_keys
        .categories
        .insert("private_key".into(), Action::Redact);
    let r = redactor(only_keys);
    let text = "x@y.com -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
    let out = r.apply(text, Place::Upstream).expect("ok");
    assert_eq!(out.text, "x@y.com [PRIVATE_KEY]");

    let mut unknown = all(Action::Redact);
    unknown.categories.insert("creditcard".into(), Action::Off);
    assert!(matches!(
        Redactor::new(&unknown),
        Err(ConfigError::UnknownCategory { name }) if name == "creditcard"
    ));
}

#[test]
fn custom_patterns_and_denylist_through_policy() {
    let mut policy = all(Action::Redact);
    policy.patterns.push(PatternConfig {
        name: "ticket".into(),
        regex: "TCK-[0-9]+".into(),
    });
    policy.denylist = vec!["Bluebird".into()];
    policy.categories.insert("ticket".into(), Action::Block);
    let r = redactor(policy.clone());
    let out = r.apply("bluebird, bluebirds", Place::Response).expect("ok");
    assert_eq!(out.text, "[DENYLIST], bluebirds");
    assert_eq!(out.counts, BTreeMap::from([(Category::Denylist, 1)]));
    let err = r.apply("see TCK-42", Place::Response).map(|_| ());
    assert_eq!(
        err,
        Err(Blocked {
            category: Category::Custom(Arc::from("ticket"))
        })
    );

    policy.categories.clear();
    let r = redactor(policy.clone());
    assert_eq!(
        r.apply("see TCK-42.", Place::Response)
            .map(|o| o.text.into_owned()),
        Ok("see [TICKET].".to_string())
    );

    policy.patterns.push(PatternConfig {
        name: "bad".into(),
        regex: "(unclosed".into(),
    });
    let err = Redactor::new(&policy).map(|_| ());
    assert!(matches!(err, Err(ConfigError::InvalidPattern { ref name, .. }) if name == "bad"));
    assert!(
        err.map_err(|e| e.to_string())
            .unwrap_err()
            .contains("`bad`")
    );
}

#[test]
fn overlaps_resolved_in_apply() {
    let r = redactor(all(Action::Redact));
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl";
    let text = format!("Authorization: Bearer {jwt}");
    let out = r.apply(&text, Place::Response).expect("ok");
    assert_eq!(out.text, "Authorization: Bearer [JWT]");
    assert_eq!(out.counts, BTreeMap::from([(Category::Jwt, 1)]));

    // A custom pattern covering an e-mail and more wins as the longer span.
    let mut policy = all(Action::Redact);
    policy.patterns.push(PatternConfig {
        name: "contact".into(),
        regex: r"contact: \S+@\S+".into(),
    });
    let r = redactor(policy);
    let out = r
        .apply("contact: bob@example.com ok", Place::Response)
        .expect("ok");
    assert_eq!(out.text, "[CONTACT] ok");

    // A private key containing card-like digits is one finding.
    let r = redactor(all(Action::Redact));
    let text = "-----BEGIN EC PRIVATE KEY-----\n4111111111111111\n-----END EC PRIVATE KEY-----";
    let found = r.scan(text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].category, Category::PrivateKey);
}

#[test]
fn counts_are_correct_and_value_free() {
    let r = redactor(all(Action::Redact));
    let text = "a@b.com, c@d.org; card 4111-1111-1111-1111; AKIAIOSFODNN7EXAMPLE; +44 20 7946 0958";
    let out = r.apply(text, Place::Stored).expect("ok");
    assert_eq!(
        out.counts,
        BTreeMap::from([
            (Category::Email, 2),
            (Category::Phone, 1),
            (Category::Card, 1),
            (Category::AwsAccessKey, 1),
        ])
    );
    assert_eq!(
        out.text,
        "[EMAIL], [EMAIL]; card [CARD]; [AWS_ACCESS_KEY]; [PHONE]"
    );
    let dbg = format!("{:?}", out.counts);
    for secret in ["a@b.com", "4111", "AKIA", "7946"] {
        assert!(!dbg.contains(secret), "{dbg}");
    }
    let blocked = Blocked {
        category: Category::Card,
    };
    assert_eq!(
        blocked.to_string(),
        "blocked by redaction policy: text contains card"
    );
}

#[test]
fn unicode_around_matches() {
    let r = redactor(all(Action::Redact));
    let text =
        "Привет 👋 bob@example.com, 電話 +44 20 7946 0958。IBAN: GB82 WEST 1234 5698 7654 32 ✓";
    let out = r.apply(text, Place::Response).expect("ok");
    assert_eq!(out.text, "Привет 👋 [EMAIL], 電話 [PHONE]。IBAN: [IBAN] ✓");
    for f in r.scan(text) {
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
    }
    // Non-ASCII digits are not digits for these detectors.
    assert!(r.scan("٤١١١١١١١١١١١١١١١").is_empty());
}

#[test]
fn adversarial_inputs_do_not_panic() {
    let mut policy = all(Action::Redact);
    policy.denylist = vec!["é".into(), "a b".into()];
    policy.patterns.push(PatternConfig {
        name: "any_digit_pair".into(),
        regex: "[0-9]{2}".into(),
    });
    let r = redactor(policy);
    let fixed = [
        "",
        " ",
        "-",
        "--- ... ---",
        "+",
        "++++++++",
        "()()()",
        "@@@@",
        "....",
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\n",
        "Bearer ",
        "bearer\t",
        "secret",
        "eyJ",
        "eyJ..",
        "é",
        "😀😀😀",
        "\u{0}\u{1}\u{7f}",
        "١٢٣-٤٥-٦٧٨٩",
        "+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨",
        "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏",
        "ſecret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ];
    for text in fixed {
        check_apply(&r, text);
    }
    // Deterministic pseudo-random strings built from tricky pieces.
    let pieces = [
        "0",
        "1",
        "4",
        "9",
        " ",
        "-",
        ".",
        "+",
        "(",
        ")",
        "@",
        "/",
        "=",
        "é",
        "日",
        "😀",
        "\n",
        "AKIA",
        "eyJ",
        "Bearer ",
        "secret",
        "GB82",
        "a",
        "Z",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "a b",
        "\u{301}",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..3000 {
        let mut s = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 60) as usize;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        check_apply(&r, &s);
    }
}

fn check_apply(r: &Redactor, text: &str) {
    let found = r.scan(text);
    let mut last_end = 0;
    for f in &found {
        assert!(
            f.start < f.end && f.start >= last_end,
            "{text:?}: {found:?}"
        );
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        last_end = f.end;
    }
    for place in [Place::Response, Place::Stored, Place::Upstream] {
        let out = r
            .apply(text, place)
            .expect("redact-only policy never blocks");
        let total: u32 = out.counts.values().sum();
        assert_eq!(total as usize, found.len(), "{text:?}");
    }
}

#[test]
fn redactor_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Redactor>();
    let r = Arc::new(redactor(all(Action::Redact)));
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                let text = format!("user{i}@example.com");
                r.apply(&text, Place::Response)
                    .map(|o| o.text.into_owned())
                    .unwrap_or_default()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().ok().as_deref(), Some("[EMAIL]"));
    }
}

/// A 10 KB English-like text with numbers that must not be flagged.
fn ordinary_text() -> String {
    let para = "The committee met on Tuesday to review the quarterly report. Revenue grew by 12 percent \
        compared with 2023, while costs stayed close to $4,500 per month. Version 2.4.1 of the \
        scheduling tool shipped on 2024-05-01 and fixed several long-standing issues with time \
        zones. Everyone agreed that the next meeting should focus on hiring, onboarding and the \
        plan for the autumn release, which is expected to include better search and reporting. ";
    let mut s = String::with_capacity(10_500);
    while s.len() < 10_240 {
        s.push_str(para);
    }
    s.truncate(10_240);
    s
}

#[test]
fn ordinary_text_has_no_findings() {
    let r = redactor(all(Action::Redact));
    let text = ordinary_text();
    assert_eq!(r.scan(&text), []);
    assert!(matches!(
        r.apply(&text, Place::Response).map(|o| o.text),
        Ok(Cow::Borrowed(_))
    ));
}

/// Measures scan time on 10 KB of ordinary text. Run with:
/// `cargo test --release -- --ignored --nocapture bench_scan_10kb`
#[test]
#[ignore]
fn bench_scan_10kb() {
    let mut policy = all(Action::Redact);
    policy.denylist = vec!["project bluebird".into()];
    policy.patterns.push(PatternConfig {
        name: "employee_id".into(),
        regex: "EMP-[0-9]{6}".into(),
    });
    let r = redactor(policy);
    let text = ordinary_text();
    // Best of several rounds: the minimum is the least disturbed by other load.
    let mut rounds = Vec::new();
    for _ in 0..7 {
        let iters: u32 = 500;
        let start = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..iters {
            n += r.scan(std::hint::black_box(&text)).len();
        }
        assert_eq!(n, 0);
        rounds.push(start.elapsed() / iters);
    }
    rounds.sort();
    println!(
        "scan of {} bytes: best {:?}, median {:?} per call",
        text.len(),
        rounds[0],
        rounds[rounds.len() / 2]
    );
}

/// Times scans of 100 KB adversarial inputs, to spot super-linear behaviour. Run with:
/// `cargo test --release -- --ignored --nocapture bench_adversarial`
#[test]
#[ignore]
fn bench_adversarial() {
    let mut policy = all(Action::Redact);
    policy.denylist = vec!["aa".into(), "a b".into()];
    let r = redactor(policy);
    let inputs = [
        ("digits", "1".repeat(100_000)),
        ("spaced digits", "1 ".repeat(50_000)),
        ("dashed digits", "12-".repeat(33_000)),
        ("dotted digits", "1.".repeat(50_000)),
        ("plus groups", "+1 2".repeat(25_000)),
        ("iban starts", "GB82".repeat(25_000)),
        ("at signs", "a@".repeat(50_000)),
        ("email-ish", "a.b@c.d".repeat(14_000)),
        ("begin lines", "-----BEGIN PRIVATE KEY-----\n".repeat(3_600)),
        ("secret words", "secret ".repeat(14_000)),
        ("bearer", "Bearer x ".repeat(11_000)),
        ("jwt-ish", "eyJhbGciOi.".repeat(9_000)),
        ("denylist", "a".repeat(100_000)),
        ("multibyte", "é日😀١".repeat(10_000)),
    ];
    for (name, text) in inputs {
        let start = std::time::Instant::now();
        let n = r.scan(&text).len();
        let applied = r.apply(&text, Place::Response).is_ok();
        println!(
            "{name}: {} bytes, {n} findings, scan+apply {:?}, ok={applied}",
            text.len(),
            start.elapsed()
        );
    }
}

#[test]
fn disguised_values_are_found_and_replaced_whole() {
    // Issue 12, point 10: detectors match after format characters are dropped and
    // compatibility forms folded (NFKC); the placeholder replaces the original span,
    // hidden characters included.
    let mut policy = all(Action::Redact);
    policy.denylist = vec!["project bluebird".into()];
    policy.patterns = vec![PatternConfig {
        name: "employee_id".into(),
        regex: "EMP-[0-9]{6}".into(),
    }];
    let r = redactor(policy);
    for (text, want) in [
        (
            "card ４１１１ １１１１ １１１１ １１１１ ok",
            "card [CARD] ok",
        ),
        (
            "key AKIA\u{200B}IOSFODNN7\u{00AD}EXAMPLE ok",
            "key [AWS_ACCESS_KEY] ok",
        ),
        ("mail bob\u{202E}@exa\u{2060}mple.com ok", "mail [EMAIL] ok"),
        ("ssn １２３-４５-６７８９.", "ssn [SSN]."),
        (
            "on Project\u{200B} Blue\u{FEFF}bird now",
            "on [DENYLIST] now",
        ),
        ("ｐｒｏｊｅｃｔ ｂｌｕｅｂｉｒｄ", "[DENYLIST]"),
        ("id ＥＭＰ－１２３４５６ ok", "id [EMPLOYEE_ID] ok"),
        (
            "\u{2066}aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\u{2069}",
            "\u{2066}aws_secret_access_key=[AWS_SECRET_KEY]\u{2069}",
        ),
        ("plain café, naïve 日本 text", "plain café, naïve 日本 text"),
    ] {
        let out = r.apply(text, Place::Response).expect("not blocked");
        assert_eq!(out.text, want, "{text:?}");
    }
}
