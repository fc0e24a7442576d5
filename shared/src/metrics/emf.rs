//! A request's [`Record`] as one CloudWatch Embedded Metric Format line on
//! stdout: the `_aws` block (Timestamp, one directive in namespace
//! [`NAMESPACE`] with its dimension sets and metrics with units), the
//! dimensions and the values as top-level members. CloudWatch Logs extracts
//! the metrics; no agent, no API call.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::{Class, Record};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "ctxgate";

/// Every metric a record may carry, with its CloudWatch unit.
pub const METRICS: &[(&str, &str)] = &[
    ("Requests", "Count"),
    ("ErrorsClient", "Count"),
    ("ErrorsLimited", "Count"),
    ("ErrorsUpstream", "Count"),
    ("ErrorsInternal", "Count"),
    ("Latency", "Milliseconds"),
    ("UpstreamLatency", "Milliseconds"),
    ("TimeToFirstToken", "Milliseconds"),
    ("InputTokens", "Count"),
    ("OutputTokens", "Count"),
    ("CachedTokens", "Count"),
    ("CostMicroUSD", "None"),
    ("Retries", "Count"),
    ("Fallbacks", "Count"),
    ("ToolCalls", "Count"),
    ("ToolErrors", "Count"),
    ("ColdStarts", "Count"),
];

fn error_metric(c: Class) -> &'static str {
    match c {
        Class::Client => "ErrorsClient",
        Class::Limited => "ErrorsLimited",
        Class::Upstream => "ErrorsUpstream",
        Class::Internal => "ErrorsInternal",
    }
}

fn ms(d: std::time::Duration) -> Value {
    json!((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
}

/// The EMF document of `r`. Counts are always present (zero included, so
/// that rates have a denominator); latencies and a turn's tokens and cost
/// only when the request had them. A turn (a provider answered) is also
/// recorded under its provider and model.
pub fn render(r: &Record<'_>) -> Value {
    let mut root = Map::new();
    let mut put = |name: &str, v: Value| {
        root.insert(name.to_owned(), v);
    };
    put("function", json!(r.function));
    put("door", json!(r.door));
    let mut dimensions = vec![json!(["function"]), json!(["function", "door"])];
    if let (Some(p), Some(m)) = (r.provider, r.model) {
        put("provider", json!(&**p));
        put("model", json!(&**m));
        dimensions.push(json!(["function", "door", "provider", "model"]));
    }
    put("Requests", json!(1));
    for c in Class::ALL {
        put(error_metric(c), json!(u8::from(r.class == Some(c))));
    }
    put("Latency", ms(r.latency));
    if let Some(u) = r.upstream {
        put("UpstreamLatency", ms(u));
        put("InputTokens", json!(r.input_tokens));
        put("OutputTokens", json!(r.output_tokens));
        put("CachedTokens", json!(r.cached_tokens));
        put("CostMicroUSD", json!(r.cost_micro_usd));
    }
    if let Some(f) = r.first_token {
        put("TimeToFirstToken", ms(f));
    }
    put("Retries", json!(r.retries));
    put("Fallbacks", json!(r.fallbacks));
    put("ToolCalls", json!(r.tool_calls));
    put("ToolErrors", json!(r.tool_errors));
    put("ColdStarts", json!(u8::from(r.cold_start)));
    let metrics: Vec<Value> = METRICS
        .iter()
        .filter(|(name, _)| root.contains_key(*name))
        .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": r.timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(root)
}

/// Writes `r` as one line on stdout, in one write under stdout's lock: a
/// record (well under the 4 KiB a pipe writes atomically) never shares a
/// line with another record or a log line, however many invocations run.
pub fn write(r: &Record<'_>) {
    let mut line = render(r).to_string();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}
