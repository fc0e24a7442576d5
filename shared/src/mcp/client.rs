//! One MCP server over Streamable HTTP, through rmcp: opening a connection
//! (the current revision, or the legacy handshake for older servers), the
//! tool-list cache, and short, safe descriptions of failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProtocolVersion, Tool as McpTool,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError,
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use sha2::{Digest, Sha256};

use super::ServerSpec;
use super::net::{self, Refused};
use crate::config::Config;

/// A server's tool list is never reused longer than this, whatever its `ttlMs`.
pub const MAX_LIST_TTL: Duration = Duration::from_secs(3600);

/// Lists kept at most (tenants x servers); the stalest go first beyond it.
const CACHE_CAPACITY: usize = 4096;

/// Connections kept across federated calls at most (tenants x servers).
const POOL_CAPACITY: usize = 256;

/// A connection to one server: open for one turn, or kept across the
/// federated calls of a warm process ([`Inner::pooled`]).
pub type Connection = RunningService<RoleClient, ClientConfig>;

/// A connection opened on first use, shared by whoever holds the cell.
pub(super) type ConnCell = Arc<tokio::sync::OnceCell<Connection>>;

/// The HTTP client MCP servers are reached with, and the tool-list cache.
pub struct Clients {
    pub(super) inner: Arc<Inner>,
}

/// What a turn's [`super::Toolbox`] keeps of [`Clients`].
pub(super) struct Inner {
    /// Built on first use: a cold start that serves no MCP turn does not
    /// pay for a second TLS client (about 3 ms).
    http: OnceLock<reqwest::Client>,
    connect_timeout: Duration,
    pub(super) allowed_hosts: Vec<String>,
    pub(super) tools_ttl: Duration,
    pub(super) max_result_bytes: usize,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    /// Connections federated calls reuse, per tenant, server, URL and
    /// credential: never shared across tenants or credentials.
    pool: Mutex<HashMap<CacheKey, ConnCell>>,
}

/// Whose list it is: the same server reached with other headers (another
/// credential) is another list.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    tenant: String,
    server: String,
    url: String,
    headers: [u8; 32],
}

struct Cached {
    tools: Arc<Vec<McpTool>>,
    expires: Instant,
}

impl Clients {
    /// Built once per cold start.
    pub fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                http: OnceLock::new(),
                connect_timeout: config.connect_timeout,
                allowed_hosts: config.mcp.allowed_hosts.clone(),
                tools_ttl: Duration::from_secs(config.mcp.tools_ttl_seconds),
                max_result_bytes: config.mcp.max_result_bytes,
                cache: Mutex::new(HashMap::new()),
                pool: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Forgets every cached tool list and kept connection of `tenant`'s
    /// server `server` (after its registration changed, say).
    pub fn forget_server(&self, tenant: &str, server: &str) {
        let mut cache = self.inner.lock();
        cache.retain(|k, _| !(k.tenant == tenant && k.server == server));
        drop(cache);
        self.inner
            .pool()
            .retain(|k, _| !(k.tenant == tenant && k.server == server));
    }

    /// How many tool lists are cached (tests).
    pub fn cached_lists(&self) -> usize {
        self.inner.lock().len()
    }

    /// How many connections are kept for federated calls (tests).
    pub fn kept_connections(&self) -> usize {
        self.inner.pool().len()
    }
}

impl Inner {
    /// The servers' HTTP client.
    pub(super) fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| net::client(self.connect_timeout))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, ConnCell>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection kept for `key`, to open on first use. One that has
    /// closed is replaced, and so is any kept for another URL or credential
    /// of the same tenant's server (its registration changed).
    pub(super) fn pooled(&self, key: &CacheKey) -> ConnCell {
        let mut pool = self.pool();
        if let Some(cell) = pool.get(key)
            && !cell.get().is_some_and(|c| c.is_closed())
        {
            return cell.clone();
        }
        pool.retain(|k, _| !(k.tenant == key.tenant && k.server == key.server));
        if pool.len() >= POOL_CAPACITY {
            pool.retain(|_, c| c.get().is_some_and(|c| !c.is_closed()));
            if let Some(any) = pool.keys().next().cloned() {
                pool.remove(&any);
            }
        }
        let cell = ConnCell::default();
        pool.insert(key.clone(), cell.clone());
        cell
    }

    /// Stops keeping `cell` for `key` (a call through it failed), unless it
    /// was replaced already; calls still holding it finish on it.
    pub(super) fn unpool(&self, key: &CacheKey, cell: &ConnCell) {
        let mut pool = self.pool();
        if pool.get(key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            pool.remove(key);
        }
    }

    /// The cache key of `tenant`'s `spec`.
    pub(super) fn key(tenant: &str, spec: &ServerSpec) -> CacheKey {
        let mut h = Sha256::new();
        for (name, value) in &spec.headers {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.to_ascii_lowercase().as_bytes());
            h.update((value.len() as u64).to_le_bytes());
            h.update(value.as_bytes());
        }
        CacheKey {
            tenant: tenant.to_owned(),
            server: spec.name.clone(),
            url: spec.url.as_str().to_owned(),
            headers: h.finalize().into(),
        }
    }

    /// A fresh cached list.
    pub(super) fn cached(&self, key: &CacheKey) -> Option<Arc<Vec<McpTool>>> {
        let cache = self.lock();
        cache
            .get(key)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.tools.clone())
    }

    /// Keeps a list for the server's `ttlMs` (capped), else the configured time.
    ///
    /// A `ttlMs` of 0 counts as none: servers on the current revision must
    /// send one and rmcp's fills in 0 when the server sets none, so honouring
    /// it would mean listing before every turn; a changed list is caught
    /// anyway by the failed call that drops it.
    pub(super) fn store(&self, key: CacheKey, tools: Arc<Vec<McpTool>>, ttl_ms: Option<u64>) {
        let ttl = ttl_ms
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(self.tools_ttl)
            .min(MAX_LIST_TTL);
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.lock();
        cache.retain(|_, c| c.expires > now);
        while cache.len() >= CACHE_CAPACITY {
            let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            cache.remove(&oldest);
        }
        cache.insert(
            key,
            Cached {
                tools,
                expires: now + ttl,
            },
        );
    }

    /// Drops a list (after a call to its server failed: the next turn re-lists).
    pub(super) fn forget(&self, key: &CacheKey) {
        self.lock().remove(key);
    }

    /// Opens a connection to `spec`: the current revision (`server/discover`,
    /// stateless), falling back to `initialize` and a session for older
    /// servers. The caller bounds it with the server's timeout, which also
    /// bounds rmcp's own discover probe. A connection that is `kept` (across
    /// calls) starts a new session when the server says its session expired
    /// (404), and retries the request that learnt it once.
    pub(super) async fn open(&self, spec: &ServerSpec, kept: bool) -> Result<Connection, Failure> {
        net::check_url(&spec.url, &self.allowed_hosts).map_err(Failure::Refused)?;
        let mut headers = HashMap::new();
        for (name, value) in &spec.headers {
            let name =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| Failure::BadHeader)?;
            let mut value = http::HeaderValue::from_str(value).map_err(|_| Failure::BadHeader)?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        // The turn's trace context (the connection's calls are in its trace).
        headers.extend(crate::trace::context_headers());
        let config = StreamableHttpClientTransportConfig::with_uri(spec.url.as_str())
            .custom_headers(headers)
            .reinit_on_expired_session(kept);
        let transport = StreamableHttpClientTransport::with_client(self.http().clone(), config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("ctxgate", env!("CARGO_PKG_VERSION")),
        );
        info.serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: Some(ProtocolVersion::V_2025_11_25),
            },
        )
        .await
        .map_err(|e| Failure::from_error(&e))
    }
}

/// Why a server could not be used, described without anything it or the
/// tenant sent (no header value, no body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Refused before connecting (URL rule, forbidden address).
    Refused(Refused),
    /// A header name or value cannot be sent.
    BadHeader,
    /// The server answered with this HTTP status.
    Status(u16),
    /// The server answered with a redirect (never followed: it could carry
    /// the credential elsewhere).
    Redirect,
    /// Nothing listens there.
    ConnectionRefused,
    /// The name does not resolve.
    Dns,
    /// Could not connect (other reasons: TLS, reset...).
    Connect,
    /// The time limit passed (zero: connecting).
    TimedOut(Duration),
    /// The answer was not a readable MCP message.
    Malformed,
    /// The server answered with a JSON-RPC error.
    Rpc(i32, String),
    /// The connection ended.
    Closed,
    /// The protocol version could not be agreed.
    Version,
}

impl Failure {
    /// Walks an error's sources for what went wrong.
    pub(super) fn from_error(error: &(dyn std::error::Error + 'static)) -> Failure {
        use rmcp::service::ClientInitializeError as Init;
        use rmcp::service::ServiceError as Svc;

        let mut found: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut fallback = Failure::Closed;
        while let Some(e) = found {
            if let Some(r) = e.downcast_ref::<Refused>() {
                return Failure::Refused(r.clone());
            }
            if e.downcast_ref::<net::Unresolved>().is_some() {
                return Failure::Dns;
            }
            if e.downcast_ref::<AuthRequiredError>().is_some() {
                return Failure::Status(401);
            }
            if e.downcast_ref::<InsufficientScopeError>().is_some() {
                return Failure::Status(403);
            }
            if let Some(s) = e.downcast_ref::<HttpStatusError>() {
                return Failure::Status(s.status);
            }
            if let Some(h) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
                match h {
                    StreamableHttpError::AuthRequired(_) => return Failure::Status(401),
                    StreamableHttpError::InsufficientScope(_) => return Failure::Status(403),
                    StreamableHttpError::HttpStatus(s) => return Failure::Status(s.status),
                    StreamableHttpError::SessionExpired => return Failure::Status(404),
                    // Not a `source` in rmcp: followed by hand.
                    StreamableHttpError::Client(r) => return Failure::from_error(r),
                    StreamableHttpError::Deserialize(_)
                    | StreamableHttpError::UnexpectedContentType(_)
                    | StreamableHttpError::UnexpectedServerResponse(_)
                    | StreamableHttpError::ResponseBodyTooLarge { .. } => {
                        return Failure::Malformed;
                    }
                    _ => {}
                }
            }
            if let Some(d) = e.downcast_ref::<rmcp::transport::DynamicTransportError>() {
                return Failure::from_error(d.error.as_ref());
            }
            if let Some(r) = e.downcast_ref::<reqwest::Error>() {
                if let Some(status) = r.status() {
                    return Failure::Status(status.as_u16());
                }
                if r.is_redirect() {
                    return Failure::Redirect;
                }
                if r.is_timeout() {
                    fallback = Failure::TimedOut(Duration::ZERO);
                } else if r.is_connect() {
                    fallback = Failure::Connect;
                } else if r.is_decode() || r.is_body() {
                    fallback = Failure::Malformed;
                }
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return Failure::ConnectionRefused,
                    std::io::ErrorKind::TimedOut => fallback = Failure::TimedOut(Duration::ZERO),
                    _ => {}
                }
            }
            if e.downcast_ref::<serde_json::Error>().is_some() {
                return Failure::Malformed;
            }
            match e.downcast_ref::<Svc>() {
                Some(Svc::McpError(d)) => return Failure::Rpc(d.code.0, d.message.to_string()),
                Some(Svc::UnexpectedResponse) => return Failure::Malformed,
                Some(Svc::Timeout { timeout }) => return Failure::TimedOut(*timeout),
                _ => {}
            }
            match e.downcast_ref::<Init>() {
                Some(Init::JsonRpcError(d)) => {
                    return Failure::Rpc(d.code.0, d.message.to_string());
                }
                Some(Init::NoCompatibleProtocolVersion { .. }) => return Failure::Version,
                Some(Init::TransportError { error, .. }) => {
                    return Failure::from_error(error.error.as_ref());
                }
                Some(Init::ExpectedInitResponse(_)) | Some(Init::ExpectedInitResult(_)) => {
                    fallback = Failure::Malformed
                }
                // Both startups failed: the legacy one says more about an old
                // server, the discover one about a current server that refused.
                Some(Init::LegacyFallbackFailed {
                    discover,
                    fallback: legacy,
                }) => {
                    let d = Failure::from_error(discover.as_ref());
                    let l = Failure::from_error(legacy.as_ref());
                    return match (&d, &l) {
                        (Failure::Status(s), _) if *s == 401 || *s == 403 => d,
                        (_, Failure::Closed) => d,
                        _ => l,
                    };
                }
                _ => {}
            }
            found = e.source();
        }
        fallback
    }

    /// A short reason for `unavailable()` and tool results.
    pub fn reason(&self) -> String {
        match self {
            Failure::Refused(r) => format!("refused: {r}"),
            Failure::BadHeader => "a registered header cannot be sent".to_owned(),
            Failure::Status(401) => "HTTP 401 from the server (check its credentials)".to_owned(),
            Failure::Status(s) => format!("HTTP {s} from the server"),
            Failure::Redirect => "the server answered with a redirect (not followed)".to_owned(),
            Failure::ConnectionRefused => "connection refused".to_owned(),
            Failure::Dns => "the server's name does not resolve".to_owned(),
            Failure::Connect => "could not connect to the server".to_owned(),
            // Zero: reqwest's own connect timeout, whose length it does not say.
            Failure::TimedOut(d) if d.is_zero() => "timed out connecting to the server".to_owned(),
            Failure::TimedOut(d) => format!("timed out after {} s", d.as_secs_f64()),
            Failure::Malformed => "the server's answer is not a readable MCP message".to_owned(),
            Failure::Rpc(code, message) => {
                format!(
                    "the server answered with error {code}: {}",
                    short(message, 200)
                )
            }
            Failure::Closed => "the connection to the server closed".to_owned(),
            Failure::Version => "no MCP protocol version in common with the server".to_owned(),
        }
    }
}

/// `s` cut to `max` bytes at a char boundary.
pub fn short(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_in_short_safe_words() {
        let io = |k| std::io::Error::new(k, "Bearer secret in a message");
        let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
            (
                Box::new(io(std::io::ErrorKind::ConnectionRefused)),
                "connection refused",
            ),
            (
                Box::new(net::Unresolved(io(std::io::ErrorKind::Other))),
                "the server's name does not resolve",
            ),
            (
                Box::new(Refused::Forbidden("169.254.169.254".parse().unwrap())),
                "refused: the server's address 169.254.169.254 is link-local or a cloud metadata address",
            ),
            (
                Box::new(StreamableHttpError::<reqwest::Error>::HttpStatus(
                    HttpStatusError::new(503, None),
                )),
                "HTTP 503 from the server",
            ),
            (
                Box::new(rmcp::service::ServiceError::UnexpectedResponse),
                "the server's answer is not a readable MCP message",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(Failure::from_error(error.as_ref()).reason(), reason);
        }
        assert_eq!(
            Failure::TimedOut(Duration::from_millis(2500)).reason(),
            "timed out after 2.5 s"
        );
        assert_eq!(
            Failure::Rpc(-32602, "é".repeat(150)).reason().len(),
            "the server answered with error -32602: ".len() + 200
        );
    }

    #[test]
    fn the_cache_key_changes_with_the_header_values() {
        let spec = |v: &str| ServerSpec {
            name: "crm".to_owned(),
            url: "https://crm.example.com/mcp".parse().unwrap(),
            headers: vec![("Authorization".to_owned(), v.to_owned())],
            allowed_tools: None,
            timeout: Duration::from_secs(1),
        };
        assert!(Inner::key("a", &spec("x")) == Inner::key("a", &spec("x")));
        assert!(Inner::key("a", &spec("x")) != Inner::key("a", &spec("y")));
        assert!(Inner::key("a", &spec("x")) != Inner::key("b", &spec("x")));
    }
}
