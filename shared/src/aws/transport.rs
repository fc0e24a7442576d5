//! The AWS SDK's HTTP client: the SDK clients (DynamoDB, Secrets Manager)
//! and the credential providers send their requests through reqwest on
//! [`crate::tls`], the stack the providers, MCP servers and JWKS already use.
//!
//! Why not the SDK's own client (`aws-smithy-http-client`): it is a second
//! hyper stack with HTTP/2 always compiled in, about 0.4 MB of each function
//! binary (issue 19's 10 MB, docs/benchmarks.md), and it reads the system's
//! CA store a second time at start-up. The AWS endpoints ctxgate calls speak
//! HTTP/1.1.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// Connect timeout when the SDK's settings name none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The process's one SDK HTTP client (built on first use).
pub fn sdk_http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| SharedHttpClient::new(ReqwestClient::default()))
        .clone()
}

/// A connector's settings: connect and read timeouts.
type Timeouts = (Option<Duration>, Option<Duration>);

/// One reqwest client per distinct connector settings (the SDK asks per
/// operation; in practice there are one or two), each with its own pool.
#[derive(Debug, Default)]
struct ReqwestClient {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for ReqwestClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key: Timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| SharedHttpConnector::new(Connector::new(key.0, key.1)))
            .clone()
    }
}

/// Sends the SDK's requests with one reqwest client.
#[derive(Debug)]
struct Connector {
    client: Result<reqwest::Client, String>,
}

impl Connector {
    fn new(connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> Self {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config())
            // The SDK follows no redirects; a signed request must not either.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        if let Some(t) = read_timeout {
            builder = builder.read_timeout(t);
        }
        // A build failure (no TLS backend) is reported on each call rather
        // than panicking in the SDK's connector selection.
        Self {
            client: builder.build().map_err(|e| e.to_string()),
        }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                let e = ConnectorError::other(e.clone().into(), None);
                return HttpConnectorFuture::ready(Err(e));
            }
        };
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(request)?;
            let response = client.execute(request).await.map_err(connector_error)?;
            let response = http::Response::from(response).map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// The SDK's request as reqwest's: the body as bytes when it is in memory
/// (every DynamoDB and Secrets Manager call), else streamed.
fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let request = request.map(|body| match body.bytes() {
        Some(b) => reqwest::Body::from(bytes::Bytes::copy_from_slice(b)),
        None => reqwest::Body::wrap(body),
    });
    reqwest::Request::try_from(request).map_err(|e| ConnectorError::user(e.into()))
}

/// reqwest's error in the SDK's terms: timeouts and transport failures are
/// transient (the SDK's retry strategy retries them), a request that could not
/// be built is the caller's.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_builder() {
        ConnectorError::user(e.into())
    } else {
        ConnectorError::io(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_transient_and_timeouts_are_timeouts() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Nothing listens on the port of a listener just closed.
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(crate::tls::client_config())
                .build()
                .unwrap();
            let e = client
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .unwrap_err();
            let e = connector_error(e);
            assert!(e.is_io(), "{e:?}");

            // A listener that accepts and never answers.
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let hold = tokio::spawn(async move {
                let conn = l.accept().await;
                std::future::pending::<()>().await;
                drop(conn);
            });
            let e = client
                .get(format!("http://{addr}/"))
                .timeout(Duration::from_millis(50))
                .send()
                .await
                .unwrap_err();
            assert!(connector_error(e).is_timeout());
            hold.abort();
        });
    }
}
