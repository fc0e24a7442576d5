//! Issue 13, point 4: items written before the model (format 1, OpenAI Chat
//! messages and usage, no `v`) still read, show and continue on both stores.
//! The fixtures in `tests/fixtures/legacy/` were written and recorded by the
//! code before issue 13 (see their README).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use ctxgate::model::{
    Block, Document, FinishReason, Image, MediaSource, Message, Role, ToolCall, ToolResult,
    ToolResultPart, Usage,
};
use ctxgate::store::embedded::EmbeddedStore;
use ctxgate::store::{
    IdempotencyClaim, IdempotencyRequest, Store, StoredMessage, Summary, TurnInfo, WindowLimit,
};
use ctxgate_tests::{Gateway, MockUpstream, Reply, dynamo_table};
use serde_json::{Value, json};

/// Recorded upstream bodies have no prompt-cache fields.
const NO_PROMPT_CACHE: &str = "[prompt_cache]\nenabled = false\n";

const TENANT: &str = "legacy";
const CONV: &str = "paris-1";
/// When the fixtures were written (turns at T0, T0+10, T0+20; title at T0+30).
const T0: i64 = 1_795_000_000;
const MODEL: &str = "openai/gpt-4o-mini";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/legacy")
        .join(name)
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

/// A DynamoDB attribute value from its JSON form (`{"S": "..."}`).
fn attribute(v: &Value) -> AttributeValue {
    let (kind, v) = v.as_object().unwrap().iter().next().unwrap();
    let strings = || -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    match kind.as_str() {
        "S" => AttributeValue::S(v.as_str().unwrap().to_owned()),
        "N" => AttributeValue::N(v.as_str().unwrap().to_owned()),
        "B" => AttributeValue::B(Blob::new(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )),
        "BOOL" => AttributeValue::Bool(v.as_bool().unwrap()),
        "NULL" => AttributeValue::Null(v.as_bool().unwrap()),
        "M" => AttributeValue::M(item(v)),
        "L" => AttributeValue::L(v.as_array().unwrap().iter().map(attribute).collect()),
        "SS" => AttributeValue::Ss(strings()),
        "NS" => AttributeValue::Ns(strings()),
        other => panic!("unknown attribute type {other}"),
    }
}

fn item(v: &Value) -> HashMap<String, AttributeValue> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), attribute(v)))
        .collect()
}

/// Where the legacy conversation is stored, and how to read raw records.
enum Legacy {
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
    Embedded {
        store: Arc<EmbeddedStore>,
        _dir: tempfile::TempDir,
    },
}

impl Legacy {
    /// The raw JSON document of message `seq` of conversation `conv`.
    async fn raw_message(&self, conv: &str, seq: u64) -> Value {
        let bytes = match self {
            Legacy::Dynamo { client, table } => {
                // The first item says how many parts follow (`M#{seq}#p{n}`).
                let mut doc = String::new();
                let mut parts = 1;
                let mut i = 0;
                while i < parts {
                    let sk = match i {
                        0 => format!("M#{seq:012}"),
                        i => format!("M#{seq:012}#p{i:03}"),
                    };
                    let got = client
                        .get_item()
                        .table_name(table)
                        .key("PK", AttributeValue::S(format!("T#{TENANT}#C#{conv}")))
                        .key("SK", AttributeValue::S(sk))
                        .send()
                        .await
                        .unwrap();
                    let item = got.item().expect("the message item");
                    if let Some(n) = item.get("parts") {
                        parts = n.as_n().unwrap().parse().unwrap();
                    }
                    doc.push_str(item["doc"].as_s().unwrap());
                    i += 1;
                }
                doc.into_bytes()
            }
            Legacy::Embedded { store, .. } => store
                .raw_message(TENANT, conv, seq)
                .await
                .unwrap()
                .expect("the record"),
        };
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// The DynamoDB fixture's items, put raw into a fresh table.
async fn legacy_dynamo() -> (Arc<dyn Store>, Legacy) {
    let (store, client, table) = dynamo_table().await;
    for it in fixture_json("dynamodb-v1.json").as_array().unwrap() {
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item(it)))
            .send()
            .await
            .unwrap();
    }
    (store, Legacy::Dynamo { client, table })
}

/// The embedded fixture, copied into a temporary directory and opened.
fn legacy_embedded() -> (Arc<dyn Store>, Legacy) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("embedded-v1.redb"), dir.path().join("ctxgate.redb")).unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    (store.clone(), Legacy::Embedded { store, _dir: dir })
}

/// Both stores, each holding the legacy conversation.
async fn both() -> Vec<(&'static str, Arc<dyn Store>, Legacy)> {
    let (d, dl) = legacy_dynamo().await;
    let (e, el) = legacy_embedded();
    vec![("dynamodb", d, dl), ("embedded", e, el)]
}

/// The long message the fixtures split into parts on DynamoDB.
fn long_text() -> String {
    let mut s = String::from("LONG-START ");
    while s.len() < 360_000 {
        s.push_str("the quick brown fox jumps over the lazy dog. ");
    }
    s.push_str("LONG-END");
    s
}

/// Long strings shortened as the fixture generator shortened them.
fn shorten(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > 1000 => {
            *s = format!("<{} bytes: {}...{}>", s.len(), &s[..20], &s[s.len() - 20..]);
        }
        Value::Array(a) => a.iter_mut().for_each(shorten),
        Value::Object(o) => o.values_mut().for_each(shorten),
        _ => {}
    }
}

/// Issue 18 added OpenAI's `created_at` to every conversation view, always
/// equal to `created`: checked, then taken out so the recorded views still
/// compare whole.
fn without_created_at(v: &mut Value) {
    if let Some(o) = v.as_object_mut()
        && o.get("object") == Some(&json!("conversation"))
    {
        let at = o.remove("created_at");
        assert_eq!(at.as_ref(), o.get("created"), "created_at is created");
    }
    if let Some(data) = v.get_mut("data").and_then(Value::as_array_mut) {
        data.iter_mut().for_each(without_created_at);
    }
}

fn stored(seq: u64, message: Message, tokens: u64, created: i64) -> StoredMessage {
    StoredMessage {
        tokens: Some(tokens),
        ..StoredMessage::new(seq, message, created)
    }
}

fn answer(
    seq: u64,
    message: Message,
    tokens: u64,
    created: i64,
    finish: FinishReason,
    usage: Usage,
    redactions: BTreeMap<String, BTreeMap<String, u32>>,
) -> StoredMessage {
    StoredMessage {
        model: Some(MODEL.into()),
        turn: Some(TurnInfo {
            provider: "openai".into(),
            finish_reason: Some(finish),
            usage,
            latency_ms: 250 + (created - T0) as u64,
            redactions,
        }),
        ..stored(seq, message, tokens, created)
    }
}

fn call(id: &str, name: &str, arguments: &str) -> Block {
    Block::ToolCall(ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
        cache: None,
    })
}

fn result(call_id: &str, text: &str) -> Message {
    Message {
        role: Role::Tool,
        content: vec![Block::ToolResult(ToolResult {
            call_id: call_id.into(),
            content: vec![ToolResultPart::Text {
                text: text.into(),
                cache: None,
            }],
            is_error: false,
            cache: None,
        })],
        name: None,
    }
}

/// The legacy conversation's messages as the model, written out.
fn expected_messages() -> Vec<StoredMessage> {
    let user = Message {
        role: Role::User,
        content: vec![
            Block::text("What is in this picture, and what's the weather there?"),
            Block::Image(Image {
                source: MediaSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==".into(),
                },
                detail: Some("low".into()),
                cache: None,
            }),
        ],
        name: None,
    };
    let calls = Message {
        role: Role::Assistant,
        content: vec![
            Block::text("The Eiffel Tower, so Paris. Let me check."),
            call("call_weather", "get_weather", r#"{"city":"Paris"}"#),
            call("call_time", "get_time", r#"{"tz":"Europe/Paris"}"#),
        ],
        name: None,
    };
    let redactions = BTreeMap::from([
        (
            "stored".to_owned(),
            BTreeMap::from([("email".to_owned(), 1)]),
        ),
        (
            "upstream".to_owned(),
            BTreeMap::from([("email".to_owned(), 1), ("phone".to_owned(), 2)]),
        ),
    ]);
    vec![
        stored(0, user, 779, T0),
        answer(
            1,
            calls,
            30,
            T0,
            FinishReason::ToolCalls,
            Usage {
                input: 120,
                output: 30,
                cache_read: 100,
                cache_write: 0,
                cache_write_1h: 0,
                reasoning: 12,
            },
            redactions,
        ),
        stored(2, result("call_weather", "18C and sunny"), 4, T0 + 10),
        stored(3, result("call_time", "14:05"), 3, T0 + 10),
        answer(
            4,
            Message::text(
                Role::Assistant,
                "It is the Eiffel Tower; in Paris it is 18C and sunny at 14:05.",
            ),
            20,
            T0 + 10,
            FinishReason::Stop,
            Usage {
                input: 160,
                output: 20,
                cache_read: 128,
                cache_write: 0,
                cache_write_1h: 0,
                reasoning: 0,
            },
            BTreeMap::new(),
        ),
        stored(5, Message::text(Role::User, long_text()), 80_006, T0 + 20),
        answer(
            6,
            Message::text(Role::Assistant, "Noted."),
            2,
            T0 + 20,
            FinishReason::Length,
            Usage::new(90_000, 2),
            BTreeMap::new(),
        ),
    ]
}

fn expected_system() -> Vec<Message> {
    vec![
        Message::text(Role::System, "You are a terse travel assistant."),
        Message::text(Role::Developer, "Answer in English; use tools for facts."),
    ]
}

fn expected_summary() -> Summary {
    Summary {
        text: "The user showed the Eiffel Tower; Paris was 18C and sunny at 14:05.".into(),
        through_seq: 2,
        tokens: 17,
        model: MODEL.into(),
        created: T0 + 20,
    }
}

/// Issue 13, point 4: every legacy message reads as the model (roles, text,
/// the image, tool calls and results, the answers' turn info with usage in
/// model terms), with the header's system prompt, summary, title and
/// metadata, on both stores; the idempotency record still replays.
#[tokio::test]
async fn legacy_items_read_as_the_model() {
    for (name, store, _legacy) in both().await {
        let conv = store
            .load_conversation(TENANT, CONV, T0 + 40)
            .await
            .unwrap();
        assert_eq!(conv.messages, expected_messages(), "{name}");
        assert!(conv.complete, "{name}");
        let meta = &conv.meta;
        assert_eq!(meta.system, expected_system(), "{name}");
        assert_eq!(meta.summary, Some(expected_summary()), "{name}");
        assert_eq!(meta.title.as_deref(), Some("Paris trip"), "{name}");
        assert_eq!(
            meta.metadata,
            BTreeMap::from([
                ("owner".to_owned(), "ada".to_owned()),
                ("project".to_owned(), "legacy".to_owned()),
            ]),
            "{name}"
        );
        assert_eq!(
            (meta.turns, meta.tokens, meta.first_seq, meta.next_seq),
            (3, 90_332, 0, 7),
            "{name}"
        );
        assert_eq!(
            (meta.created, meta.updated, meta.expires_at),
            (T0, T0 + 30, None),
            "{name}"
        );

        // The idempotency record of turn 3 replays, tied to the conversation.
        let again = IdempotencyRequest {
            key: "legacy-turn-3",
            fingerprint: "fp-legacy-3",
            token: "tok-again",
            now: T0 + 40,
            lease_until: T0 + 100,
            expires_at: T0 + 40 + 86_400,
        };
        let IdempotencyClaim::Replay(replay) =
            store.idempotency_claim(TENANT, &again).await.unwrap()
        else {
            panic!("{name}: expected a replay");
        };
        assert_eq!(replay.status, 200, "{name}");
        assert_eq!(
            replay.body, r#"{"object":"chat.completion","choices":[]}"#,
            "{name}"
        );
        assert_eq!(
            replay.conversation,
            Some((CONV.to_owned(), meta.life)),
            "{name}"
        );
        ctxgate::idempotency::check_replay(&*store, TENANT, &replay, T0 + 40)
            .await
            .unwrap();
    }
}

/// Issue 13, point 4: windowed reads over a legacy conversation keep what the
/// old code kept (the same slots, token counts and completeness for each
/// limit, recorded in windows.json), on both stores.
#[tokio::test]
async fn legacy_windows_read_as_before() {
    let recorded = fixture_json("windows.json");
    for (name, store, _legacy) in both().await {
        for case in recorded.as_array().unwrap() {
            let from = case["from_seq"].as_u64().unwrap();
            let tokens = case["tokens"].as_u64().unwrap();
            let conv = store
                .load_window(TENANT, CONV, T0 + 40, &|m| WindowLimit {
                    from_seq: m.first_seq.max(from),
                    tokens,
                })
                .await
                .unwrap();
            let seqs: Vec<u64> = conv.messages.iter().map(|m| m.seq).collect();
            let toks: Vec<Option<u64>> = conv.messages.iter().map(|m| m.tokens).collect();
            let got = json!({"from_seq": from, "tokens": tokens, "seqs": seqs,
                "message_tokens": toks, "complete": conv.complete});
            assert_eq!(&got, case, "{name}");
        }
    }
}

/// Issue 13, point 4: the conversations API shows a legacy conversation
/// exactly as the old code did (views.json, recorded from it), on both stores.
#[tokio::test]
async fn the_conversations_api_shows_legacy_items_as_before() {
    let recorded = fixture_json("views.json");
    for (name, store, _legacy) in both().await {
        let gw = Gateway::new(store, &[]);
        let key = gw.key(TENANT, &[]).await;
        for (path, want) in recorded.as_object().unwrap() {
            let (status, _, mut body) = gw.call("GET", path, Some(&key), None).await;
            assert_eq!(status, 200, "{name} {path}: {body}");
            shorten(&mut body);
            without_created_at(&mut body);
            assert_eq!(&body, want, "{name} {path}");
        }
    }
}

/// A streamed OpenAI answer with usage (what the fixture generator's mock sent).
fn sse_reply() -> Reply {
    let chunk = |delta: Value, finish: Value, usage: Option<Value>| {
        let mut c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        format!("data: {c}\n\n")
    };
    let body = chunk(
        json!({"role": "assistant", "content": "Rain "}),
        Value::Null,
        None,
    ) + &chunk(json!({"content": "tomorrow."}), Value::Null, None)
        + &chunk(json!({}), json!("stop"), None)
        + &chunk(
            json!({}),
            Value::Null,
            Some(json!({"prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53})),
        )
        + "data: [DONE]\n\n";
    Reply {
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body,
        ..Reply::json(Value::Null)
    }
}

/// Issue 13, point 4: a new turn continues a legacy conversation, plain,
/// streamed and on Anthropic: the provider gets the legacy history exactly
/// as the old code sent it (next-turn-upstream*.json, recorded from it), the
/// new messages are stored with `"v": 2` beside the untouched format-1
/// records, and the old messages still read unchanged, on both stores.
#[tokio::test]
async fn a_new_turn_continues_a_legacy_conversation() {
    let kinds = [
        ("next-turn-upstream.json", MODEL, false),
        ("next-turn-upstream-stream.json", MODEL, true),
        (
            "next-turn-upstream-anthropic.json",
            "anthropic/claude-sonnet-4-5",
            false,
        ),
    ];
    for (file, model, stream) in kinds {
        let recorded = fixture_json(file);
        for (name, store, legacy) in both().await {
            let openai = if stream {
                MockUpstream::start(|_| sse_reply()).await
            } else {
                MockUpstream::openai().await
            };
            let anthropic = MockUpstream::anthropic().await;
            let base = format!("{}/v1", openai.url);
            // The recorded bodies predate prompt caching, which adds its own
            // fields (tests/tests/prompt_cache.rs checks those).
            let gw = Gateway::with_toml(
                store.clone(),
                NO_PROMPT_CACHE,
                &[
                    ("OPENAI_BASE_URL", base.as_str()),
                    ("OPENAI_API_KEY", "sk-test-openai-key"),
                    ("ANTHROPIC_BASE_URL", anthropic.url.as_str()),
                    ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
                ],
            );
            let key = gw.key(TENANT, &[]).await;
            let (status, _, text) = gw
                .call_text(
                    "/v1/chat/completions",
                    &key,
                    &[],
                    json!({"model": model, "conversation_id": CONV, "stream": stream,
                        "messages": [{"role": "user", "content": "And tomorrow?"}]}),
                )
                .await;
            assert_eq!(status, 200, "{name} {file}: {text}");
            let upstream = if model == MODEL { &openai } else { &anthropic };
            let mut seen = upstream.received();
            assert_eq!(seen.len(), 1, "{name} {file}");
            shorten(&mut seen[0].body);
            assert_eq!(seen[0].body, recorded, "{name} {file}");

            let conv = store
                .load_conversation(TENANT, CONV, ctxgate::now_secs())
                .await
                .unwrap();
            assert_eq!(conv.messages.len(), 9, "{name} {file}");
            assert_eq!(conv.messages[..7], expected_messages(), "{name} {file}");
            assert_eq!(
                conv.messages[7].message,
                Message::text(Role::User, "And tomorrow?"),
                "{name} {file}"
            );
            assert_eq!(
                conv.messages[8].message.role,
                Role::Assistant,
                "{name} {file}"
            );
            assert_eq!(conv.meta.turns, 4, "{name} {file}");
            assert_eq!(conv.meta.system, expected_system(), "{name} {file}");
            assert_eq!(conv.meta.summary, Some(expected_summary()), "{name} {file}");

            // On disk: the old records as they were (no `v`), the new ones in format 2.
            for seq in 0..7 {
                let raw = legacy.raw_message(CONV, seq).await;
                assert!(raw.get("v").is_none(), "{name} {file} {seq}: {raw}");
            }
            for seq in [7, 8] {
                let raw = legacy.raw_message(CONV, seq).await;
                assert_eq!(raw["v"], 2, "{name} {file} {seq}: {raw}");
            }
        }
    }
}

/// The second legacy conversation (`odd-1`): the rarer format-1 shapes.
fn expected_odd() -> Vec<StoredMessage> {
    let user = Message {
        role: Role::User,
        content: vec![
            Block::text("Listen and read:"),
            Block::Audio {
                data: "UklGRiQAAABXQVZF".into(),
                format: "wav".into(),
            },
            Block::Document(Document {
                source: MediaSource::Base64 {
                    media_type: "application/pdf".into(),
                    data: "JVBERi0xLjQ=".into(),
                },
                filename: Some("a.pdf".into()),
                title: None,
                context: None,
                citations: None,
                cache: None,
            }),
            Block::Image(Image {
                source: MediaSource::Url {
                    url: "https://example.com/cat.png".into(),
                },
                detail: None,
                cache: None,
            }),
        ],
        name: Some("ada".into()),
    };
    let calls = Message {
        role: Role::Assistant,
        content: vec![call("call_x", "lookup", r#"{"q":"x"}"#)],
        name: None,
    };
    let result = Message {
        role: Role::Tool,
        content: vec![Block::ToolResult(ToolResult {
            call_id: "call_x".into(),
            content: ["part one", "part two"]
                .into_iter()
                .map(|t| ToolResultPart::Text {
                    text: t.into(),
                    cache: None,
                })
                .collect(),
            is_error: false,
            cache: None,
        })],
        name: None,
    };
    let refusal = Message {
        role: Role::Assistant,
        content: vec![Block::Refusal {
            text: "I can't help with that.".into(),
        }],
        name: None,
    };
    let t = T0 + 100;
    let odd_answer = |seq, message, tokens, created, finish, usage, latency_ms| StoredMessage {
        model: Some("openai/gpt-4o".into()),
        turn: Some(TurnInfo {
            provider: "openai".into(),
            finish_reason: Some(finish),
            usage,
            latency_ms,
            redactions: BTreeMap::new(),
        }),
        ..stored(seq, message, tokens, created)
    };
    vec![
        stored(0, user, 803, t),
        odd_answer(
            1,
            calls,
            5,
            t,
            FinishReason::ToolCalls,
            Usage::new(40, 5),
            7,
        ),
        stored(2, result, 4, t + 1),
        odd_answer(
            3,
            refusal,
            0,
            t + 1,
            FinishReason::ContentFilter,
            Usage::new(50, 0),
            8,
        ),
    ]
}

/// Issue 13, point 4: the rarer format-1 shapes (a system prompt in parts, a
/// named user with audio, file and image-URL parts, an answer with only tool
/// calls, a tool result in parts, a refusal, `content_filter`, usage without
/// details) read as the model, and a next turn sends them upstream exactly as
/// the old code did (next-turn-upstream-odd.json), on both stores.
#[tokio::test]
async fn rarer_legacy_shapes_read_and_continue() {
    // The one difference, on purpose: the OpenAI codec writes content of
    // exactly one text part as a string (its `Canon::OneTextPart`), where the
    // old code sent the stored system prompt's parts as they were.
    let mut recorded = fixture_json("next-turn-upstream-odd.json");
    let system = &mut recorded["messages"][0]["content"];
    assert_eq!(*system, json!([{"type": "text", "text": "Be careful."}]));
    *system = json!("Be careful.");
    for (name, store, legacy) in both().await {
        let conv = store
            .load_conversation(TENANT, "odd-1", T0 + 200)
            .await
            .unwrap();
        assert_eq!(conv.messages, expected_odd(), "{name}");
        assert_eq!(
            conv.meta.system,
            vec![Message::text(Role::System, "Be careful.")],
            "{name}"
        );
        assert_eq!((conv.meta.turns, conv.meta.tokens), (2, 95), "{name}");

        let upstream = MockUpstream::openai().await;
        let base = format!("{}/v1", upstream.url);
        let gw = Gateway::with_toml(
            store.clone(),
            NO_PROMPT_CACHE,
            &[
                ("OPENAI_BASE_URL", base.as_str()),
                ("OPENAI_API_KEY", "sk-test-openai-key"),
            ],
        );
        let key = gw.key(TENANT, &[]).await;
        let (status, _, body) = gw
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                Some(json!({"model": "openai/gpt-4o", "conversation_id": "odd-1",
                    "messages": [{"role": "user", "content": "Why not?"}]})),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let seen = upstream.received();
        assert_eq!(seen.len(), 1, "{name}");
        assert_eq!(seen[0].body, recorded, "{name}");
        assert_ne!(fixture_json("next-turn-upstream-odd.json"), recorded);

        let conv = store
            .load_conversation(TENANT, "odd-1", ctxgate::now_secs())
            .await
            .unwrap();
        assert_eq!(conv.messages[..4], expected_odd(), "{name}");
        assert_eq!(conv.messages.len(), 6, "{name}");
        for seq in 0..4 {
            let raw = legacy.raw_message("odd-1", seq).await;
            assert!(raw.get("v").is_none(), "{name} {seq}: {raw}");
        }
        for seq in [4, 5] {
            let raw = legacy.raw_message("odd-1", seq).await;
            assert_eq!(raw["v"], 2, "{name} {seq}: {raw}");
        }
    }
}
