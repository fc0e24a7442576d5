//! The way out: usage still in memory is written before the process ends.
//!
//! The local server stops on SIGTERM or SIGINT ([`signal`]), finishes the
//! requests in flight, then calls [`flush_usage`]. On Lambda, a process is
//! only sent SIGTERM before its environment ends when an extension is
//! registered; [`on_lambda_shutdown`] registers an internal one that asks
//! for no events (internal extensions cannot subscribe to SHUTDOWN, and the
//! `lambda-extension` crate is not among our dependencies, so it speaks the
//! Extensions API's two calls itself) and flushes on that signal, within the
//! 500 ms Lambda then allows.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime_api_client::body::Body;

use crate::usage::flush::UsageBatcher;

/// The name the internal extension registers under (unique per function).
const EXTENSION_NAME: &str = "ctxgate-usage-flush";

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                return;
            }
            _ => tracing::warn!("cannot listen for SIGTERM; Ctrl-C only"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Writes everything the batcher holds, retrying a failed write a few times
/// (the store may be briefly unavailable); what still fails is logged with
/// its size, as it is lost with the process.
pub async fn flush_usage(usage: &UsageBatcher) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=4 {
        match usage.flush().await {
            Ok(f) => {
                tracing::info!(batches = f.batches, items = f.items, "usage flushed");
                return;
            }
            Err(e) if attempt < 4 => {
                tracing::warn!(error = %e, "usage flush failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => tracing::error!(error = %e, "usage flush failed at shutdown"),
        }
    }
}

/// On Lambda (`AWS_LAMBDA_RUNTIME_API` set): registers the no-op internal
/// extension, so that Lambda sends SIGTERM before it ends the environment,
/// and flushes `usage` on that signal, then exits. Must run before the
/// runtime's first `next` (it ends the Init phase); a registration refused
/// (an emulator without the Extensions API) only logs, and usage is then
/// written by the interval and after each streamed response.
pub async fn on_lambda_shutdown(usage: Arc<UsageBatcher>) {
    let Some(api) = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return;
    };
    if register_flush_extension(&api).await {
        tokio::spawn(async move {
            signal().await;
            flush_usage(&usage).await;
            crate::trace::flush().await;
            std::process::exit(0);
        });
    }
}

/// Registers the no-op internal extension with the Extensions API at `api`
/// (`host:port`) and leaves its first `event/next` open; false when there is
/// none (an emulator without it), which is only logged.
pub async fn register_flush_extension(api: &str) -> bool {
    // The Runtime API's own plain-HTTP client: a `reqwest` client here would
    // load the TLS root store (a few ms of the cold start) for loopback calls.
    let Ok(base) = format!("http://{api}").parse::<http::Uri>() else {
        tracing::info!(
            "AWS_LAMBDA_RUNTIME_API is not a host:port: usage is not flushed on SIGTERM"
        );
        return false;
    };
    let client = lambda_runtime_api_client::PooledClient::builder()
        .with_endpoint(base)
        .build();
    let register = http::Request::post("/2020-01-01/extension/register")
        .header("Lambda-Extension-Name", EXTENSION_NAME)
        .body(Body::from(r#"{"events":[]}"#));
    let registered = match register {
        Ok(req) => tokio::time::timeout(Duration::from_secs(2), client.call(req))
            .await
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    let id = match registered {
        Ok(r) if r.status().is_success() => r
            .headers()
            .get("Lambda-Extension-Identifier")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Ok(r) => {
            tracing::info!(status = %r.status(), "no Lambda extension: usage is not flushed on SIGTERM");
            None
        }
        Err(e) => {
            tracing::info!(error = %e, "no Lambda extension: usage is not flushed on SIGTERM");
            None
        }
    };
    let Some(id) = id else {
        return false;
    };
    // An extension is ready once it asks for its next event; with none
    // subscribed the request stays open until the environment ends.
    if let Ok(next) = http::Request::get("/2020-01-01/extension/event/next")
        .header("Lambda-Extension-Identifier", id)
        .body(Body::empty())
    {
        tokio::spawn(async move {
            let _ = client.call(next).await;
        });
    }
    true
}
