//! Usage accounting: tokens and estimated cost per tenant, UTC day and model,
//! costed from the configured (versioned) price table.

use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::config::PriceTable;
use crate::store::UsageRow;
use crate::wire::Usage;

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

/// Estimated cost in millionths of a USD; cached prompt tokens at the cached
/// price, reasoning tokens (part of the completion) at the output price.
/// Models without a price cost 0.
pub fn cost_micro_usd(prices: &PriceTable, model: &str, usage: &Usage) -> u64 {
    let Some(p) = prices.models.get(model) else {
        return 0;
    };
    let cached = usage.cached_tokens().min(usage.prompt_tokens) as f64;
    let uncached = usage.prompt_tokens as f64 - cached;
    // Prices are per million tokens, costs in millionths of a dollar: the
    // factors cancel, so tokens x price is already micro-USD.
    let micro = uncached * p.input
        + cached * p.cached_input.unwrap_or(p.input)
        + usage.completion_tokens as f64 * p.output;
    micro.round().max(0.0) as u64
}

/// The usage row one completed request adds.
pub fn row(prices: &PriceTable, day: String, model: &str, usage: &Usage) -> UsageRow {
    UsageRow {
        day,
        model: model.to_owned(),
        requests: 1,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens,
        cached_tokens: usage.cached_tokens(),
        reasoning_tokens: usage.reasoning_tokens(),
        cost_micro_usd: cost_micro_usd(prices, model, usage),
        price_version: prices.version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
