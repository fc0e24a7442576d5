//! TLS for every outbound connection: one crypto provider (ring) and one
//! trust store per process.
//!
//! The roots are the system's (`SSL_CERT_FILE` / `SSL_CERT_DIR` replace them,
//! as with OpenSSL), read and parsed once, on first use, and shared by every
//! client: the reqwest clients (providers, JWKS, MCP, OTLP) get them through
//! [`client_config`]; the AWS SDK clients and credential providers share one
//! HTTPS client ([`sdk_http_client`]) handed the same certificates, so the
//! SDK never reads the system store itself.
//!
//! ring rather than aws-lc (the default of rustls, reqwest and the SDK): one
//! crypto library in the binary instead of two. What is lost is aws-lc's
//! post-quantum hybrid key exchange (X25519MLKEM768); connections use X25519
//! or the NIST curves, as before that became rustls's default.

use std::sync::{Arc, LazyLock, OnceLock};

use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

/// The system's trust anchors, read and parsed once: the store, and the
/// certificates it accepted (for the SDK's client, which takes PEM).
static ROOTS: LazyLock<(Arc<RootCertStore>, Vec<CertificateDer<'static>>)> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a CA certificate did not load");
    }
    let mut roots = RootCertStore::empty();
    let mut accepted = Vec::with_capacity(found.certs.len());
    for cert in found.certs {
        if roots.add(cert.clone()).is_ok() {
            accepted.push(cert);
        }
    }
    if roots.is_empty() {
        // Every TLS connection will fail; say why once.
        tracing::error!("no CA certificates found (system store, SSL_CERT_FILE, SSL_CERT_DIR)");
    }
    (Arc::new(roots), accepted)
});

/// The TLS client configuration every reqwest client is built with: ring,
/// the process's roots, TLS 1.2 and 1.3, ALPN for HTTP/2 and HTTP/1.1.
pub fn client_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                // ring supports every default version: cannot fail.
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(Arc::clone(&ROOTS.0))
                .with_no_client_auth();
            // What reqwest sets itself when it builds the configuration.
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config
        })
        .clone()
}

/// The one HTTPS client of the AWS SDK clients (DynamoDB, Secrets Manager)
/// and of the credential providers (STS for web identity, the container and
/// instance endpoints): rustls on ring, trusting the process's roots.
/// Connections are pooled per connector settings.
pub fn sdk_http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // The SDK's client takes certificates as PEM only, and would read
            // the system store again without them.
            let trust = TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(pem(&ROOTS.1));
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(
                    TlsContext::builder()
                        .with_trust_store(trust)
                        .build()
                        // Infallible in this version (the signature leaves room).
                        .expect("a TLS context"),
                )
                .build_https()
        })
        .clone()
}

/// `certs` as one PEM document (RFC 7468).
fn pem(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = b64.encode(cert.as_ref());
        for line in text.as_bytes().chunks(64) {
            // Base64 is ASCII.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
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
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn one_configuration_on_ring_without_post_quantum_key_exchange() {
        let config = client_config();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let groups: Vec<_> = config
            .crypto_provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert!(groups.contains(&rustls::NamedGroup::X25519), "{groups:?}");
        assert!(!groups.contains(&rustls::NamedGroup::X25519MLKEM768));
    }

    #[test]
    fn the_sdk_is_given_exactly_the_accepted_roots() {
        let (roots, accepted) = &*ROOTS;
        assert_eq!(roots.len(), accepted.len());
        let back: Vec<_> = CertificateDer::pem_slice_iter(&pem(accepted))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(&back, accepted);
    }
}
