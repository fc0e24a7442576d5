//! Tenants' MCP servers as tool sources for the model:
//!
//! - [`registry`]: a server's registration (checked), the stored record, and
//!   resolving the names a turn asks for into [`ServerSpec`]s (config-declared
//!   servers first, then the store, header values from [`credentials`]).
//! - [`credentials`]: servers' header values, write-only, in Secrets Manager
//!   or (embedded store) an owner-only file of the data directory.
//! - [`net`]: the HTTP client MCP servers are reached with (the URL rule, no
//!   redirects, link-local and metadata addresses refused after DNS).
//! - [`client`]: one server over Streamable HTTP through rmcp: the current
//!   revision, or the legacy handshake for older servers.
//! - [`toolbox`]: a turn's tools: lists (cached per tenant and server), the
//!   `{server}__{tool}` names the model sees, and running calls.

pub mod client;
pub mod credentials;
pub mod names;
pub mod net;
pub mod registry;
pub mod toolbox;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::ToolResult;
use crate::read_cache::ReadCache;
use crate::store::{Store, StoreError};

pub use registry::ResolveError;
pub use toolbox::Toolbox;

/// A server a turn may use, resolved: where it is and what to send it.
#[derive(Clone)]
pub struct ServerSpec {
    /// The tenant's name for it (`[a-z0-9-]{1,32}`).
    pub name: String,
    /// Its Streamable HTTP endpoint (already checked against the URL rule).
    pub url: url::Url,
    /// Headers sent with every request to it (credentials: never logged).
    pub headers: Vec<(String, String)>,
    /// Tool names or `*` globs the model may use; `None`: every tool.
    pub allowed_tools: Option<Vec<String>>,
    /// A call's time limit.
    pub timeout: Duration,
}

impl std::fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ServerSpec")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("headers", &names)
            .field("allowed_tools", &self.allowed_tools)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tool answered.
    Ok,
    /// The tool answered with an error result (`isError`).
    ToolError,
    /// The server could not be reached or refused the call (down, 401, protocol error).
    Failed,
    /// No answer within the server's `timeout_seconds`.
    TimedOut,
    /// The answer could not be read as a tool result.
    Malformed,
    /// The model named a tool no server offers.
    UnknownTool,
    /// The model's arguments were not a JSON object.
    InvalidArguments,
}

impl Outcome {
    /// Whether the call succeeded.
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// The outcome as stored, shown and traced (`tool_error`, `timed_out`...: its
    /// serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Malformed => "malformed",
            Outcome::UnknownTool => "unknown_tool",
            Outcome::InvalidArguments => "invalid_arguments",
        }
    }
}

/// One tool call run by the loop: what the model sees, and how it went.
#[derive(Debug, Clone)]
pub struct ToolRun {
    /// The server (empty for a tool no server offers).
    pub server: String,
    /// The tool's name on its server.
    pub tool: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Time from sending the call to its result (or failure).
    pub duration: Duration,
    /// The result the model gets (`is_error` set unless the outcome is `Ok`).
    pub result: ToolResult,
}

/// Tenants whose registrations are cached past this many are dropped
/// wholesale (a bound on memory).
const REGISTRATIONS_MAX: usize = 10_000;

/// Everything MCP built once per cold start and shared by every turn.
pub struct Mcp {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    /// Each tenant's registrations as read from the store, for
    /// `[mcp] registry_cache_seconds` (forgotten at once when changed here).
    registrations: ReadCache<String, Arc<Vec<registry::ServerRecord>>, StoreError>,
    /// Servers' header values.
    pub credentials: Arc<dyn credentials::Credentials>,
    /// The HTTP client and the tool-list cache.
    pub clients: client::Clients,
}

impl Mcp {
    /// Assembles the parts.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        credentials: Arc<dyn credentials::Credentials>,
        clients: client::Clients,
    ) -> Self {
        Self {
            config,
            store,
            registrations: ReadCache::new(REGISTRATIONS_MAX),
            credentials,
            clients,
        }
    }

    /// The tenant's registrations: one store read per tenant per
    /// `[mcp] registry_cache_seconds`, shared by concurrent callers.
    pub async fn registrations(
        &self,
        tenant: &str,
    ) -> Result<Arc<Vec<registry::ServerRecord>>, StoreError> {
        let ttl = Duration::from_secs(self.config.mcp.registry_cache_seconds);
        let read = || {
            let (store, tenant) = (self.store.clone(), tenant.to_owned());
            async move { Ok(Arc::new(store.list_mcp_servers(&tenant).await?)) }.boxed()
        };
        self.registrations.get(tenant, |_| ttl, read).await
    }

    /// Forgets the tenant's cached registrations (after a change made
    /// through this process): the next use reads them again.
    pub fn forget_registrations(&self, tenant: &str) {
        self.registrations.forget(tenant);
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store holding registrations.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }
}
