//! Usage accounting: tokens and estimated cost per tenant, UTC day and model,
//! costed from the configured (versioned) price table; [`flush`] writes the
//! rows in batches, off a turn's critical path.

pub mod flush;

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
        tool_errors: 0,
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

    // Issue 14, point 3: cache reads and writes from both wires, priced
    // apart, to the micro-USD.
    #[test]
    fn cache_reads_and_writes_are_priced_apart() {
        let prices = PriceTable::default();
        // Anthropic: 1000 uncached, 20000 read, 5000 written of which 2000
        // for an hour, 500 out. Sonnet 4.5: 3.00 in, 0.30 read, 3.75 5m
        // write, 6.00 1h write, 15.00 out:
        // 3000 + 6000 + 3000 x 3.75 + 2000 x 6 + 7500 = 39750.
        let anthropic = crate::wire::anthropic::response::usage(&serde_json::json!({
            "input_tokens": 1000, "cache_read_input_tokens": 20000,
            "cache_creation_input_tokens": 5000, "output_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 3000, "ephemeral_1h_input_tokens": 2000}
        }));
        assert_eq!(
            (
                anthropic.input,
                anthropic.cache_write,
                anthropic.cache_write_1h
            ),
            (26_000, 5000, 2000)
        );
        let sonnet = "anthropic/claude-sonnet-4-5-20250929";
        assert_eq!(cost_micro_usd(&prices, sonnet, &anthropic), 39_750);
        // The same writes all for five minutes: 5000 x 3.75 = 18750.
        let five = Usage {
            cache_write_1h: 0,
            ..anthropic
        };
        assert_eq!(
            cost_micro_usd(&prices, sonnet, &five),
            3000 + 6000 + 18_750 + 7500
        );
        let r = row(&prices, "2026-11-30".into(), sonnet, &anthropic);
        assert_eq!(
            (
                r.prompt_tokens,
                r.cached_tokens,
                r.cache_write_tokens,
                r.cost_micro_usd
            ),
            (26_000, 20_000, 5000, 39_750)
        );

        // OpenAI: 2006 prompt tokens of which 1920 cached, 300 out. gpt-4o:
        // 2.50 in, 1.25 cached, 10.00 out: 86 x 2.5 + 1920 x 1.25 + 3000 = 5615.
        let openai = crate::wire::openai_chat::decode_response(serde_json::json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                "prompt_tokens_details": {"cached_tokens": 1920}}
        }))
        .unwrap()
        .usage;
        assert_eq!(cost_micro_usd(&prices, "openai/gpt-4o", &openai), 5615);
        // OpenAI bills no write surcharge: a write (from a compatible server
        // that reports one) costs the input price.
        let written = Usage {
            cache_write: 86,
            ..openai
        };
        assert_eq!(cost_micro_usd(&prices, "openai/gpt-4o", &written), 5615);
    }

    #[test]
    fn cache_counts_that_do_not_add_up_are_clamped() {
        let prices = PriceTable::default();
        // 8 read of 10, 5 written (only 2 can be), 9 for an hour (only 2):
        // 8 x 0.30 + 2 x 6.00 = 14.4.
        let u = Usage {
            input: 10,
            cache_read: 8,
            cache_write: 5,
            cache_write_1h: 9,
            ..Usage::default()
        };
        assert_eq!(
            cost_micro_usd(&prices, "anthropic/claude-sonnet-4-5", &u),
            14
        );
        let u = Usage {
            input: 10,
            cache_read: 30,
            cache_write: 30,
            cache_write_1h: 30,
            ..Usage::default()
        };
        assert_eq!(
            cost_micro_usd(&prices, "anthropic/claude-sonnet-4-5", &u),
            3
        );
    }

    #[test]
    fn cache_write_prices_default_to_anthropics_surcharges() {
        let p = Price::new(10.0, 30.0);
        assert_eq!(
            (
                p.cache_read_price(),
                p.cache_write_price(),
                p.cache_write_1h_price()
            ),
            (10.0, 12.5, 20.0)
        );
        assert_eq!(p.highest_input(), 20.0);
        let table = PriceTable::default();
        for (model, read, write, write_1h) in [
            ("anthropic/claude-sonnet-4-5", 0.30, 3.75, 6.0),
            ("anthropic/claude-haiku-4-5", 0.10, 1.25, 2.0),
            ("anthropic/claude-opus-4-1", 1.50, 18.75, 30.0),
        ] {
            let p = table.get(model).unwrap();
            assert_eq!(
                (
                    p.cache_read_price(),
                    p.cache_write_price(),
                    p.cache_write_1h_price()
                ),
                (read, write, write_1h),
                "{model}"
            );
        }
        for (model, p) in &table.models {
            if model.starts_with("openai/") {
                assert_eq!(p.highest_input(), p.input, "{model}: no write surcharge");
            }
        }
    }
}
