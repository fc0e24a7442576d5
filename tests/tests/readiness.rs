//! Liveness and readiness: `/health` touches nothing; `/v1/admin/ready`
//! (admin only) reports the store, the provider-key source and the
//! configured providers, against the embedded store and against the
//! DynamoDB/Secrets Manager emulator, including a failing store and an
//! unreadable secret.

use std::sync::Arc;
use std::time::Duration;

use ctxgate::config::Config;
use ctxgate::secrets::{KeySource, SecretsManagerKeys};
use ctxgate::store::dynamo::DynamoStore;
use ctxgate_tests::jwt::Issuer;
use ctxgate_tests::{Gateway, aws_config, dynamo_store, embedded_store, unique};
use serde_json::{Value, json};

const PROVIDER_KEY: &str = "sk-readiness-secret-value";

fn provider<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no provider {name} in {body}"))
}

async fn secrets_keys(secret_id: &str) -> Arc<dyn KeySource> {
    let sm = aws_sdk_secretsmanager::Client::new(&aws_config().await);
    Arc::new(SecretsManagerKeys::new(sm, secret_id.to_owned(), Duration::from_secs(300)).unwrap())
}

#[tokio::test]
async fn health_is_public_and_readiness_needs_admin() {
    let (store, _dir) = embedded_store();
    let gw = Gateway::new(store, &[("OPENAI_API_KEY", PROVIDER_KEY)]);

    let (status, headers, body) = gw.call("GET", "/health", None, None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    assert!(headers.contains_key("x-request-id"));

    let (status, _, body) = gw.call("GET", "/v1/admin/ready", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let chat = gw.key("acme", &["chat", "usage:read"]).await;
    let (status, _, body) = gw.call("GET", "/v1/admin/ready", Some(&chat), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, _, body) = gw.call("POST", "/v1/admin/ready", Some(&chat), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );

    let admin = gw.key("acme", &["admin"]).await;
    let (status, _, body) = gw.call("GET", "/v1/admin/ready", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert_eq!(body["checks"]["secrets"]["ok"], true);
    assert_eq!(
        body["checks"]["secrets"]["detail"],
        "provider keys readable from the environment"
    );
    assert!(body.get("error").is_none());
    let openai = provider(&body, "openai");
    assert_eq!(
        (
            &openai["kind"],
            &openai["key_required"],
            &openai["key_present"]
        ),
        (&json!("openai"), &json!(true), &json!(true))
    );
    // A missing key is reported, not counted as unready.
    assert_eq!(provider(&body, "anthropic")["key_present"], false);
    assert_eq!(provider(&body, "echo")["key_required"], false);
    assert!(!body.to_string().contains(PROVIDER_KEY));
}

#[tokio::test]
async fn readiness_against_the_emulator() {
    let secret_id = unique("ctxgate-ready");
    let sm = aws_sdk_secretsmanager::Client::new(&aws_config().await);
    sm.create_secret()
        .name(&secret_id)
        .secret_string(json!({"anthropic": PROVIDER_KEY}).to_string())
        .send()
        .await
        .unwrap();
    let config =
        Config::from_lookup(|k| (k == "CTXGATE_SECRET_ID").then(|| secret_id.clone())).unwrap();
    let gw = Gateway::with_keys(dynamo_store().await, config, secrets_keys(&secret_id).await);
    let admin = gw.key("acme", &["admin"]).await;
    let (status, _, body) = gw.call("GET", "/v1/admin/ready", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["checks"]["secrets"]["detail"],
        "provider keys readable from Secrets Manager"
    );
    assert_eq!(provider(&body, "anthropic")["key_present"], true);
    assert_eq!(provider(&body, "openai")["key_present"], false);
    assert!(!body.to_string().contains(PROVIDER_KEY));
}

#[tokio::test]
async fn an_unreadable_secret_is_not_ready() {
    // The secret does not exist: the key source fails, the store is fine.
    let secret_id = unique("ctxgate-missing-secret");
    let config =
        Config::from_lookup(|k| (k == "CTXGATE_SECRET_ID").then(|| secret_id.clone())).unwrap();
    let (store, _dir) = embedded_store();
    let gw = Gateway::with_keys(store, config, secrets_keys(&secret_id).await);
    let admin = gw.key("acme", &["admin"]).await;
    let (status, headers, body) = gw.call("GET", "/v1/admin/ready", Some(&admin), None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["error"]["code"], "not_ready");
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["param"], Value::Null);
    assert_eq!(body["error"]["message"], "not ready: secrets check failed");
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert_eq!(body["checks"]["secrets"]["ok"], false);
    assert_eq!(
        body["checks"]["secrets"]["detail"],
        "provider keys could not be read from Secrets Manager"
    );
    // The secret's name and the SDK's error stay in the log.
    assert!(!body.to_string().contains(&secret_id), "{body}");
}

#[tokio::test]
async fn an_unreachable_store_is_not_ready() {
    // A table that does not exist: every store call fails. The admin signs
    // in with a JWT, which needs no store, so the report itself can answer.
    let issuer = Issuer::start(false).await;
    let toml = format!(
        "[jwt]\nissuer = \"{}\"\naudience = [\"ctxgate-api\"]\njwks_url = \"{}\"\n",
        issuer.issuer, issuer.jwks_url
    );
    let config = Config::from_toml(&toml, |_| None).unwrap();
    let table = unique("ctxgate-no-such-table");
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws_config().await),
        table.clone(),
    ));
    let keys = Arc::new(ctxgate::secrets::EnvKeys::from_config(&config, |_| None));
    let gw = Gateway::with_keys(store, config, keys);
    let admin = issuer.rs256(&issuer.claims("acme", "ctxgate-api", "admin"));

    let report = ctxgate::http::health::readiness(&gw.state).await;
    assert!(!report.is_ready());
    assert!(!report.checks.store.ok && report.checks.secrets.ok);

    let (status, _, body) = gw.call("GET", "/v1/admin/ready", Some(&admin), None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    assert_eq!(body["error"]["message"], "not ready: store check failed");
    assert_eq!(body["checks"]["store"]["ok"], false);
    assert_eq!(
        body["checks"]["store"]["detail"],
        "the store could not be read"
    );
    assert!(!body.to_string().contains(&table), "{body}");
    // Liveness does not look at the store.
    assert_eq!(gw.call("GET", "/health", None, None).await.0, 200);
    // A token without `admin` is refused before anything is checked.
    let reader = issuer.rs256(&issuer.claims("acme", "ctxgate-api", "chat"));
    assert_eq!(
        gw.call("GET", "/v1/admin/ready", Some(&reader), None)
            .await
            .0,
        403
    );
}
