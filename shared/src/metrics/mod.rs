//! Request metrics: counts, error classes, latencies, time to first token,
//! tokens, cost, retries, fallbacks, tool calls and cold starts, by
//! function, front door, provider and model.
//!
//! Each request has one [`Tally`] (atomic counters, no map), reached by the
//! pipeline's hooks through a task-local, so a hook is a one-line call that
//! does nothing outside a request. When the request is over (its body sent
//! or dropped) the tally becomes one [`Record`]: a CloudWatch EMF line on
//! stdout on Lambda ([`emf`]), or an addition to the Prometheus registry the
//! local server exposes ([`prometheus`]). Dimensions stay low-cardinality:
//! never a tenant, key, conversation or request id, and a provider or model
//! the configuration does not name is `other`. Billing comes from the
//! store, never from here.

pub mod emf;
#[cfg(feature = "cli")]
pub mod prometheus;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, MetricsSink};
use crate::model::Usage;

/// The value of a provider or model dimension the configuration does not name.
pub const OTHER: &str = "other";

tokio::task_local! {
    static TALLY: Arc<Tally>;
}

/// How a request failed, for the error counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A 4xx other than 429: the request's own fault.
    Client,
    /// 429: a rate limit, a budget, or the provider's.
    Limited,
    /// The provider failed, timed out or could not be reached.
    Upstream,
    /// Any other 5xx: the gateway or its store.
    Internal,
}

impl Class {
    /// Every class, in the order records list them.
    pub const ALL: [Class; 4] = [
        Class::Client,
        Class::Limited,
        Class::Upstream,
        Class::Internal,
    ];

    /// The class of a response's status and error code; `None` for a success.
    pub fn of(status: u16, code: Option<&str>) -> Option<Class> {
        let upstream_code = code.is_some_and(|c| {
            c.starts_with("upstream_") || c.starts_with("provider_") || c == "deadline_exceeded"
        });
        match status {
            429 => Some(Class::Limited),
            400..=499 => Some(Class::Client),
            502 | 504 => Some(Class::Upstream),
            500..=599 if upstream_code => Some(Class::Upstream),
            500..=599 => Some(Class::Internal),
            _ => None,
        }
    }

    /// Its name, as a Prometheus label value.
    pub fn name(self) -> &'static str {
        match self {
            Class::Client => "client",
            Class::Limited => "limited",
            Class::Upstream => "upstream",
            Class::Internal => "internal",
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(c: u8) -> Option<Class> {
        Class::ALL.get(usize::from(c.checked_sub(1)?)).copied()
    }
}

/// The front door of a request path: a fixed set, whatever the path.
pub fn door_of(path: &str) -> &'static str {
    let p = path.trim_end_matches('/');
    match p {
        "/v1/chat/completions" => "chat",
        "/mcp" => "mcp",
        "/health" => "health",
        "/metrics" => "metrics",
        "/v1/models" => "models",
        "/v1/usage" => "usage",
        _ if p.starts_with("/v1/messages") => "messages",
        _ if p.starts_with("/v1/responses") => "responses",
        _ if p.starts_with("/v1/conversations") => "conversations",
        _ if p.starts_with("/v1/admin/") => "admin",
        _ if p.starts_with("/.well-known/oauth-protected-resource") => "mcp",
        _ => "other",
    }
}

/// A process's metrics: where records go, the names dimensions may take,
/// whether the next record is the cold start's.
pub struct Metrics {
    sink: MetricsSink,
    /// The Lambda function's name, which names the function in every
    /// record (unique per stack, so two stacks in one account never mix).
    lambda_function: Option<&'static str>,
    providers: Names,
    models: Names,
    cold: AtomicBool,
    #[cfg(feature = "cli")]
    registry: Option<prometheus::Registry>,
}

/// Configured names, each one shared string; index 0 is [`OTHER`].
struct Names {
    index: HashMap<String, u16>,
    names: Vec<Arc<str>>,
}

impl Names {
    fn new<'a>(known: impl Iterator<Item = &'a str>) -> Self {
        let mut names: Vec<Arc<str>> = vec![Arc::from(OTHER)];
        let mut index = HashMap::new();
        for name in known {
            if index.contains_key(name) || names.len() >= usize::from(u16::MAX) - 1 {
                continue;
            }
            index.insert(name.to_owned(), names.len() as u16);
            names.push(Arc::from(name));
        }
        Self { index, names }
    }

    /// The slot of `name` (0 for one the configuration does not name).
    fn slot(&self, name: &str) -> u16 {
        self.index.get(name).copied().unwrap_or(0)
    }

    fn get(&self, slot: u16) -> Option<&Arc<str>> {
        self.names.get(usize::from(slot))
    }
}

/// No provider (or model) recorded yet.
const NONE: u16 = u16::MAX;

impl Metrics {
    /// The process's metrics under `config`: its sink, and the providers and
    /// models it names (configured, listed, aliased, or given settings).
    pub fn new(config: &Config) -> Self {
        let models = config
            .models
            .iter()
            .chain(config.aliases.values().flatten())
            .chain(config.context_windows.keys())
            .chain(config.max_outputs.keys())
            .chain(config.model_caches.keys())
            .chain(config.model_retry.keys())
            .map(String::as_str);
        Self {
            sink: config.metrics,
            // Leaked once per cold start: the process's own name for its life.
            lambda_function: config
                .lambda_function
                .as_deref()
                .map(|n| &*Box::leak(Box::<str>::from(n))),
            providers: Names::new(config.providers.keys().map(String::as_str)),
            models: Names::new(models),
            cold: AtomicBool::new(true),
            #[cfg(feature = "cli")]
            registry: (config.metrics == MetricsSink::Prometheus).then(prometheus::Registry::new),
        }
    }

    /// A tally for a request to `door` of `function` (named by the Lambda
    /// function's name on Lambda); `None` when metrics are off.
    pub fn begin(
        self: &Arc<Self>,
        function: &'static str,
        door: &'static str,
    ) -> Option<Arc<Tally>> {
        if self.sink == MetricsSink::Off {
            return None;
        }
        Some(Arc::new(Tally {
            metrics: self.clone(),
            function: self.lambda_function.unwrap_or(function),
            door,
            started: Instant::now(),
            provider: AtomicU16::new(NONE),
            model: AtomicU16::new(NONE),
            failed: AtomicU8::new(0),
            first_token_us: AtomicU64::new(0),
            upstream_us: AtomicU64::new(0),
            calls: AtomicU32::new(0),
            input: AtomicU64::new(0),
            output: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            cost: AtomicU64::new(0),
            retries: AtomicU32::new(0),
            fallbacks: AtomicU32::new(0),
            tool_calls: AtomicU32::new(0),
            tool_errors: AtomicU32::new(0),
            finished: AtomicBool::new(false),
        }))
    }

    /// The Prometheus text exposition (OpenMetrics), when this process keeps a registry.
    pub fn exposition(&self) -> Option<String> {
        #[cfg(feature = "cli")]
        {
            self.registry.as_ref().map(prometheus::Registry::encode)
        }
        #[cfg(not(feature = "cli"))]
        {
            None
        }
    }

    fn write(&self, record: &Record<'_>) {
        match self.sink {
            MetricsSink::Emf => emf::write(record),
            #[cfg(feature = "cli")]
            MetricsSink::Prometheus => {
                if let Some(r) = &self.registry {
                    r.add(record);
                }
            }
            _ => {}
        }
    }
}

/// One request's metrics while it runs; see the module docs.
pub struct Tally {
    metrics: Arc<Metrics>,
    function: &'static str,
    door: &'static str,
    started: Instant,
    provider: AtomicU16,
    model: AtomicU16,
    /// The class of a failure after the response began (a stream's error event).
    failed: AtomicU8,
    first_token_us: AtomicU64,
    upstream_us: AtomicU64,
    calls: AtomicU32,
    input: AtomicU64,
    output: AtomicU64,
    cached: AtomicU64,
    cost: AtomicU64,
    retries: AtomicU32,
    fallbacks: AtomicU32,
    tool_calls: AtomicU32,
    tool_errors: AtomicU32,
    finished: AtomicBool,
}

/// One request's metrics, as written.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// Milliseconds since the Unix epoch at the request's end.
    pub timestamp_ms: u64,
    /// The function that served it: the Lambda function's name, or `local`
    /// (the local server).
    pub function: &'static str,
    /// Its front door ([`door_of`]).
    pub door: &'static str,
    /// The provider that answered last, for a turn.
    pub provider: Option<&'a Arc<str>>,
    /// The model that answered last, for a turn.
    pub model: Option<&'a Arc<str>>,
    /// How it failed, if it did.
    pub class: Option<Class>,
    /// From the request's arrival to its body's end.
    pub latency: Duration,
    /// Time in provider calls that answered, summed.
    pub upstream: Option<Duration>,
    /// From the request's arrival to its first streamed event.
    pub first_token: Option<Duration>,
    /// Input tokens over the request's provider calls (cache reads included).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Estimated cost, in millionths of a USD.
    pub cost_micro_usd: u64,
    /// Upstream attempts retried on the same model.
    pub retries: u32,
    /// Moves to the next model of a fallback chain.
    pub fallbacks: u32,
    /// MCP tool calls run.
    pub tool_calls: u32,
    /// MCP tool calls that did not succeed.
    pub tool_errors: u32,
    /// The first request of the process.
    pub cold_start: bool,
}

impl Tally {
    /// The request is over with `status` (and error `code`): its record,
    /// written once, whatever calls this again.
    pub fn finish(&self, status: u16, code: Option<&str>) {
        if self.finished.swap(true, Relaxed) {
            return;
        }
        let m = &*self.metrics;
        let cold_start = m.cold.swap(false, Relaxed);
        let class = Class::from_code(self.failed.load(Relaxed)).or(Class::of(status, code));
        let calls = self.calls.load(Relaxed);
        let first = self.first_token_us.load(Relaxed);
        fn named<'n>(names: &'n Names, slot: &AtomicU16) -> Option<&'n Arc<str>> {
            match slot.load(Relaxed) {
                NONE => None,
                s => names.get(s),
            }
        }
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let record = Record {
            timestamp_ms,
            function: self.function,
            door: self.door,
            provider: named(&m.providers, &self.provider),
            model: named(&m.models, &self.model),
            class,
            latency: self.started.elapsed(),
            upstream: (calls > 0).then(|| Duration::from_micros(self.upstream_us.load(Relaxed))),
            first_token: (first > 0).then(|| Duration::from_micros(first)),
            input_tokens: self.input.load(Relaxed),
            output_tokens: self.output.load(Relaxed),
            cached_tokens: self.cached.load(Relaxed),
            cost_micro_usd: self.cost.load(Relaxed),
            retries: self.retries.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            tool_calls: self.tool_calls.load(Relaxed),
            tool_errors: self.tool_errors.load(Relaxed),
            cold_start,
        };
        m.write(&record);
    }
}

/// Runs `f` with `tally` as its request's (plainly when there is none).
pub async fn scope<F: Future>(tally: Option<Arc<Tally>>, f: F) -> F::Output {
    match tally {
        Some(t) => TALLY.scope(t, f).await,
        None => f.await,
    }
}

/// Runs `f` (one poll of a response body) with `tally` as its request's.
pub fn sync_scope<R>(tally: Arc<Tally>, f: impl FnOnce() -> R) -> R {
    TALLY.sync_scope(tally, f)
}

fn with(f: impl FnOnce(&Tally)) {
    let _ = TALLY.try_with(|t| f(t));
}

/// A provider call answered: `usage` costing `cost_micro_usd`, after `upstream`.
pub fn answered(
    provider: &str,
    model: &str,
    usage: &Usage,
    cost_micro_usd: u64,
    upstream: Duration,
) {
    with(|t| {
        let m = &t.metrics;
        t.provider.store(m.providers.slot(provider), Relaxed);
        t.model.store(m.models.slot(model), Relaxed);
        t.calls.fetch_add(1, Relaxed);
        t.upstream_us.fetch_add(
            upstream.as_micros().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
        t.input.fetch_add(usage.input, Relaxed);
        t.output.fetch_add(usage.output, Relaxed);
        t.cached.fetch_add(usage.cache_read, Relaxed);
        t.cost.fetch_add(cost_micro_usd, Relaxed);
    });
}

/// An upstream attempt failed and the same model is tried again.
pub fn retry() {
    with(|t| {
        t.retries.fetch_add(1, Relaxed);
    });
}

/// A model failed and the next model of its fallback chain is tried.
pub fn fallback() {
    with(|t| {
        t.fallbacks.fetch_add(1, Relaxed);
    });
}

/// A streamed event is going out: the first one sets the time to first token.
pub fn first_token() {
    with(|t| {
        if t.first_token_us.load(Relaxed) == 0 {
            let us = t
                .started
                .elapsed()
                .as_micros()
                .clamp(1, u128::from(u64::MAX)) as u64;
            let _ = t.first_token_us.compare_exchange(0, us, Relaxed, Relaxed);
        }
    });
}

/// An MCP tool call ran (`ok`: it succeeded).
pub fn tool_call(ok: bool) {
    with(|t| {
        t.tool_calls.fetch_add(1, Relaxed);
        if !ok {
            t.tool_errors.fetch_add(1, Relaxed);
        }
    });
}

/// The response, already begun, failed with `status` and `code` (a
/// stream's error event): the request counts as that error.
pub fn failed(status: u16, code: &str) {
    with(|t| {
        if let Some(c) = Class::of(status, Some(code)) {
            t.failed.store(c.code(), Relaxed);
        }
    });
}

#[cfg(test)]
mod tests;
