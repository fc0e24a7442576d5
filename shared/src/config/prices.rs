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
            if [p.input, p.output, p.cached_input.unwrap_or(0.0)]
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

impl Default for PriceTable {
    fn default() -> Self {
        let p = |input, output, cached| Price {
            input,
            output,
            cached_input: Some(cached),
        };
        Self {
            version: "builtin-2025-08".into(),
            models: [
                ("openai/gpt-4.1", p(2.0, 8.0, 0.5)),
                ("openai/gpt-4.1-mini", p(0.4, 1.6, 0.1)),
                ("openai/gpt-4o", p(2.5, 10.0, 1.25)),
                ("openai/gpt-4o-mini", p(0.15, 0.6, 0.075)),
                ("anthropic/claude-sonnet-4-5", p(3.0, 15.0, 0.3)),
                ("anthropic/claude-haiku-4-5", p(1.0, 5.0, 0.1)),
                ("anthropic/claude-opus-4-1", p(15.0, 75.0, 1.5)),
                ("echo", p(0.0, 0.0, 0.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            default: None,
        }
    }
}
