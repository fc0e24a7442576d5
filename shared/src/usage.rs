//! Usage accounting: tokens and estimated cost per tenant, UTC day and model,
//! costed from the configured (versioned) price table.

use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::config::PriceTable;
use crate::model::{Message, Usage};
use crate::store::UsageRow;
use crate::tokens;

/// The UTC day of a Unix time, `YYYY-MM-DD`.
pub fn day(unix: i64) -> String {
    let date = OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date())
        .unwrap_or(Date::MIN);
    format_day(date)
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_day(date: Date) -> String {
    date.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<Date> {
    Date::parse(s, format_description!("[year]-[month]-[day]")).ok()
}

/// Seconds from `unix` to the next UTC midnight (when daily budgets reset).
pub fn seconds_to_midnight(unix: i64) -> i64 {
    86_400 - unix.rem_euclid(86_400)
}

/// Estimated cost in millionths of a USD: uncached prompt tokens at the
/// input price, cache reads at the cached price, cache writes at the write
/// price of their TTL (5 minutes or 1 hour), and output (reasoning
/// included) at the output price. Counts that do not add up (more cached
/// than input, more 1-hour writes than writes) are clamped, never negative.
/// Models the table does not price (see [`PriceTable::get`]) cost 0; chat
/// refuses them to tenants with a cost budget.
pub fn cost_micro_usd(prices: &PriceTable, model: &str, usage: &Usage) -> u64 {
    let Some(p) = prices.get(model) else {
        return 0;
    };
    let read = usage.cache_read.min(usage.input);
    let write = usage.cache_write.min(usage.input - read);
    let write_1h = usage.cache_write_1h.min(write);
    let uncached = usage.input - read - write;
    // Prices are per million tokens, costs in millionths of a dollar: the
    // factors cancel, so tokens x price is already micro-USD.
    let micro = uncached as f64 * p.input
        + read as f64 * p.cache_read_price()
        + (write - write_1h) as f64 * p.cache_write_price()
        + write_1h as f64 * p.cache_write_1h_price()
        + usage.output as f64 * p.output;
    micro.round().max(0.0) as u64
}

/// The usage of an answer: as the provider reported it, or, when it reported
/// none, the gateway's estimate (the prompt's and the answer's); `true` when
/// estimated.
pub fn or_estimate(reported: Usage, prompt_estimate: u64, answer: &Message) -> (Usage, bool) {
    if reported.input > 0 || reported.output > 0 {
        return (reported, false);
    }
    let completion = tokens::estimate(answer);
    (Usage::new(prompt_estimate, completion), true)
}

/// The usage row of a request whose tokens are estimated.
pub fn estimated_row(prices: &PriceTable, day: String, model: &str, usage: &Usage) -> UsageRow {
    UsageRow {
        estimated_requests: 1,
        ..row(prices, day, model, usage)
    }
}

/// The usage row one completed request adds.
pub fn row(prices: &PriceTable, day: String, model: &str, usage: &Usage) -> UsageRow {
    UsageRow {
        day,
        model: model.to_owned(),
        requests: 1,
        prompt_tokens: usage.input,
        completion_tokens: usage.output,
        total_tokens: usage.total(),
        cached_tokens: usage.cache_read,
        cache_write_tokens: usage.cache_write,
        reasoning_tokens: usage.reasoning,
        cost_micro_usd: cost_micro_usd(prices, model, usage),
        price_version: prices.version.clone(),
        estimated_requests: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Price, undated};
    use crate::model::Role;

    #[test]
    fn prices_match_dated_variants_and_the_default() {
        // Issue 12, point 3: the documented matching rule, and nothing looser.
        assert_eq!(undated("openai/gpt-4o-2024-08-06"), Some("openai/gpt-4o"));
        assert_eq!(
            undated("anthropic/claude-sonnet-4-5-20250929"),
            Some("anthropic/claude-sonnet-4-5")
        );
        for not_dated in [
            "openai/gpt-4o",
            "openai/gpt-4o-mini",
            "anthropic/claude-sonnet-4-5",
            "x/model-12345678",
            "x/m-2024-8-06",
            "x/m-2024-08",
            "2024-08-06",
        ] {
            assert_eq!(undated(not_dated), None, "{not_dated}");
        }
        let mut prices = PriceTable::default();
        assert!(prices.get("openai/gpt-4o-2024-08-06").is_some());
        assert!(prices.get("openai/gpt-4o-turbo").is_none());
        prices.default = Some(Price::new(10.0, 30.0));
        let u = Usage::new(1_000_000, 0);
        assert_eq!(
            cost_micro_usd(&prices, "openai/gpt-4o-turbo", &u),
            10_000_000
        );
        // A model's own entry wins over the default.
        assert_eq!(cost_micro_usd(&prices, "openai/gpt-4o", &u), 2_500_000);
    }

    #[test]
    fn missing_usage_is_estimated_and_marked() {
        // Issue 12, point 3: an answer without usage is metered by estimate.
        let answer = Message::text(Role::Assistant, "a fairly short answer");
        let (u, estimated) = or_estimate(Usage::default(), 40, &answer);
        assert!(estimated);
        assert_eq!(u.input, 40);
        assert!(u.output > 0);
        let (u, estimated) = or_estimate(Usage::new(5, 2), 40, &answer);
        assert_eq!((u, estimated), (Usage::new(5, 2), false));
        let r = estimated_row(&PriceTable::default(), "2026-11-25".into(), "echo", &u);
        assert_eq!((r.requests, r.estimated_requests), (1, 1));
    }

    #[test]
    fn days_and_midnight() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_795_579_146), "2026-11-25");
        assert_eq!(seconds_to_midnight(86_400 - 10), 10);
        assert_eq!(
            parse_day("2026-02-28").map(format_day).as_deref(),
            Some("2026-02-28")
        );
        assert!(parse_day("2026-02-30").is_none());
        assert!(parse_day("yesterday").is_none());
    }

    #[test]
    fn cost_counts_cached_and_reasoning_tokens() {
        let prices = PriceTable::default();
        // gpt-4o-mini: 0.15 in, 0.60 out, 0.075 cached per million.
        let u = Usage::new(1_000_000, 1_000_000);
        assert_eq!(cost_micro_usd(&prices, "openai/gpt-4o-mini", &u), 750_000);
        let cached = Usage::new(1_000_000, 0).with_details(1_000_000, 0);
        assert_eq!(
            cost_micro_usd(&prices, "openai/gpt-4o-mini", &cached),
            75_000
        );
        let reasoning = Usage::new(0, 1000).with_details(0, 800);
        assert_eq!(
            cost_micro_usd(&prices, "openai/gpt-4o-mini", &reasoning),
            600
        );
        assert_eq!(cost_micro_usd(&prices, "unknown/model", &u), 0);
        // Issue 12, point 3: a dated variant is priced as its undated name.
        assert_eq!(
            cost_micro_usd(&prices, "openai/gpt-4o-mini-2024-07-18", &u),
            750_000
        );
        assert_eq!(
            cost_micro_usd(&prices, "anthropic/claude-haiku-4-5-20251001", &u),
            6_000_000
        );
        let r = row(
            &prices,
            "2026-11-25".into(),
            "openai/gpt-4o-mini",
            &reasoning,
        );
        assert_eq!(
            (r.reasoning_tokens, r.requests, r.price_version.as_str()),
            (800, 1, "builtin-2025-08")
        );
    }
}
