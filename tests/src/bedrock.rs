//! The mock Amazon Bedrock Runtime endpoint (tests/python/mock_bedrock.py: Converse and
//! ConverseStream in the real wire format, SigV4 checked for the test credentials) as a
//! child process on a free loopback port, for end-to-end tests of the `bedrock` provider.
//!
//! Its behaviour is chosen by the model id (`throttled`, `not-ready`, `denied`, `missing`,
//! `invalid`, `stream-error` give those failures; any other model answers), so tests need
//! no control calls; what it received is read back with [`MockBedrock::requests`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::child::{Listening, spawn_listening};

use crate::crm::python;

/// The region the mock checks in each signature's credential scope.
pub const REGION: &str = "us-east-1";
/// The access key id the mock knows.
pub const ACCESS_KEY: &str = "AKIDCTXGATETEST";
/// Its secret access key.
pub const SECRET_KEY: &str = "ctxgate-test-secret";
/// The Bedrock API key a mock started with [`MockBedrock::with_api_key`] accepts.
pub const API_KEY: &str = "bedrock-api-key-test";
/// The account id in the mock's access-denied message, which ctxgate must never show.
pub const ACCOUNT_ID: &str = "123456789012";

/// A running mock Bedrock Runtime endpoint; killed when dropped.
pub struct MockBedrock {
    url: String,
    _child: Child,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl MockBedrock {
    /// Starts a mock that accepts requests signed with SigV4 for [`ACCESS_KEY`] and
    /// [`SECRET_KEY`] in [`REGION`], and refuses every other request with a 403.
    pub async fn start() -> MockBedrock {
        Self::spawn(&[]).await
    }

    /// Starts a mock that accepts only `Authorization: Bearer {API_KEY}` (a Bedrock API key).
    pub async fn with_api_key() -> MockBedrock {
        Self::spawn(&["--api-key", API_KEY]).await
    }

    async fn spawn(extra: &[&str]) -> MockBedrock {
        let mut command = Command::new(python());
        command
            .arg(script())
            .args(["--host", "127.0.0.1", "--port", "0", "--region", REGION])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .args(extra);
        let Listening { child, url, stderr } =
            spawn_listening(command, "tests/python/mock_bedrock.py", |line| {
                line.starts_with("http://").then(|| line.to_owned())
            })
            .await;
        MockBedrock {
            url,
            _child: child,
            stderr,
            http: reqwest::Client::new(),
        }
    }

    /// `http://127.0.0.1:PORT`, the `base_url` of a `bedrock` provider.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests received, oldest first: `{"method", "path", "auth": "sigv4" | "bearer"
    /// | "refused", "headers": {lower-case name: value} (the signature left out),
    /// "body": parsed JSON}`.
    pub async fn requests(&self) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/_mock/requests", self.url))
            .send()
            .await
            .expect("the mock answers");
        response.json().await.expect("a JSON list")
    }

    /// Forgets the requests received so far.
    pub async fn clear(&self) {
        self.http
            .delete(format!("{}/_mock/requests", self.url))
            .send()
            .await
            .expect("the mock answers");
    }

    /// What the mock wrote to stderr so far (tracebacks of its own bugs).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// tests/python/mock_bedrock.py in this checkout.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/mock_bedrock.py")
}
