//! Drift between the code and `infra/template.yaml`: every function crate has a
//! function resource and every one of those a crate; every route of the router
//! table (`ctxgate::http::ROUTES`) is an API Gateway route of the right
//! function and every API Gateway route is in the table; every environment
//! variable the gateway reads (`ctxgate::config::ENV_VARS`) is set for every
//! function or deliberately left out (listed below with the reason). Also the
//! deployment invariants the issue fixes: arm64/provided.al2023/bootstrap,
//! cargo-lambda builds, streamed chat, constrained parameters, least-privilege
//! IAM, the table's schema.

use std::collections::{BTreeMap, BTreeSet};

use ctxgate_tests::template::{Function, Template};
use serde_json::json;
use serde_yaml_ng::Value;

/// Function crates that another branch is adding: the template may declare
/// them (and their routes) before their crate and router entries exist. Once
/// `functions/<name>` exists the entry no longer exempts anything, and
/// `no_stale_pending_entries` fails until it is removed from this list.
const PENDING: &[&str] = &[];

/// Variables every function must get from the template.
const REQUIRED: &[&str] = &[
    "CTXGATE_STORE",
    "CTXGATE_TABLE",
    "CTXGATE_CONFIG",
    "CTXGATE_CORS_ORIGINS",
    "CTXGATE_JWT_ISSUER",
    "CTXGATE_JWT_AUDIENCE",
    "CTXGATE_JWT_JWKS_URL",
    "CTXGATE_METRICS",
    "RUST_LOG",
    // The `OtlpEndpoint` parameter (empty: no traces).
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Variables only functions that call providers get (with the IAM to use them).
const PROVIDER_FUNCTIONS_ONLY: &[(&str, &str)] = &[(
    "CTXGATE_SECRET_ID",
    "provider keys: only chat and the MCP endpoint (its chat tool) call providers, and only they and the admin readiness report may read the secret",
)];

/// Variables deliberately not set in Lambda, and why.
const NOT_IN_LAMBDA: &[(&str, &str)] = &[
    (
        "CTXGATE_MCP_ALLOWED_HOSTS",
        "in Lambda /mcp answers the request's own Host: API Gateway only delivers requests addressed to the API's domains (the function cannot name its own API without a cycle)",
    ),
    (
        "CTXGATE_DATA_DIR",
        "embedded store only; Lambda uses DynamoDB",
    ),
    ("CTXGATE_LISTEN", "local server only"),
    (
        "AWS_ENDPOINT_URL",
        "emulators only; Lambda uses the regional endpoints",
    ),
    ("AWS_LAMBDA_FUNCTION_NAME", "set by Lambda itself"),
    (
        "AWS_REGION",
        "set by Lambda itself (the Bedrock provider's default region)",
    ),
    (
        "AWS_DEFAULT_REGION",
        "set by Lambda itself (the Bedrock provider's default region)",
    ),
    (
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "emulators and mocks only; Lambda uses the regional Bedrock endpoint",
    ),
    (
        "AWS_BEARER_TOKEN_BEDROCK",
        "local runs; in Lambda Bedrock signs with the function's role, or its API key comes from the secret",
    ),
    (
        "OPENAI_BASE_URL",
        "defaults to the public API; the config file can override it",
    ),
    (
        "ANTHROPIC_BASE_URL",
        "defaults to the public API; the config file can override it",
    ),
    (
        "OPENAI_API_KEY",
        "local runs; in Lambda keys come from the secret",
    ),
    (
        "ANTHROPIC_API_KEY",
        "local runs; in Lambda keys come from the secret",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OtlpEndpoint sets OTEL_EXPORTER_OTLP_ENDPOINT, which covers traces",
    ),
    (
        "OTEL_EXPORTER_OTLP_HEADERS",
        "may carry a collector's credential: the operator adds it (not a plain parameter)",
    ),
    (
        "OTEL_SERVICE_NAME",
        "defaults to the function's name (AWS_LAMBDA_FUNCTION_NAME)",
    ),
    (
        "OTEL_SDK_DISABLED",
        "an empty OtlpEndpoint already exports nothing",
    ),
];

/// Variables the template sets that lambda_http (not ctxgate) reads.
const READ_BY_LAMBDA_HTTP: &[&str] = &["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"];

fn crates() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect()
}

/// The crate a template function builds, from its `CodeUri`.
fn crate_of(f: &Function) -> String {
    f.code_uri
        .strip_prefix("../functions/")
        .unwrap_or_else(|| {
            panic!(
                "{}: CodeUri must be ../functions/<crate>, not {}",
                f.logical_id, f.code_uri
            )
        })
        .trim_end_matches('/')
        .to_owned()
}

fn pending(name: &str) -> bool {
    PENDING.contains(&name) && !crates().contains(name)
}

fn by_crate(t: &Template) -> BTreeMap<String, Function> {
    t.functions()
        .into_iter()
        .map(|f| (crate_of(&f), f))
        .collect()
}

#[test]
fn every_function_crate_has_a_function_resource_and_back() {
    let t = Template::load();
    let functions = by_crate(&t);
    for name in crates() {
        let f = functions.get(&name).unwrap_or_else(|| {
            panic!(
                "functions/{name} has no AWS::Serverless::Function with CodeUri ../functions/{name}"
            )
        });
        let manifest = std::fs::read_to_string(format!(
            "{}/../functions/{name}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert!(
            manifest.contains(&format!("name = \"{}\"", f.binary)),
            "{}: BuildProperties.Binary '{}' is not the bin of functions/{name}",
            f.logical_id,
            f.binary
        );
        assert_eq!(f.binary, format!("ctxgate-{name}"));
    }
    for (name, f) in &functions {
        assert!(
            crates().contains(name) || pending(name),
            "{} builds functions/{name}, which does not exist",
            f.logical_id
        );
    }
}

#[test]
fn router_table_and_api_routes_match_both_ways() {
    let t = Template::load();
    let functions = by_crate(&t);
    // (method, path) -> crate, from the template.
    let mut api: BTreeMap<(String, String), String> = BTreeMap::new();
    for (name, f) in &functions {
        for route in &f.routes {
            let previous = api.insert(route.clone(), name.clone());
            assert!(previous.is_none(), "{route:?} is routed twice");
        }
    }
    for &(method, path, function) in ctxgate::http::ROUTES {
        // The local server's own routes (`/metrics`: Lambda writes EMF instead).
        if function == "local" {
            continue;
        }
        let key = (method.to_owned(), path.to_owned());
        let Some(served_by) = api.get(&key) else {
            panic!("ROUTES has {method} {path} but the template has no such API route");
        };
        // `*` routes (health) are served by every function; one API route suffices.
        if function != "*" {
            assert_eq!(
                served_by, function,
                "{method} {path} goes to the wrong function"
            );
        }
    }
    for ((method, path), name) in &api {
        let listed = ctxgate::http::ROUTES
            .iter()
            .any(|&(m, p, f)| m == method && p == path && (f == name || f == "*"));
        assert!(
            listed || pending(name),
            "the template routes {method} {path} to {name}, which ROUTES does not list"
        );
    }
}

#[test]
fn no_stale_pending_entries() {
    for name in PENDING {
        if crates().contains(*name) {
            panic!("functions/{name} exists now: remove \"{name}\" from PENDING in this test");
        }
    }
}

#[test]
fn only_the_chat_function_s_routes_stream() {
    let t = Template::load();
    let streamed: Vec<_> = t.functions().into_iter().flat_map(|f| f.streamed).collect();
    assert_eq!(
        streamed,
        [
            ("POST".to_owned(), "/v1/chat/completions".to_owned()),
            ("POST".to_owned(), "/v1/messages".to_owned()),
            ("POST".to_owned(), "/v1/messages/count_tokens".to_owned()),
            ("POST".to_owned(), "/v1/responses".to_owned()),
            ("POST".to_owned(), "/v1/responses/input_tokens".to_owned()),
        ]
    );
}

fn names(f: &Function) -> BTreeSet<&str> {
    f.env.keys().map(String::as_str).collect()
}

#[test]
fn every_variable_the_gateway_reads_is_set_or_deliberately_absent() {
    let declared: BTreeSet<&str> = ctxgate::config::ENV_VARS.iter().copied().collect();
    let classified: BTreeSet<&str> = REQUIRED
        .iter()
        .copied()
        .chain(PROVIDER_FUNCTIONS_ONLY.iter().map(|(n, _)| *n))
        .chain(NOT_IN_LAMBDA.iter().map(|(n, _)| *n))
        .collect();
    assert_eq!(
        declared, classified,
        "classify every variable in ctxgate::config::ENV_VARS (and only those) in this test"
    );
    let t = Template::load();
    for f in t.functions() {
        let set = names(&f);
        for var in REQUIRED {
            assert!(set.contains(var), "{} lacks {var}", f.logical_id);
        }
        for (var, _) in NOT_IN_LAMBDA {
            assert!(!set.contains(var), "{} sets {var}", f.logical_id);
        }
        for var in &set {
            assert!(
                declared.contains(var) || READ_BY_LAMBDA_HTTP.contains(var),
                "{} sets {var}, which nothing reads",
                f.logical_id
            );
        }
        let calls_providers = f.routes.iter().any(|(_, p)| {
            [
                "/v1/chat/completions",
                "/v1/messages",
                "/v1/admin/ready",
                "/mcp",
            ]
            .contains(&p.as_str())
        });
        for (var, _) in PROVIDER_FUNCTIONS_ONLY {
            assert_eq!(
                set.contains(var),
                calls_providers,
                "{}: {var}",
                f.logical_id
            );
        }
    }
}

fn tag<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == name => Some(&t.value),
        _ => None,
    }
}

#[test]
fn functions_are_arm64_rust_builds_with_retained_logs() {
    let t = Template::load();
    let g = &t.doc["Globals"]["Function"];
    assert_eq!(g["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(g["Architectures"][0].as_str(), Some("arm64"));
    assert_eq!(g["Handler"].as_str(), Some("bootstrap"));
    for f in t.functions() {
        let r = &f.resource;
        assert_eq!(
            r["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{}",
            f.logical_id
        );
        for prop in ["Runtime", "Architectures", "Handler"] {
            assert!(
                r["Properties"][prop].is_null(),
                "{}: {prop} comes from Globals",
                f.logical_id
            );
        }
        let group = tag(&r["Properties"]["LoggingConfig"]["LogGroup"], "Ref")
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                panic!(
                    "{}: LoggingConfig.LogGroup must !Ref a log group",
                    f.logical_id
                )
            });
        let lg = &t.resources()[group];
        assert_eq!(lg["Type"].as_str(), Some("AWS::Logs::LogGroup"));
        assert!(
            !lg["Properties"]["RetentionInDays"].is_null(),
            "{group} has no retention"
        );
        // Memory and timeout are parameters that CloudFormation bounds.
        for prop in ["MemorySize", "Timeout"] {
            let param = tag(&r["Properties"][prop], "Ref")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: {prop} must be a parameter", f.logical_id));
            let p = &t.doc["Parameters"][param];
            assert!(
                !p["MinValue"].is_null() && !p["MaxValue"].is_null() && !p["Default"].is_null(),
                "{param} needs Default, MinValue and MaxValue"
            );
        }
    }
}

#[test]
fn every_parameter_is_constrained() {
    let t = Template::load();
    for (name, p) in t.doc["Parameters"].as_mapping().unwrap() {
        let constrained = !p["AllowedValues"].is_null()
            || !p["AllowedPattern"].is_null()
            || (!p["MinValue"].is_null() && !p["MaxValue"].is_null());
        assert!(constrained, "parameter {name:?} accepts anything");
        assert!(!p["Default"].is_null(), "parameter {name:?} has no default");
    }
}

/// A policy document's statements; a conditional one (`!If [cond, statement, !Ref
/// AWS::NoValue]`) counts as its statement.
fn statements(policy: &Value) -> Vec<&Value> {
    let list = policy["Statement"].as_sequence();
    let list = list.unwrap_or_else(|| panic!("a policy document, not {policy:?}"));
    list.iter()
        .map(|st| match conditional(st) {
            Some((_, st)) => st,
            None => st,
        })
        .collect()
}

/// `!If [cond, value, !Ref AWS::NoValue]` as `(cond, value)`.
fn conditional(v: &Value) -> Option<(&str, &Value)> {
    let args = tag(v, "If")?.as_sequence()?;
    assert_eq!(args.len(), 3, "!If takes 3: {v:?}");
    assert_eq!(
        tag(&args[2], "Ref").and_then(Value::as_str),
        Some("AWS::NoValue"),
        "a conditional statement is absent, not replaced, when its condition is false"
    );
    Some((args[0].as_str().expect("a condition name"), &args[1]))
}

/// The secrets holding MCP servers' header values (`[mcp] secret_prefix`).
const MCP_SECRETS: &str =
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:ctxgate/mcp/*";

/// Only the admin (keys) function writes MCP servers' header values; chat
/// only reads them; no other function touches them.
#[test]
fn mcp_secrets_are_written_by_the_admin_function_and_read_by_chat() {
    let t = Template::load();
    for f in t.functions() {
        let mut actions: Vec<String> = Vec::new();
        for st in f.resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(statements)
        {
            if tag(&st["Resource"], "Sub").and_then(Value::as_str) != Some(MCP_SECRETS) {
                continue;
            }
            match &st["Action"] {
                Value::String(a) => actions.push(a.clone()),
                Value::Sequence(s) => {
                    actions.extend(s.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => {}
            }
        }
        actions.sort();
        let expected: &[&str] = match crate_of(&f).as_str() {
            "keys" => &[
                "secretsmanager:CreateSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
            ],
            "chat" | "mcp" => &["secretsmanager:GetSecretValue"],
            _ => &[],
        };
        assert_eq!(actions, expected, "{}", f.logical_id);
    }
}

#[test]
fn iam_is_per_function_and_never_star_for_data() {
    let t = Template::load();
    let resources = t.resources();
    for f in t.functions() {
        let props = &f.resource["Properties"];
        // Inline SAM policies, or the policy documents of the function's own role.
        let documents: Vec<&Value> = match tag(&props["Role"], "GetAtt").and_then(Value::as_str) {
            Some(role) => {
                let role = role.strip_suffix(".Arn").expect("Role: !GetAtt <role>.Arn");
                let r = &resources[role];
                assert_eq!(r["Type"].as_str(), Some("AWS::IAM::Role"), "{role}");
                assert!(
                    r["Properties"]["ManagedPolicyArns"].is_null(),
                    "{role}: managed policies are not least privilege"
                );
                let policies = r["Properties"]["Policies"].as_sequence();
                let policies = policies.unwrap_or_else(|| panic!("{role} has no policy"));
                policies.iter().map(|p| &p["PolicyDocument"]).collect()
            }
            None => props["Policies"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{} has no inline policy", f.logical_id))
                .iter()
                .collect(),
        };
        for policy in documents {
            for st in statements(policy) {
                let actions: Vec<&str> = match &st["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Sequence(s) => s.iter().filter_map(Value::as_str).collect(),
                    other => panic!("{}: unexpected Action {other:?}", f.logical_id),
                };
                for a in &actions {
                    assert!(!a.contains('*'), "{}: wildcard action {a}", f.logical_id);
                }
                let resource = &st["Resource"];
                let data = actions
                    .iter()
                    .any(|a| a.starts_with("dynamodb:") || a.starts_with("secretsmanager:"));
                if data {
                    let table = matches!(
                        tag(resource, "GetAtt").and_then(Value::as_str),
                        Some("Table.Arn" | "Table.StreamArn")
                    );
                    let index_or_stream = matches!(
                        tag(resource, "Sub").and_then(Value::as_str),
                        Some("${Table.Arn}/index/by_updated" | "${Table.Arn}/stream/*")
                    );
                    let secret =
                        tag(resource, "Ref").and_then(Value::as_str) == Some("ProviderKeysSecret");
                    // MCP servers' header values: only the secrets under their prefix.
                    let mcp_secrets = tag(resource, "Sub").and_then(Value::as_str)
                        == Some(MCP_SECRETS)
                        && actions.iter().all(|a| a.starts_with("secretsmanager:"));
                    assert!(
                        table || index_or_stream || secret || mcp_secrets,
                        "{}: {actions:?} must name the table or the secret, not {resource:?}",
                        f.logical_id
                    );
                }
            }
        }
    }
}

/// Issue 20, point 6: the functions that call providers (chat, and the MCP endpoint's
/// `chat` tool) may invoke exactly the Bedrock models and inference profiles listed in
/// `BedrockModelArns`, and with it empty (the default) nothing: the statement exists
/// only under `HasBedrockModels`. No function gets any other Bedrock permission.
#[test]
fn bedrock_is_granted_on_exactly_the_parameter_s_arns() {
    let t = Template::load();
    let p = &t.doc["Parameters"]["BedrockModelArns"];
    assert_eq!(p["Type"].as_str(), Some("String"));
    assert_eq!(
        p["Default"].as_str(),
        Some(""),
        "no Bedrock access by default"
    );
    // The condition holds exactly when the list is not empty.
    let condition = &t.doc["Conditions"]["HasBedrockModels"];
    let defaults = defaults(&t);
    let holds = |arns: &'static str| {
        let params = with_defaults(&defaults, &BTreeMap::from([("BedrockModelArns", arns)]));
        eval_rule(condition, &params).as_bool().unwrap()
    };
    assert!(!holds(""));
    assert!(holds(
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"
    ));

    let mut granted = BTreeSet::new();
    for f in t.functions() {
        let policies = f.resource["Properties"]["Policies"].as_sequence();
        for policy in policies.into_iter().flatten() {
            for raw in policy["Statement"].as_sequence().into_iter().flatten() {
                let (cond, st) = conditional(raw).map_or((None, raw), |(c, s)| (Some(c), s));
                let actions: Vec<&str> = match &st["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Sequence(s) => s.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !actions.iter().any(|a| a.starts_with("bedrock:")) {
                    continue;
                }
                assert_eq!(
                    actions,
                    [
                        "bedrock:InvokeModel",
                        "bedrock:InvokeModelWithResponseStream"
                    ],
                    "{}",
                    f.logical_id
                );
                assert_eq!(cond, Some("HasBedrockModels"), "{}", f.logical_id);
                assert_ne!(st["Resource"].as_str(), Some("*"), "{}", f.logical_id);
                // `!Split [",", !Ref BedrockModelArns]`: the parameter's ARNs, nothing else.
                let split = tag(&st["Resource"], "Split").and_then(Value::as_sequence);
                let split = split.unwrap_or_else(|| panic!("{}: Resource", f.logical_id));
                assert_eq!(split[0].as_str(), Some(","));
                assert_eq!(
                    tag(&split[1], "Ref").and_then(Value::as_str),
                    Some("BedrockModelArns"),
                    "{}",
                    f.logical_id
                );
                granted.insert(crate_of(&f));
            }
        }
    }
    assert_eq!(
        granted,
        BTreeSet::from(["chat".to_owned(), "mcp".to_owned()])
    );
}

#[test]
fn table_matches_the_store() {
    let t = Template::load();
    let table = &t.resources()["Table"]["Properties"];
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    let keys: Vec<(&str, &str)> = table["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [("PK", "HASH"), ("SK", "RANGE")]);
    // The listing index, exactly as `ctxgate table create` makes it.
    let gsi = &table["GlobalSecondaryIndexes"][0];
    assert_eq!(
        gsi["IndexName"].as_str(),
        Some(ctxgate::store::dynamo::LISTING_INDEX)
    );
    let gsi_keys: Vec<&str> = gsi["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| k["AttributeName"].as_str().unwrap())
        .collect();
    assert_eq!(gsi_keys, ["GSI1PK", "GSI1SK"]);
    assert_eq!(
        gsi["Projection"]["ProjectionType"].as_str(),
        Some("INCLUDE")
    );
    let projected: Vec<&str> = gsi["Projection"]["NonKeyAttributes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(projected, ctxgate::store::dynamo::LISTING_ATTRIBUTES);
    // The sweeper reads removals' old images from the stream.
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some("OLD_IMAGE")
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(ctxgate::store::dynamo::TTL_ATTRIBUTE)
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        tag(&table["DeletionProtectionEnabled"], "Ref").and_then(Value::as_str),
        Some("TableDeletionProtection")
    );
    // The secret is created without any key in it.
    let secret = &t.resources()["ProviderKeysSecret"]["Properties"];
    assert_eq!(secret["SecretString"].as_str(), Some("{}"));
}

/// Evaluates a rule condition or assertion (`!Not`, `!Equals`, `!And`, `!Or`,
/// `!Ref` to a parameter) for given parameter values.
fn eval_rule(v: &Value, params: &BTreeMap<&str, &str>) -> Value {
    let Value::Tagged(t) = v else {
        return v.clone();
    };
    let args = |n: usize| -> Vec<Value> {
        let s = t.value.as_sequence().expect("a list of arguments");
        assert_eq!(s.len(), n, "!{} takes {n}", t.tag);
        s.iter().map(|a| eval_rule(a, params)).collect()
    };
    let name = t.tag.to_string();
    let name = name.trim_start_matches('!');
    match name {
        "Ref" => Value::String(
            params
                .get(t.value.as_str().unwrap())
                .unwrap_or_else(|| panic!("unknown parameter {:?}", t.value))
                .to_string(),
        ),
        "Not" => Value::Bool(!args(1)[0].as_bool().unwrap()),
        "Equals" => {
            let a = args(2);
            Value::Bool(a[0] == a[1])
        }
        "And" | "Or" => {
            let s = t.value.as_sequence().unwrap();
            let mut vals = s.iter().map(|a| eval_rule(a, params).as_bool().unwrap());
            Value::Bool(if name == "And" {
                vals.all(|v| v)
            } else {
                vals.any(|v| v)
            })
        }
        other => panic!("rule function {other} is not evaluated here"),
    }
}

/// Every parameter's default, overridden by `params`.
fn with_defaults<'a>(
    defaults: &'a BTreeMap<String, String>,
    params: &BTreeMap<&'a str, &'a str>,
) -> BTreeMap<&'a str, &'a str> {
    let mut all: BTreeMap<&str, &str> = defaults
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend(params.iter().map(|(k, v)| (*k, *v)));
    all
}

/// The template's parameter defaults.
fn defaults(t: &Template) -> BTreeMap<String, String> {
    t.doc["Parameters"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str())
        .filter_map(|k| Some((k.to_owned(), t.parameter_default(k)?)))
        .collect()
}

/// Whether CloudFormation would accept these parameter values (the others at
/// their defaults) under the template's rules.
fn rules_accept(t: &Template, params: &BTreeMap<&str, &str>) -> bool {
    let Some(rules) = t.doc["Rules"].as_mapping() else {
        return true;
    };
    let defaults = defaults(t);
    let params = &with_defaults(&defaults, params);
    rules.values().all(|rule| {
        let applies = match rule.get("RuleCondition") {
            Some(c) => eval_rule(c, params).as_bool().unwrap(),
            None => true,
        };
        !applies
            || rule["Assertions"]
                .as_sequence()
                .unwrap()
                .iter()
                .all(|a| eval_rule(&a["Assert"], params).as_bool().unwrap())
    })
}

// Issue 12, point 15: `JwtIssuer` without `JwtAudience` is refused at deploy
// time by a template rule, before any resource is created.
#[test]
fn a_jwt_issuer_without_an_audience_is_refused_at_deploy_time() {
    let t = Template::load();
    let with = |issuer: &'static str, audience: &'static str| {
        BTreeMap::from([("JwtIssuer", issuer), ("JwtAudience", audience)])
    };
    assert!(rules_accept(&t, &with("", "")), "JWT off");
    assert!(rules_accept(
        &t,
        &with("https://idp.example", "ctxgate-api")
    ));
    assert!(rules_accept(&t, &with("", "ctxgate-api")));
    assert!(
        !rules_accept(&t, &with("https://idp.example", "")),
        "an issuer with no audience must be refused"
    );
    // The rule speaks of parameters the template declares, with the defaults
    // that leave JWT off.
    assert_eq!(t.parameter_default("JwtIssuer").as_deref(), Some(""));
    assert_eq!(t.parameter_default("JwtAudience").as_deref(), Some(""));
}

// Issue 12, point 15: a purge that keeps failing is seen, not dropped: the
// sweeper's stream source has an on-failure destination, its role may write
// there, and an alarm watches it.
#[test]
fn sweeper_failures_land_in_a_queue_with_an_alarm() {
    let t = Template::load();
    let resources = t.resources();
    let sweeper = t
        .functions()
        .into_iter()
        .find(|f| f.binary == "ctxgate-sweeper")
        .expect("the sweeper function");
    let events = sweeper.resource["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    let stream = events
        .values()
        .find(|e| e["Type"].as_str() == Some("DynamoDB"))
        .expect("a DynamoDB stream event");
    let on_failure = &stream["Properties"]["DestinationConfig"]["OnFailure"];
    assert_eq!(on_failure["Type"].as_str(), Some("SQS"));
    let queue = tag(&on_failure["Destination"], "GetAtt")
        .and_then(Value::as_str)
        .and_then(|a| a.strip_suffix(".Arn"))
        .expect("Destination: !GetAtt <queue>.Arn");
    assert_eq!(
        resources[queue]["Type"].as_str(),
        Some("AWS::SQS::Queue"),
        "{queue}"
    );
    assert!(
        stream["Properties"]["MaximumRetryAttempts"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "bounded retries before the destination"
    );

    // The role (written out, so SAM adds nothing) may send there.
    let role = tag(&sweeper.resource["Properties"]["Role"], "GetAtt")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_suffix(".Arn"))
        .unwrap();
    let sends = resources[role]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap())
        .any(|st| {
            let actions = match &st["Action"] {
                Value::String(a) => vec![a.as_str()],
                Value::Sequence(s) => s.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            actions.contains(&"sqs:SendMessage")
                && tag(&st["Resource"], "GetAtt").and_then(Value::as_str)
                    == Some(&format!("{queue}.Arn"))
        });
    assert!(sends, "{role} cannot send to {queue}");

    // An alarm on the queue's depth, notifying the alarm topic.
    let alarmed = resources.values().any(|r| {
        let p = &r["Properties"];
        r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
            && p["Namespace"].as_str() == Some("AWS/SQS")
            && p["MetricName"].as_str() == Some("ApproximateNumberOfMessagesVisible")
            && p["Dimensions"].as_sequence().unwrap().iter().any(|d| {
                tag(&d["Value"], "GetAtt").and_then(Value::as_str)
                    == Some(&format!("{queue}.QueueName"))
            })
            && p["Threshold"].as_f64() == Some(0.0)
            && !p["AlarmActions"].is_null()
    });
    assert!(alarmed, "no alarm watches {queue}");
}

// Issue 19, point 5: Lambda Managed Instances are an opt-in. With the defaults
// the capacity provider's condition is false and nothing else changes; turned
// on, the template refuses to deploy without a network for the instances.
#[test]
fn managed_instances_are_an_opt_in_that_needs_a_network() {
    let t = Template::load();
    let defaults = defaults(&t);
    let condition = &t.doc["Conditions"]["UseManagedInstances"];
    let holds = |params: &BTreeMap<&str, &str>| {
        eval_rule(condition, &with_defaults(&defaults, params))
            .as_bool()
            .unwrap()
    };
    let on = BTreeMap::from([
        ("ManagedInstances", "true"),
        (
            "ManagedInstancesSubnetIds",
            "subnet-0a1,subnet-0b2,subnet-0c3",
        ),
        ("ManagedInstancesSecurityGroupIds", "sg-0123abcd"),
    ]);
    assert!(!holds(&BTreeMap::new()), "off by default");
    assert!(holds(&on));
    assert!(rules_accept(&t, &BTreeMap::new()));
    assert!(rules_accept(&t, &on));
    let no_network = BTreeMap::from([("ManagedInstances", "true")]);
    assert!(!rules_accept(&t, &no_network), "on without subnets");
    let mut no_groups = on.clone();
    no_groups.insert("ManagedInstancesSecurityGroupIds", "");
    assert!(!rules_accept(&t, &no_groups), "on without security groups");

    // What the option adds exists only under its condition ...
    let conditional: BTreeSet<&str> = t
        .resources()
        .iter()
        .filter(|(_, r)| r["Condition"].as_str() == Some("UseManagedInstances"))
        .filter_map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        conditional,
        BTreeSet::from([
            "ManagedInstancesCapacityProvider",
            "ManagedInstancesOperatorRole"
        ])
    );
    assert_eq!(
        t.resources()["ManagedInstancesCapacityProvider"]["Type"].as_str(),
        Some("AWS::Lambda::CapacityProvider")
    );
    assert_eq!(
        t.doc["Outputs"]["CapacityProviderArn"]["Condition"].as_str(),
        Some("UseManagedInstances")
    );
    // ... and no function names a capacity provider in this template (the
    // variant scripts/managed-instances-template.py writes does; the SAM
    // translator test checks it).
    assert!(t.doc["Globals"]["Function"]["CapacityProviderConfig"].is_null());
    for (name, r) in t.resources() {
        assert!(
            r["Properties"]["CapacityProviderConfig"].is_null(),
            "{name:?} joins a capacity provider by default"
        );
    }
}

// Issue 21, point 4: the dashboard and the alarms read ctxgate's own EMF
// metrics, by the names the code writes (`ctxgate::metrics::emf::METRICS`),
// under the stack's function names.
#[test]
fn the_dashboard_and_alarms_read_the_metrics_the_functions_write() {
    let t = Template::load();
    let written: BTreeSet<&str> = ctxgate::metrics::emf::METRICS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let resources = t.resources();
    let dashboard = resources
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Dashboard"))
        .expect("a CloudWatch dashboard");
    let body = tag(&dashboard["Properties"]["DashboardBody"], "Sub")
        .and_then(Value::as_str)
        .expect("a !Sub dashboard body");
    // What !Sub would leave: the stack's names in place of its references.
    let text = body
        .replace("${AWS::Region}", "eu-west-1")
        .replace("${AWS::StackName}", "stack")
        .replace("${ChatFunction}", "stack-ChatFunction-1")
        .replace("${!", "${");
    // Only dynamic labels are left.
    assert_eq!(text.matches("${").count(), text.matches("${PROP(").count());
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the dashboard body is JSON");
    let mut graphed = BTreeSet::new();
    let widgets = doc["widgets"].as_array().unwrap();
    for w in widgets {
        for m in w["properties"]["metrics"].as_array().into_iter().flatten() {
            let m = m.as_array().unwrap();
            if let Some(expr) = m[0]["expression"].as_str() {
                let name = expr.split("MetricName=\"").nth(1).unwrap();
                graphed.insert(name.split('"').next().unwrap().to_owned());
                assert!(expr.contains("{ctxgate,"), "{expr}");
                assert!(expr.contains("\"stack\""), "{expr}: not this stack's");
            } else {
                assert_eq!(m[0], "ctxgate");
                assert_eq!(
                    (&m[2], &m[3]),
                    (&json!("function"), &json!("stack-ChatFunction-1"))
                );
                graphed.insert(m[1].as_str().unwrap().to_owned());
            }
        }
    }
    for name in &graphed {
        assert!(
            written.contains(name.as_str()),
            "the dashboard graphs {name}, which no function writes"
        );
    }
    for wanted in [
        "Requests",
        "ErrorsClient",
        "ErrorsLimited",
        "ErrorsUpstream",
        "ErrorsInternal",
        "Latency",
        "TimeToFirstToken",
        "InputTokens",
        "OutputTokens",
        "CostMicroUSD",
        "ColdStarts",
    ] {
        assert!(graphed.contains(wanted), "the dashboard lacks {wanted}");
    }
    let stats: BTreeSet<&str> = widgets
        .iter()
        .flat_map(|w| w["properties"]["metrics"].as_array().into_iter().flatten())
        .filter_map(|m| m.as_array().unwrap().last().unwrap()["stat"].as_str())
        .collect();
    assert!(stats.contains("p50") && stats.contains("p99"), "{stats:?}");

    // The error-rate and throttle alarms: metric math over ctxgate metrics
    // the code writes, on this stack's functions, notifying the topic.
    let mut alarmed = BTreeSet::new();
    for r in resources.values() {
        let p = &r["Properties"];
        if r["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        for m in p["Metrics"].as_sequence().into_iter().flatten() {
            let metric = &m["MetricStat"]["Metric"];
            if metric["Namespace"].as_str() != Some("ctxgate") {
                continue;
            }
            let name = metric["MetricName"].as_str().unwrap();
            assert!(
                written.contains(name),
                "an alarm reads {name}, which no function writes"
            );
            let dim = &metric["Dimensions"][0];
            assert_eq!(dim["Name"].as_str(), Some("function"));
            assert!(
                tag(&dim["Value"], "Ref").is_some(),
                "{name}: not a function of the stack"
            );
            assert!(!p["AlarmActions"].is_null());
            alarmed.insert(name.to_owned());
        }
    }
    for wanted in [
        "ErrorsUpstream",
        "ErrorsInternal",
        "ErrorsLimited",
        "Requests",
    ] {
        assert!(alarmed.contains(wanted), "no alarm reads {wanted}");
    }
}
