//! What detectors see: the text with format characters (category Cf: zero-width,
//! soft hyphen, bidi controls) dropped and every other character folded to its NFKC
//! form (fullwidth and compatibility forms become plain ones), with a map back to the
//! original byte offsets so a redaction replaces the original span.
//!
//! Each character is folded on its own (NFKC of that one character), so the view of a
//! text is the concatenation of the views of its parts however it is split: a stream
//! redactor folding chunk by chunk sees exactly what a whole-text scan sees.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// True for a format character (general category Cf): invisible, so it can hide a
/// value from a detector without changing what a reader sees.
pub fn is_format_char(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// Appends what detectors see of `c` to `out` (nothing for a format character).
pub(super) fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c);
        return;
    }
    if is_format_char(c) {
        return;
    }
    if is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes {
        out.push(c);
    } else {
        out.extend(std::iter::once(c).nfkc());
    }
}

/// Length in bytes of what detectors see of `text`.
pub fn folded_len(text: &str) -> usize {
    if text.is_ascii() {
        return text.len();
    }
    let mut buf = String::new();
    text.chars()
        .map(|c| {
            buf.clear();
            fold_char(c, &mut buf);
            buf.len()
        })
        .sum()
}

/// A folded view of a text that differs from it.
pub(super) struct Folded {
    /// What detectors scan.
    pub view: String,
    /// Per visible original character, in order: its offset in `view`, and its start
    /// and end in the original.
    map: Vec<(usize, usize, usize)>,
}

/// True if folding changes `c`.
fn folds(c: char) -> bool {
    !c.is_ascii() && (is_format_char(c) || is_nfkc_quick(std::iter::once(c)) != IsNormalized::Yes)
}

/// The folded view of `text`, or `None` when folding changes nothing (all ASCII, say).
pub(super) fn fold(text: &str) -> Option<Folded> {
    if text.is_ascii() || !text.chars().any(folds) {
        return None;
    }
    let mut view = String::with_capacity(text.len());
    let mut map = Vec::new();
    for (i, c) in text.char_indices() {
        let before = view.len();
        fold_char(c, &mut view);
        if view.len() > before {
            map.push((before, i, i + c.len_utf8()));
        }
    }
    Some(Folded { view, map })
}

impl Folded {
    /// The original offset where the character holding view byte `v` starts.
    pub fn start(&self, v: usize) -> usize {
        let i = self.map.partition_point(|&(vo, _, _)| vo <= v);
        self.map.get(i.wrapping_sub(1)).map_or(0, |&(_, o, _)| o)
    }

    /// The original offset just past the character holding view byte `v - 1`
    /// (format characters after it stay outside the span).
    pub fn end(&self, v: usize) -> usize {
        let i = self.map.partition_point(|&(vo, _, _)| vo < v);
        self.map.get(i.wrapping_sub(1)).map_or(0, |&(_, _, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_format_characters_and_folds_compatibility_forms() {
        // Issue 12, point 10: the view is what a reader sees, in plain characters.
        let text = "ＡＫＩＡ\u{200B}x\u{00AD}y\u{202E}z ﬁ é";
        let f = fold(text).expect("changed");
        assert_eq!(f.view, "AKIAxyz fi é");
        // Spans map back to whole original characters.
        let v = f.view.find("xyz").unwrap();
        let (s, e) = (f.start(v), f.end(v + 3));
        assert_eq!(&text[s..e], "x\u{00AD}y\u{202E}z");
        let v = f.view.find('i').unwrap();
        assert_eq!(&text[f.start(v)..f.end(v + 1)], "ﬁ");
        assert!(fold("plain ascii").is_none());
        assert!(fold("déjà vu 日本").is_none());
        assert!(is_format_char('\u{2066}') && !is_format_char('a'));
    }
}
