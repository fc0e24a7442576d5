//! Upstream connections: the URL rule every upstream address passes, and the
//! caps and timeouts of calls to it.

use super::{Config, ConfigError};

/// An upstream URL (provider base URL, JWKS, MCP server): parsed, not
/// prefix-matched. `https`, or `http` only when the host is a loopback IP
/// or exactly `localhost`; no user info (`user@host` hides the real host
/// from a reader), no fragment. The error completes "<field> ...".
pub fn check_upstream_url(url: &str) -> Result<(), String> {
    use url::{Host, Url};
    // The URL itself is not echoed: it may carry credentials.
    let parsed = Url::parse(url).map_err(|_| "is not a valid URL".to_owned())?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain user info (user@host)".into());
    }
    if parsed.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    let loopback = match parsed.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err("has no host".into()),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("must be https (plain http only on a loopback host)".into()),
        _ => Err("must be an http(s) URL".into()),
    }
}

impl Config {
    /// Upstream body caps and timeouts.
    pub(super) fn check_upstream(&self) -> Result<(), ConfigError> {
        let caps = &self.upstream_caps;
        if caps.body < 1024 || caps.event < 1024 || caps.stream < caps.event {
            return Err(ConfigError::Invalid(
                "max_upstream_body_bytes and max_upstream_event_bytes must be at least 1024, max_upstream_stream_bytes at least max_upstream_event_bytes".into(),
            ));
        }
        if self.upstream_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "upstream_timeout_seconds must be at least 1".into(),
            ));
        }
        if self.deadline.is_zero()
            || self.connect_timeout.is_zero()
            || self.first_byte_timeout.is_zero()
        {
            return Err(ConfigError::Invalid(
                "deadline_seconds, connect_timeout_ms and first_byte_timeout_seconds must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{cfg, toml};

    // Issue 12, point 11: "http only on loopback" parses the URL and checks
    // the host; prefixes, user info and look-alike hosts are refused.
    #[test]
    fn upstream_urls_are_parsed_not_prefix_matched() {
        for ok in [
            "https://api.openai.com/v1",
            "https://user-less.example:8443/x?y=1",
            "http://127.0.0.1:9/v1",
            "http://127.8.9.10",
            "http://localhost:11434/v1",
            "http://LOCALHOST/",
            "http://[::1]:8080/jwks.json",
        ] {
            assert_eq!(check_upstream_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/v1",
            "http://localhost@evil.example/v1",
            "http://127.0.0.1@evil.example",
            "http://127.0.0.1.nip.io/v1",
            "http://[::1].evil.example",
            "http://evil.example#@127.0.0.1",
            "http://evil.example/?@localhost",
            "https://user:pass@api.openai.com/v1",
            "https://user@api.openai.com/v1",
            "http://10.0.0.5/v1",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "localhost:8080",
            "http://",
            "",
        ] {
            assert!(check_upstream_url(bad).is_err(), "{bad}");
        }
        // The same rule at every place that takes a URL.
        for file in [
            "[providers.x]\nkind = \"openai_compatible\"\nbase_url = \"http://localhost.evil.example/v1\"\n",
            "[jwt]\nissuer = \"https://id.example\"\naudience = [\"a\"]\njwks_url = \"http://localhost@evil.example/jwks\"\n",
        ] {
            assert!(toml(file, &[]).is_err(), "{file}");
        }
        assert!(cfg(&[("OPENAI_BASE_URL", "http://127.0.0.1.nip.io/v1")]).is_err());
        assert!(cfg(&[("OPENAI_BASE_URL", "http://[::1]:9/v1")]).is_ok());
    }
}
