//! Issue 12, points 1, 6, 11 and 12 through the real handlers: redirects are
//! never followed (provider keys and prompts stay with the configured host),
//! upstream bodies are read with caps and their error text never reaches the
//! client, a JWK's `alg` binds the token's, and failing JWKS and Secrets
//! Manager sources are refetched with backoff rather than once per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use ctxgate::auth::jwt::JwtVerifier;
use ctxgate::config::JwtConfig;
use ctxgate::refresh::{ManualClock, RefreshPolicy};
use ctxgate::secrets::{KeySource, SecretsManagerKeys};
use ctxgate_tests::fault_proxy::{Fault, FaultProxy};
use ctxgate_tests::jwt::Issuer;
use ctxgate_tests::{Gateway, MockUpstream, Reply, aws_endpoint, embedded_store, unique};
use serde_json::{Value, json};

const MARKER: &str = "MARKER-d41d8cd9";
const PROVIDER_KEY: &str = "sk-proj-NEVERELSEWHERE0123456789";

/// A gateway whose four providers (Bearer, `x-api-key`, `api-key`, a custom
/// header) all point at `base`; `extra` is appended to the config text.
fn gateway(base: &str, extra: &str) -> (Gateway, tempfile::TempDir) {
    let toml = format!(
        "upstream_timeout_seconds = 5\n{extra}\n\
         [providers.azure]\nkind = \"openai_compatible\"\nbase_url = \"{base}/v1\"\n\
         api_key_env = \"AZURE_KEY\"\nauth_header = \"api-key\"\n\
         [providers.custom]\nkind = \"openai_compatible\"\nbase_url = \"{base}/v1\"\n\
         api_key_env = \"CUSTOM_KEY\"\nauth_header = \"x-custom-auth\"\n"
    );
    let (store, data) = embedded_store();
    let gw = Gateway::with_toml(
        store,
        &toml,
        &[
            ("OPENAI_BASE_URL", &format!("{base}/v1")),
            ("ANTHROPIC_BASE_URL", base),
            ("OPENAI_API_KEY", PROVIDER_KEY),
            ("ANTHROPIC_API_KEY", PROVIDER_KEY),
            ("AZURE_KEY", PROVIDER_KEY),
            ("CUSTOM_KEY", PROVIDER_KEY),
        ],
    );
    (gw, data)
}

const MODELS: &[&str] = &[
    "openai/gpt-4o",
    "anthropic/claude-haiku-4-5",
    "azure/gpt-4o",
    "custom/gpt-4o",
];

/// Sends one turn, streamed or not; returns status and body text.
async fn turn(gw: &Gateway, key: &str, model: &str, stream: bool) -> (u16, String) {
    let body = json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": "the secret prompt"}]});
    let (status, _, text) = gw.call_text("/v1/chat/completions", key, &[], body).await;
    (status, text)
}

// Issue 12, point 1: a 3xx from a provider is an upstream error and is never
// followed: the host it points to receives nothing (no key in any header
// form, no prompt), for every provider kind, streamed and not.
#[tokio::test]
async fn provider_redirects_are_never_followed() {
    let elsewhere = MockUpstream::openai().await;
    let target = elsewhere.url.clone();
    let upstream = MockUpstream::start(|_| Reply::status(500, "{}")).await;
    let (gw, _data) = gateway(
        &upstream.url,
        "[retry]\nattempts = 3\nbase_delay_ms = 1\nmax_delay_ms = 2\non_status = [301, 302, 303, 307, 308, 500]\n",
    );
    let key = gw.key("acme", &[]).await;
    let mut rows = 0;
    for status in [301, 302, 303, 307, 308] {
        let location = format!("{target}/v1/chat/completions");
        upstream.respond(move |_| Reply {
            headers: vec![("location".into(), location.clone())],
            ..Reply::status(status, "{}")
        });
        for model in MODELS {
            for stream in [false, true] {
                let before = upstream.received().len();
                let (got, body) = turn(&gw, &key, model, stream).await;
                assert_eq!(got, 502, "{status} {model} stream={stream}: {body}");
                assert!(body.contains("upstream_redirected"), "{body}");
                assert!(!body.contains(&target) && !body.contains(PROVIDER_KEY));
                // Not retried, even with the status listed as retryable.
                assert_eq!(upstream.received().len(), before + 1, "{model}");
                rows += 1;
            }
        }
    }
    assert_eq!(rows, 40);
    assert!(
        elsewhere.received().is_empty(),
        "the redirect target was called: {:?}",
        elsewhere.received()
    );
}

// Issue 12, point 1: the JWKS fetch follows no redirect either.
#[tokio::test]
async fn jwks_redirects_are_never_followed() {
    let issuer = Issuer::start(false).await;
    let to = issuer.jwks_url.clone();
    let redirector = MockUpstream::start(move |_| Reply {
        headers: vec![("location".into(), to.clone())],
        ..Reply::status(302, "")
    })
    .await;
    let config = jwt_config(&issuer, &format!("{}/jwks.json", redirector.url));
    let verifier = JwtVerifier::new(config, client());
    let token = issuer.rs256(&issuer.claims("acme", "api", "chat"));
    assert!(verifier.verify(&token).await.is_err());
    assert_eq!(redirector.received().len(), 1);
    assert_eq!(issuer.fetch_count(), 0, "the JWKS redirect was followed");
}

/// A server answering every request with `status` and an endless body of `chunk`s.
async fn endless(
    status: u16,
    content_type: &'static str,
    first: &'static [u8],
    chunk: &'static [u8],
) -> (String, Arc<AtomicUsize>) {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let app = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            let head = futures_util::stream::once(async move {
                Ok::<_, std::io::Error>(Bytes::from_static(first))
            });
            let tail = futures_util::stream::repeat_with(move || {
                counter.fetch_add(chunk.len(), Ordering::Relaxed);
                Ok(Bytes::from_static(chunk))
            });
            use futures_util::StreamExt;
            Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(Body::from_stream(head.chain(tail)))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, sent)
}

/// One endless-body row: what the server sends and what the client must see.
struct Case {
    name: &'static str,
    stream: bool,
    status: u16,
    first: &'static [u8],
    chunk: &'static [u8],
    code: &'static str,
}

// Issue 12, point 6: a provider sending an endless body (a success, an error,
// one endless event, an endless event stream) costs at most the cap: the
// client gets a clean 502 and the gateway stops reading.
#[tokio::test]
async fn endless_upstream_bodies_stop_at_the_cap() {
    let caps = "max_upstream_body_bytes = 65536\nmax_upstream_event_bytes = 4096\nmax_upstream_stream_bytes = 65536\n[retry]\nattempts = 1\n";
    let filler: &'static [u8] = &[b'a'; 1024];
    let event: &'static [u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
    let case = |name, stream, status, first: &'static [u8], chunk: &'static [u8], code| Case {
        name,
        stream,
        status,
        first,
        chunk,
        code,
    };
    let cases = [
        case(
            "success body",
            false,
            200,
            b"{\"choices\":\"",
            filler,
            "upstream_bad_response",
        ),
        case(
            "error body",
            false,
            500,
            b"{\"error\":\"",
            filler,
            "upstream_unavailable",
        ),
        case(
            "one endless event",
            true,
            200,
            b"data: {\"",
            filler,
            "upstream_bad_response",
        ),
        case(
            "endless stream",
            true,
            200,
            b"",
            event,
            "upstream_bad_response",
        ),
    ];
    for Case {
        name,
        stream,
        status,
        first,
        chunk,
        code,
    } in cases
    {
        let ctype = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let (url, sent) = endless(status, ctype, first, chunk).await;
        let (gw, _data) = gateway(&url, caps);
        let key = gw.key("acme", &[]).await;
        let (got, body) = turn(&gw, &key, "openai/gpt-4o", stream).await;
        if stream && status == 200 {
            // The stream started: the failure is the last event.
            assert_eq!(got, 200, "{name}");
        } else {
            assert_eq!(got, 502, "{name}: {body}");
        }
        assert!(body.contains(code), "{name}: {body}");
        // The server produced far less than an endless body (its socket
        // buffers hold a few MB at most): reading stopped at the cap.
        assert!(sent.load(Ordering::Relaxed) < 64 << 20, "{name}");
    }
}

// Issue 12, point 6: an endless JWKS document is read up to its cap, then
// refused (the token gets a 503, not an exhausted process).
#[tokio::test]
async fn an_endless_jwks_stops_at_the_cap() {
    let issuer = Issuer::start(false).await;
    let (url, sent) = endless(200, "application/json", b"{\"keys\":[\"", &[b'k'; 1024]).await;
    let verifier = JwtVerifier::new(jwt_config(&issuer, &url), client());
    let token = issuer.rs256(&issuer.claims("acme", "api", "chat"));
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(
        matches!(err, ctxgate::auth::AuthError::JwksUnavailable),
        "{err}"
    );
    assert!(sent.load(Ordering::Relaxed) < 64 << 20);
}

// Issue 12, point 6: the text of an upstream error (status errors, and
// errors reported mid-stream) never reaches the client; only the status
// class and a fixed message do.
#[tokio::test]
async fn upstream_error_text_never_reaches_the_client() {
    let body = format!(
        r#"{{"error":{{"message":"{MARKER} Incorrect API key provided: {PROVIDER_KEY}","type":"{MARKER}","param":"{MARKER}","code":"{MARKER}"}}}}"#
    );
    let upstream = MockUpstream::start(|_| Reply::status(500, "{}")).await;
    let (gw, _data) = gateway(&upstream.url, "[retry]\nattempts = 1\n");
    let key = gw.key("acme", &[]).await;
    for status in [400, 401, 403, 404, 409, 413, 422, 429, 500, 503] {
        let b = body.clone();
        upstream.respond(move |_| Reply::status(status, &b));
        for model in MODELS {
            for stream in [false, true] {
                let (got, text) = turn(&gw, &key, model, stream).await;
                assert!(got >= 400, "{status} {model}: {text}");
                assert!(!text.contains(MARKER), "{status} {model}: {text}");
                assert!(!text.contains(PROVIDER_KEY), "{status} {model}: {text}");
                let v: Value = serde_json::from_str(&text).unwrap();
                assert!(v["error"]["param"].is_null(), "{text}");
            }
        }
    }
    // Errors inside a stream: OpenAI's error chunk and Anthropic's error event.
    let openai_err = format!(
        "data: {{\"error\":{{\"message\":\"{MARKER}\",\"type\":\"{MARKER} {PROVIDER_KEY}\"}}}}\n\n"
    );
    let anthropic_err = format!(
        "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{MARKER} x\",\"message\":\"{MARKER}\"}}}}\n\n"
    );
    for (model, sse) in [
        ("openai/gpt-4o", openai_err),
        ("anthropic/claude-haiku-4-5", anthropic_err),
    ] {
        upstream.respond(move |_| Reply {
            headers: vec![("content-type".into(), "text/event-stream".into())],
            ..Reply::status(200, &sse)
        });
        let (_, text) = turn(&gw, &key, model, true).await;
        assert!(text.contains("upstream_stream_error"), "{model}: {text}");
        assert!(
            !text.contains(MARKER) && !text.contains(PROVIDER_KEY),
            "{text}"
        );
    }
}

fn client() -> reqwest::Client {
    let config = ctxgate::config::Config::from_lookup(|_| None).unwrap();
    ctxgate::state::http_client(&config).unwrap()
}

fn jwt_config(issuer: &Issuer, jwks_url: &str) -> JwtConfig {
    JwtConfig {
        issuer: issuer.issuer.clone(),
        audience: vec!["api".into()],
        jwks_url: Some(jwks_url.into()),
        tenant_claim: "tenant".into(),
        models_claim: None,
        mcp_tools_claim: "mcp_tools".into(),
        leeway_seconds: 30,
        jwks_cache_seconds: 300,
        jwks_refetch_seconds: 10,
        jwks_max_stale_seconds: 600,
    }
}

// Issue 12, point 11: a JWK's declared `alg` binds the token's: a token
// signed with the same RSA key under another accepted algorithm (PS256
// against an RS256 key) is refused; a JWK without `alg` falls back to the
// accepted algorithms.
#[tokio::test]
async fn a_jwk_alg_binds_the_token_alg() {
    let issuer = Issuer::start(false).await;
    let claims = issuer.claims("acme", "api", "chat");
    let bound = JwtVerifier::new(jwt_config(&issuer, &issuer.jwks_url), client());
    assert!(bound.verify(&issuer.rs256(&claims)).await.is_ok());
    let err = bound.verify(&issuer.ps256(&claims)).await.unwrap_err();
    assert!(err.to_string().contains("algorithm"), "{err}");

    issuer.publish_rsa_without_alg();
    let unbound = JwtVerifier::new(jwt_config(&issuer, &issuer.jwks_url), client());
    assert!(unbound.verify(&issuer.rs256(&claims)).await.is_ok());
    assert!(unbound.verify(&issuer.ps256(&claims)).await.is_ok());
}

// Issue 12, point 12: while the issuer fails, JWKS refetches back off (one
// failed fetch, then none until the backoff passes, doubling), tokens keep
// verifying on the last keys for a bounded staleness, and an unknown `kid`
// refetches at most once per cooldown. Concurrent requests share one fetch.
#[tokio::test]
async fn failing_jwks_is_not_refetched_per_request() {
    let issuer = Issuer::start(false).await;
    let clock = Arc::new(ManualClock::default());
    let verifier = Arc::new(JwtVerifier::with_clock(
        jwt_config(&issuer, &issuer.jwks_url),
        client(),
        clock.clone(),
    ));
    let claims = issuer.claims("acme", "api", "chat");
    let good = issuer.rs256(&claims);
    let unknown_kid = issuer.es256(&claims);
    assert!(verifier.verify(&good).await.is_ok());
    assert_eq!(issuer.fetch_count(), 1);

    // Forged kids: one refetch per 10 s cooldown, however many arrive.
    for _ in 0..50 {
        assert!(verifier.verify(&unknown_kid).await.is_err());
    }
    assert_eq!(
        issuer.fetch_count(),
        1,
        "the keys were fetched less than 10 s ago"
    );
    clock.advance(Duration::from_secs(10));
    for _ in 0..50 {
        assert!(verifier.verify(&unknown_kid).await.is_err());
    }
    assert_eq!(issuer.fetch_count(), 2);

    issuer.fail(true);
    clock.advance(Duration::from_secs(300));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (v, t) = (verifier.clone(), good.clone());
        tasks.push(tokio::spawn(async move { v.verify(&t).await.is_ok() }));
    }
    for t in tasks {
        assert!(
            t.await.unwrap(),
            "stale keys are served while the issuer fails"
        );
    }
    for _ in 0..50 {
        assert!(verifier.verify(&good).await.is_ok());
        assert!(verifier.verify(&unknown_kid).await.is_err());
    }
    assert_eq!(issuer.fetch_count(), 3, "one failed refetch, then backoff");
    clock.advance(Duration::from_secs(1));
    for _ in 0..50 {
        assert!(verifier.verify(&good).await.is_ok());
    }
    assert_eq!(issuer.fetch_count(), 4, "one retry after 1 s");
    clock.advance(Duration::from_secs(1));
    for _ in 0..50 {
        assert!(verifier.verify(&good).await.is_ok());
    }
    assert_eq!(issuer.fetch_count(), 4, "the next retry waits 2 s");

    // Past TTL + max staleness (300 + 600 s) the keys are no longer trusted.
    clock.advance(Duration::from_secs(600));
    assert!(verifier.verify(&good).await.is_err());
    issuer.fail(false);
    clock.advance(Duration::from_secs(60));
    assert!(
        verifier.verify(&good).await.is_ok(),
        "recovers once the issuer does"
    );
}

// Issue 12, point 12: while Secrets Manager fails, the provider keys secret
// is refetched with backoff (not once per request) and the last keys are
// served for a bounded staleness. The emulator sits behind a fault proxy
// that counts calls.
#[tokio::test]
async fn failing_secrets_manager_is_not_refetched_per_request() {
    let proxy = FaultProxy::start(&aws_endpoint()).await;
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(ctxgate::aws::sdk_http_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&proxy.url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let sm = aws_sdk_secretsmanager::Client::new(&aws);
    let secret_id = unique("keys");
    sm.create_secret()
        .name(&secret_id)
        .secret_string(json!({"openai": PROVIDER_KEY}).to_string())
        .send()
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::default());
    let policy = RefreshPolicy::new(
        Duration::from_secs(300),
        Duration::from_secs(600),
        Duration::ZERO,
    );
    let keys = SecretsManagerKeys::with_policy(sm, secret_id, policy, clock.clone()).unwrap();
    let calls = || proxy.calls("GetSecretValue");
    assert_eq!(
        keys.key("openai").await.unwrap().as_deref(),
        Some(PROVIDER_KEY)
    );
    assert_eq!(calls(), 1);

    proxy.fail("GetSecretValue", Fault::ServerError, None);
    clock.advance(Duration::from_secs(300));
    for _ in 0..50 {
        assert_eq!(
            keys.key("openai").await.unwrap().as_deref(),
            Some(PROVIDER_KEY)
        );
    }
    assert_eq!(calls(), 2, "one failed refetch, then backoff");
    clock.advance(Duration::from_secs(1));
    for _ in 0..50 {
        keys.key("openai").await.unwrap();
    }
    assert_eq!(calls(), 3);

    // Past TTL + max staleness, a failing source means no key (a clear error).
    clock.advance(Duration::from_secs(600));
    assert!(keys.key("openai").await.is_err());
    assert!(keys.key("openai").await.is_err());
    assert_eq!(calls(), 4, "backing off: the second call made no request");
    proxy.heal();
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        keys.key("openai").await.unwrap().as_deref(),
        Some(PROVIDER_KEY)
    );
}
