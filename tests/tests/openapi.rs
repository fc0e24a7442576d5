//! The OpenAPI document (`openapi.yaml`) and the router agree: the document
//! has exactly one operation per route in `ctxgate::http::ROUTES`, and every
//! operation is well formed (an operation id, responses with the error
//! envelope for every error status, the bearer scheme unless it is `/health`).
//! Nothing is excluded: `/health` is a route and is documented too.

use std::collections::BTreeSet;

use serde_json::Value;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml at the repository root");
    serde_yaml_ng::from_str(&text).expect("openapi.yaml is valid YAML")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("only local references");
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => v,
    }
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    ops
}

#[test]
fn document_and_router_have_the_same_routes() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let routed: BTreeSet<(String, String)> = ctxgate::http::ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes missing from openapi.yaml: {missing:?}; documented but not routed: {extra:?}"
    );
}

#[test]
fn every_operation_is_complete() {
    let doc = document();
    let envelope = "#/components/schemas/ErrorEnvelope";
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let at = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(
            ids.insert(id.to_owned()),
            "{at}: duplicate operationId {id}"
        );
        let public = path == "/health" || path.starts_with("/.well-known/");
        let security = op.get("security").or_else(|| doc.get("security"));
        let has_bearer = security
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        assert_eq!(has_bearer, !public, "{at}: bearer security");
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{at}: no responses"));
        if !public {
            assert!(responses.contains_key("401"), "{at}: no 401");
        }
        // Path parameters are declared for every `{name}` in the path.
        let mut params: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
        let item = &doc["paths"][&path];
        params.extend(item["parameters"].as_array().into_iter().flatten());
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(['{', '}']);
            assert!(
                params
                    .iter()
                    .map(|p| resolve(&doc, p))
                    .any(|p| p["in"] == "path" && p["name"] == name),
                "{at}: path parameter {name} undeclared"
            );
        }
        for (status, resp) in responses {
            let resp = resolve(&doc, resp);
            assert!(
                resp["headers"].get("x-request-id").is_some(),
                "{at} {status}: no x-request-id header"
            );
            let is_error = status == "default" || !status.starts_with(['1', '2', '3']);
            if is_error {
                // The error envelope, directly or as one branch of a union.
                let schema = &resp["content"]["application/json"]["schema"];
                let text = schema.to_string();
                // Each front door's own: Anthropic's envelope on its routes,
                // JSON-RPC errors on /mcp; the error envelope everywhere else.
                let own = if path.starts_with("/v1/messages") {
                    "#/components/schemas/AnthropicErrorEnvelope"
                } else if path == "/mcp" && !text.contains(envelope) {
                    "#/components/schemas/JsonRpcMessage"
                } else {
                    envelope
                };
                assert!(text.contains(own), "{at} {status}: not the error envelope");
            }
        }
    }
}

#[test]
fn every_reference_resolves() {
    let doc = document();
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    resolve(doc, v);
                    assert!(r.starts_with("#/components/"), "{r}");
                }
                o.values().for_each(|c| walk(doc, c));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(doc, c)),
            _ => {}
        }
    }
    walk(&doc, &doc);
}
