//! Logging: JSON lines through tracing, filtered by `RUST_LOG` (default
//! `info`). Handlers log ids, tenant, model, status, latency and token
//! counts, never keys, tokens or message content.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; later calls are ignored.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}
