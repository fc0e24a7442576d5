//! Model prices for cost accounting.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;

/// Model prices, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens (reasoning included).
    pub output: f64,
    /// Cached input tokens (default: the input price).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Input tokens written to the prompt cache with the 5-minute TTL
    /// (default: 1.25 x the input price, Anthropic's surcharge).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Input tokens written to the prompt cache with the 1-hour TTL
    /// (default: 2 x the input price).
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
}

impl Price {
    /// A price of input and output tokens; the cache prices are the defaults.
    pub fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cached_input: None,
            cache_write: None,
            cache_write_1h: None,
        }
    }

    /// The price of a cache read.
    pub fn cache_read_price(&self) -> f64 {
        self.cached_input.unwrap_or(self.input)
    }

    /// The price of a 5-minute cache write.
    pub fn cache_write_price(&self) -> f64 {
        self.cache_write.unwrap_or(1.25 * self.input)
    }

    /// The price of a 1-hour cache write.
    pub fn cache_write_1h_price(&self) -> f64 {
        self.cache_write_1h.unwrap_or(2.0 * self.input)
    }

    /// The most an input token may cost: uncached, or written to the cache
    /// at either TTL (the worst case a budget reservation covers).
    pub fn highest_input(&self) -> f64 {
        self.input
            .max(self.cache_write_price())
            .max(self.cache_write_1h_price())
    }
}

/// A versioned price table; the version is recorded with every usage row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Table version, e.g. `2025-08`.
    pub version: String,
    /// `provider/model` -> price.
    pub models: BTreeMap<String, Price>,
    /// Price of models the table does not match (see [`PriceTable::get`]);
    /// unset, such models are refused to tenants with a cost budget.
    #[serde(default)]
    pub default: Option<Price>,
}

impl PriceTable {
    /// The price of `model`: its own entry, else the entry of its undated
    /// name (`openai/gpt-4o-2024-08-06` as `openai/gpt-4o`,
    /// `anthropic/claude-sonnet-4-5-20250929` as `anthropic/claude-sonnet-4-5`),
    /// else the configured default.
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.models
            .get(model)
            .or_else(|| undated(model).and_then(|m| self.models.get(m)))
            .or(self.default.as_ref())
    }

    /// Every price is a non-negative number.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let default_price = self.default.iter().map(|p| ("default", p));
        for (model, p) in self
            .models
            .iter()
            .map(|(m, p)| (m.as_str(), p))
            .chain(default_price)
        {
            if [
                p.input,
                p.output,
                p.cached_input.unwrap_or(0.0),
                p.cache_write.unwrap_or(0.0),
                p.cache_write_1h.unwrap_or(0.0),
            ]
            .iter()
            .any(|v| !(v.is_finite() && *v >= 0.0))
            {
                return Err(ConfigError::Invalid(format!(
                    "prices.models.\"{model}\": prices must be non-negative numbers"
                )));
            }
        }
        Ok(())
    }
}

/// `model` without a trailing date (`-YYYY-MM-DD` or `-YYYYMMDD`), if it has one.
pub fn undated(model: &str) -> Option<&str> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (head, tail) = model.rsplit_once('-')?;
    if tail.len() == 8 && digits(tail) && tail.starts_with("20") {
        return Some(head);
    }
    // `-YYYY-MM-DD`: the last three dash-separated parts.
    let (head, month) = head.rsplit_once('-')?;
    let (head, year) = head.rsplit_once('-')?;
    let dated = year.len() == 4
        && year.starts_with("20")
        && month.len() == 2
        && tail.len() == 2
        && [year, month, tail].iter().all(|p| digits(p));
    dated.then_some(head)
}

/// Bedrock's on-demand prices (USD per million tokens) of the common chat
/// models, by model id and by the inference profiles that serve them.
/// Source: aws.amazon.com/bedrock/pricing and the Bedrock user guide's
/// cross-Region inference page, as of 2025-11 (us-east-1). Claude 4.5
/// models cost 10% more through a geographic profile (`us.`, `eu.`, ...)
/// or in-region than through the `global.` one; cache reads are 0.1x input
/// and writes 1.25x (5 minutes) or 2x (1 hour) for Claude; Nova reads are
/// 0.25x input and writes cost nothing extra; Llama and Mistral do not cache.
fn bedrock_prices(
    p: impl Fn(f64, f64, f64, f64, f64) -> Price,
) -> impl Iterator<Item = (String, Price)> {
    let claude = |input: f64, output: f64| p(input, output, input * 0.1, input * 1.25, input * 2.0);
    let nova = |input: f64, output: f64| p(input, output, input * 0.25, input, input);
    let flat = |input: f64, output: f64| p(input, output, input, input, input);
    let mut out = Vec::new();
    for (id, global_in, global_out) in [
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", 3.0, 15.0),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", 1.0, 5.0),
    ] {
        out.push((
            format!("bedrock/global.{id}"),
            claude(global_in, global_out),
        ));
        for profile in ["", "us.", "eu.", "apac.", "jp.", "au."] {
            let regional = claude(global_in * 1.1, global_out * 1.1);
            out.push((format!("bedrock/{profile}{id}"), regional));
        }
    }
    for (id, price) in [
        ("amazon.nova-pro-v1:0", nova(0.8, 3.2)),
        ("amazon.nova-lite-v1:0", nova(0.06, 0.24)),
        ("amazon.nova-micro-v1:0", nova(0.035, 0.14)),
        ("meta.llama3-1-70b-instruct-v1:0", flat(0.72, 0.72)),
        ("meta.llama3-3-70b-instruct-v1:0", flat(0.72, 0.72)),
        ("mistral.mistral-large-2402-v1:0", flat(4.0, 12.0)),
        ("mistral.mistral-large-2407-v1:0", flat(2.0, 6.0)),
    ] {
        out.push((format!("bedrock/{id}"), price.clone()));
        out.push((format!("bedrock/us.{id}"), price));
    }
    out.into_iter()
}

impl Default for PriceTable {
    fn default() -> Self {
        // (input, output, cache read, 5-minute write, 1-hour write). OpenAI
        // caches on its own and bills no write surcharge: writes cost input.
        let p = |input, output, cached, write, write_1h| Price {
            input,
            output,
            cached_input: Some(cached),
            cache_write: Some(write),
            cache_write_1h: Some(write_1h),
        };
        Self {
            version: "builtin-2025-08".into(),
            models: [
                ("openai/gpt-4.1", p(2.0, 8.0, 0.5, 2.0, 2.0)),
                ("openai/gpt-4.1-mini", p(0.4, 1.6, 0.1, 0.4, 0.4)),
                ("openai/gpt-4o", p(2.5, 10.0, 1.25, 2.5, 2.5)),
                ("openai/gpt-4o-mini", p(0.15, 0.6, 0.075, 0.15, 0.15)),
                ("anthropic/claude-sonnet-4-5", p(3.0, 15.0, 0.3, 3.75, 6.0)),
                ("anthropic/claude-haiku-4-5", p(1.0, 5.0, 0.1, 1.25, 2.0)),
                ("anthropic/claude-opus-4-1", p(15.0, 75.0, 1.5, 18.75, 30.0)),
                ("echo", p(0.0, 0.0, 0.0, 0.0, 0.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(bedrock_prices(p))
            .collect(),
            default: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_write_prices_are_checked_like_the_others() {
        let mut table = PriceTable::default();
        assert!(table.check().is_ok());
        for bad in [
            Price {
                cache_write: Some(-1.0),
                ..Price::new(1.0, 1.0)
            },
            Price {
                cache_write_1h: Some(f64::NAN),
                ..Price::new(1.0, 1.0)
            },
        ] {
            table.default = Some(bad);
            assert!(table.check().is_err());
        }
    }
}
