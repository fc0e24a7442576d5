//! Issue 12, point 2: a key minted through the admin API is bounded by its
//! creator (scopes, models, rate, lifetime), whether the creator is an API key
//! or a JWT; a tenant admin cannot touch a superadmin key. Also the JWT
//! `models_claim` limit (point 15).

use std::sync::Arc;

use ctxgate::auth::{KeySpec, mint};
use ctxgate::store::Store;
use ctxgate_tests::jwt::Issuer;
use ctxgate_tests::{Gateway, dynamo_store, embedded_store};
use serde_json::{Value, json};

/// Stores a key with these limits; returns its secret.
async fn key(
    store: &Arc<dyn Store>,
    scopes: &[&str],
    models: &[&str],
    rpm: Option<u32>,
    valid_until: Option<i64>,
) -> String {
    let spec = KeySpec {
        tenant: "acme".into(),
        name: "creator".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        models: models.iter().map(|s| s.to_string()).collect(),
        rpm,
        valid_until,
        mcp_servers: Vec::new(),
        mcp_tools: Vec::new(),
    };
    let k = mint(&spec, ctxgate::now_secs()).unwrap();
    store.put_key(&k.record).await.unwrap();
    k.secret
}

/// `(status, error code, error param, body)` of a key creation.
async fn create(gw: &Gateway, creator: &str, body: Value) -> (u16, String, String, Value) {
    let (status, _, resp) = gw
        .call("POST", "/v1/admin/keys", Some(creator), Some(body))
        .await;
    let field = |k: &str| resp["error"][k].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("param"), resp)
}

const ALIASES: &str = "[aliases]\nboth = [\"echo\", \"openai/gpt-4o\"]\nechoed = [\"echo\"]\n";

fn gateway(store: Arc<dyn Store>, extra: &str) -> Gateway {
    Gateway::with_toml(
        store,
        &format!("{ALIASES}{extra}"),
        &[("OPENAI_API_KEY", "sk-test")],
    )
}

async fn keys_are_bounded_by_their_creator(store: Arc<dyn Store>) {
    let gw = gateway(store.clone(), "[limits]\nrequests_per_minute = 100\n");
    let now = ctxgate::now_secs();
    let in_ten_days = now + 10 * 86_400;
    let creator = key(
        &store,
        &["admin", "chat"],
        &["echoed", "openai/gpt-4o-mini"],
        Some(30),
        Some(in_ten_days),
    )
    .await;

    // Refused, each naming the field that asks for more than the creator holds.
    for (body, param) in [
        (json!({"name": "k", "scopes": ["chat"]}), "models"),
        (
            json!({"name": "k", "scopes": ["chat"], "models": ["openai/gpt-4o"]}),
            "models",
        ),
        // An alias whose chain leaves the creator's list.
        (
            json!({"name": "k", "scopes": ["chat"], "models": ["both"]}),
            "models",
        ),
        // The alias's member, named directly: the creator may not call it so.
        (
            json!({"name": "k", "scopes": ["chat"], "models": ["echo"]}),
            "models",
        ),
        (
            json!({"name": "k", "scopes": ["chat"], "models": ["echoed"], "rpm": 31}),
            "rpm",
        ),
        (
            json!({"name": "k", "scopes": ["chat"], "models": ["echoed"], "expires_in_days": 11}),
            "expires_in_days",
        ),
        (
            json!({"name": "k", "scopes": ["chat", "usage:read"], "models": ["echoed"]}),
            "scopes",
        ),
    ] {
        let (status, code, got, resp) = create(&gw, &creator, body.clone()).await;
        assert_eq!((status, got.as_str()), (403, param), "{body}: {resp}");
        assert!(
            ["exceeds_credential", "insufficient_scope"].contains(&code.as_str()),
            "{resp}"
        );
    }
    let listed = gw.call("GET", "/v1/admin/keys", Some(&creator), None).await;
    assert_eq!(
        listed.2["data"].as_array().unwrap().len(),
        1,
        "refused keys are not stored"
    );

    // Within bounds: what was left open inherits the creator's limits.
    let (status, _, _, made) = create(
        &gw,
        &creator,
        json!({"name": "k", "scopes": ["chat"], "models": ["echoed"]}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["models"], json!(["echoed"]));
    assert_eq!(made["rpm"], 30);
    assert_eq!(made["expires_at"], in_ten_days);
    let (status, _, _, made) = create(
        &gw,
        &creator,
        json!({"name": "k", "scopes": ["chat"], "models": ["openai/gpt-4o-mini"], "rpm": 5, "expires_in_days": 2}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["rpm"], 5);
    assert!(made["expires_at"].as_i64().unwrap() < in_ten_days);

    // The child can do what it was given, and no more.
    let child = made["key"].as_str().unwrap().to_owned();
    let (status, _, _, resp) = create(
        &gw,
        &child,
        json!({"name": "grandchild", "scopes": ["chat"]}),
    )
    .await;
    assert_eq!(status, 403, "{resp}");

    // A creator on the default rate cannot lift a key above it either.
    let plain = key(&store, &["admin", "chat"], &[], None, None).await;
    let (status, _, param, resp) = create(
        &gw,
        &plain,
        json!({"name": "k", "scopes": ["chat"], "rpm": 101}),
    )
    .await;
    assert_eq!((status, param.as_str()), (403, "rpm"), "{resp}");
    let (status, _, _, made) = create(
        &gw,
        &plain,
        json!({"name": "k", "scopes": ["chat"], "models": ["both"], "rpm": 100}),
    )
    .await;
    assert_eq!(
        status, 201,
        "an unrestricted creator grants any model: {made}"
    );
    assert_eq!(made["expires_at"], Value::Null);

    // A tenant admin cannot revoke the tenant's superadmin key.
    let root = key(&store, &["superadmin", "admin"], &[], None, None).await;
    let root_id = gw.call("GET", "/v1/admin/keys", Some(&root), None).await.2["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            k["scopes"]
                .as_array()
                .unwrap()
                .contains(&json!("superadmin"))
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, resp) = gw
        .call(
            "DELETE",
            &format!("/v1/admin/keys/{root_id}"),
            Some(&plain),
            None,
        )
        .await;
    assert_eq!(status, 403, "{resp}");
    let stored = store.get_key(&root_id).await.unwrap().unwrap();
    assert!(!stored.revoked, "the superadmin key still works");
    assert_eq!(
        gw.call("GET", "/v1/admin/keys", Some(&root), None).await.0,
        200
    );
    // A superadmin may.
    let (status, _, _) = gw
        .call(
            "DELETE",
            &format!("/v1/admin/keys/{root_id}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn keys_are_bounded_by_their_creator_embedded() {
    let (store, _dir) = embedded_store();
    keys_are_bounded_by_their_creator(store).await;
}

#[tokio::test]
async fn keys_are_bounded_by_their_creator_dynamodb() {
    keys_are_bounded_by_their_creator(dynamo_store().await).await;
}

// Issue 12, points 2 and 15: a JWT's `models_claim` limits chat and what its
// holder may grant; keys it mints expire no later than the token.
#[tokio::test]
async fn jwt_models_claim_and_exp_bound_chat_and_minting() {
    let issuer = Issuer::start(false).await;
    let (store, _data) = embedded_store();
    let gw = gateway(
        store,
        &format!(
            "[jwt]\nissuer = \"{}\"\naudience = [\"ctxgate-api\"]\njwks_url = \"{}\"\nmodels_claim = \"allowed_models\"\n",
            issuer.issuer, issuer.jwks_url
        ),
    );
    let mut claims = issuer.claims("acme", "ctxgate-api", "chat admin");
    claims["allowed_models"] = json!(["echoed"]);
    let exp = claims["exp"].as_i64().unwrap();
    let token = issuer.rs256(&claims);

    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&token),
            Some(chat("echoed")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for other in ["echo", "openai/gpt-4o", "both"] {
        let (status, _, body) = gw
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&token),
                Some(chat(other)),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("model_not_allowed")),
            "{other}: {body}"
        );
    }
    // A space-separated string claim works too.
    claims["allowed_models"] = json!("echo echoed");
    let spaced = issuer.rs256(&claims);
    let (status, _, body) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&spaced),
            Some(chat("echo")),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Minting: models from the claim, lifetime within the token's.
    let (status, _, param, resp) =
        create(&gw, &token, json!({"name": "k", "scopes": ["chat"]})).await;
    assert_eq!((status, param.as_str()), (403, "models"), "{resp}");
    let (status, _, param, resp) = create(
        &gw,
        &token,
        json!({"name": "k", "scopes": ["chat"], "models": ["echoed"], "expires_in_days": 1}),
    )
    .await;
    assert_eq!((status, param.as_str()), (403, "expires_in_days"), "{resp}");
    let (status, _, _, made) = create(
        &gw,
        &token,
        json!({"name": "k", "scopes": ["chat"], "models": ["echoed"]}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["expires_at"], exp);
    assert_eq!(made["models"], json!(["echoed"]));
}
