//! The vendored, patched Lambda Runtime API client stays in the build: an
//! update that drops the `[patch.crates-io]` entry or the patch itself would
//! bring back a ~40 ms delayed-ACK wait on every streamed response
//! (vendor/lambda_runtime_api_client/CTXGATE.md). Timing is shown by
//! scripts/bench.sh, never asserted here.

fn repo_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_owned() + path;
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
}

#[test]
fn the_runtime_api_client_comes_from_vendor_and_sets_nodelay() {
    let lock: toml::Table = toml::from_str(&repo_file("Cargo.lock")).expect("Cargo.lock is TOML");
    let entries: Vec<_> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str() == Some("lambda_runtime_api_client"))
        .collect();
    assert_eq!(entries.len(), 1, "one Runtime API client in the build");
    assert!(
        entries[0].get("source").is_none(),
        "lambda_runtime_api_client comes from crates.io, not vendor/: {:?}",
        entries[0]
    );
    let src = repo_file("vendor/lambda_runtime_api_client/src/lib.rs");
    assert!(src.contains("connector.set_nodelay(true);"));
    assert_eq!(
        src.matches("connector: nodelay_connector(),").count(),
        2,
        "both client builders use the TCP_NODELAY connector"
    );
    assert!(!src.contains("connector: HttpConnector::new(),"));
}
