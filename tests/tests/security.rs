//! Request security: JWTs, scopes and model lists, the admin key API, rate
//! limits and budgets under concurrency, usage accounting, input checks, CORS.

use std::sync::Arc;

use ctxgate::auth::{KeySpec, mint};
use ctxgate::store::Store;
use ctxgate_tests::jwt::Issuer;
use ctxgate_tests::{Gateway, MockUpstream, Reply, dynamo_store, embedded_store};
use serde_json::{Value, json};

async fn jwt_gateway(issuer: &Issuer) -> (Gateway, tempfile::TempDir) {
    let config = format!(
        "[jwt]\nissuer = \"{}\"\naudience = [\"ctxgate-api\"]\njwks_url = \"{}\"\njwks_refetch_seconds = 0\nleeway_seconds = 30\n",
        issuer.issuer, issuer.jwks_url
    );
    let (store, data) = embedded_store();
    (Gateway::with_toml(store, &config, &[]), data)
}

fn echo_body(conv: &str) -> Value {
    json!({"model": "echo", "conversation_id": conv, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn jwts_from_the_issuer_are_verified() {
    let issuer = Issuer::start(false).await;
    let (gw, _data) = jwt_gateway(&issuer).await;
    let call = |token: String| {
        let gw = &gw;
        async move {
            gw.call(
                "POST",
                "/v1/chat/completions",
                Some(&token),
                Some(echo_body("jwt-1")),
            )
            .await
        }
    };

    let good = issuer.claims("acme", "ctxgate-api", "chat conversations:read");
    let (status, _, body) = call(issuer.rs256(&good)).await;
    assert_eq!(status, 200, "{body}");
    let stored = gw
        .state
        .store
        .load_conversation("acme", "jwt-1", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(stored.messages.len(), 2, "the tenant comes from the claim");

    // ES256 with a key published after the first fetch: the unknown kid triggers a refetch.
    let fetches = *issuer.fetches.lock().unwrap();
    issuer.publish(true);
    let (status, _, body) = call(issuer.es256(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*issuer.fetches.lock().unwrap(), fetches + 1);
    // Cached now: no further fetch.
    assert_eq!(call(issuer.es256(&good)).await.0, 200);
    assert_eq!(*issuer.fetches.lock().unwrap(), fetches + 1);

    // scp as an array works too.
    let mut scp = good.clone();
    scp.as_object_mut().unwrap().remove("scope");
    scp["scp"] = json!(["chat"]);
    assert_eq!(call(issuer.rs256(&scp)).await.0, 200);

    let now = ctxgate::now_secs();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let mut tampered = issuer.rs256(&good);
    let parts: Vec<&str> = tampered.split('.').collect();
    let forged = base64_url(&with("tenant", json!("victim")).to_string());
    tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    let mut no_tenant = good.clone();
    no_tenant.as_object_mut().unwrap().remove("tenant");
    let other = Issuer::start(true).await;
    let refused = vec![
        ("expired", issuer.rs256(&with("exp", json!(now - 3600)))),
        (
            "not yet valid",
            issuer.rs256(&with("nbf", json!(now + 3600))),
        ),
        (
            "wrong audience",
            issuer.rs256(&with("aud", json!("someone-else"))),
        ),
        (
            "wrong issuer",
            issuer.rs256(&with("iss", json!("https://evil.example"))),
        ),
        ("tampered", tampered),
        ("alg none", issuer.unsigned(&good)),
        ("foreign key", other.rs256(&good)),
        ("no tenant", issuer.rs256(&no_tenant)),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (what, token) in refused {
        let (status, _, body) = call(token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["type"], "authentication_error", "{what}");
    }

    // Verified but not allowed: 403 naming the scope.
    let (status, _, body) = call(issuer.rs256(&with("scope", json!("conversations:read")))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("chat"));
    // A token cannot carry superadmin.
    let admin = issuer.rs256(&with("scope", json!("admin superadmin")));
    let (status, _, _) = gw
        .call("GET", "/v1/admin/keys?tenant=other", Some(&admin), None)
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        gw.call("GET", "/v1/admin/keys", Some(&admin), None).await.0,
        200
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

async fn key(
    store: &Arc<dyn Store>,
    tenant: &str,
    scopes: &[&str],
    models: &[&str],
    rpm: Option<u32>,
) -> String {
    let spec = KeySpec {
        tenant: tenant.into(),
        name: "t".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        models: models.iter().map(|s| s.to_string()).collect(),
        rpm,
        valid_until: None,
        mcp_servers: Vec::new(),
        mcp_tools: Vec::new(),
    };
    let k = mint(&spec, ctxgate::now_secs()).unwrap();
    store.put_key(&k.record).await.unwrap();
    k.secret
}

#[tokio::test]
async fn admin_key_api_is_tenant_scoped() {
    let store = dynamo_store().await;
    let gw = Gateway::new(store.clone(), &[]);
    let admin_a = key(
        &store,
        "tenant-a",
        &["admin", "chat", "usage:read"],
        &[],
        None,
    )
    .await;
    let admin_b = key(&store, "tenant-b", &["admin", "chat"], &[], None).await;
    let root = key(&store, "ops", &["superadmin", "admin"], &[], None).await;
    let chat_only = key(&store, "tenant-a", &["chat"], &[], None).await;

    let (status, _, created) = gw
        .call("POST", "/v1/admin/keys", Some(&admin_a), Some(json!({"name": "backend", "scopes": ["chat"], "models": ["echo"], "rpm": 50, "expires_in_days": 30})))
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cgk_"));
    assert_eq!(created["tenant"], "tenant-a");
    assert_eq!(created["models"], json!(["echo"]));
    assert!(created["expires_at"].as_i64().unwrap() > ctxgate::now_secs());
    // The new key works, for its model only.
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(
        gw.call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(chat("echo"))
        )
        .await
        .0,
        200
    );
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(chat("openai/gpt-4o")),
        )
        .await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["param"].as_str()
        ),
        (403, Some("model_not_allowed"), Some("model"))
    );

    // Lists show the tenant's keys, never secrets or hashes.
    let (status, _, list) = gw.call("GET", "/v1/admin/keys", Some(&admin_a), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["tenant"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|t| *t == "tenant-a") && ids.len() == 3,
        "{list}"
    );
    assert!(!list.to_string().contains("cgk_") && !list.to_string().contains("hash"));

    // Tenant boundaries.
    let (status, _, _) = gw
        .call(
            "GET",
            "/v1/admin/keys?tenant=tenant-b",
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = gw
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&admin_a),
            Some(json!({"name": "x", "tenant": "tenant-b"})),
        )
        .await;
    assert_eq!(status, 403);
    let b_keys = gw
        .call("GET", "/v1/admin/keys", Some(&admin_b), None)
        .await
        .2;
    let b_id = b_keys["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _, _) = gw
        .call(
            "DELETE",
            &format!("/v1/admin/keys/{b_id}"),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(status, 404, "another tenant's key looks missing");
    assert_eq!(
        gw.call("GET", "/v1/admin/keys", Some(&admin_b), None)
            .await
            .0,
        200
    );

    // No escalation.
    for (body, param) in [
        (json!({"name": "x", "scopes": ["superadmin"]}), "scopes"),
        (
            json!({"name": "x", "scopes": ["conversations:write"]}),
            "scopes",
        ),
    ] {
        let (status, _, resp) = gw
            .call("POST", "/v1/admin/keys", Some(&admin_a), Some(body))
            .await;
        assert_eq!(
            (status, resp["error"]["param"].as_str()),
            (403, Some(param)),
            "{resp}"
        );
    }
    assert_eq!(
        gw.call("GET", "/v1/admin/keys", Some(&chat_only), None)
            .await
            .0,
        403
    );

    // Bad input names the field.
    for (body, param) in [
        (json!({"scopes": ["chat"]}), "name"),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (json!({"name": "x", "scopes": ["root"]}), "scopes"),
        (json!({"name": "x", "models": ["nope/none"]}), "models[0]"),
        (json!({"name": "x", "rpm": "fast"}), "rpm"),
        (json!({"name": ""}), "name"),
    ] {
        let (status, _, resp) = gw
            .call("POST", "/v1/admin/keys", Some(&admin_a), Some(body))
            .await;
        assert_eq!(
            (status, resp["error"]["param"].as_str()),
            (400, Some(param)),
            "{resp}"
        );
    }

    // Superadmin crosses tenants; revocation bites at once in this process.
    let (status, _, list) = gw
        .call("GET", "/v1/admin/keys?tenant=tenant-b", Some(&root), None)
        .await;
    assert_eq!((status, list["data"].as_array().unwrap().len()), (200, 1));
    let (status, _, revoked) = gw
        .call(
            "DELETE",
            &format!("/v1/admin/keys/{b_id}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)));
    assert_eq!(
        gw.call("GET", "/v1/admin/keys", Some(&admin_b), None)
            .await
            .0,
        401
    );
    let own = created["id"].as_str().unwrap();
    assert_eq!(
        gw.call(
            "DELETE",
            &format!("/v1/admin/keys/{own}"),
            Some(&admin_a),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        gw.call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(chat("echo"))
        )
        .await
        .0,
        401
    );
}

async fn rate_limit_holds(store: Arc<dyn Store>) {
    // Exact, at a fixed instant: 100 concurrent hits on a 20/minute key.
    let principal = ctxgate::auth::Principal {
        tenant: "t".into(),
        key_id: ctxgate_tests::unique("key"),
        scopes: vec![],
        models: vec![],
        rpm: Some(20),
        expires_at: None,
        mcp_servers: Vec::new(),
        mcp_tools: Vec::new(),
    };
    let cfg = Arc::new(ctxgate::config::Config::from_lookup(|_| None).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (store, principal, cfg) = (store.clone(), principal.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            ctxgate::limits::check_rate(&*store, &principal, &cfg, 1_800_000_030)
                .await
                .is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 20);

    // Through HTTP: the same key, 100 concurrent requests.
    let gw = Arc::new(Gateway::new(store.clone(), &[]));
    let secret = key(&store, "t", &["chat"], &[], Some(20)).await;
    let window = ctxgate::now_secs() / 60;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (gw, secret) = (gw.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            gw.chat(&secret, "echo", None, "hi").await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            let retry: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry));
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok + statuses.iter().filter(|s| **s == 429).count(), 100);
    if ctxgate::now_secs() / 60 == window {
        assert_eq!(ok, 20);
    } else {
        // The run straddled a minute boundary: two windows of 20 at most.
        assert!((20..=40).contains(&ok), "{ok}");
    }
}

#[tokio::test]
async fn rate_limits_hold_under_concurrency_on_dynamodb() {
    rate_limit_holds(dynamo_store().await).await;
}

#[tokio::test]
async fn rate_limits_hold_under_concurrency_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    rate_limit_holds(store).await;
}

async fn budget_holds(store: Arc<dyn Store>) {
    // Every answer costs 45 tokens; each request reserves its estimate (> 45).
    let upstream = MockUpstream::start(|_| Reply::json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 40, "total_tokens": 45}})))
    .await;
    let config = "[tenants.frugal]\ntokens_per_day = 1000\n";
    let base = format!("{}/v1", upstream.url);
    let gw = Arc::new(Gateway::with_toml(
        store.clone(),
        config,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-x")],
    ));
    let secret = key(&store, "frugal", &["chat", "usage:read"], &[], None).await;
    let body = json!({"model": "openai/gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (gw, secret, body) = (gw.clone(), secret.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            gw.call("POST", "/v1/chat/completions", Some(&secret), Some(body))
                .await
        }));
    }
    let mut ok = 0u64;
    let mut refused = 0;
    for t in tasks {
        let (status, headers, resp) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(resp["error"]["code"], "budget_exceeded");
                assert!(headers.contains_key("retry-after"));
                refused += 1;
            }
            s => panic!("unexpected {s}: {resp}"),
        }
    }
    assert!(refused > 0 && ok > 0);
    let day = ctxgate::usage::day(ctxgate::now_secs());
    let counter = ctxgate::store::CounterKey {
        pk: "T#frugal#B".into(),
        sk: format!("{day}#tokens"),
    };
    let spent = store.counter_get(&counter).await.unwrap();
    // Every reservation was settled to the real usage: nothing leaked...
    assert_eq!(spent as u64, ok * 45);
    // ...and the budget was never overspent.
    assert!(spent <= 1000, "{spent}");

    // A failing provider refunds its reservation.
    upstream.respond(|_| Reply::status(500, "{}"));
    let (status, _, _) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(body.clone()),
        )
        .await;
    assert!(status == 502 || status == 429);
    assert_eq!(store.counter_get(&counter).await.unwrap(), spent);
}

#[tokio::test]
async fn token_budgets_hold_under_concurrency_on_dynamodb() {
    budget_holds(dynamo_store().await).await;
}

#[tokio::test]
async fn token_budgets_hold_under_concurrency_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    budget_holds(store).await;
}

#[tokio::test]
async fn cost_budgets_refuse_once_spent() {
    let upstream = MockUpstream::start(|_| Reply::json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}})))
    .await;
    // gpt-4o: 1000 in + 1000 out = 0.0125 USD a request; the estimate (max_tokens 1000) about the same.
    let config = "[quotas]\ncost_per_day_usd = 0.03\n";
    let base = format!("{}/v1", upstream.url);
    let store = dynamo_store().await;
    let gw = Gateway::with_toml(
        store.clone(),
        config,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-x")],
    );
    let secret = key(&store, "spender", &["chat"], &[], None).await;
    let body = json!({"model": "openai/gpt-4o", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            gw.call(
                "POST",
                "/v1/chat/completions",
                Some(&secret),
                Some(body.clone()),
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
}

#[tokio::test]
async fn usage_is_accounted_per_tenant_day_and_model() {
    let upstream = MockUpstream::start(|_| Reply::json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                  "prompt_tokens_details": {"cached_tokens": 400},
                  "completion_tokens_details": {"reasoning_tokens": 300}}})))
    .await;
    let base = format!("{}/v1", upstream.url);
    let store = dynamo_store().await;
    let gw = Gateway::new(
        store.clone(),
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-x")],
    );
    let a = key(&store, "tenant-a", &["chat", "usage:read"], &[], None).await;
    let b = key(&store, "tenant-b", &["chat", "usage:read"], &[], None).await;
    let no_usage = key(&store, "tenant-a", &["chat"], &[], None).await;
    for _ in 0..2 {
        let (status, _, body) = gw.chat(&a, "openai/gpt-4o-mini", None, "hi").await;
        assert_eq!(status, 200);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 400);
        assert_eq!(
            body["usage"]["completion_tokens_details"]["reasoning_tokens"],
            300
        );
    }
    assert_eq!(gw.chat(&a, "echo", None, "hello there").await.0, 200);

    let (status, _, usage) = gw.call("GET", "/v1/usage", Some(&a), None).await;
    assert_eq!(status, 200, "{usage}");
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{usage}");
    let gpt = rows
        .iter()
        .find(|r| r["model"] == "openai/gpt-4o-mini")
        .unwrap();
    assert_eq!(gpt["requests"], 2);
    assert_eq!(gpt["prompt_tokens"], 2000);
    assert_eq!(gpt["completion_tokens"], 1000);
    assert_eq!(gpt["total_tokens"], 3000);
    assert_eq!(gpt["cached_tokens"], 800);
    assert_eq!(gpt["reasoning_tokens"], 600);
    // (600 uncached x 0.15 + 400 cached x 0.075 + 500 out x 0.60) micro-USD, twice.
    assert_eq!(gpt["cost_micro_usd"], 2 * (90 + 30 + 300));
    assert_eq!(gpt["price_version"], "builtin-2025-08");
    assert_eq!(gpt["day"], ctxgate::usage::day(ctxgate::now_secs()));

    // Another tenant sees only its own (nothing).
    assert_eq!(
        gw.call("GET", "/v1/usage", Some(&b), None).await.2["data"],
        json!([])
    );
    // Ranges and scopes.
    assert_eq!(
        gw.call(
            "GET",
            "/v1/usage?from=2020-01-01&to=2020-01-31",
            Some(&a),
            None
        )
        .await
        .2["data"],
        json!([])
    );
    for (q, param) in [
        ("from=yesterday", "from"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=2020-01-01&to=2026-01-01", "from"),
        ("to=2026-13-01", "to"),
    ] {
        let (status, _, body) = gw
            .call("GET", &format!("/v1/usage?{q}"), Some(&a), None)
            .await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some(param)),
            "{q}: {body}"
        );
    }
    assert_eq!(
        gw.call("GET", "/v1/usage", Some(&no_usage), None).await.0,
        403
    );
}

#[tokio::test]
async fn bodies_must_be_utf8_json_of_bounded_shape() {
    let (store, _dir) = embedded_store();
    let gw = Gateway::new(store, &[]);
    let k = gw.key("t", &[]).await;
    let ok = br#"{"model":"echo","messages":[{"role":"user","content":"x"}]}"#.to_vec();
    for (ct, want) in [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON;charset=UTF-8", 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=latin1", 415),
    ] {
        let (status, _, body) = gw
            .call_raw(
                "POST",
                "/v1/chat/completions",
                Some(&k),
                &[("content-type", ct)],
                ok.clone(),
            )
            .await;
        assert_eq!(status, want, "{ct}: {body}");
    }
    let cases: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
        (b"{\"model\":\"echo\xff\",\"messages\":[]}".to_vec(), 400, None),
        (br#"{"model":"echo","messages":[{"role":"user","content":"x"}],"model":"openai/gpt-4o"}"#.to_vec(), 400, Some("model")),
        (format!(r#"{{"model":"echo","messages":[{{"role":"user","content":"x"}}],"x":{}1{}}}"#, "[".repeat(64), "]".repeat(64)).into_bytes(), 400, None),
    ];
    for (body, status, param) in cases {
        let (s, _, resp) = gw
            .call_raw("POST", "/v1/chat/completions", Some(&k), &[], body)
            .await;
        assert_eq!(
            (s, resp["error"]["param"].as_str()),
            (status, param),
            "{resp}"
        );
    }
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let (store, _dir) = embedded_store();
    let closed = Gateway::new(store.clone(), &[]);
    let open = Gateway::new(
        store,
        &[("CTXGATE_CORS_ORIGINS", "https://app.example.com")],
    );
    let preflight = |gw: &Gateway, origin: &'static str| {
        let router = gw.router.clone();
        async move {
            use tower::ServiceExt;
            let req = http::Request::builder()
                .method("OPTIONS")
                .uri("/v1/chat/completions")
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization,content-type",
                )
                .body(axum::body::Body::empty())
                .unwrap();
            router
                .oneshot(req)
                .await
                .unwrap()
                .headers()
                .get("access-control-allow-origin")
                .cloned()
        }
    };
    assert_eq!(
        preflight(&open, "https://app.example.com").await.unwrap(),
        "https://app.example.com"
    );
    assert!(preflight(&open, "https://evil.example").await.is_none());
    assert!(
        preflight(&closed, "https://app.example.com")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn the_response_processor_redacts_and_blocks_per_tenant_policy() {
    let upstream = MockUpstream::start(|r| {
        let said = ctxgate_tests::reported_users(&r.body);
        let text = if said.contains("leak") {
            "Contact jane.doe@example.com, card 4111 1111 1111 1111".to_owned()
        } else {
            format!("you said: {said}")
        };
        Reply::json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}))
    })
    .await;
    let config = r#"
[tenants.strict.redaction]
upstream = "redact"
stored = "redact"
response = "redact"
denylist = ["project bluebird"]
[tenants.strict.redaction.categories]
card = "block"
[[tenants.strict.redaction.patterns]]
name = "employee_id"
regex = "EMP-[0-9]{6}"

[tenants.open.redaction]
response = "off"
stored = "off"
"#;
    let base = format!("{}/v1", upstream.url);
    let store = dynamo_store().await;
    let gw = Gateway::with_toml(
        store.clone(),
        config,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-x")],
    );
    let now = ctxgate::now_secs;
    let model = "openai/gpt-4o-mini";

    // Default policy: the provider sees what was sent; the answer and the store are redacted.
    let default_key = key(&store, "plain", &["chat"], &[], None).await;
    let (status, headers, body) = gw
        .chat(
            &default_key,
            model,
            Some("r-1"),
            "mail bob@example.org, then leak",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Contact [EMAIL], card [CARD]"
    );
    assert_eq!(
        body["redactions"]["response"],
        json!({"card": 1, "email": 1})
    );
    assert_eq!(body["redactions"]["stored"], json!({"card": 1, "email": 2}));
    assert_eq!(
        headers["x-ctxgate-redactions"],
        "response:card=1,email=1;stored:card=1,email=2"
    );
    assert!(
        upstream.received()[0]
            .body
            .to_string()
            .contains("bob@example.org")
    );
    let stored = store
        .load_conversation("plain", "r-1", now())
        .await
        .unwrap();
    assert_eq!(
        stored.messages[0].message.text_content(),
        "mail [EMAIL], then leak"
    );
    assert_eq!(
        stored.messages[1].message.text_content(),
        "Contact [EMAIL], card [CARD]"
    );
    assert!(
        !serde_json::to_string(&stored.messages)
            .unwrap()
            .contains("@example")
    );

    // A strict tenant: custom pattern and denylist redacted before the provider sees them.
    let strict = key(&store, "strict", &["chat"], &[], None).await;
    let (status, _, body) = gw
        .chat(
            &strict,
            model,
            Some("s-1"),
            "EMP-123456 asks about Project Bluebird",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = upstream.received().last().unwrap().body.to_string();
    assert!(
        sent.contains("[EMPLOYEE_ID] asks about [DENYLIST]"),
        "{sent}"
    );
    assert_eq!(
        body["redactions"]["upstream"],
        json!({"denylist": 1, "employee_id": 1})
    );
    // A card in the request is blocked: 400 naming the category, nothing stored, nothing sent.
    let calls = upstream.received().len();
    let (status, _, body) = gw
        .chat(&strict, model, Some("s-1"), "charge 4111-1111-1111-1111")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("content_blocked")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("card"));
    assert!(!body.to_string().contains("4111"));
    assert_eq!(upstream.received().len(), calls);
    // A card in the answer is blocked too, and the turn is not stored.
    let (status, _, body) = gw.chat(&strict, model, Some("s-1"), "please leak").await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("choices[0].message")),
        "{body}"
    );
    assert_eq!(
        store
            .load_conversation("strict", "s-1", now())
            .await
            .unwrap()
            .messages
            .len(),
        2
    );

    // A tenant that turned redaction off gets the answer as written.
    let open = key(&store, "open", &["chat"], &[], None).await;
    let (status, headers, body) = gw.chat(&open, model, None, "leak").await;
    assert_eq!(status, 200);
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("jane.doe@example.com")
    );
    assert!(body.get("redactions").is_none() && !headers.contains_key("x-ctxgate-redactions"));
}

#[tokio::test]
async fn a_dropped_reservation_is_refunded() {
    let (store, _dir) = embedded_store();
    let quotas = ctxgate::config::Quotas {
        tokens_per_day: Some(1000),
        cost_per_day_usd: None,
    };
    let now = ctxgate::now_secs();
    let counter = ctxgate::store::CounterKey {
        pk: "T#gone#B".into(),
        sk: format!("{}#tokens", ctxgate::usage::day(now)),
    };
    let reservation = ctxgate::limits::reserve(&store, "gone", &quotas, 300, 0, now)
        .await
        .unwrap();
    assert_eq!(store.counter_get(&counter).await.unwrap(), 300);
    // The request future is dropped mid-flight (client disconnected): the refund runs in the background.
    drop(reservation);
    let (store, counter) = (&store, &counter);
    ctxgate_tests::eventually("the reservation is refunded", || async move {
        store.counter_get(counter).await.unwrap() == 0
    })
    .await;
}
