//! Registered servers: the rules a registration must meet (the admin API's
//! and the config file's alike), the record the store keeps (header names
//! only), and resolving a turn's `mcp_servers` into [`ServerSpec`]s.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use super::{Mcp, ServerSpec};
use crate::config::{Config, ConfigError, McpServerConfig};

/// A registered server as the store keeps it: header names, never values.
pub use crate::store::McpServerRecord as ServerRecord;

/// Most servers one request may name.
pub const MAX_SERVERS_PER_REQUEST: usize = 16;
/// Longest server URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Most headers one server may be given.
pub const MAX_HEADERS: usize = 32;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// Most `allowed_tools` entries.
pub const MAX_ALLOWED_TOOLS: usize = 256;
/// Longest call time limit a server may set, in seconds.
pub const MAX_TIMEOUT_SECONDS: u64 = 300;

/// Headers ctxgate sets itself (or that would change how a request is
/// framed or routed): a registration may not supply them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept",
    "accept-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];

/// Host names of cloud metadata services (their addresses are refused by
/// [`super::net::forbidden_ip`]; these names are refused before any lookup).
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
];

/// A registration field that breaks a rule: which one, and why (never a
/// header value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field's path (`url`, `headers.Authorization`, `allowed_tools[2]`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether `name` is a server name: `[a-z0-9-]{1,32}`.
pub fn is_server_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A server name: `[a-z0-9-]{1,32}`.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if is_server_name(name) {
        Ok(())
    } else {
        Err(invalid(
            "name",
            "server names are 1-32 characters from a-z, 0-9 and '-'",
        ))
    }
}

/// The URL rule: `https` (or `http` to a host of `allowed_hosts`), no
/// userinfo or fragment, and not a link-local, unspecified or metadata host.
pub fn check_url(raw: &str, allowed_hosts: &[String]) -> Result<Url, Invalid> {
    let bad = |m: &str| invalid("url", m);
    if raw.len() > MAX_URL_BYTES {
        return Err(bad("the URL is longer than 2048 bytes"));
    }
    let url = Url::parse(raw).map_err(|e| invalid("url", format!("not a valid URL ({e})")))?;
    let Some(host) = url.host() else {
        return Err(bad("the URL has no host"));
    };
    let host_text = url.host_str().unwrap_or_default();
    let allowed = allowed_hosts.iter().any(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case(host_text.trim_start_matches('[').trim_end_matches(']'))
    });
    match url.scheme() {
        "https" => {}
        "http" if allowed => {}
        "http" => {
            return Err(bad(
                "the scheme must be https (plain http only to hosts in [mcp] allowed_hosts)",
            ));
        }
        _ => return Err(bad("the scheme must be https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "the URL may not carry credentials; send them as headers",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("the URL may not have a fragment"));
    }
    let forbidden = match host {
        Host::Ipv4(ip) => super::net::forbidden_ip(ip.into()),
        Host::Ipv6(ip) => super::net::forbidden_ip(ip.into()),
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            METADATA_HOSTS.contains(&d.as_str())
        }
    };
    if forbidden {
        return Err(bad(
            "the host is a link-local, unspecified or cloud metadata address",
        ));
    }
    Ok(url)
}

/// Header names and values: valid HTTP, not one ctxgate sets, at most
/// [`MAX_HEADERS`], no name twice (in any case).
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid("headers", format!("at most {MAX_HEADERS} headers")));
    }
    let mut seen = HashSet::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(field, "not a valid HTTP header name"));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return Err(invalid(
                field,
                "ctxgate sets this header itself; it cannot be registered",
            ));
        }
        if !seen.insert(lower) {
            return Err(invalid(field, "the header is given twice"));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES || http::HeaderValue::from_str(value).is_err() {
            return Err(invalid(
                field,
                format!(
                    "not a valid HTTP header value (visible ASCII, at most {MAX_HEADER_VALUE_BYTES} bytes)"
                ),
            ));
        }
    }
    Ok(())
}

/// Tool names or `*` globs: `[A-Za-z0-9_.*-]{1,128}`, at most [`MAX_ALLOWED_TOOLS`].
pub fn check_allowed_tools(tools: &[String]) -> Result<(), Invalid> {
    if tools.len() > MAX_ALLOWED_TOOLS {
        return Err(invalid(
            "allowed_tools",
            format!("at most {MAX_ALLOWED_TOOLS} entries"),
        ));
    }
    for (i, t) in tools.iter().enumerate() {
        let ok = (1..=128).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'*' | b'-'));
        if !ok {
            return Err(invalid(
                format!("allowed_tools[{i}]"),
                "tool names and globs are 1-128 characters from A-Z, a-z, 0-9, '_', '.', '-' and '*'",
            ));
        }
    }
    Ok(())
}

/// A call's time limit: 1 to [`MAX_TIMEOUT_SECONDS`] seconds.
pub fn check_timeout(seconds: u64) -> Result<(), Invalid> {
    if (1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(invalid(
            "timeout_seconds",
            format!("must be 1 to {MAX_TIMEOUT_SECONDS} seconds"),
        ))
    }
}

/// Checks one config-declared server against the same rules.
fn check_declared_server(
    name: &str,
    s: &McpServerConfig,
    allowed_hosts: &[String],
) -> Result<(), Invalid> {
    check_name(name)?;
    check_url(&s.url, allowed_hosts)?;
    check_headers(&s.headers)?;
    if let Some(t) = &s.allowed_tools {
        check_allowed_tools(t)?;
    }
    if let Some(t) = s.timeout_seconds {
        check_timeout(t)?;
    }
    Ok(())
}

/// Every `[tenants.X.mcp_servers.NAME]` meets the registration rules; the
/// error names the field (`tenants.X.mcp_servers.NAME.url`).
pub fn check_declared(config: &Config) -> Result<(), ConfigError> {
    for (tenant, t) in &config.tenants {
        for (name, s) in &t.mcp_servers {
            check_declared_server(name, s, &config.mcp.allowed_hosts).map_err(|e| {
                let base = format!("tenants.{tenant}.mcp_servers.{name}");
                let field = if e.field == "name" {
                    base
                } else {
                    format!("{base}.{}", e.field)
                };
                ConfigError::Invalid(format!("{field}: {}", e.message))
            })?;
        }
    }
    Ok(())
}

/// Why a turn's `mcp_servers` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No server of that name for the tenant (`mcp_servers[index]`).
    #[error("unknown MCP server {name:?}")]
    Unknown {
        /// Its position in the list.
        index: usize,
        /// The name asked for.
        name: String,
    },
    /// The name was already given earlier in the list (`mcp_servers[index]`).
    #[error("MCP server named twice")]
    Duplicate {
        /// The position of the repeat.
        index: usize,
    },
    /// More than [`MAX_SERVERS_PER_REQUEST`] names (`mcp_servers`).
    #[error("at most {limit} MCP servers per request")]
    TooMany {
        /// The most allowed.
        limit: usize,
    },
    /// The registry or the credentials could not be read.
    #[error("cannot read MCP server {0}")]
    Unavailable(String),
}

impl Mcp {
    /// The servers named, in order: config-declared ones first, then the
    /// tenant's registrations (one store read for all), with their header
    /// values.
    pub async fn resolve(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<ServerSpec>, ResolveError> {
        if names.len() > MAX_SERVERS_PER_REQUEST {
            return Err(ResolveError::TooMany {
                limit: MAX_SERVERS_PER_REQUEST,
            });
        }
        let mut seen = HashSet::new();
        for (index, name) in names.iter().enumerate() {
            if !is_server_name(name) {
                return Err(ResolveError::Unknown {
                    index,
                    name: name.clone(),
                });
            }
            if !seen.insert(name.as_str()) {
                return Err(ResolveError::Duplicate { index });
            }
        }
        let config = self.config();
        let default_timeout = config.mcp.default_timeout_seconds;
        let declared = config.tenants.get(tenant).map(|t| &t.mcp_servers);
        let mut stored: Option<Arc<Vec<ServerRecord>>> = None;
        let mut out = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            if let Some(s) = declared.and_then(|d| d.get(name)) {
                let url = check_url(&s.url, &config.mcp.allowed_hosts)
                    .map_err(|e| ResolveError::Unavailable(format!("{name}: {e}")))?;
                out.push(ServerSpec {
                    name: name.clone(),
                    url,
                    headers: s
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    allowed_tools: s.allowed_tools.clone(),
                    timeout: Duration::from_secs(s.timeout_seconds.unwrap_or(default_timeout)),
                });
                continue;
            }
            if stored.is_none() {
                let list = self
                    .registrations(tenant)
                    .await
                    .map_err(|e| ResolveError::Unavailable(e.to_string()))?;
                stored = Some(list);
            }
            let Some(rec) = stored
                .as_ref()
                .and_then(|l| l.iter().find(|r| &r.name == name))
            else {
                return Err(ResolveError::Unknown {
                    index,
                    name: name.clone(),
                });
            };
            out.push(self.spec_of(tenant, rec).await?);
        }
        Ok(out)
    }

    /// A stored registration with its header values. The URL is checked
    /// again: the allow-list may have shrunk since it was registered.
    async fn spec_of(&self, tenant: &str, rec: &ServerRecord) -> Result<ServerSpec, ResolveError> {
        let config = self.config();
        let url = check_url(&rec.url, &config.mcp.allowed_hosts)
            .map_err(|e| ResolveError::Unavailable(format!("{}: {e}", rec.name)))?;
        let mut headers = Vec::with_capacity(rec.headers.len());
        if !rec.headers.is_empty() {
            let mut values = self
                .credentials
                .get(tenant, &rec.name)
                .await
                .map_err(|e| ResolveError::Unavailable(e.to_string()))?;
            for h in &rec.headers {
                let Some(v) = values.remove(h) else {
                    return Err(ResolveError::Unavailable(format!(
                        "{}: the value of header {h} is missing",
                        rec.name
                    )));
                };
                headers.push((h.clone(), v));
            }
        }
        Ok(ServerSpec {
            name: rec.name.clone(),
            url,
            headers,
            allowed_tools: rec.allowed_tools.clone(),
            timeout: Duration::from_secs(
                rec.timeout_seconds
                    .unwrap_or(config.mcp.default_timeout_seconds),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_err(u: &str) -> bool {
        check_url(u, &["127.0.0.1".into(), "[::1]".into(), "localhost".into()]).is_err()
    }

    #[test]
    fn url_rule() {
        assert!(!url_err("https://crm.example.com/mcp"));
        assert!(!url_err("http://127.0.0.1:8080/mcp"));
        assert!(!url_err("http://[::1]:8080/mcp"));
        assert!(!url_err("http://LOCALHOST/mcp"));
        assert!(url_err("http://crm.example.com/mcp"));
        assert!(url_err("ftp://crm.example.com/"));
        assert!(url_err("https://u:p@crm.example.com/"));
        assert!(url_err("https://crm.example.com/#x"));
        assert!(url_err("https://169.254.169.254/latest"));
        assert!(url_err("https://0xA9FEA9FE/"));
        assert!(url_err("https://[fd00:ec2::254]/"));
        assert!(url_err("https://[::ffff:169.254.169.254]/"));
        assert!(url_err("https://0.0.0.0/"));
        assert!(url_err("https://metadata.google.internal./"));
        assert!(url_err("https://instance-data/"));
        assert!(url_err("not a url"));
    }

    #[test]
    fn names_headers_tools_timeouts() {
        assert!(check_name("crm-1").is_ok());
        assert!(check_name("CRM").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(33)).is_err());
        let h = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(check_headers(&h("Authorization", "Bearer x")).is_ok());
        assert_eq!(
            check_headers(&h("Mcp-Session-Id", "x")).unwrap_err().field,
            "headers.Mcp-Session-Id"
        );
        assert!(check_headers(&h("Bad Name", "x")).is_err());
        assert!(check_headers(&h("X-A", "line\nbreak")).is_err());
        let dup = BTreeMap::from([
            ("X-A".to_owned(), "1".to_owned()),
            ("x-a".to_owned(), "2".to_owned()),
        ]);
        assert!(check_headers(&dup).is_err());
        assert!(check_allowed_tools(&["get_*".into(), "a.b-c".into()]).is_ok());
        assert_eq!(
            check_allowed_tools(&["ok".into(), "no space".into()])
                .unwrap_err()
                .field,
            "allowed_tools[1]"
        );
        assert!(check_timeout(0).is_err());
        assert!(check_timeout(301).is_err());
        assert!(check_timeout(300).is_ok());
    }

    #[test]
    fn errors_never_carry_header_values() {
        let e = check_headers(&BTreeMap::from([(
            "X-Key".to_owned(),
            "secret\u{7f}value".to_owned(),
        )]))
        .unwrap_err();
        assert!(!format!("{e} {e:?}").contains("secret"));
    }
}
