//! `[mcp_server]`: ctxgate's own MCP endpoint (`POST /mcp`): who may reach
//! it (origins, hosts) and what it says about itself (the resource URL and
//! the authorization servers of its Protected Resource Metadata).

use serde::Deserialize;

use super::ConfigError;

/// The MCP endpoint's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpEndpointConfig {
    /// Browser origins allowed to call `/mcp` (`scheme://host[:port]`); a
    /// request with any other `Origin` gets 403. Empty: only requests without
    /// an `Origin` (non-browser clients).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `Host` header values `/mcp` answers (`host` or `host:port`; `*`: any).
    /// Unset: loopback names locally, any host in Lambda (API Gateway only
    /// delivers requests addressed to the API's own domains).
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// The canonical URL of the endpoint (`https://api.example.com/mcp`): the
    /// `resource` of the Protected Resource Metadata, and the audience a JWT
    /// must carry to call `/mcp`. Unset: derived from the request's host.
    #[serde(default)]
    pub resource: Option<String>,
    /// Authorization servers named in the Protected Resource Metadata
    /// (default: the JWT issuer, if one is configured).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Test-only: also serve the MCP conformance suite's fixture tools,
    /// resources and prompts. Only the local server has them; Lambda refuses it.
    #[serde(default)]
    pub conformance_fixtures: bool,
}

/// Hosts served when none are configured and the process runs locally.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl McpEndpointConfig {
    /// Fills the defaults: hosts from `CTXGATE_MCP_ALLOWED_HOSTS`, else the
    /// file, else by where the process runs; checks origins and the resource.
    pub(super) fn resolve(
        mut self,
        env_hosts: Option<String>,
        in_lambda: bool,
    ) -> Result<Self, ConfigError> {
        if let Some(list) = env_hosts {
            self.allowed_hosts = Some(
                list.split(',')
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect(),
            );
        }
        if self.allowed_hosts.is_none() {
            self.allowed_hosts = Some(if in_lambda {
                vec!["*".to_owned()]
            } else {
                LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect()
            });
        }
        for h in self.allowed_hosts.iter().flatten() {
            if h.is_empty() || h.contains(['/', ' ', '?', '#']) {
                return Err(ConfigError::Invalid(format!(
                    "mcp_server.allowed_hosts (or CTXGATE_MCP_ALLOWED_HOSTS) has '{h}', not a host[:port]"
                )));
            }
        }
        for o in &self.allowed_origins {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', ' ', '?', '#'])) {
                return Err(ConfigError::Invalid(format!(
                    "mcp_server.allowed_origins has '{o}', not an origin (scheme://host[:port], no path)"
                )));
            }
        }
        if let Some(r) = &self.resource
            && !(r.starts_with("https://") || r.starts_with("http://"))
        {
            return Err(ConfigError::Invalid(format!(
                "mcp_server.resource '{r}' must be an http(s) URL"
            )));
        }
        for a in &self.authorization_servers {
            if !(a.starts_with("https://") || a.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!(
                    "mcp_server.authorization_servers has '{a}', not an http(s) URL"
                )));
            }
        }
        if self.conformance_fixtures && (in_lambda || !cfg!(feature = "cli")) {
            return Err(ConfigError::Invalid(
                "mcp_server.conformance_fixtures is test-only: the local server (`ctxgate serve`) has it, a Lambda function does not"
                    .into(),
            ));
        }
        Ok(self)
    }

    /// Whether `host` (the `Host` header) may be served.
    pub fn host_allowed(&self, host: &str) -> bool {
        let hosts = self.allowed_hosts.as_deref().unwrap_or_default();
        if hosts.iter().any(|h| h == "*") {
            return true;
        }
        let host = host.trim().to_ascii_lowercase();
        let name = strip_port(&host);
        hosts.iter().any(|h| {
            let h = h.to_ascii_lowercase();
            // An entry without a port matches any port of that host.
            h == host || (strip_port(&h) == h && h.trim_matches(['[', ']']) == name)
        })
    }

    /// Whether a present `Origin` may call a request addressed to `host`: a
    /// configured origin, or a loopback page calling a loopback server (a
    /// local tool such as an MCP inspector; DNS rebinding is a remote page
    /// reaching a loopback server, which stays refused).
    pub fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let configured = self
            .allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin.trim()));
        let loopback = |h: &str| {
            LOOPBACK_HOSTS
                .iter()
                .any(|l| l.eq_ignore_ascii_case(strip_port(h).trim_matches(['[', ']'])))
        };
        let origin_host = origin
            .trim()
            .strip_prefix("http://")
            .or_else(|| origin.trim().strip_prefix("https://"))
            .unwrap_or("");
        configured || (loopback(origin_host) && loopback(&host.trim().to_ascii_lowercase()))
    }
}

/// `host` without its `:port` (and without an IPv6 literal's brackets).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_page_may_call_a_loopback_server_only() {
        let cfg = McpEndpointConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            ..McpEndpointConfig::default()
        };
        assert!(cfg.origin_allowed("https://app.example.com", "api.example.com"));
        assert!(cfg.origin_allowed("http://localhost:6274", "127.0.0.1:8787"));
        assert!(cfg.origin_allowed("http://127.0.0.1:3000", "localhost:8787"));
        // DNS rebinding: a remote page reaching a loopback server.
        assert!(!cfg.origin_allowed("http://evil.example", "localhost:8787"));
        // A loopback page reaching a public host.
        assert!(!cfg.origin_allowed("http://localhost:6274", "api.example.com"));
    }

    #[test]
    fn hosts_default_by_place_and_match_with_or_without_port() {
        let local = McpEndpointConfig::default().resolve(None, false).unwrap();
        assert!(local.host_allowed("127.0.0.1:8787"));
        assert!(local.host_allowed("localhost"));
        assert!(local.host_allowed("[::1]:80"));
        assert!(!local.host_allowed("evil.example"));
        let lambda = McpEndpointConfig::default().resolve(None, true).unwrap();
        assert!(lambda.host_allowed("abc.execute-api.eu-west-1.amazonaws.com"));
        let set = McpEndpointConfig::default()
            .resolve(Some("api.example.com, other.example:8443".into()), true)
            .unwrap();
        assert!(set.host_allowed("API.example.com:443"));
        assert!(set.host_allowed("other.example:8443"));
        assert!(!set.host_allowed("other.example:9000"));
        assert!(!set.host_allowed("abc.execute-api.eu-west-1.amazonaws.com"));
    }

    #[test]
    fn the_conformance_fixtures_are_refused_in_lambda() {
        let fixtures = McpEndpointConfig {
            conformance_fixtures: true,
            ..Default::default()
        };
        assert!(fixtures.clone().resolve(None, true).is_err());
        assert_eq!(fixtures.resolve(None, false).is_ok(), cfg!(feature = "cli"));
    }

    #[test]
    fn bad_values_are_refused() {
        let bad_origin = McpEndpointConfig {
            allowed_origins: vec!["app.example.com".into()],
            ..Default::default()
        };
        assert!(bad_origin.resolve(None, false).is_err());
        let bad_resource = McpEndpointConfig {
            resource: Some("api.example.com/mcp".into()),
            ..Default::default()
        };
        assert!(bad_resource.resolve(None, false).is_err());
        assert!(
            McpEndpointConfig::default()
                .resolve(Some("a/b".into()), false)
                .is_err()
        );
    }
}
