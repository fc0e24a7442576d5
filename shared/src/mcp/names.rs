//! The names the model sees: `{server}__{tool}`, valid OpenAI function names
//! (`^[A-Za-z0-9_-]{1,64}$`), shortened and de-duplicated deterministically.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// The longest function name every provider takes.
pub const MAX_LEN: usize = 64;

/// Characters a function name may not contain become `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Eight hex digits of the SHA-256 of `s`: a short, stable tag for it.
fn tag(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(&digest[..4])
}

/// `name` cut to leave room for `_` and the tag of `key`, then tagged.
fn tagged(name: &str, key: &str) -> String {
    // `name` is ASCII after `sanitize`, so any byte index is a char boundary.
    let keep = name.len().min(MAX_LEN - 9);
    format!("{}_{}", &name[..keep], tag(key))
}

/// The name of one tool before collisions are resolved: `{server}__{tool}`,
/// tagged with a hash of the full name when longer than [`MAX_LEN`].
pub fn base_name(server: &str, tool: &str) -> String {
    let name = format!("{}__{}", sanitize(server), sanitize(tool));
    if name.is_empty() || name.len() > MAX_LEN {
        tagged(&name, &format!("{server}__{tool}"))
    } else {
        name
    }
}

/// The model's names of `tools` (`(server, tool)` pairs), in the same order.
///
/// Pairs are named in sorted order so the result does not depend on the order
/// servers listed them in: the first pair wanting a name gets it, the next one
/// gets it tagged with a hash of its own full name (numbered further in the
/// unlikely case that collides too).
pub fn assign(tools: &[(String, String)]) -> Vec<String> {
    let mut order: Vec<usize> = (0..tools.len()).collect();
    order.sort_by(|&a, &b| tools[a].cmp(&tools[b]));
    let mut used = BTreeSet::new();
    let mut names = vec![String::new(); tools.len()];
    for i in order {
        let (server, tool) = &tools[i];
        let base = base_name(server, tool);
        let full = format!("{server}__{tool}");
        let mut name = base.clone();
        let mut n = 0u32;
        while used.contains(&name) {
            let key = if n == 0 {
                full.clone()
            } else {
                format!("{full}#{n}")
            };
            name = tagged(&base, &key);
            n += 1;
        }
        used.insert(name.clone());
        names[i] = name;
    }
    names
}

/// Whether `name` is a valid function name.
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `tool` may be offered: it matches an entry of `allowed` (exactly,
/// or as a glob where `*` stands for any run of characters); `None` allows all.
pub fn allowed(allowed: Option<&[String]>, tool: &str) -> bool {
    match allowed {
        None => true,
        Some(patterns) => patterns.iter().any(|p| glob(p, tool)),
    }
}

/// The most `mcp_tools` globs a key carries.
pub const MAX_TOOL_GLOBS: usize = 64;

/// Whether `s` is a valid `mcp_tools` glob: 1-128 of `A-Za-z0-9_*.-`.
pub fn is_tool_glob(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'*' | b'.' | b'-'))
}

/// Whether a principal whose `mcp_tools` are `globs` may use the federated
/// tool `name` (no globs: every tool).
pub fn tool_permitted(globs: &[String], name: &str) -> bool {
    globs.is_empty() || allowed(Some(globs), name)
}

/// Whether `glob` grants nothing beyond `within` (no globs: everything): it
/// is one of them, or a plain name (no `*`) one of them matches.
pub fn glob_within(within: &[String], glob: &str) -> bool {
    within.is_empty()
        || within.iter().any(|w| w == glob)
        || (!glob.contains('*') && allowed(Some(within), glob))
}

/// `*`-only glob match over chars.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Greedy match with one backtrack point (the last `*`): linear enough for names.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(s, t)| (s.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn plain_names_are_server_and_tool() {
        assert_eq!(
            assign(&pairs(&[("crm", "get_customer")])),
            ["crm__get_customer"]
        );
    }

    #[test]
    fn invalid_characters_become_underscores() {
        let names = assign(&pairs(&[("kb", "search.docs v2"), ("kb", "ünï")]));
        assert_eq!(names[0], "kb__search_docs_v2");
        assert_eq!(names[1], "kb___n_");
        assert!(names.iter().all(|n| valid(n)));
    }

    #[test]
    fn long_names_are_shortened_with_a_stable_tag() {
        let long = "t".repeat(128);
        let a = assign(&pairs(&[("crm", &long)]));
        assert_eq!(a[0].len(), MAX_LEN);
        assert!(valid(&a[0]));
        assert!(a[0].starts_with("crm__ttt"));
        // Same input, same name; another long tool sharing the prefix differs.
        assert_eq!(a, assign(&pairs(&[("crm", &long)])));
        let other = format!("{long}x");
        let b = assign(&pairs(&[("crm", &long), ("crm", &other)]));
        assert_ne!(b[0], b[1]);
        assert!(b.iter().all(|n| valid(n) && n.len() == MAX_LEN));
    }

    #[test]
    fn collisions_are_resolved_the_same_whatever_the_order() {
        let a = assign(&pairs(&[("kb", "a.b"), ("kb", "a_b"), ("kb", "a-b")]));
        let b = assign(&pairs(&[("kb", "a_b"), ("kb", "a-b"), ("kb", "a.b")]));
        // "a.b" sorts before "a_b": it keeps the plain name, "a_b" is tagged.
        assert_eq!(a[0], "kb__a_b");
        assert_ne!(a[1], "kb__a_b");
        assert!(a[1].starts_with("kb__a_b_") && a[1].len() == "kb__a_b_".len() + 8);
        assert_eq!(a[2], "kb__a-b");
        assert_eq!((a[0].clone(), a[1].clone()), (b[2].clone(), b[0].clone()));
        let set: BTreeSet<_> = a.iter().collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_tagged_name_that_collides_again_is_numbered() {
        // A tool literally named like another's tagged name.
        let first = assign(&pairs(&[("kb", "a.b"), ("kb", "a_b")]));
        let tagged_tool = first[1].trim_start_matches("kb__").to_owned();
        let names = assign(&pairs(&[
            ("kb", "a.b"),
            ("kb", "a_b"),
            ("kb", &tagged_tool),
        ]));
        let set: BTreeSet<_> = names.iter().collect();
        assert_eq!(set.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| valid(n)));
    }

    #[test]
    fn globs_filter_tools() {
        let pats = vec![
            "get_*".to_owned(),
            "search".to_owned(),
            "*_admin_*".to_owned(),
        ];
        let a = Some(pats.as_slice());
        assert!(allowed(a, "get_customer"));
        assert!(allowed(a, "get_"));
        assert!(allowed(a, "search"));
        assert!(!allowed(a, "search_kb"));
        assert!(allowed(a, "x_admin_y"));
        assert!(!allowed(a, "delete_customer"));
        assert!(allowed(None, "anything"));
        assert!(!allowed(Some(&[]), "anything"));
        assert!(allowed(Some(&["*".to_owned()]), ""));
        assert!(glob("a*b*c", "aXXbYYbc"));
        assert!(!glob("a*b*c", "aXXbYYb"));
    }

    #[test]
    fn tool_globs() {
        assert!(is_tool_glob("crm__get_*"));
        assert!(is_tool_glob("kb.v2-*"));
        assert!(!is_tool_glob(""));
        assert!(!is_tool_glob("a b"));
        assert!(!is_tool_glob(&"a".repeat(129)));
        let globs = vec!["crm__get_*".to_owned(), "kb__search".to_owned()];
        assert!(tool_permitted(&[], "anything"));
        assert!(tool_permitted(&globs, "crm__get_customer"));
        assert!(tool_permitted(&globs, "kb__search"));
        assert!(!tool_permitted(&globs, "crm__delete"));
        // A minted key's globs stay within its minter's.
        assert!(glob_within(&[], "crm__*"));
        assert!(glob_within(&globs, "crm__get_*"));
        assert!(glob_within(&globs, "crm__get_customer"));
        assert!(!glob_within(&globs, "crm__*"));
        assert!(!glob_within(&globs, "crm__get_c*"));
        assert!(!glob_within(&globs, "kb__delete"));
    }
}
