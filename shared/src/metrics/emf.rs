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

/// Metrics also recorded per front door (`[function, door]`).
const BY_DOOR: &[&str] = &[
    "Requests",
    "ErrorsClient",
    "ErrorsLimited",
    "ErrorsUpstream",
    "ErrorsInternal",
];

/// Metrics also recorded per model (`[function, door, provider, model]`).
const BY_MODEL: &[&str] = &[
    "Requests",
    "InputTokens",
    "OutputTokens",
    "CachedTokens",
    "CostMicroUSD",
];

/// The EMF document of `r`: every metric under `[function]`; requests and
/// errors under `[function, door]`; a turn's (a provider answered) requests,
/// tokens and cost under `[function, door, provider, model]`. Few sets and
/// few metrics in each, since CloudWatch bills every metric and dimension
/// combination. Requests, errors, latency and cold starts are always
/// present (zero included, so rates have a denominator); a turn's latency,
/// tokens and cost only for a turn, the rest when not zero.
pub fn render(r: &Record<'_>) -> Value {
    let mut root = Map::new();
    let mut put = |name: &str, v: Value| {
        root.insert(name.to_owned(), v);
    };
    put("function", json!(r.function));
    put("door", json!(r.door));
    put("Requests", json!(1));
    for c in Class::ALL {
        put(error_metric(c), json!(u8::from(r.class == Some(c))));
    }
    put("Latency", ms(r.latency));
    put("ColdStarts", json!(u8::from(r.cold_start)));
    let turn = r.provider.zip(r.model);
    if let Some((p, m)) = turn {
        put("provider", json!(&**p));
        put("model", json!(&**m));
    }
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
    for (name, n) in [
        ("Retries", r.retries),
        ("Fallbacks", r.fallbacks),
        ("ToolCalls", r.tool_calls),
        ("ToolErrors", r.tool_errors),
    ] {
        if n > 0 {
            put(name, json!(n));
        }
    }
    let declare = |names: &mut dyn Iterator<Item = &str>| -> Vec<Value> {
        names
            .filter(|name| root.contains_key(*name))
            .map(|name| {
                let unit = METRICS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or("None", |m| m.1);
                json!({"Name": name, "Unit": unit})
            })
            .collect()
    };
    let mut directives = vec![
        json!({"Namespace": NAMESPACE, "Dimensions": [["function"]],
               "Metrics": declare(&mut METRICS.iter().map(|m| m.0))}),
        json!({"Namespace": NAMESPACE, "Dimensions": [["function", "door"]],
               "Metrics": declare(&mut BY_DOOR.iter().copied())}),
    ];
    if turn.is_some() && r.upstream.is_some() {
        directives.push(json!({"Namespace": NAMESPACE,
            "Dimensions": [["function", "door", "provider", "model"]],
            "Metrics": declare(&mut BY_MODEL.iter().copied())}));
    }
    root.insert(
        "_aws".into(),
        json!({"Timestamp": r.timestamp_ms, "CloudWatchMetrics": directives}),
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
