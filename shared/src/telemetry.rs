//! Logging: JSON lines through tracing, filtered by `RUST_LOG` (default
//! `info`). Handlers log ids, tenant, model, status, latency and token
//! counts, never keys, tokens or message content.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Crates whose most verbose levels dump request and response payloads
/// (headers, bodies) are capped below trace whatever `RUST_LOG` says.
const PAYLOAD_DUMPERS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_sigv4",
    "hyper",
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

/// Installs the JSON subscriber on stderr once (later calls are ignored),
/// and the panic hook ([`log_panics`]).
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    init_with(&spec, std::io::stderr);
    log_panics();
}

/// Replaces the default panic hook with one JSON log line: where the panic
/// happened and the panic's own text, nothing else (no backtrace, no request
/// data). The Lambda functions abort on panic (the release profile), so this
/// line is all that says why the environment ended.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let text = info.payload_as_str().unwrap_or("(no text)");
        tracing::error!(location, panic = text, "panicked");
    }));
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

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Self;
        fn make_writer(&'w self) -> Self {
            self.clone()
        }
    }

    #[test]
    fn a_panic_is_one_line_with_its_location_and_text() {
        let out = Captured::default();
        let sub = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(out.clone())
            .finish();
        let caught = tracing::subscriber::with_default(sub, || {
            let previous = std::panic::take_hook();
            super::log_panics();
            let line = line!() + 1;
            let caught = std::panic::catch_unwind(|| panic!("the panic's own text"));
            std::panic::set_hook(previous);
            caught.map_err(|_| line)
        });
        let line = caught.expect_err("it panicked");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let log: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(log["level"], "ERROR");
        assert_eq!(log["message"], "panicked");
        assert_eq!(log["panic"], "the panic's own text");
        let location = log["location"].as_str().unwrap();
        assert!(
            location.starts_with(&format!("shared/src/telemetry.rs:{line}:")),
            "{location}"
        );
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
