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

/// Installs the JSON subscriber with a given filter spec and writer (tests capture logs this way).
pub fn init_with<W>(spec: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
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
