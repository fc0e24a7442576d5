//! Issue 20: Amazon Bedrock end to end, through the gateway's front doors to the mock
//! Bedrock Runtime endpoint (tests/python/mock_bedrock.py), which speaks Converse and
//! ConverseStream in the real wire format and refuses any request not signed with SigV4
//! for the test credentials: every 200 here proves the request was signed, over the exact
//! bytes sent. Covered: a whole and a streamed turn on each door, a stored conversation
//! whose later turns carry a `cachePoint` and record cache tokens, the MCP tool loop over
//! Converse tools, the Bedrock API key (bearer) mode, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`,
//! a fallback from a throttled Bedrock model, each error's mapping (throttled, not ready,
//! denied, missing, invalid, a mid-stream exception, wrong credentials) with nothing
//! stored, and no client credential or AWS account id anywhere it must not be.
//! Stored conversations on both stores.

use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use ctxgate::store::Store;
use ctxgate_tests::bedrock::{ACCESS_KEY, ACCOUNT_ID, API_KEY, MockBedrock, SECRET_KEY};
use ctxgate_tests::mcp_server::{McpFixture, Revision};
use ctxgate_tests::{
    Gateway, LogCapture, MockUpstream, Reply, dynamo_store, embedded_store, openai_completion,
};
use serde_json::{Value, json};

const TENANT: &str = "acme";
/// A Claude model id as Bedrock names it: its `:` is percent-encoded in the path.
const MODEL: &str = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0";
const MODEL_PATH: &str = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0";

/// Every log line of this test binary (the subscriber is process-global), at debug.
fn logs() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = LogCapture::default();
        let sink = capture.clone();
        ctxgate::telemetry::init_with("debug", move || sink.clone());
        capture
    })
}

/// The `[providers.bedrock]` entry for `mock`, and fast retries.
fn bedrock_toml(mock: &MockBedrock, extra: &str) -> String {
    format!(
        "[retry]\nbase_delay_ms = 1\nmax_delay_ms = 2\n{extra}\n\
         [providers.bedrock]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{}\"\n",
        mock.url()
    )
}

/// Has the gateway's Bedrock providers sign as `key_id` / `secret` (the AWS default chain
/// would read this process's environment, which holds the DynamoDB emulator's).
fn sign_as(gw: &Gateway, key_id: &str, secret: &str) {
    gw.state
        .providers
        .aws_credentials()
        .set_source(SharedCredentialsProvider::new(Credentials::new(
            key_id, secret, None, None, "tests",
        )));
}

/// A gateway whose `bedrock` provider calls `mock`, signing with the test credentials.
fn gateway(store: Arc<dyn Store>, mock: &MockBedrock, extra: &str) -> Gateway {
    logs();
    let gw = Gateway::with_toml(store, &bedrock_toml(mock, extra), &[]);
    sign_as(&gw, ACCESS_KEY, SECRET_KEY);
    gw
}

/// A POST through one of the doors with the client's key as that door takes it.
async fn post(
    gw: &Gateway,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, String) {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    let auth = format!("Bearer {key}");
    if path == "/v1/messages" {
        all.extend([("x-api-key", key), ("anthropic-version", "2023-06-01")]);
    } else {
        all.push(("authorization", &auth));
    }
    let (status, _, text) = gw
        .call_raw_text("POST", path, None, &all, body.to_string().into_bytes())
        .await;
    (status, text)
}

/// The `data:` payloads of an SSE body that are JSON.
fn data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// The answer's text, whole or streamed, in each door's format.
fn answer_text(path: &str, stream: bool, text: &str) -> String {
    if !stream {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("JSON: {text}"));
        let texts: Vec<&str> = match path {
            "/v1/chat/completions" => {
                vec![v["choices"][0]["message"]["content"].as_str().unwrap_or("")]
            }
            "/v1/messages" => v["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["text"].as_str())
                .collect(),
            _ => v["output"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|item| item["content"].as_array().into_iter().flatten())
                .filter_map(|c| c["text"].as_str())
                .collect(),
        };
        return texts.concat();
    }
    data(text)
        .iter()
        .filter_map(|v| match path {
            "/v1/chat/completions" => v["choices"][0]["delta"]["content"].as_str(),
            "/v1/messages" => (v["type"] == "content_block_delta")
                .then(|| v["delta"]["text"].as_str())
                .flatten(),
            _ => (v["type"] == "response.output_text.delta")
                .then(|| v["delta"].as_str())
                .flatten(),
        })
        .collect()
}

/// A one-user-message request for `path`.
fn request(path: &str, model: &str, text: &str, stream: bool) -> Value {
    match path {
        "/v1/responses" => json!({"model": model, "input": text, "stream": stream}),
        "/v1/messages" => json!({"model": model, "max_tokens": 200, "stream": stream,
            "messages": [{"role": "user", "content": text}]}),
        _ => json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": text}]}),
    }
}

/// What the mock received must carry a SigV4 signature for the test key and nothing of
/// the client's credential.
fn assert_signed_and_clean(seen: &[Value], client_key: &str) {
    assert!(!seen.is_empty());
    for r in seen {
        assert_eq!(r["auth"], "sigv4", "{r}");
        let auth = r["headers"]["authorization"].as_str().unwrap();
        assert!(
            auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        let headers = r["headers"].to_string();
        assert!(
            !headers.contains(client_key),
            "the client's key went upstream: {headers}"
        );
        assert!(r["headers"].get("x-api-key").is_none(), "{headers}");
    }
}

async fn conversation(gw: &Gateway, key: &str, id: &str) -> (u16, Value) {
    let (status, _, v) = gw
        .call("GET", &format!("/v1/conversations/{id}"), Some(key), None)
        .await;
    (status, v)
}

// ---------------------------------------------------------------- the doors

async fn every_door_whole_and_streamed(store: Arc<dyn Store>) {
    let mock = MockBedrock::start().await;
    let gw = gateway(store, &mock, "");
    let key = gw.key(TENANT, &["chat", "conversations:read"]).await;
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"] {
        for stream in [false, true] {
            mock.clear().await;
            let said = format!("hello through {path} {stream}");
            let (status, text) =
                post(&gw, path, &key, &[], request(path, MODEL, &said, stream)).await;
            assert_eq!(status, 200, "{path} {stream}: {text}");
            assert_eq!(
                answer_text(path, stream, &text),
                format!("bedrock echo: {said}"),
                "{path} {stream}: {text}"
            );
            let seen = mock.requests().await;
            assert_eq!(seen.len(), 1, "{seen:?}");
            let op = if stream {
                "converse-stream"
            } else {
                "converse"
            };
            assert_eq!(seen[0]["path"], format!("{MODEL_PATH}/{op}"));
            assert_signed_and_clean(&seen, &key);
            let body = &seen[0]["body"];
            assert_eq!(body["messages"][0]["role"], "user", "{body}");
            assert_eq!(
                body["messages"][0]["content"][0]["text"],
                said.as_str(),
                "{body}"
            );
        }
    }

    // A stored conversation through the chat door: both turns stored, the second sent
    // with the first as history.
    for (i, stream) in [false, true].into_iter().enumerate() {
        let body = json!({"model": MODEL, "conversation_id": "c-doors", "stream": stream,
            "messages": [{"role": "user", "content": format!("turn {i}")}]});
        let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], body).await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, conv) = conversation(&gw, &key, "c-doors").await;
    assert_eq!(status, 200, "{conv}");
    let messages = conv["messages"]["data"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{conv}");
    let last = mock.requests().await.pop().unwrap();
    let sent: Vec<&str> = last["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"][0]["text"].as_str())
        .collect();
    assert_eq!(sent, ["turn 0", "bedrock echo: turn 0", "turn 1"]);
}

#[tokio::test]
async fn every_door_whole_and_streamed_embedded() {
    let (store, _dir) = embedded_store();
    every_door_whole_and_streamed(store).await;
}

#[tokio::test]
async fn every_door_whole_and_streamed_dynamodb() {
    every_door_whole_and_streamed(dynamo_store().await).await;
}

#[tokio::test]
async fn the_translation_carries_parameters_stop_sequences_and_max_tokens() {
    let (store, _dir) = embedded_store();
    let mock = MockBedrock::start().await;
    let gw = gateway(store, &mock, "");
    let key = gw.key(TENANT, &["chat"]).await;
    let body = json!({"model": MODEL, "temperature": 0.25, "top_p": 0.5, "max_tokens": 2,
        "stop": ["###"], "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "a question long enough to be cut"}]});
    let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    let sent = &mock.requests().await[0]["body"];
    assert_eq!(sent["system"], json!([{"text": "be brief"}]), "{sent}");
    let config = &sent["inferenceConfig"];
    assert_eq!(config["maxTokens"], 2, "{sent}");
    assert_eq!(config["temperature"], 0.25, "{sent}");
    assert_eq!(config["topP"], 0.5, "{sent}");
    assert_eq!(config["stopSequences"], json!(["###"]), "{sent}");
}

// ---------------------------------------------------------------- prompt caching

async fn stored_turns_carry_a_cache_point_and_record_cache_tokens(store: Arc<dyn Store>) {
    let mock = MockBedrock::start().await;
    let gw = gateway(store, &mock, "");
    let key = gw.key(TENANT, &["chat", "usage:read"]).await;
    // Instructions and a first question long enough for Claude's 1024-token minimum.
    let system = "You answer questions about the long document below. ".repeat(120);
    let first = "Here is the document: ".to_owned() + &"lorem ipsum dolor sit amet ".repeat(200);
    let mut reported = Vec::new();
    for (i, text) in [first.as_str(), "second question", "third question"]
        .into_iter()
        .enumerate()
    {
        let mut body = json!({"model": MODEL, "conversation_id": "c-cache", "stream": i == 2,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]});
        if i == 2 {
            body["stream_options"] = json!({"include_usage": true});
        }
        let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], body).await;
        assert_eq!(status, 200, "{text}");
        let usage = if i == 2 {
            data(&text)
                .into_iter()
                .rfind(|v| !v["usage"].is_null())
                .unwrap()["usage"]
                .clone()
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
        };
        reported.push(usage);
    }
    let seen = mock.requests().await;
    assert_eq!(seen.len(), 3);
    let points = |r: &Value| r["body"].to_string().matches("cachePoint").count();
    // The second turn's request carries a cache point on its stored prefix (the
    // history), and so does the third.
    assert!(points(&seen[1]) > 0, "{}", seen[1]["body"]);
    assert!(points(&seen[2]) > 0, "{}", seen[2]["body"]);
    // The third turn reads what the second wrote (the mock's cache looks back from
    // its cache point, as Bedrock's does).
    let cached = |u: &Value| {
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(cached(&reported[2]) > 0, "{reported:?}");
    // The usage row records reads and writes.
    let (status, _, usage) = gw.call("GET", "/v1/usage", Some(&key), None).await;
    assert_eq!(status, 200, "{usage}");
    let row = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == MODEL)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {MODEL}: {usage}"));
    assert_eq!(row["requests"], 3, "{row}");
    let total_cached: u64 = reported.iter().map(cached).sum();
    assert_eq!(row["cached_tokens"], total_cached, "{row} {reported:?}");
    assert!(row["cache_write_tokens"].as_u64().unwrap() > 0, "{row}");
    assert!(row["cost_micro_usd"].as_u64().unwrap() > 0, "priced: {row}");
}

#[tokio::test]
async fn stored_turns_carry_a_cache_point_and_record_cache_tokens_embedded() {
    let (store, _dir) = embedded_store();
    stored_turns_carry_a_cache_point_and_record_cache_tokens(store).await;
}

#[tokio::test]
async fn stored_turns_carry_a_cache_point_and_record_cache_tokens_dynamodb() {
    stored_turns_carry_a_cache_point_and_record_cache_tokens(dynamo_store().await).await;
}

// ---------------------------------------------------------------- the MCP tool loop

async fn the_tool_loop_runs_over_converse_tools(store: Arc<dyn Store>) {
    let mcp = McpFixture::start(Revision::Current).await;
    let mock = MockBedrock::start().await;
    let extra = format!(
        "[mcp]\nallowed_hosts = [\"127.0.0.1\"]\n\
         [tenants.{TENANT}.mcp_servers.crm]\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer good-token\" }}\n",
        mcp.url()
    );
    let gw = gateway(store, &mock, &extra);
    let key = gw.key(TENANT, &["chat", "conversations:read"]).await;
    for stream in [false, true] {
        mock.clear().await;
        let conv = format!("c-tools-{stream}");
        let body = json!({"model": MODEL, "mcp_servers": ["crm"], "stream": stream,
            "conversation_id": conv, "messages": [{"role": "user", "content": "who is customer 42?"}]});
        let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], body).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            answer_text("/v1/chat/completions", stream, &text),
            "the tool said: customer 42: Ada Lovelace, [EMAIL]",
            "{text}"
        );
        let seen = mock.requests().await;
        assert_eq!(seen.len(), 2, "a toolUse, then the answer: {seen:?}");
        assert_signed_and_clean(&seen, &key);
        let tools = &seen[0]["body"]["toolConfig"]["tools"];
        assert_eq!(tools[0]["toolSpec"]["name"], "crm__get_customer", "{tools}");
        assert!(
            tools[0]["toolSpec"]["inputSchema"]["json"].is_object(),
            "{tools}"
        );
        // The second call gives the model its toolUse back and the result after it.
        let msgs = seen[1]["body"]["messages"].as_array().unwrap();
        let asked = msgs[msgs.len() - 2]["content"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|b| b.get("toolUse"))
            .unwrap_or_else(|| panic!("{msgs:?}"));
        assert_eq!(asked["input"], json!({"id": "42"}));
        let result = msgs.last().unwrap()["content"][0]["toolResult"].clone();
        assert_eq!(result["toolUseId"], asked["toolUseId"], "{result}");
        assert!(
            result["content"]
                .to_string()
                .contains("customer 42: Ada Lovelace"),
            "{result}"
        );
        assert_eq!(mcp.calls().last().map(String::as_str), Some("get_customer"));
        let (status, conv) = conversation(&gw, &key, &conv).await;
        assert_eq!(status, 200, "{conv}");
    }
}

#[tokio::test]
async fn the_tool_loop_runs_over_converse_tools_embedded() {
    let (store, _dir) = embedded_store();
    the_tool_loop_runs_over_converse_tools(store).await;
}

#[tokio::test]
async fn the_tool_loop_runs_over_converse_tools_dynamodb() {
    the_tool_loop_runs_over_converse_tools(dynamo_store().await).await;
}

// ---------------------------------------------------------------- credentials and endpoints

#[tokio::test]
async fn a_bedrock_api_key_is_sent_as_a_bearer_instead_of_signing() {
    logs();
    let (store, _dir) = embedded_store();
    let mock = MockBedrock::with_api_key().await;
    let toml = bedrock_toml(&mock, "") + "api_key_env = \"AWS_BEARER_TOKEN_BEDROCK\"\n";
    let gw = Gateway::with_toml(store, &toml, &[("AWS_BEARER_TOKEN_BEDROCK", API_KEY)]);
    let key = gw.key(TENANT, &["chat"]).await;
    for stream in [false, true] {
        let body = request("/v1/chat/completions", MODEL, "keyed", stream);
        let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], body).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            answer_text("/v1/chat/completions", stream, &text),
            "bedrock echo: keyed"
        );
    }
    for r in mock.requests().await {
        assert_eq!(r["auth"], "bearer", "{r}");
        assert_eq!(r["headers"]["authorization"], format!("Bearer {API_KEY}"));
        assert!(
            r["headers"].get("x-amz-date").is_none(),
            "not signed too: {r}"
        );
    }
}

#[tokio::test]
async fn aws_endpoint_url_bedrock_runtime_is_honoured_without_a_base_url() {
    logs();
    let (store, _dir) = embedded_store();
    let mock = MockBedrock::start().await;
    // The service's own variable wins over the general one (here a closed port).
    let gw = Gateway::with_toml(
        store,
        "[retry]\nattempts = 1\n[providers.bedrock]\nkind = \"bedrock\"\nregion = \"us-east-1\"\n",
        &[
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", mock.url()),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    );
    sign_as(&gw, ACCESS_KEY, SECRET_KEY);
    let key = gw.key(TENANT, &["chat"]).await;
    let (status, _, answer) = gw.chat(&key, MODEL, None, "via the variable").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "bedrock echo: via the variable"
    );
    assert_eq!(mock.requests().await.len(), 1);
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error_not_aws_s_message() {
    let (store, _dir) = embedded_store();
    let mock = MockBedrock::start().await;
    let gw = gateway(store, &mock, "");
    let key = gw.key(TENANT, &["chat", "conversations:read"]).await;
    for (id, secret) in [
        (ACCESS_KEY, "not-the-secret"),
        ("AKIDSOMEONEELSE", SECRET_KEY),
    ] {
        sign_as(&gw, id, secret);
        for stream in [false, true] {
            let body = json!({"model": MODEL, "stream": stream, "conversation_id": "c-creds",
                "messages": [{"role": "user", "content": "hi"}]});
            let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], body).await;
            assert!(
                (400..600).contains(&status) && status != 500,
                "{status} {text}"
            );
            for raw in [
                "signature we calculated",
                "security token included",
                "Exception",
            ] {
                assert!(!text.contains(raw), "AWS's own message: {text}");
            }
            assert!(text.contains("auth"), "says authentication failed: {text}");
        }
    }
    let (status, _) = conversation(&gw, &key, "c-creds").await;
    assert_eq!(status, 404, "nothing stored");
    // Every attempt reached the mock and was refused there (none was retried as if
    // the service were down).
    let seen = mock.requests().await;
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|r| r["auth"] == "refused"));
}

// ---------------------------------------------------------------- fallbacks and errors

#[tokio::test]
async fn a_throttled_bedrock_model_falls_back_to_another_provider() {
    let (store, _dir) = embedded_store();
    let mock = MockBedrock::start().await;
    let openai =
        MockUpstream::start(|_| Reply::json(openai_completion("from openai", 10, 2))).await;
    let extra = "[aliases]\nsmart = [\"bedrock/mock.throttled-v1\", \"openai/gpt-4o-mini\"]\n";
    logs();
    let base = format!("{}/v1", openai.url);
    let gw = Gateway::with_toml(
        store,
        &bedrock_toml(&mock, extra),
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-openai")],
    );
    sign_as(&gw, ACCESS_KEY, SECRET_KEY);
    let key = gw.key(TENANT, &["chat"]).await;
    let (status, _, answer) = gw.chat(&key, "smart", Some("c-fallback"), "hi").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "saw: from openai"
    );
    // Throttling is retried (3 attempts by default) before the fallback.
    let seen = mock.requests().await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(openai.received().len(), 1);
}

/// How a failing Bedrock model must answer.
struct Failure {
    model: &'static str,
    /// Allowed statuses.
    statuses: &'static [u16],
    /// Requests the mock sees for one turn (retries included).
    attempts: usize,
    /// Text the error must contain (the model's name, the field).
    names: &'static [&'static str],
}

const FAILURES: &[Failure] = &[
    Failure {
        model: "mock.throttled-v1",
        statuses: &[429],
        attempts: 3,
        names: &[],
    },
    Failure {
        model: "mock.not-ready-v1",
        statuses: &[429, 503],
        attempts: 3,
        names: &[],
    },
    Failure {
        model: "mock.denied-v1",
        statuses: &[403, 502],
        attempts: 1,
        names: &["mock.denied-v1", "access"],
    },
    Failure {
        model: "mock.missing-v1",
        statuses: &[400, 404],
        attempts: 1,
        names: &["mock.missing-v1"],
    },
    Failure {
        model: "mock.invalid-v1",
        statuses: &[400],
        attempts: 1,
        names: &["topP"],
    },
];

async fn failures_map_clearly_and_store_nothing(store: Arc<dyn Store>) {
    let mock = MockBedrock::start().await;
    let gw = gateway(store, &mock, "");
    let key = gw.key(TENANT, &["chat", "conversations:read"]).await;
    for f in FAILURES {
        let model = format!("bedrock/{}", f.model);
        // A conversation with one good turn, which the failing turn must leave as it is.
        let conv = format!("c-{}", f.model);
        let good = json!({"model": MODEL, "conversation_id": conv,
            "messages": [{"role": "user", "content": "a good turn"}]});
        let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], good).await;
        assert_eq!(status, 200, "{text}");
        let (_, before) = conversation(&gw, &key, &conv).await;
        for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"] {
            for stream in [false, true] {
                mock.clear().await;
                let mut body = request(path, &model, "doomed", stream);
                let mut headers = Vec::new();
                match path {
                    "/v1/chat/completions" => body["conversation_id"] = json!(conv),
                    "/v1/messages" => headers.push(("x-conversation-id", conv.as_str())),
                    _ => body["store"] = json!(false),
                }
                let (status, text) = post(&gw, path, &key, &headers, body).await;
                let what = format!("{} {path} stream={stream}: {status} {text}", f.model);
                assert!(f.statuses.contains(&status), "{what}");
                for name in f.names {
                    assert!(text.contains(name), "must name {name}: {what}");
                }
                assert!(!text.contains(ACCOUNT_ID), "the account id leaked: {what}");
                assert!(!text.contains("arn:aws"), "an ARN leaked: {what}");
                assert_eq!(mock.requests().await.len(), f.attempts, "{what}");
            }
        }
        let (_, after) = conversation(&gw, &key, &conv).await;
        assert_eq!(before, after, "{}: the conversation changed", f.model);
    }
    assert!(
        !logs().text().contains(ACCOUNT_ID),
        "the account id reached the logs"
    );
}

#[tokio::test]
async fn failures_map_clearly_and_store_nothing_embedded() {
    let (store, _dir) = embedded_store();
    failures_map_clearly_and_store_nothing(store).await;
}

#[tokio::test]
async fn failures_map_clearly_and_store_nothing_dynamodb() {
    failures_map_clearly_and_store_nothing(dynamo_store().await).await;
}

async fn a_mid_stream_exception_ends_the_stream_with_an_error(store: Arc<dyn Store>) {
    let mock = MockBedrock::start().await;
    let gw = gateway(store, &mock, "");
    let key = gw.key(TENANT, &["chat", "conversations:read"]).await;
    let model = "bedrock/mock.stream-error-v1";
    // Chat: the last event is an error, no [DONE], nothing stored.
    let body = json!({"model": model, "stream": true, "conversation_id": "c-cut",
        "messages": [{"role": "user", "content": "doomed"}]});
    let (status, text) = post(&gw, "/v1/chat/completions", &key, &[], body).await;
    assert_eq!(status, 200, "{text}");
    let events = data(&text);
    assert!(events.last().unwrap()["error"].is_object(), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(
        conversation(&gw, &key, "c-cut").await.0,
        404,
        "nothing stored"
    );
    // Messages: an `error` event, no message_stop.
    let body = json!({"model": model, "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "doomed"}]});
    let (status, text) = post(
        &gw,
        "/v1/messages",
        &key,
        &[("x-conversation-id", "c-cut2")],
        body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(data(&text).last().unwrap()["type"], "error", "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    assert_eq!(
        conversation(&gw, &key, "c-cut2").await.0,
        404,
        "nothing stored"
    );
    // Responses: the stream ends failed (or with an error event).
    let body = json!({"model": model, "stream": true, "input": "doomed"});
    let (status, text) = post(&gw, "/v1/responses", &key, &[], body).await;
    assert_eq!(status, 200, "{text}");
    let last = data(&text).pop().unwrap();
    assert!(
        last["type"] == "response.failed" || last["type"] == "error",
        "{text}"
    );
    assert!(!text.contains("response.completed"), "{text}");
    // Nor is that response stored.
    let id = data(&text)
        .iter()
        .find_map(|v| v["response"]["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("a response id: {text}"));
    let (status, _, body) = gw
        .call("GET", &format!("/v1/responses/{id}"), Some(&key), None)
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_mid_stream_exception_ends_the_stream_with_an_error_embedded() {
    let (store, _dir) = embedded_store();
    a_mid_stream_exception_ends_the_stream_with_an_error(store).await;
}

#[tokio::test]
async fn a_mid_stream_exception_ends_the_stream_with_an_error_dynamodb() {
    a_mid_stream_exception_ends_the_stream_with_an_error(dynamo_store().await).await;
}
