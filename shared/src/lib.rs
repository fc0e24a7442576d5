//! ctxgate: a serverless LLM gateway that speaks the OpenAI API, keeps
//! conversation context in DynamoDB (or an embedded store locally) and routes
//! each request to OpenAI, Anthropic or any OpenAI-compatible provider.
//!
//! The library holds every piece of logic; each Lambda function crate and the
//! local server only build an [`AppState`] once and serve [`http`] routes.

pub mod auth;
pub mod aws;
pub mod capped;
pub mod config;
pub mod context;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod limits;
pub mod mcp;
pub mod meter;
pub mod metrics;
pub mod model;
pub mod processor;
pub mod provider;
pub mod read_cache;
pub mod redact;
pub mod refresh;
pub mod retry;
pub mod secrets;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod summary;
pub mod sweep;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod trace;
pub mod turn;
pub mod usage;
pub mod validate;
pub mod wire;

pub use error::ApiError;
pub use state::AppState;

/// Seconds since the Unix epoch, the time unit of every stored timestamp.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
