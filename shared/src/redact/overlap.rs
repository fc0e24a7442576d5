//! Choosing one finding where several overlap.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::Finding;

/// Keeps a set of non-overlapping findings, sorted by start.
///
/// Longest span wins; on equal length the earlier start wins; on the very same span the
/// more specific category wins (see `Category::priority`). Empty spans and spans not on
/// char boundaries of `text` are dropped, so slicing with the result cannot panic.
pub(super) fn resolve(text: &str, mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.retain(|f| {
        f.start < f.end
            && f.end <= text.len()
            && text.is_char_boundary(f.start)
            && text.is_char_boundary(f.end)
    });
    findings.sort_by_key(|f| (Reverse(f.end - f.start), f.start, f.category.priority()));
    // Accepted spans, start -> end; they never overlap, so the accepted span with the
    // greatest start before a candidate's end is the only one that can overlap it.
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut kept = Vec::new();
    for f in findings {
        let clash = taken
            .range(..f.end)
            .next_back()
            .is_some_and(|(_, &end)| end > f.start);
        if !clash {
            taken.insert(f.start, f.end);
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

#[cfg(test)]
mod tests {
    use super::super::category::Category;
    use super::*;

    fn f(category: Category, start: usize, end: usize) -> Finding {
        Finding {
            category,
            start,
            end,
        }
    }

    #[test]
    fn longest_wins_then_earliest_then_priority() {
        let text = "x".repeat(40);
        let got = resolve(
            &text,
            vec![
                f(Category::Phone, 0, 5),
                f(Category::Card, 3, 20),
                f(Category::Ipv4, 18, 25),
                f(Category::Email, 30, 34),
                f(Category::Ssn, 32, 36),
                f(Category::Bearer, 36, 39),
                f(Category::Jwt, 36, 39),
            ],
        );
        assert_eq!(
            got,
            [
                f(Category::Card, 3, 20),
                f(Category::Email, 30, 34),
                f(Category::Jwt, 36, 39),
            ]
        );
    }

    #[test]
    fn drops_empty_and_non_boundary_spans() {
        let text = "é1";
        let got = resolve(
            text,
            vec![
                f(Category::Phone, 1, 3),
                f(Category::Card, 2, 2),
                f(Category::Ssn, 2, 9),
                f(Category::Email, 2, 3),
            ],
        );
        assert_eq!(got, [f(Category::Email, 2, 3)]);
    }
}
