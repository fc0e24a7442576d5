//! Tenants' MCP server registry: the store concern on both stores, the admin
//! API (CRUD, tenants apart, header values write-only and kept out of the
//! table), credentials in Secrets Manager (emulator) or an owner-only file,
//! config-declared servers, resolving a turn's names, and keys' defaults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ctxgate::AppState;
use ctxgate::config::Config;
use ctxgate::mcp::ResolveError;
use ctxgate::mcp::credentials::{
    CREDENTIALS_FILE, Credentials, FileCredentials, SecretsManagerCredentials,
};
use ctxgate::mcp::registry::ServerRecord;
use ctxgate::secrets::{EnvKeys, KeySource};
use ctxgate::store::{Store, StoreError};
use ctxgate_tests::{Gateway, unique};
use serde_json::{Value, json};

const SECRET: &str = "Bearer sk-crm-VALUE-7f3a";
const OTHER_SECRET: &str = "kb-VALUE-91c2";

fn record(name: &str, version: u64) -> ServerRecord {
    ServerRecord {
        name: name.into(),
        url: "https://crm.example.com/mcp".into(),
        headers: vec!["Authorization".into()],
        allowed_tools: Some(vec!["get_*".into()]),
        timeout_seconds: Some(5),
        created: 100,
        updated: 100,
        version,
    }
}

// ---- the store concern, on both stores ----

async fn store_crud(store: Arc<dyn Store>) {
    let (t, other) = (unique("t"), unique("t"));
    store.create_mcp_server(&t, &record("kb", 1)).await.unwrap();
    store
        .create_mcp_server(&t, &record("crm", 1))
        .await
        .unwrap();
    store
        .create_mcp_server(&t, &record("a-b", 1))
        .await
        .unwrap();
    assert!(matches!(
        store.create_mcp_server(&t, &record("crm", 1)).await,
        Err(StoreError::Exists)
    ));
    let names: Vec<String> = store
        .list_mcp_servers(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a-b", "crm", "kb"]);
    assert_eq!(
        store.get_mcp_server(&t, "crm").await.unwrap(),
        Some(record("crm", 1))
    );
    // Another tenant sees none of them, and may use the same names.
    assert!(store.list_mcp_servers(&other).await.unwrap().is_empty());
    assert_eq!(store.get_mcp_server(&other, "crm").await.unwrap(), None);
    store
        .create_mcp_server(&other, &record("crm", 1))
        .await
        .unwrap();

    // Update: compare-and-set on the version, conditional on existence.
    let mut next = record("crm", 2);
    next.allowed_tools = None;
    next.updated = 200;
    assert!(matches!(
        store.update_mcp_server(&t, &next, 7).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.update_mcp_server(&t, &next, 1).await.unwrap());
    assert_eq!(store.get_mcp_server(&t, "crm").await.unwrap(), Some(next));
    assert!(
        !store
            .update_mcp_server(&t, &record("nope", 2), 1)
            .await
            .unwrap()
    );
    assert_eq!(store.get_mcp_server(&t, "nope").await.unwrap(), None);
    assert_eq!(
        store.get_mcp_server(&other, "crm").await.unwrap(),
        Some(record("crm", 1))
    );

    assert!(store.delete_mcp_server(&t, "crm").await.unwrap());
    assert!(!store.delete_mcp_server(&t, "crm").await.unwrap());
    assert_eq!(store.get_mcp_server(&t, "crm").await.unwrap(), None);
    assert_eq!(store.list_mcp_servers(&t).await.unwrap().len(), 2);
    assert!(store.get_mcp_server(&other, "crm").await.unwrap().is_some());
}

mod embedded {
    #[tokio::test]
    async fn store_crud() {
        let (s, _dir) = ctxgate_tests::embedded_store();
        super::store_crud(s).await;
    }
}

mod dynamodb {
    #[tokio::test]
    async fn store_crud() {
        super::store_crud(ctxgate_tests::dynamo_store().await).await;
    }
}

// ---- the admin API ----

fn config(tenant: &str) -> Config {
    let toml = format!(
        r#"
[mcp]
allowed_hosts = ["127.0.0.1", "[::1]"]

[tenants.{tenant}.mcp_servers.kb]
url = "http://127.0.0.1:9/mcp"
headers = {{ "X-Kb-Key" = "{OTHER_SECRET}" }}
allowed_tools = ["search_*"]
"#
    );
    Config::from_toml(&toml, |_| None).expect("valid config")
}

fn gateway(store: Arc<dyn Store>, config: Config, credentials: Arc<dyn Credentials>) -> Gateway {
    let keys: Arc<dyn KeySource> = Arc::new(EnvKeys::from_config(&config, |_| None));
    let client = ctxgate::state::http_client(&config).unwrap();
    let state = AppState::from_parts_with(config, store, keys, client, credentials).unwrap();
    Gateway {
        router: ctxgate::http::app(state.clone()),
        state,
    }
}

/// Where a backend keeps what was written: the raw bytes of the table (or
/// database file), and the header values as the credentials store holds them.
struct Backend {
    gw: Gateway,
    raw: Box<dyn Fn() -> futures_raw::BoxFuture<String> + Send + Sync>,
    _dir: Option<tempfile::TempDir>,
}

mod futures_raw {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

async fn embedded_backend(tenant: &str) -> (Backend, Arc<FileCredentials>) {
    let dir = tempfile::tempdir().unwrap();
    let store = ctxgate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let creds = Arc::new(FileCredentials::open(dir.path()).unwrap());
    let gw = gateway(Arc::new(store), config(tenant), creds.clone());
    let db = dir.path().join("ctxgate.redb");
    let raw = Box::new(move || -> futures_raw::BoxFuture<String> {
        let db = db.clone();
        Box::pin(async move { String::from_utf8_lossy(&std::fs::read(&db).unwrap()).into_owned() })
    });
    (
        Backend {
            gw,
            raw,
            _dir: Some(dir),
        },
        creds,
    )
}

async fn dynamo_backend(tenant: &str) -> (Backend, Arc<SecretsManagerCredentials>) {
    let (store, client, table) = ctxgate_tests::dynamo_table().await;
    let sm = aws_sdk_secretsmanager::Client::new(&ctxgate_tests::aws_config().await);
    let creds = Arc::new(SecretsManagerCredentials::new(sm, "ctxgate/mcp"));
    let gw = gateway(store, config(tenant), creds.clone());
    let raw = Box::new(move || -> futures_raw::BoxFuture<String> {
        let (client, table) = (client.clone(), table.clone());
        Box::pin(async move {
            let out = client.scan().table_name(&table).send().await.unwrap();
            format!("{:?}", out.items())
        })
    });
    (
        Backend {
            gw,
            raw,
            _dir: None,
        },
        creds,
    )
}

/// Register, list, read, change, remove; tenants apart; values never shown
/// nor kept in the table; config-declared servers read-only.
async fn api_crud(b: &Backend, tenant: &str) {
    let gw = &b.gw;
    let admin = gw.key(tenant, &["admin"]).await;
    let other = gw.key(&unique("t"), &["admin"]).await;
    let base = "/v1/admin/mcp-servers";

    let (status, _, created) = gw
        .call(
            "POST",
            base,
            Some(&admin),
            Some(json!({"name": "crm", "url": "http://127.0.0.1:9/mcp",
                "headers": {"Authorization": SECRET}, "allowed_tools": ["get_*", "list_orders"],
                "timeout_seconds": 5})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["object"], "mcp_server");
    assert_eq!(created["headers"], json!(["Authorization"]));
    assert_eq!(created["allowed_tools"], json!(["get_*", "list_orders"]));
    assert_eq!(created["timeout_seconds"], 5);
    assert_eq!(created["source"], "api");
    assert!(!created.to_string().contains(SECRET));

    // A duplicate, and a config-declared name, are conflicts.
    for name in ["crm", "kb"] {
        let (status, _, body) = gw
            .call(
                "POST",
                base,
                Some(&admin),
                Some(json!({"name": name, "url": "https://x.example.com/mcp"})),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["param"], "name");
    }

    let (status, _, list) = gw.call("GET", base, Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["object"], "list");
    let names: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("crm", "api"), ("kb", "config"), ("orders", "api")]);
    assert_eq!(list["data"][1]["headers"], json!(["X-Kb-Key"]));
    assert!(!list.to_string().contains(SECRET) && !list.to_string().contains(OTHER_SECRET));

    let (status, _, one) = gw
        .call("GET", &format!("{base}/crm"), Some(&admin), None)
        .await;
    assert_eq!((status, &one), (200, &created));
    let (status, _, kb) = gw
        .call("GET", &format!("{base}/kb"), Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(kb["source"], "config");

    // Another tenant's server is exactly a missing one.
    let (status, _, theirs) = gw
        .call("GET", &format!("{base}/crm"), Some(&other), None)
        .await;
    assert_eq!(status, 404);
    let (_, _, other_list) = gw.call("GET", base, Some(&other), None).await;
    assert_eq!(other_list["data"], json!([]));
    for method in ["PATCH", "DELETE"] {
        let body = (method == "PATCH").then(|| json!({"timeout_seconds": 9}));
        let (status, _, b2) = gw
            .call(method, &format!("{base}/crm"), Some(&other), body)
            .await;
        assert_eq!((status, &b2), (404, &theirs), "{method}");
    }

    // Config-declared servers are read-only.
    for method in ["PATCH", "DELETE"] {
        let body = (method == "PATCH").then(|| json!({"timeout_seconds": 9}));
        let (status, _, body) = gw
            .call(method, &format!("{base}/kb"), Some(&admin), body)
            .await;
        assert_eq!(status, 409, "{method} {body}");
        assert_eq!(body["error"]["code"], "read_only");
    }

    // PATCH: headers replaced whole, null clears allowed_tools.
    let (status, _, patched) = gw
        .call(
            "PATCH",
            &format!("{base}/crm"),
            Some(&admin),
            Some(
                json!({"headers": {"X-Api-Key": OTHER_SECRET}, "allowed_tools": null,
                "timeout_seconds": 20}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["headers"], json!(["X-Api-Key"]));
    assert_eq!(patched["allowed_tools"], Value::Null);
    assert_eq!(patched["timeout_seconds"], 20);
    assert_eq!(patched["url"], "http://127.0.0.1:9/mcp");
    let (_, _, read) = gw
        .call("GET", &format!("{base}/crm"), Some(&admin), None)
        .await;
    assert_eq!(read, patched);

    // Resolve: the registration with its values, and the declared one.
    let specs = gw
        .state
        .mcp
        .resolve(tenant, &["crm".into(), "kb".into()])
        .await
        .unwrap();
    assert_eq!(specs[0].name, "crm");
    assert_eq!(
        specs[0].headers,
        [("X-Api-Key".to_string(), OTHER_SECRET.to_string())]
    );
    assert_eq!(specs[0].timeout, Duration::from_secs(20));
    assert_eq!(specs[0].allowed_tools, None);
    assert_eq!(specs[1].name, "kb");
    assert_eq!(specs[1].url.as_str(), "http://127.0.0.1:9/mcp");
    assert_eq!(
        specs[1].headers,
        [("X-Kb-Key".to_string(), OTHER_SECRET.to_string())]
    );
    assert_eq!(specs[1].timeout, Duration::from_secs(10));
    assert!(!format!("{specs:?}").contains(OTHER_SECRET));

    // No header value anywhere in the table.
    let raw = (b.raw)().await;
    assert!(raw.contains("X-Api-Key"), "the record is in the table");
    assert!(!raw.contains(SECRET) && !raw.contains(OTHER_SECRET));

    let (status, _, _) = gw
        .call("DELETE", &format!("{base}/crm"), Some(&admin), None)
        .await;
    assert_eq!(status, 204);
    let (status, _, gone) = gw
        .call("GET", &format!("{base}/crm"), Some(&admin), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(gone, theirs, "a missing server looks like another tenant's");
    let (status, _, _) = gw
        .call("DELETE", &format!("{base}/crm"), Some(&admin), None)
        .await;
    assert_eq!(status, 404);
    assert!(matches!(
        gw.state.mcp.resolve(tenant, &["crm".into()]).await,
        Err(ResolveError::Unknown { index: 0, .. })
    ));
}

#[tokio::test]
async fn api_crud_on_the_embedded_store_with_the_credentials_file() {
    let tenant = unique("t");
    let (b, creds) = embedded_backend(&tenant).await;
    let admin = b.gw.key(&tenant, &["admin"]).await;
    let (status, _, _) =
        b.gw.call(
            "POST",
            "/v1/admin/mcp-servers",
            Some(&admin),
            Some(
                json!({"name": "orders", "url": "https://orders.example.com/mcp",
                "headers": {"Authorization": SECRET}}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    // The values are in the owner-only file, not the database.
    let path = creds.path().to_owned();
    assert_eq!(path.file_name().unwrap(), CREDENTIALS_FILE);
    assert_eq!(mode(&path), 0o600);
    assert!(std::fs::read_to_string(&path).unwrap().contains(SECRET));
    api_crud(&b, &tenant).await;
    assert_eq!(mode(&path), 0o600, "kept 0600 across rewrites");
    let kept = std::fs::read_to_string(&path).unwrap();
    assert!(kept.contains(SECRET), "orders is still registered");
    assert!(!kept.contains(OTHER_SECRET), "crm's values went with it");
}

#[tokio::test]
async fn api_crud_on_dynamodb_with_secrets_manager() {
    let tenant = unique("t");
    let (b, creds) = dynamo_backend(&tenant).await;
    let admin = b.gw.key(&tenant, &["admin"]).await;
    let (status, _, _) =
        b.gw.call(
            "POST",
            "/v1/admin/mcp-servers",
            Some(&admin),
            Some(
                json!({"name": "orders", "url": "https://orders.example.com/mcp",
                "headers": {"Authorization": SECRET}}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    // The value is in Secrets Manager, under the prefix, read afresh.
    let sm = aws_sdk_secretsmanager::Client::new(&ctxgate_tests::aws_config().await);
    let name = creds.secret_name(&tenant, "orders");
    assert_eq!(name, format!("ctxgate/mcp/{tenant}/orders"));
    let text = sm
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .unwrap()
        .secret_string()
        .unwrap()
        .to_owned();
    let values: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    assert_eq!(values["Authorization"], SECRET);
    api_crud(&b, &tenant).await;
    // crm's secret was deleted without recovery.
    let crm = sm
        .get_secret_value()
        .secret_id(creds.secret_name(&tenant, "crm"))
        .send()
        .await;
    assert!(
        crm.as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{crm:?}"
    );
}

#[tokio::test]
async fn secrets_manager_values_round_trip() {
    let sm = aws_sdk_secretsmanager::Client::new(&ctxgate_tests::aws_config().await);
    let prefix = unique("pfx");
    let a = SecretsManagerCredentials::new(sm.clone(), prefix.clone());
    // A second process: no cache shared with the first.
    let b = SecretsManagerCredentials::new(sm, prefix.clone());
    let tenant = format!("org:{}", unique("t"));
    assert_eq!(
        a.secret_name(&tenant, "crm"),
        format!("{prefix}/{}/crm", tenant.replace(':', "=3A"))
    );
    assert!(a.get(&tenant, "crm").await.unwrap().is_empty());
    let v1 = BTreeMap::from([("Authorization".to_string(), SECRET.to_string())]);
    a.put(&tenant, "crm", &v1).await.unwrap();
    assert_eq!(b.get(&tenant, "crm").await.unwrap(), v1);
    // Replacing an existing secret (PutSecretValue); the writer sees it at once.
    let v2 = BTreeMap::from([("X-Key".to_string(), OTHER_SECRET.to_string())]);
    a.put(&tenant, "crm", &v2).await.unwrap();
    assert_eq!(a.get(&tenant, "crm").await.unwrap(), v2);
    let fresh = SecretsManagerCredentials::new(
        aws_sdk_secretsmanager::Client::new(&ctxgate_tests::aws_config().await),
        prefix,
    );
    assert_eq!(fresh.get(&tenant, "crm").await.unwrap(), v2);
    a.delete(&tenant, "crm").await.unwrap();
    assert!(a.get(&tenant, "crm").await.unwrap().is_empty());
    a.delete(&tenant, "crm").await.unwrap();
    // Re-created after a delete without recovery.
    a.put(&tenant, "crm", &v1).await.unwrap();
    assert_eq!(fresh.get(&tenant, "crm").await.unwrap().len(), 1);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_credentials_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let creds = FileCredentials::open(dir.path()).unwrap();
    let v = BTreeMap::from([("Authorization".to_string(), SECRET.to_string())]);
    creds.put("t", "crm", &v).await.unwrap();
    assert_eq!(mode(creds.path()), 0o600);
    assert_eq!(creds.get("t", "crm").await.unwrap(), v);
    assert!(creds.get("t", "other").await.unwrap().is_empty());
    // A file loosened by hand is narrowed again when opened.
    std::fs::set_permissions(creds.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let reopened = FileCredentials::open(dir.path()).unwrap();
    assert_eq!(mode(reopened.path()), 0o600);
    reopened.delete("t", "crm").await.unwrap();
    assert!(reopened.get("t", "crm").await.unwrap().is_empty());
    assert_eq!(mode(reopened.path()), 0o600);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [CREDENTIALS_FILE]);
}

// ---- bad input ----

#[tokio::test]
async fn bad_registrations_are_400_naming_the_field() {
    let tenant = unique("t");
    let (store, _dir) = ctxgate_tests::embedded_store();
    let gw = gateway(
        store,
        config(&tenant),
        Arc::new(ctxgate::mcp::credentials::MemoryCredentials::default()),
    );
    let admin = gw.key(&tenant, &["admin"]).await;
    let ok = json!({"name": "crm", "url": "https://crm.example.com/mcp"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let many_headers: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let rows: Vec<(Value, &str)> = vec![
        (json!({"url": "https://crm.example.com/mcp"}), "name"),
        (json!({"name": "crm"}), "url"),
        (with("name", json!("CRM")), "name"),
        (with("name", json!("a b")), "name"),
        (with("name", json!("")), "name"),
        (with("name", json!("x".repeat(33))), "name"),
        (with("name", json!(7)), "name"),
        (with("url", json!("not a url")), "url"),
        (with("url", json!("http://crm.example.com/mcp")), "url"),
        (with("url", json!("ftp://crm.example.com/mcp")), "url"),
        (
            with("url", json!("https://user:pw@crm.example.com/mcp")),
            "url",
        ),
        (
            with("url", json!("https://crm.example.com/mcp#frag")),
            "url",
        ),
        (
            with("url", json!("https://169.254.169.254/latest/meta-data")),
            "url",
        ),
        (with("url", json!("http://169.254.169.254/")), "url"),
        (with("url", json!("https://[fd00:ec2::254]/")), "url"),
        (with("url", json!("https://[fe80::1]/")), "url"),
        (with("url", json!("https://0.0.0.0/")), "url"),
        (
            with("url", json!("https://metadata.google.internal/")),
            "url",
        ),
        (with("url", json!("https://metadata/")), "url"),
        (with("url", json!("https://instance-data/")), "url"),
        (
            with("headers", json!({"Bad Name": "v"})),
            "headers.Bad Name",
        ),
        (with("headers", json!({"Host": "v"})), "headers.Host"),
        (
            with("headers", json!({"content-length": "1"})),
            "headers.content-length",
        ),
        (
            with("headers", json!({"Mcp-Session-Id": "s"})),
            "headers.Mcp-Session-Id",
        ),
        (
            with("headers", json!({"MCP-Protocol-Version": "x"})),
            "headers.MCP-Protocol-Version",
        ),
        (
            with("headers", json!({"X-Key": "line\nbreak"})),
            "headers.X-Key",
        ),
        (with("headers", json!({"X-Key": 5})), "headers.X-Key"),
        (with("headers", json!(["Authorization"])), "headers"),
        (with("headers", Value::Object(many_headers)), "headers"),
        (
            with("allowed_tools", json!(["ok", "bad tool"])),
            "allowed_tools[1]",
        ),
        (with("allowed_tools", json!(["", "x"])), "allowed_tools[0]"),
        (with("allowed_tools", json!([1])), "allowed_tools[0]"),
        (with("allowed_tools", json!("get_*")), "allowed_tools"),
        (
            with("allowed_tools", json!(vec!["t"; 257])),
            "allowed_tools",
        ),
        (with("timeout_seconds", json!(0)), "timeout_seconds"),
        (with("timeout_seconds", json!(301)), "timeout_seconds"),
        (with("timeout_seconds", json!(-1)), "timeout_seconds"),
        (with("timeout_seconds", json!(1.5)), "timeout_seconds"),
        (with("secret", json!("x")), "secret"),
        (json!(["not", "an", "object"]), "body"),
    ];
    for (body, field) in rows {
        let (status, _, resp) = gw
            .call(
                "POST",
                "/v1/admin/mcp-servers",
                Some(&admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"]["param"], field, "{body} -> {resp}");
        assert!(!resp.to_string().contains("line\nbreak"));
    }
    // PATCH takes the same rules, and never a new name.
    let (status, _, _) = gw
        .call("POST", "/v1/admin/mcp-servers", Some(&admin), Some(ok))
        .await;
    assert_eq!(status, 201);
    for (body, field) in [
        (json!({"name": "other"}), "name"),
        (json!({"url": "http://crm.example.com/"}), "url"),
        (
            json!({"headers": {"Connection": "x"}}),
            "headers.Connection",
        ),
        (json!({"timeout_seconds": 1000}), "timeout_seconds"),
    ] {
        let (status, _, resp) = gw
            .call(
                "PATCH",
                "/v1/admin/mcp-servers/crm",
                Some(&admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"]["param"], field);
    }
    // Bodies are bounded.
    let huge = json!({"name": "big", "url": "https://crm.example.com/mcp",
        "headers": {"X-Big": "v".repeat(70_000)}});
    let (status, _, _) = gw
        .call("POST", "/v1/admin/mcp-servers", Some(&admin), Some(huge))
        .await;
    assert_eq!(status, 413);
    // Only admins.
    let chat = gw.key(&tenant, &["chat"]).await;
    let (status, _, _) = gw
        .call("GET", "/v1/admin/mcp-servers", Some(&chat), None)
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn resolve_refuses_unknown_duplicate_and_too_many_names() {
    let tenant = unique("t");
    let (store, _dir) = ctxgate_tests::embedded_store();
    let gw = gateway(
        store,
        config(&tenant),
        Arc::new(ctxgate::mcp::credentials::MemoryCredentials::default()),
    );
    let mcp = &gw.state.mcp;
    assert!(mcp.resolve(&tenant, &[]).await.unwrap().is_empty());
    assert!(matches!(
        mcp.resolve(&tenant, &["kb".into(), "nope".into()]).await,
        Err(ResolveError::Unknown { index: 1, name }) if name == "nope"
    ));
    assert!(matches!(
        mcp.resolve(&tenant, &["kb".into(), "Bad Name".into()])
            .await,
        Err(ResolveError::Unknown { index: 1, .. })
    ));
    assert!(matches!(
        mcp.resolve(&tenant, &["kb".into(), "kb".into()]).await,
        Err(ResolveError::Duplicate { index: 1 })
    ));
    let many: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
    assert!(matches!(
        mcp.resolve(&tenant, &many).await,
        Err(ResolveError::TooMany { limit: 16 })
    ));
    // Another tenant does not see this tenant's declared server.
    assert!(matches!(
        mcp.resolve(&unique("t"), &["kb".into()]).await,
        Err(ResolveError::Unknown { index: 0, .. })
    ));
}

#[test]
fn a_bad_config_declared_server_stops_startup_naming_the_field() {
    for (entry, field) in [
        (
            r#"url = "http://crm.example.com/mcp""#,
            "tenants.acme.mcp_servers.crm.url",
        ),
        (
            "url = \"https://crm.example.com/mcp\"\nheaders = { \"Host\" = \"x\" }",
            "tenants.acme.mcp_servers.crm.headers.Host",
        ),
        (
            "url = \"https://crm.example.com/mcp\"\nallowed_tools = [\"a b\"]",
            "tenants.acme.mcp_servers.crm.allowed_tools[0]",
        ),
        (
            "url = \"https://crm.example.com/mcp\"\ntimeout_seconds = 0",
            "tenants.acme.mcp_servers.crm.timeout_seconds",
        ),
    ] {
        let toml = format!("[tenants.acme.mcp_servers.crm]\n{entry}\n");
        let config = Config::from_toml(&toml, |_| None).unwrap();
        let keys: Arc<dyn KeySource> = Arc::new(EnvKeys::from_config(&config, |_| None));
        let client = ctxgate::state::http_client(&config).unwrap();
        let (store, _dir) = ctxgate_tests::embedded_store();
        let err = AppState::from_parts(config, store, keys, client)
            .err()
            .expect("refused");
        assert!(err.to_string().contains(field), "{err} lacks {field}");
    }
    let toml = "[tenants.acme.mcp_servers.\"Bad Name\"]\nurl = \"https://crm.example.com/\"\n";
    let config = Config::from_toml(toml, |_| None).unwrap();
    let keys: Arc<dyn KeySource> = Arc::new(EnvKeys::from_config(&config, |_| None));
    let client = ctxgate::state::http_client(&config).unwrap();
    let (store, _dir) = ctxgate_tests::embedded_store();
    let err = AppState::from_parts(config, store, keys, client)
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("tenants.acme.mcp_servers.Bad Name")
    );
}

// ---- keys' default servers ----

async fn key_defaults(store: Arc<dyn Store>) {
    let tenant = unique("t");
    let gw = gateway(
        store,
        config(&tenant),
        Arc::new(ctxgate::mcp::credentials::MemoryCredentials::default()),
    );
    let admin = gw.key(&tenant, &["admin", "chat"]).await;
    let (status, _, created) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&admin),
            Some(json!({"name": "support", "scopes": ["chat"], "mcp_servers": ["crm", "kb"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["mcp_servers"], json!(["crm", "kb"]));
    let (_, _, list) = gw.call("GET", "/v1/admin/keys", Some(&admin), None).await;
    let shown = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == created["id"])
        .unwrap()
        .clone();
    assert_eq!(shown["mcp_servers"], json!(["crm", "kb"]));
    let secret = created["key"].as_str().unwrap();
    let p = gw
        .state
        .auth
        .authenticate(Some(&format!("Bearer {secret}")), ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(p.mcp_servers, ["crm", "kb"]);
    // A key with none has none.
    let plain = gw.key(&tenant, &["chat"]).await;
    let p = gw
        .state
        .auth
        .authenticate(Some(&format!("Bearer {plain}")), ctxgate::now_secs())
        .await
        .unwrap();
    assert!(p.mcp_servers.is_empty());
    for (servers, field) in [
        (json!(["crm", "Not A Slug"]), "mcp_servers[1]"),
        (json!(["crm", "crm"]), "mcp_servers[1]"),
        (json!([3]), "mcp_servers[0]"),
        (json!("crm"), "mcp_servers"),
    ] {
        let (status, _, body) = gw
            .call(
                "POST",
                "/v1/admin/keys",
                Some(&admin),
                Some(json!({"name": "k", "scopes": ["chat"], "mcp_servers": servers})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], field, "{body}");
    }
}

mod key_defaults_on {
    #[tokio::test]
    async fn embedded() {
        let (s, _dir) = ctxgate_tests::embedded_store();
        super::key_defaults(s).await;
    }

    #[tokio::test]
    async fn dynamodb() {
        super::key_defaults(ctxgate_tests::dynamo_store().await).await;
    }
}

#[tokio::test]
async fn a_path_name_that_is_not_utf8_is_400_naming_name() {
    let tenant = unique("t");
    let (store, _dir) = ctxgate_tests::embedded_store();
    let gw = gateway(
        store,
        config(&tenant),
        Arc::new(ctxgate::mcp::credentials::MemoryCredentials::default()),
    );
    let admin = gw.key(&tenant, &["admin"]).await;
    let (status, _, body) = gw
        .call("GET", "/v1/admin/mcp-servers/%FF", Some(&admin), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "name");
}
