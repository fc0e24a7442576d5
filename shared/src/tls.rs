//! TLS for every outbound connection: one crypto provider (ring), and the
//! system's roots read once per process.
//!
//! The roots are the system's (`SSL_CERT_FILE` / `SSL_CERT_DIR` replace
//! them, as with OpenSSL), read and parsed once on first use and shared by
//! every reqwest client (providers, JWKS, MCP, OTLP, and the AWS SDK's
//! through [`crate::aws::transport`]).
//!
//! ring rather than aws-lc (the default of rustls, reqwest and the SDK): one
//! crypto library in the binary instead of two. What is lost is
//! aws-lc's post-quantum hybrid key exchange (X25519MLKEM768); connections
//! use X25519 or the NIST curves, as before that became rustls's default.

use std::sync::{Arc, LazyLock, OnceLock};

use rustls::RootCertStore;

/// The system's trust anchors, parsed once.
static ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a CA certificate did not load");
    }
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(ignored, "CA certificates that do not parse were skipped");
    }
    if roots.is_empty() {
        // Every TLS connection will fail; say why once, at start-up.
        tracing::error!("no CA certificates found (system bundle, SSL_CERT_FILE, SSL_CERT_DIR)");
    }
    Arc::new(roots)
});

/// The TLS client configuration every reqwest client is built with: ring,
/// the process's roots, TLS 1.2 and 1.3, ALPN for HTTP/1.1.
pub fn client_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // Also the process-wide default, so that a client a dependency
            // builds for itself gets ring too instead of panicking for want of
            // a provider (the functions link no other).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                // ring supports every default version: cannot fail.
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(Arc::clone(&ROOTS))
                .with_no_client_auth();
            // HTTP/1.1 only: no HTTP/2 stack in the binaries (`aws::transport`).
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config
        })
        .clone()
}

/// A reqwest client on [`client_config`], reqwest's defaults otherwise: unit
/// tests (`reqwest::Client::new()` needs a process-wide crypto provider).
#[cfg(test)]
pub(crate) fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config())
        .build()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_on_ring_with_the_shared_roots() {
        let a = client_config();
        let b = client_config();
        assert_eq!(a.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(
            a.crypto_provider()
                .cipher_suites
                .iter()
                .all(|s| b.crypto_provider().cipher_suites.contains(s))
        );
        // The key exchange groups are ring's: no post-quantum hybrid.
        let groups: Vec<_> = a
            .crypto_provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert!(!groups.contains(&rustls::NamedGroup::X25519MLKEM768));
        assert!(groups.contains(&rustls::NamedGroup::X25519));
    }
}
