//! Issue 16, point 4: federation. The tenant's servers' tools re-exposed as
//! `{server}__{tool}` (config-declared and registered ones), called with the
//! registered credential, results as the server gave them; `mcp_tools` globs
//! on keys and tokens; the audit of every federated call, its store on both
//! backends and `GET /v1/admin/mcp-calls`.

use std::sync::Arc;

use ctxgate::auth::Principal;
use ctxgate::http::mcp::federation;
use ctxgate::store::{AuditRecord, Store};
use ctxgate_tests::jwt::Issuer;
use ctxgate_tests::mcp_server::{McpFixture, Options, Revision};
use ctxgate_tests::{Gateway, unique};
use serde_json::{Value, json};

/// An argument value that must never reach the audit.
const ARG_MARK: &str = "arg-mark-4711";

fn principal(tenant: &str, key_id: &str, mcp_tools: &[&str]) -> Principal {
    Principal {
        tenant: tenant.to_owned(),
        key_id: key_id.to_owned(),
        scopes: vec!["mcp".into()],
        models: Vec::new(),
        rpm: None,
        expires_at: None,
        mcp_servers: Vec::new(),
        mcp_tools: mcp_tools.iter().map(|s| s.to_string()).collect(),
    }
}

fn args(v: Value) -> Option<rmcp::model::JsonObject> {
    Some(v.as_object().unwrap().clone())
}

/// `crm` (current revision) declared in the config, `down` declared where
/// nothing listens; `kb` (legacy revision) is registered through the admin
/// API by the tests.
fn toml(tenant: &str, crm: &McpFixture, extra: &str) -> String {
    format!(
        "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n{extra}\n\
         [tenants.{tenant}.mcp_servers.crm]\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\ntimeout_seconds = 5\n\
         [tenants.{tenant}.mcp_servers.down]\nurl = \"http://127.0.0.1:9/mcp\"\ntimeout_seconds = 2\n",
        crm.url()
    )
}

async fn register_kb(gw: &Gateway, admin: &str, kb: &McpFixture) {
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/admin/mcp-servers",
            Some(admin),
            Some(json!({"name": "kb", "url": kb.url().as_str(),
                "headers": {"Authorization": "Bearer good-token"},
                "allowed_tools": ["get_*", "echo"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

fn names(tools: &[rmcp::model::Tool]) -> Vec<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

/// Every audit row of the tenant the admin API shows, following cursors.
async fn audit_rows(gw: &Gateway, admin: &str, limit: usize) -> Vec<Value> {
    // Audit rows are written after the answers; a flush waits for them.
    gw.state.usage.flush().await.unwrap();
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/admin/mcp-calls?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, _, body) = gw.call("GET", &path, Some(admin), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        rows.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(body["has_more"], true);
                cursor = Some(c.to_owned())
            }
            None => {
                assert_eq!(body["has_more"], false);
                return rows;
            }
        }
    }
}

/// Unix ms as RFC 3339 (UTC), for the `from`/`to` parameters.
fn rfc3339(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---- listing, calling, auditing (both stores) ----

async fn federation(store: Arc<dyn Store>, raw: impl AsyncFn() -> String) {
    let tenant = unique("t");
    let crm = McpFixture::start(Revision::Current).await;
    let mut kb = McpFixture::start(Revision::Legacy).await;
    let stuck = McpFixture::start_with(
        Revision::Current,
        Options {
            list_hangs: true,
            ..Options::default()
        },
    )
    .await;
    // `slow` is the CRM with a one-second limit (its `hang` tool never
    // answers); `stuck` never answers `tools/list`.
    let extra = format!(
        "[tenants.{tenant}.mcp_servers.slow]\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\ntimeout_seconds = 1\n\
         [tenants.{tenant}.mcp_servers.stuck]\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\ntimeout_seconds = 1\n",
        crm.url(),
        stuck.url()
    );
    let gw = Gateway::with_toml(store, &toml(&tenant, &crm, &extra), &[]);
    let admin = gw.key(&tenant, &["admin"]).await;
    register_kb(&gw, &admin, &kb).await;
    let p = principal(&tenant, "key_fed", &[]);

    // Both servers' tools, `down` costing only its own; schemas as given.
    let tools = federation::list(&gw.state, &p).await;
    let listed = names(&tools);
    for want in [
        "crm__get_customer",
        "crm__find_orders",
        "crm__broken",
        "crm__garbled",
        "kb__get_customer",
        "kb__echo",
    ] {
        assert!(listed.contains(&want.to_owned()), "{want} in {listed:?}");
    }
    assert!(listed.contains(&"slow__hang".to_owned()), "{listed:?}");
    // Down (connection refused) and stuck (no list within its limit): only
    // their own tools are missing.
    for gone in ["down__", "stuck__"] {
        assert!(!listed.iter().any(|n| n.starts_with(gone)), "{listed:?}");
    }
    // The registration's allowed_tools still apply.
    assert!(!listed.contains(&"kb__broken".to_owned()), "{listed:?}");
    let get = tools
        .iter()
        .find(|t| t.name == "crm__get_customer")
        .unwrap();
    assert_eq!(get.input_schema["required"], json!(["id"]));
    assert_eq!(get.description.as_deref(), Some("A customer by id"));

    // Forwarded with the registered credential, never the caller's key.
    let r = federation::call(
        &gw.state,
        &p,
        "crm__get_customer",
        args(json!({"id": ARG_MARK})),
    )
    .await
    .expect("a federated tool");
    assert_ne!(r.is_error, Some(true));
    let text = r.content[0].as_text().unwrap().text.clone();
    assert!(text.contains(ARG_MARK), "{text}");
    let headers = crm.headers_seen();
    assert!(!headers.is_empty());
    for h in &headers {
        assert_eq!(h["authorization"], "Bearer good-token");
        assert!(!format!("{h:?}").contains(&admin));
    }

    // Structured content kept as given (no text added).
    let r = federation::call(&gw.state, &p, "crm__find_orders", args(json!({})))
        .await
        .unwrap();
    assert!(r.content.is_empty(), "{r:?}");
    assert_eq!(
        r.structured_content,
        Some(json!({"orders": [{"id": 1, "total": 12.5}]}))
    );
    // The tool's own error, and an answer that is no tool result.
    let r = federation::call(&gw.state, &p, "crm__broken", None)
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let r = federation::call(&gw.state, &p, "crm__garbled", None)
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    // A call past its server's limit.
    let r = federation::call(&gw.state, &p, "slow__hang", None)
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let reason = r.content[0].as_text().unwrap().text.clone();
    assert!(reason.contains("timed out"), "{reason}");
    // Through the legacy server, then with it gone: an isError result.
    let r = federation::call(&gw.state, &p, "kb__echo", args(json!({"q": ARG_MARK})))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true));
    kb.stop().await;
    let r = federation::call(&gw.state, &p, "kb__echo", None)
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let reason = r.content[0].as_text().unwrap().text.clone();
    assert!(reason.contains("failed"), "{reason}");
    // Unknown tools: None (the endpoint's -32602), audited; not-federated
    // names (ctxgate's own tools) are not audited.
    assert!(
        federation::call(&gw.state, &p, "crm__nope", None)
            .await
            .is_none()
    );
    assert!(
        federation::call(&gw.state, &p, "down__anything", None)
            .await
            .is_none()
    );
    assert!(
        federation::call(&gw.state, &p, "chat", None)
            .await
            .is_none()
    );

    // The audit, newest first, the same at any page size. (Calls within
    // one millisecond may list in either order: compared as a set.)
    let rows = audit_rows(&gw, &admin, 500).await;
    let times: Vec<i64> = rows.iter().map(|r| r["at_ms"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let mut outcomes: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["server"].as_str().unwrap(),
                r["tool"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("", "crm__nope", "unknown_tool"),
            ("", "down__anything", "unknown_tool"),
            ("crm", "broken", "tool_error"),
            ("crm", "find_orders", "ok"),
            ("crm", "garbled", "malformed"),
            ("crm", "get_customer", "ok"),
            ("kb", "echo", "failed"),
            ("kb", "echo", "ok"),
            ("slow", "hang", "timed_out"),
        ]
    );
    for r in &rows {
        assert_eq!(r["key_id"], "key_fed");
        assert_eq!(r["object"], "mcp_call");
        assert!(r["at_ms"].as_i64().unwrap() > now_ms() - 600_000);
        assert!(r["duration_ms"].is_u64());
    }
    let paged = audit_rows(&gw, &admin, 3).await;
    assert_eq!(paged, rows);
    // Arguments and results never stored.
    let stored = raw().await;
    assert!(
        stored.contains("get_customer"),
        "the raw view sees the audit"
    );
    assert!(!stored.contains(ARG_MARK));
    assert!(!stored.contains("Ada Lovelace"));

    // A time range.
    let oldest = rows.last().unwrap()["at_ms"].as_i64().unwrap();
    let newest = rows[0]["at_ms"].as_i64().unwrap();
    let (status, _, body) = gw
        .call(
            "GET",
            &format!("/v1/admin/mcp-calls?to={}", rfc3339(oldest)),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]));
    let (_, _, body) = gw
        .call(
            "GET",
            &format!(
                "/v1/admin/mcp-calls?from={}&to={}",
                rfc3339(oldest),
                rfc3339(newest + 1)
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), rows.len());

    // Another tenant's principal sees and calls none of these servers.
    let stranger = principal(&unique("t"), "key_other", &[]);
    assert!(federation::list(&gw.state, &stranger).await.is_empty());
    assert!(
        federation::call(&gw.state, &stranger, "crm__get_customer", None)
            .await
            .is_none()
    );

    // Another tenant sees none of it, nor can use its cursors.
    let other = gw.key(&unique("t"), &["admin"]).await;
    assert!(audit_rows(&gw, &other, 100).await.is_empty());
    let (_, _, first) = gw
        .call("GET", "/v1/admin/mcp-calls?limit=1", Some(&admin), None)
        .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (status, _, body) = gw
        .call(
            "GET",
            &format!("/v1/admin/mcp-calls?cursor={cursor}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("cursor"))
    );

    // Bad query parameters name the field; admin only.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("from=yesterday", "from"),
        ("to=1700000000", "to"),
        ("cursor=%25%25", "cursor"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
    ] {
        let (status, _, body) = gw
            .call(
                "GET",
                &format!("/v1/admin/mcp-calls?{query}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }
    let chat = gw.key(&tenant, &["chat"]).await;
    let (status, _, _) = gw
        .call("GET", "/v1/admin/mcp-calls", Some(&chat), None)
        .await;
    assert_eq!(status, 403);
}

// ---- kept connections, audit after the answer (issue 19) ----

async fn kept_connections(store: Arc<dyn Store>) {
    // Federated calls reuse one connection per tenant, server and
    // credential: one `server/discover` (or `initialize`) for many calls;
    // an expired session is started anew once; a changed registration and
    // another tenant get connections of their own. Every call's audit row
    // is written after its answer, and all are there after a flush.
    let tenant = unique("t");
    let other = unique("t");
    let crm = McpFixture::start(Revision::Current).await;
    let kb = McpFixture::start(Revision::Legacy).await;
    // The other tenant declares the very same server and credential.
    let extra = format!(
        "[tenants.{other}.mcp_servers.crm]\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\n",
        crm.url()
    );
    let gw = Arc::new(Gateway::with_toml(store, &toml(&tenant, &crm, &extra), &[]));
    let admin = gw.key(&tenant, &["admin"]).await;
    register_kb(&gw, &admin, &kb).await;
    let p = principal(&tenant, "key_kept", &[]);
    let mut calls = 0;
    let echo = async |p: &Principal, name: &str| {
        let r = federation::call(&gw.state, p, name, args(json!({"q": "x"})))
            .await
            .expect("a federated tool");
        assert_ne!(r.is_error, Some(true), "{name}: {r:?}");
    };

    for _ in 0..10 {
        echo(&p, "crm__echo").await;
        echo(&p, "kb__echo").await;
        calls += 2;
    }
    // Concurrent calls share the kept connection too.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (gw, p) = (gw.clone(), p.clone());
            tokio::spawn(async move {
                federation::call(&gw.state, &p, "crm__echo", args(json!({"q": "y"})))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_ne!(t.await.unwrap().is_error, Some(true));
    }
    calls += 8;
    assert_eq!(crm.discovers(), 1, "{:?}", crm.methods());
    assert_eq!(kb.initializes(), 1, "{:?}", kb.methods());
    assert_eq!(crm.calls().len(), 18);

    // The legacy server forgets its sessions: the next call starts a new
    // one (once) and succeeds; later calls use it.
    kb.expire_sessions();
    echo(&p, "kb__echo").await;
    echo(&p, "kb__echo").await;
    calls += 2;
    assert_eq!(kb.initializes(), 2, "{:?}", kb.methods());
    assert_eq!(kb.calls().len(), 12);

    // A changed registration (another credential header) is a new
    // connection, with the new headers.
    let (status, _, body) = gw
        .call(
            "PATCH",
            "/v1/admin/mcp-servers/kb",
            Some(&admin),
            Some(json!({"headers": {"Authorization": "Bearer good-token", "X-Tag": "v2"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    echo(&p, "kb__echo").await;
    calls += 1;
    assert_eq!(kb.initializes(), 3);
    let last = kb.headers_seen().pop().unwrap();
    assert_eq!(last["x-tag"], "v2");

    // Another tenant never shares the first one's connection.
    let q = principal(&other, "key_other", &[]);
    echo(&q, "crm__echo").await;
    assert_eq!(crm.discovers(), 2, "{:?}", crm.methods());

    // Every call of the tenant is audited, once.
    let rows = audit_rows(&gw, &admin, 500).await;
    assert_eq!(rows.len(), calls, "{rows:?}");
    assert!(rows.iter().all(|r| r["outcome"] == "ok"), "{rows:?}");
}

// ---- cached registrations (issue 19) ----

/// A gateway on `store` as another process would be: its own caches and
/// connections, sharing the credentials (where another process would read
/// the same secrets).
fn process(store: &Arc<dyn Store>, toml: &str, like: &Gateway) -> Gateway {
    let config = ctxgate::config::Config::from_toml(toml, |_| None).unwrap();
    let keys: Arc<dyn ctxgate::secrets::KeySource> =
        Arc::new(ctxgate::secrets::EnvKeys::from_config(&config, |_| None));
    let client = ctxgate::state::http_client(&config).unwrap();
    let credentials = like.state.mcp.credentials.clone();
    let state =
        ctxgate::AppState::from_parts_with(config, store.clone(), keys, client, credentials)
            .unwrap();
    Gateway {
        router: ctxgate::http::app(state.clone()),
        state,
    }
}

async fn registration_cache(store: Arc<dyn Store>) {
    // A tenant's registrations are read once per `registry_cache_seconds`
    // per process. A change through this process's admin API bites at once;
    // one made through another process bites there within its TTL (at once
    // with a TTL of 0, not yet within an hour's). Tenants never see each
    // other's registrations, cached or not.
    let (tenant, other) = (unique("t"), unique("t"));
    let kb = McpFixture::start(Revision::Current).await;
    let theirs = McpFixture::start(Revision::Current).await;
    let toml = |ttl: u64| {
        format!("[mcp]\nallowed_hosts = [\"127.0.0.1\"]\nregistry_cache_seconds = {ttl}\n")
    };
    let here = Gateway::with_toml(store.clone(), &toml(3600), &[]);
    let fresh = process(&store, &toml(0), &here);
    let stale = process(&store, &toml(3600), &here);
    let admin = here.key(&tenant, &["admin"]).await;
    register_kb(&here, &admin, &kb).await;
    let (p, q) = (
        principal(&tenant, "key_a", &[]),
        principal(&other, "key_b", &[]),
    );
    // Whether `name` is callable by `p` through `gw`.
    let callable = async |gw: &Gateway, p: &Principal, name: &str| {
        federation::call(&gw.state, p, name, args(json!({"q": "x"})))
            .await
            .map(|r| r.is_error != Some(true))
    };
    for gw in [&here, &fresh, &stale] {
        assert_eq!(callable(gw, &p, "kb__echo").await, Some(true));
        // The other tenant, with the first one's list cached: nothing.
        assert_eq!(callable(gw, &q, "kb__echo").await, None);
        assert!(federation::list(&gw.state, &q).await.is_empty());
    }
    // The other tenant registers its own `kb` elsewhere: each reaches its own.
    let other_admin = here.key(&other, &["admin"]).await;
    register_kb(&here, &other_admin, &theirs).await;
    let (mine, yours) = (kb.calls().len(), theirs.calls().len());
    for gw in [&here, &fresh] {
        assert_eq!(callable(gw, &q, "kb__echo").await, Some(true));
        assert_eq!(callable(gw, &p, "kb__echo").await, Some(true));
    }
    assert_eq!(kb.calls().len(), mine + 2, "{:?}", kb.calls());
    assert_eq!(theirs.calls().len(), yours + 2, "{:?}", theirs.calls());
    // `stale` read the other tenant's registrations before they existed.
    assert_eq!(callable(&stale, &q, "kb__echo").await, None);

    // Disabled (no tool allowed) through `here`.
    let (status, _, body) = here
        .call(
            "PATCH",
            "/v1/admin/mcp-servers/kb",
            Some(&admin),
            Some(json!({"allowed_tools": []})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(callable(&here, &p, "kb__echo").await, None);
    assert_eq!(callable(&fresh, &p, "kb__echo").await, None);
    // Within its TTL another process still has the registration it read.
    assert_eq!(callable(&stale, &p, "kb__echo").await, Some(true));
    // The other tenant's is untouched.
    assert_eq!(callable(&here, &q, "kb__echo").await, Some(true));

    // Deleted through `here`: gone here at once, and wherever the TTL has passed.
    let (status, _, body) = here
        .call("DELETE", "/v1/admin/mcp-servers/kb", Some(&admin), None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(callable(&here, &p, "kb__echo").await, None);
    assert_eq!(callable(&fresh, &p, "kb__echo").await, None);
    assert!(federation::list(&here.state, &p).await.is_empty());
    assert_eq!(callable(&here, &q, "kb__echo").await, Some(true));
}

// ---- mcp_tools globs: keys (admin API) and tokens (claim) ----

async fn globs(store: Arc<dyn Store>) {
    let tenant = unique("t");
    let crm = McpFixture::start(Revision::Current).await;
    let issuer = Issuer::start(false).await;
    let jwt = format!(
        "[jwt]\nissuer = \"{}\"\naudience = [\"ctxgate-api\"]\njwks_url = \"{}\"\n",
        issuer.issuer, issuer.jwks_url
    );
    let gw = Gateway::with_toml(store, &toml(&tenant, &crm, &jwt), &[]);
    let admin = gw.key(&tenant, &["admin", "chat"]).await;

    // Validated, shown by the key views.
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&admin),
            Some(json!({"name": "x", "scopes": ["chat"], "mcp_tools": ["crm__get_*", "bad glob"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("mcp_tools[1]")),
        "{body}"
    );
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&admin),
            Some(json!({"name": "x", "scopes": ["chat"], "mcp_tools": many})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("mcp_tools"))
    );
    let (status, _, created) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&admin),
            Some(json!({"name": "limited", "scopes": ["chat", "admin"],
                "mcp_tools": ["crm__get_*", "crm__find_orders"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["mcp_tools"],
        json!(["crm__get_*", "crm__find_orders"])
    );
    let (_, _, listed) = gw.call("GET", "/v1/admin/keys", Some(&admin), None).await;
    let view = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == created["id"])
        .unwrap();
    assert_eq!(view["mcp_tools"], created["mcp_tools"]);

    // Only matching tools are listed or callable.
    let secret = created["key"].as_str().unwrap();
    let p = gw
        .state
        .auth
        .authenticate(Some(&format!("Bearer {secret}")), ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(p.mcp_tools, ["crm__get_*", "crm__find_orders"]);
    let mut listed = names(&federation::list(&gw.state, &p).await);
    listed.sort();
    assert_eq!(listed, ["crm__find_orders", "crm__get_customer"]);
    assert!(
        federation::call(&gw.state, &p, "crm__get_customer", args(json!({"id": "7"})))
            .await
            .is_some()
    );
    assert!(
        federation::call(&gw.state, &p, "crm__echo", None)
            .await
            .is_none()
    );
    assert_eq!(
        crm.calls(),
        ["get_customer"],
        "a refused call reaches no server"
    );

    // A key it mints cannot widen its globs; asking none inherits them.
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(secret),
            Some(json!({"name": "wider", "scopes": ["chat"], "mcp_tools": ["crm__*"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (403, Some("mcp_tools")),
        "{body}"
    );
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(secret),
            Some(json!({"name": "narrow", "scopes": ["chat"], "mcp_tools": ["crm__get_customer"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(secret),
            Some(json!({"name": "same", "scopes": ["chat"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mcp_tools"], created["mcp_tools"]);

    // A token's `mcp_tools` claim.
    let mut claims = issuer.claims(&tenant, "ctxgate-api", "mcp");
    claims["mcp_tools"] = json!(["crm__echo", "kb__*"]);
    let token = issuer.rs256(&claims);
    let p = gw
        .state
        .auth
        .authenticate(Some(&format!("Bearer {token}")), ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(names(&federation::list(&gw.state, &p).await), ["crm__echo"]);
    assert!(
        federation::call(&gw.state, &p, "crm__get_customer", None)
            .await
            .is_none()
    );
    // No claim: every tool.
    let token = issuer.rs256(&issuer.claims(&tenant, "ctxgate-api", "mcp"));
    let p = gw
        .state
        .auth
        .authenticate(Some(&format!("Bearer {token}")), ctxgate::now_secs())
        .await
        .unwrap();
    assert!(p.mcp_tools.is_empty());
    assert_eq!(federation::list(&gw.state, &p).await.len(), 8);
}

// ---- the audit store's conformance ----

async fn audit_store(store: Arc<dyn Store>) {
    let (t, other) = (unique("t"), unique("t"));
    // A UTC day boundary: rows on both sides of it.
    let day = 1_700_006_400_000;
    let at = [
        day - 2000,
        day - 1000,
        day,
        day + 1000,
        day + 1000,
        day + 5000,
    ];
    let mut ids = Vec::new();
    for (i, ms) in at.iter().enumerate() {
        let r = AuditRecord {
            id: AuditRecord::new_id(*ms),
            key_id: "k".into(),
            server: "crm".into(),
            tool: format!("tool{i}"),
            at_ms: *ms,
            duration_ms: i as u64,
            outcome: "ok".into(),
            expires_at: ctxgate::now_secs() + 86_400,
        };
        store.record_call(&t, &r).await.unwrap();
        ids.push(r);
    }
    store
        .record_call(
            &other,
            &AuditRecord {
                id: AuditRecord::new_id(day),
                ..ids[0].clone()
            },
        )
        .await
        .unwrap();
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.id.cmp(&a.id));

    let all = store
        .list_calls(&t, day - 86_400_000, day + 86_400_000, 100, None)
        .await
        .unwrap();
    assert_eq!(all.records, newest_first);
    assert!(!all.has_more);
    // `from` inclusive, `to` exclusive.
    let mid = store
        .list_calls(&t, day - 1000, day + 5000, 100, None)
        .await
        .unwrap();
    let want: Vec<_> = newest_first
        .iter()
        .filter(|r| r.at_ms >= day - 1000 && r.at_ms < day + 5000)
        .cloned()
        .collect();
    assert_eq!(mid.records, want);
    // Pages across the day boundary.
    let mut got = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = store
            .list_calls(&t, day - 86_400_000, day + 86_400_000, 2, before.as_deref())
            .await
            .unwrap();
        assert!(page.records.len() <= 2);
        got.extend(page.records.iter().cloned());
        if !page.has_more {
            break;
        }
        before = Some(page.records.last().unwrap().id.clone());
    }
    assert_eq!(got, newest_first);
    // Tenants apart; an empty range.
    let theirs = store
        .list_calls(&other, day - 86_400_000, day + 86_400_000, 100, None)
        .await
        .unwrap();
    assert_eq!(theirs.records.len(), 1);
    assert!(
        store
            .list_calls(&t, day + 6000, day + 7000, 100, None)
            .await
            .unwrap()
            .records
            .is_empty()
    );
}

mod embedded {
    use super::*;

    #[tokio::test]
    async fn federation_lists_calls_and_audits() {
        let dir = tempfile::tempdir().unwrap();
        let store = ctxgate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        let db = dir.path().join("ctxgate.redb");
        super::federation(Arc::new(store), async || {
            String::from_utf8_lossy(&std::fs::read(&db).unwrap()).into_owned()
        })
        .await;
    }

    #[tokio::test]
    async fn mcp_tools_globs_filter_keys_and_tokens() {
        let (store, _dir) = ctxgate_tests::embedded_store();
        super::globs(store).await;
    }

    #[tokio::test]
    async fn audit_store_conformance() {
        let (store, _dir) = ctxgate_tests::embedded_store();
        super::audit_store(store).await;
    }

    #[tokio::test]
    async fn federated_calls_keep_their_connection() {
        let (store, _dir) = ctxgate_tests::embedded_store();
        super::kept_connections(store).await;
    }

    #[tokio::test]
    async fn registrations_are_cached_per_tenant_within_their_ttl() {
        let (store, _dir) = ctxgate_tests::embedded_store();
        super::registration_cache(store).await;
    }

    // DynamoDB's TTL drops audit rows; the embedded store's sweep does.
    #[tokio::test]
    async fn expired_audit_rows_are_swept() {
        use ctxgate::store::AuditStore;
        let dir = tempfile::tempdir().unwrap();
        let store = ctxgate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        let row = |at_ms: i64, expires_at: i64| AuditRecord {
            id: AuditRecord::new_id(at_ms),
            key_id: "k".into(),
            server: "crm".into(),
            tool: "get_customer".into(),
            at_ms,
            duration_ms: 1,
            outcome: "ok".into(),
            expires_at,
        };
        let (old, kept) = (row(1_000, 100), row(2_000, 10_000));
        store.record_call("t", &old).await.unwrap();
        store.record_call("t", &kept).await.unwrap();
        let swept = store.sweep(5_000).await.unwrap();
        assert_eq!(swept.audit, 1);
        let left = store.list_calls("t", 0, 10_000, 10, None).await.unwrap();
        assert_eq!(left.records, [kept]);
    }
}

mod dynamodb {
    #[tokio::test]
    async fn federation_lists_calls_and_audits() {
        let (store, client, table) = ctxgate_tests::dynamo_table().await;
        super::federation(store, async || {
            let out = client.scan().table_name(&table).send().await.unwrap();
            format!("{:?}", out.items())
        })
        .await;
    }

    #[tokio::test]
    async fn mcp_tools_globs_filter_keys_and_tokens() {
        super::globs(ctxgate_tests::dynamo_store().await).await;
    }

    #[tokio::test]
    async fn audit_store_conformance() {
        super::audit_store(ctxgate_tests::dynamo_store().await).await;
    }

    #[tokio::test]
    async fn federated_calls_keep_their_connection() {
        super::kept_connections(ctxgate_tests::dynamo_store().await).await;
    }

    #[tokio::test]
    async fn registrations_are_cached_per_tenant_within_their_ttl() {
        super::registration_cache(ctxgate_tests::dynamo_store().await).await;
    }
}
