//! The local server's metrics registry: every request's [`Record`] added to
//! counters and histograms (`prometheus-client`), exposed as Prometheus /
//! OpenMetrics text at `GET /metrics`. The same metrics as the EMF records,
//! under Prometheus names (`ctxgate_requests_total`, `_seconds` histograms).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::Record;

/// Latency buckets in seconds: a gateway's own milliseconds up to the
/// minutes a long streamed answer takes.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A request's dimensions; `provider` and `model` are empty (no label) when
/// no provider answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    function: &'static str,
    door: &'static str,
    provider: Arc<str>,
    model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    function: &'static str,
    door: &'static str,
    provider: Arc<str>,
    model: Arc<str>,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    function: &'static str,
    door: &'static str,
    provider: Arc<str>,
    model: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: &'static str,
}

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The registry and its metric families.
pub struct Registry {
    registry: prometheus_client::registry::Registry,
    /// The value of `provider` and `model` for a request no provider answered.
    empty: Arc<str>,
    requests: Family<Labels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histograms,
    upstream: Histograms,
    first_token: Histograms,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    fallbacks: Family<Labels, Counter>,
    tool_calls: Family<Labels, Counter>,
    tool_errors: Family<Labels, Counter>,
    cold_starts: Family<FunctionLabels, Counter>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry with every family registered under `ctxgate_`.
    pub fn new() -> Self {
        let mut r = prometheus_client::registry::Registry::with_prefix("ctxgate");
        let requests = Family::<Labels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration: Histograms = Family::new_with_constructor(histogram);
        let upstream: Histograms = Family::new_with_constructor(histogram);
        let first_token: Histograms = Family::new_with_constructor(histogram);
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let fallbacks = Family::<Labels, Counter>::default();
        let tool_calls = Family::<Labels, Counter>::default();
        let tool_errors = Family::<Labels, Counter>::default();
        let cold_starts = Family::<FunctionLabels, Counter>::default();
        r.register("requests", "Requests served", requests.clone());
        r.register(
            "errors",
            "Requests that failed, by class (client, limited, upstream, internal)",
            errors.clone(),
        );
        r.register(
            "request_duration_seconds",
            "From a request's arrival to its body's end",
            duration.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time a request spent in provider calls that answered",
            upstream.clone(),
        );
        r.register(
            "time_to_first_token_seconds",
            "From a streamed request's arrival to its first event",
            first_token.clone(),
        );
        r.register(
            "tokens",
            "Tokens of provider calls, by kind (input, output, cached)",
            tokens.clone(),
        );
        r.register(
            "cost_micro_usd",
            "Estimated cost of provider calls, in millionths of a USD (billing reads the store)",
            cost.clone(),
        );
        r.register(
            "retries",
            "Upstream attempts retried on the same model",
            retries.clone(),
        );
        r.register(
            "fallbacks",
            "Moves to the next model of a fallback chain",
            fallbacks.clone(),
        );
        r.register("tool_calls", "MCP tool calls run", tool_calls.clone());
        r.register(
            "tool_errors",
            "MCP tool calls that did not succeed",
            tool_errors.clone(),
        );
        r.register("cold_starts", "Processes started", cold_starts.clone());
        Self {
            registry: r,
            empty: Arc::from(""),
            requests,
            errors,
            duration,
            upstream,
            first_token,
            tokens,
            cost,
            retries,
            fallbacks,
            tool_calls,
            tool_errors,
            cold_starts,
        }
    }

    /// Adds one request's record.
    pub fn add(&self, r: &Record<'_>) {
        let labels = Labels {
            function: r.function,
            door: r.door,
            provider: r.provider.unwrap_or(&self.empty).clone(),
            model: r.model.unwrap_or(&self.empty).clone(),
        };
        self.requests.get_or_create(&labels).inc();
        if let Some(c) = r.class {
            let l = ErrorLabels {
                function: r.function,
                door: r.door,
                provider: labels.provider.clone(),
                model: labels.model.clone(),
                class: c.name(),
            };
            self.errors.get_or_create(&l).inc();
        }
        self.duration
            .get_or_create(&labels)
            .observe(r.latency.as_secs_f64());
        if let Some(u) = r.upstream {
            self.upstream
                .get_or_create(&labels)
                .observe(u.as_secs_f64());
            for (kind, n) in [
                ("input", r.input_tokens),
                ("output", r.output_tokens),
                ("cached", r.cached_tokens),
            ] {
                let l = TokenLabels {
                    function: r.function,
                    door: r.door,
                    provider: labels.provider.clone(),
                    model: labels.model.clone(),
                    kind,
                };
                self.tokens.get_or_create(&l).inc_by(n);
            }
            self.cost.get_or_create(&labels).inc_by(r.cost_micro_usd);
        }
        if let Some(f) = r.first_token {
            self.first_token
                .get_or_create(&labels)
                .observe(f.as_secs_f64());
        }
        for (family, n) in [
            (&self.retries, r.retries),
            (&self.fallbacks, r.fallbacks),
            (&self.tool_calls, r.tool_calls),
            (&self.tool_errors, r.tool_errors),
        ] {
            if n > 0 {
                family.get_or_create(&labels).inc_by(u64::from(n));
            }
        }
        if r.cold_start {
            self.cold_starts
                .get_or_create(&FunctionLabels {
                    function: r.function,
                })
                .inc();
        }
    }

    /// The text exposition (OpenMetrics 1.0, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
