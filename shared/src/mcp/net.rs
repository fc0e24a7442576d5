//! How MCP servers are reached: a client of its own (no redirects, the
//! server's own headers only) whose resolver refuses addresses a tenant must
//! never reach, even when a public name resolves to them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Addresses no MCP server may have: link-local (cloud metadata services
/// live there: 169.254.169.254, fd00:ec2::254), unspecified and broadcast.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_ip(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // fe80::/10 link-local; fd00:ec2::254 the EC2 metadata service over IPv6.
            (seg[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || seg == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254]
        }
    }
}

/// Why a server address was refused (names the address, never a header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The host is, or resolves to, a link-local or metadata address.
    #[error("the server's address {0} is link-local or a cloud metadata address")]
    Forbidden(IpAddr),
    /// The name resolved to nothing.
    #[error("the server's name resolved to no address")]
    NoAddress,
    /// Plain `http` to a host not on `[mcp] allowed_hosts`.
    #[error("the server's URL must be https")]
    NotHttps,
}

/// The resolved addresses that may be connected to: all of them, or none
/// when any is forbidden (a name that can lead to the metadata service is
/// refused whole rather than trusted to pick the other address).
pub fn permitted(addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
    let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
    if let Some(bad) = addrs.iter().find(|a| forbidden_ip(a.ip())) {
        return Err(Refused::Forbidden(bad.ip()));
    }
    if addrs.is_empty() {
        return Err(Refused::NoAddress);
    }
    Ok(addrs)
}

/// Checks a server URL before anything is sent: `https` unless its host is on
/// `allowed_hosts`, and a literal IP host (which reqwest connects to without
/// asking the resolver) must not be forbidden.
pub fn check_url(url: &url::Url, allowed_hosts: &[String]) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if url.scheme() != "https" && !allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(bare)) {
        return Err(Refused::NotHttps);
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) if forbidden_ip(IpAddr::V4(ip)) => {
            Err(Refused::Forbidden(IpAddr::V4(ip)))
        }
        Some(url::Host::Ipv6(ip)) if forbidden_ip(IpAddr::V6(ip)) => {
            Err(Refused::Forbidden(IpAddr::V6(ip)))
        }
        _ => Ok(()),
    }
}

/// A server's name could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("the server's name does not resolve")]
pub struct Unresolved(#[source] pub std::io::Error);

/// Resolves with tokio, then drops the answer when [`permitted`] refuses it.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(Unresolved)?;
            let addrs = permitted(found)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client every MCP request goes through, built once: rustls
/// ([`crate::tls`]), no
/// redirects (a redirect could carry the credential elsewhere), no proxy from
/// the environment, the configured connect timeout, and the guarded resolver.
pub fn client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::client_config())
        // Not `Policy::none()`: that hands the 3xx to rmcp, which only sees
        // an answer that is no MCP message; an error says what happened.
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            attempt.error("redirects are not followed")
        }))
        .no_proxy()
        .connect_timeout(connect_timeout)
        .dns_resolver(Arc::new(GuardedResolver))
        .user_agent(concat!("ctxgate/", env!("CARGO_PKG_VERSION")))
        .build()
        // Only fails when the TLS backend cannot initialise: nothing can be
        // reached then, and every cold start would fail the same way.
        .expect("MCP HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_forbidden() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "fe80::1",
            "fd00:ec2::254",
            "::",
            "::ffff:169.254.169.254",
        ] {
            assert!(forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "93.184.216.34",
            "::1",
            "2606:4700::1",
        ] {
            assert!(!forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_name_resolving_to_the_metadata_service_is_refused() {
        // What a public name pointing at 169.254.169.254 resolves to.
        assert_eq!(
            permitted([sa("169.254.169.254:0")]),
            Err(Refused::Forbidden("169.254.169.254".parse().unwrap()))
        );
        // Mixed answers are refused whole.
        assert!(permitted([sa("93.184.216.34:0"), sa("[fd00:ec2::254]:0")]).is_err());
        assert_eq!(permitted([]), Err(Refused::NoAddress));
        assert_eq!(
            permitted([sa("127.0.0.1:0"), sa("[::1]:0")]).unwrap().len(),
            2
        );
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let allow = vec![
            "127.0.0.1".to_owned(),
            "169.254.169.254".to_owned(),
            "::1".to_owned(),
        ];
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(check_url(&u("http://127.0.0.1:9/mcp"), &allow), Ok(()));
        assert_eq!(check_url(&u("http://[::1]:9/mcp"), &allow), Ok(()));
        assert_eq!(check_url(&u("https://crm.example.com/mcp"), &[]), Ok(()));
        assert_eq!(
            check_url(&u("http://crm.example.com/mcp"), &allow),
            Err(Refused::NotHttps)
        );
        assert_eq!(
            check_url(&u("http://169.254.169.254/mcp"), &allow),
            Err(Refused::Forbidden("169.254.169.254".parse().unwrap()))
        );
        assert!(check_url(&u("https://[fd00:ec2::254]/mcp"), &[]).is_err());
    }

    #[tokio::test]
    async fn the_resolver_resolves_loopback_and_refuses_nothing_else() {
        let addrs: Vec<_> = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
