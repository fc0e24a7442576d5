//! The usage flush's internal Lambda extension
//! (`shutdown::register_flush_extension`) against the local Runtime API
//! fixture: it registers under its name asking for no events, then asks for
//! its next event with the identifier it was given, so that Lambda sends
//! SIGTERM before it ends the environment. Without an Extensions API (an
//! emulator answering 404) it reports false and the function carries on.

use ctxgate::shutdown::register_flush_extension;
use ctxgate_tests::runtime_api::{ExtensionCall, RuntimeApi};
use ctxgate_tests::{MockUpstream, Reply};
use serde_json::json;

#[tokio::test]
async fn the_flush_extension_registers_then_waits_for_its_next_event() {
    let mut rt = RuntimeApi::start().await;
    assert!(register_flush_extension(&rt.address).await);
    assert_eq!(
        rt.extensions.recv().await.unwrap(),
        ExtensionCall::Register {
            name: "ctxgate-usage-flush".into(),
            body: json!({"events": []}),
        }
    );
    assert_eq!(
        rt.extensions.recv().await.unwrap(),
        ExtensionCall::Next { id: "ext-0".into() }
    );
}

#[tokio::test]
async fn without_an_extensions_api_the_flush_extension_is_skipped() {
    let emulator = MockUpstream::start(|_| Reply::status(404, "")).await;
    let api = emulator.url.trim_start_matches("http://");
    assert!(!register_flush_extension(api).await);
    let calls = emulator.received();
    assert_eq!(calls.len(), 1, "one registration attempt");
    assert_eq!(calls[0].path, "/2020-01-01/extension/register");
}
