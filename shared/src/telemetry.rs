//! Logging: JSON lines through tracing, filtered by `RUST_LOG` (default
//! `info`). Handlers log ids, tenant, model, status, latency and token
//! counts, never keys, tokens or message content.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Crates whose most verbose levels dump request and response payloads
/// (headers, bodies) are capped below trace whatever `RUST_LOG` says.
const PAYLOAD_DUMPERS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
];

/// The log filter for a `RUST_LOG`-style spec, with the payload caps applied.
pub fn filter(spec: &str) -> EnvFilter {
    let mut f = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    // The spans made for the trace exporter are never log lines.
    if let Ok(d) = format!("{}=off", crate::trace::TARGET).parse() {
        f = f.add_directive(d);
    }
    // rmcp logs whole MCP messages (tool arguments and results) below info
    // and servers' notifications and answer previews at info and error:
    // silenced at every level; ctxgate's own MCP lines say what failed.
    if let Ok(d) = "rmcp=off".parse() {
        f = f.add_directive(d);
    }
    // A cap only matters when the spec enables trace; below that, adding
    // `crate=debug` would raise these crates above the spec (at `info`, a
    // dozen SDK and hyper lines per request in CloudWatch).
    if f.max_level_hint()
        .is_some_and(|l| l < tracing_subscriber::filter::LevelFilter::TRACE)
    {
        return f;
    }
    for krate in PAYLOAD_DUMPERS {
        if let Ok(d) = format!("{krate}=debug").parse() {
            f = f.add_directive(d);
        }
    }
    f
}

/// Installs the JSON subscriber on stderr once; later calls are ignored.
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    init_with(&spec, std::io::stderr);
}

/// Installs the JSON subscriber with a given filter spec and writer (tests
/// capture logs this way), plus the trace exporter when the environment
/// asks for one (`trace`).
pub fn init_with<W>(spec: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    #[cfg(feature = "otel")]
    if let Some(otel) = crate::trace::layer() {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let log = tracing_subscriber::fmt::layer()
            .json()
            .with_target(false)
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(filter(spec));
        let _ = tracing_subscriber::registry()
            .with(otel)
            .with(log)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter(spec))
        .with_target(false)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    fn enabled(spec: &str, target_trace: bool, level: Level) -> bool {
        let sub = tracing_subscriber::registry().with(super::filter(spec));
        tracing::subscriber::with_default(sub, || {
            if target_trace {
                match level {
                    Level::TRACE => tracing::enabled!(target: "hyper", Level::TRACE),
                    _ => tracing::enabled!(target: "hyper", Level::DEBUG),
                }
            } else {
                tracing::enabled!(target: "ctxgate", Level::TRACE)
            }
        })
    }

    #[test]
    fn caps_lower_trace_and_never_raise_the_spec() {
        // At info, hyper stays at info (the cap must not raise it to debug).
        assert!(!enabled("info", true, Level::DEBUG));
        // At trace, hyper is capped at debug while the rest traces.
        assert!(enabled("trace", true, Level::DEBUG));
        assert!(!enabled("trace", true, Level::TRACE));
        assert!(enabled("trace", false, Level::TRACE));
    }
}
