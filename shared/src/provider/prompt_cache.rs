//! Where a provider that caches on explicit breakpoints (Anthropic
//! `cache_control`, Bedrock `cachePoint`) is asked to cache a stored
//! conversation's prompt: at the end of its instructions and summary, and at
//! the end of its stored history. The second moves forward as the
//! conversation grows, and the provider finds the previous turn's entry by
//! looking back from it, so each turn reads what the one before wrote.
//!
//! A client's own hints are never moved or dropped: they count against the
//! provider's limit, and ctxgate adds only what fits beside them, in the
//! lifetime order the provider requires (longer-lived entries first).

use crate::config::ModelCache;
use crate::model::{Block, Breakpoint, CacheHint, CacheTtl, Message, Request, StablePrefix};
use crate::tokens;

/// Most breakpoints one request may carry (Anthropic's limit).
pub const MAX_BREAKPOINTS: usize = 4;

/// The breakpoints to add to `req` for a model that caches per `cache`;
/// none when the request has no stable prefix.
pub fn plan(req: &Request, cache: &ModelCache) -> Vec<Breakpoint> {
    let Some(stable) = &req.stable else {
        return Vec::new();
    };
    let mut placed = client_hints(req);
    let mut out = Vec::new();
    // The history's breakpoint first: with one slot left, it saves the most.
    for end in candidates(stable) {
        if placed.len() >= MAX_BREAKPOINTS {
            break;
        }
        let Some((message, block)) = last_cacheable(&req.messages, end) else {
            continue;
        };
        let at = Position::Block(message, block);
        if placed.iter().any(|(p, _)| *p == at) {
            continue;
        }
        if prefix_tokens(req, end) < cache.min_tokens {
            continue;
        }
        let Some(ttl) = fitting_ttl(&placed, at, stable.ttl.unwrap_or(cache.ttl)) else {
            continue;
        };
        placed.push((at, ttl));
        out.push(Breakpoint {
            message,
            block,
            hint: CacheHint::new(ttl),
        });
    }
    out.sort_by_key(|b| (b.message, b.block));
    out
}

/// The ends (in messages) of the prefixes worth a breakpoint, best first.
fn candidates(stable: &StablePrefix) -> impl Iterator<Item = usize> {
    let history = (stable.history > stable.instructions).then_some(stable.history);
    history.into_iter().chain(Some(stable.instructions))
}

/// Where a hint sits in the order a provider reads the prompt: tools, then
/// the messages' blocks; a request-wide hint (Anthropic's automatic
/// caching) sits on the last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Position {
    Tool(usize),
    Block(usize, usize),
    End,
}

/// The hints the client set, with their lifetimes, in prompt order.
fn client_hints(req: &Request) -> Vec<(Position, CacheTtl)> {
    let tools = req.tools.iter().enumerate().filter_map(|(i, t)| match t {
        crate::model::Tool::Function { cache: Some(c), .. } => {
            Some((Position::Tool(i), c.lifetime()))
        }
        _ => None,
    });
    let blocks = req.messages.iter().enumerate().flat_map(|(i, m)| {
        m.content
            .iter()
            .enumerate()
            .filter_map(move |(j, b)| Some((Position::Block(i, j), b.cache()?.lifetime())))
    });
    // Anthropic's request-wide `cache_control` (kept as an extension field).
    let request_wide = req.extensions.fields.get("cache_control").map(|v| {
        let ttl = v["ttl"]
            .as_str()
            .and_then(CacheTtl::parse)
            .unwrap_or_default();
        (Position::End, ttl)
    });
    tools.chain(blocks).chain(request_wide).collect()
}

/// The last block of `messages[..end]`'s last message that can carry a
/// hint: not reasoning (providers refuse hints there), not empty text.
fn last_cacheable(messages: &[Message], end: usize) -> Option<(usize, usize)> {
    let i = end.checked_sub(1)?;
    let j = messages.get(i)?.content.iter().rposition(|b| match b {
        Block::Text { text, .. } => !text.is_empty(),
        Block::Image(_) | Block::Document(_) | Block::ToolCall(_) | Block::ToolResult(_) => true,
        _ => false,
    })?;
    Some((i, j))
}

/// Estimated tokens of the tools and the first `end` messages.
fn prefix_tokens(req: &Request, end: usize) -> u64 {
    tokens::estimate_tools(&req.tools)
        + tokens::estimate_all(&req.messages[..end.min(req.messages.len())])
}

/// The lifetime a new hint at `at` may have: `want`, raised to the longest
/// hint after it and cut to the shortest before it (the provider wants
/// longer-lived entries first); `None` when no lifetime fits between them.
/// Raising costs nothing extra: the later hint writes the same prefix at its
/// lifetime anyway.
fn fitting_ttl(placed: &[(Position, CacheTtl)], at: Position, want: CacheTtl) -> Option<CacheTtl> {
    let before = placed
        .iter()
        .filter(|(p, _)| *p < at)
        .map(|(_, t)| *t)
        .min();
    let after = placed
        .iter()
        .filter(|(p, _)| *p > at)
        .map(|(_, t)| *t)
        .max();
    let lo = after.unwrap_or(CacheTtl::FiveMinutes);
    let hi = before.unwrap_or(CacheTtl::OneHour);
    (lo <= hi).then(|| want.clamp(lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, Tool};

    fn long(role: Role, n: usize) -> Message {
        Message::text(role, "word ".repeat(n))
    }

    fn conversation() -> Request {
        Request {
            messages: vec![
                long(Role::System, 1500),
                long(Role::User, 700),
                long(Role::Assistant, 700),
                long(Role::User, 10),
            ],
            stable: Some(StablePrefix {
                instructions: 1,
                history: 3,
                key: "k".into(),
                ttl: None,
            }),
            ..Request::default()
        }
    }

    const FIVE: ModelCache = ModelCache {
        ttl: CacheTtl::FiveMinutes,
        min_tokens: 1024,
    };

    fn at(plan: &[Breakpoint]) -> Vec<(usize, usize, Option<&str>)> {
        plan.iter()
            .map(|b| (b.message, b.block, b.hint.ttl.as_deref()))
            .collect()
    }

    #[test]
    fn instructions_and_history_get_one_each() {
        assert_eq!(
            at(&plan(&conversation(), &FIVE)),
            [(0, 0, None), (2, 0, None)]
        );
        // Without a stable prefix (a stateless request), nothing.
        let stateless = Request {
            stable: None,
            ..conversation()
        };
        assert!(plan(&stateless, &FIVE).is_empty());
    }

    #[test]
    fn a_prefix_below_the_minimum_gets_none() {
        let mut req = conversation();
        req.messages[0] = long(Role::System, 20);
        // The instructions alone are short; with the history they are not.
        assert_eq!(at(&plan(&req, &FIVE)), [(2, 0, None)]);
        let big = ModelCache {
            min_tokens: 100_000,
            ..FIVE
        };
        assert!(plan(&req, &big).is_empty());
    }

    fn hinted(req: &mut Request, message: usize) {
        if let Block::Text { cache, .. } = &mut req.messages[message].content[0] {
            *cache = Some(CacheHint::default());
        }
    }

    #[test]
    fn the_clients_own_hints_count_and_stay() {
        // Four of its own: nothing added.
        let mut req = conversation();
        (0..4).for_each(|i| hinted(&mut req, i));
        assert!(plan(&req, &FIVE).is_empty());
        // Two of its own elsewhere: both of ours fit beside them.
        let mut req = conversation();
        hinted(&mut req, 1);
        hinted(&mut req, 3);
        assert_eq!(at(&plan(&req, &FIVE)), [(0, 0, None), (2, 0, None)]);
        // Three: one slot left, and the history's end takes it.
        req.tools.push(Tool::Function {
            name: "t".into(),
            description: None,
            parameters: None,
            strict: None,
            cache: Some(CacheHint::default()),
        });
        assert_eq!(at(&plan(&req, &FIVE)), [(2, 0, None)]);
        // One where ours would go: it is the client's, and stays so.
        let mut req = conversation();
        hinted(&mut req, 2);
        assert_eq!(at(&plan(&req, &FIVE)), [(0, 0, None)]);
    }

    #[test]
    fn lifetimes_keep_the_providers_order() {
        let mut req = conversation();
        req.stable.as_mut().unwrap().ttl = Some(CacheTtl::OneHour);
        assert_eq!(
            at(&plan(&req, &FIVE)),
            [(0, 0, Some("1h")), (2, 0, Some("1h"))]
        );
        // A client's 5-minute hint on a tool (read first) caps what follows.
        req.tools.push(Tool::Function {
            name: "t".into(),
            description: None,
            parameters: None,
            strict: None,
            cache: Some(CacheHint::default()),
        });
        assert_eq!(at(&plan(&req, &FIVE)), [(0, 0, None), (2, 0, None)]);
        // A client's 1h hint after ours: ours may not be shorter, so they
        // live an hour too (the client's hint writes that prefix for an hour anyway).
        let mut req = conversation();
        req.messages[3].content[0] = Block::Text {
            text: "late".into(),
            citations: None,
            cache: Some(CacheHint {
                ttl: Some("1h".into()),
            }),
        };
        assert_eq!(
            at(&plan(&req, &FIVE)),
            [(0, 0, Some("1h")), (2, 0, Some("1h"))]
        );
        // A client's own hints out of order (1h after 5m) leave no lifetime
        // for one of ours between them.
        req.messages[1].content[0] = Block::Text {
            text: "word ".repeat(700),
            citations: None,
            cache: Some(CacheHint::default()),
        };
        assert_eq!(at(&plan(&req, &FIVE)), [(0, 0, Some("1h"))]);
    }

    #[test]
    fn hints_skip_reasoning_and_empty_text() {
        let mut req = conversation();
        req.messages[2].content.push(Block::Reasoning {
            text: "hmm".into(),
            signature: None,
            encrypted: None,
        });
        req.messages[2].content.push(Block::text(""));
        assert_eq!(at(&plan(&req, &FIVE)), [(0, 0, None), (2, 0, None)]);
    }
}
