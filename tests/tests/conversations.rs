//! The context manager end to end, on DynamoDB through the emulator: the
//! conversations API, token-budgeted windows, summaries, idempotent retries,
//! ordering under concurrency, retention and per-turn metadata.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use ctxgate::model::{Message as ChatMessage, Role};
use ctxgate::store::dynamo::DynamoStore;
use ctxgate::store::{ConversationMeta, StoredMessage, TurnWrite};
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, dynamo_store, openai_completion};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-test-secret-openai-key";

/// A gateway on a fresh table, with the mock as OpenAI and `toml` as config.
async fn gateway(upstream: &MockUpstream, toml: &str) -> Gateway {
    let base = format!("{}/v1", upstream.url);
    Gateway::with_toml(
        dynamo_store().await,
        toml,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", OPENAI_KEY)],
    )
}

/// Like [`gateway`], on a table whose name the test knows (to look at raw items).
async fn gateway_on_known_table(
    upstream: &MockUpstream,
    toml: &str,
) -> (Gateway, aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(&ctxgate_tests::aws_config().await);
    let table = ctxgate_tests::unique("ctxgate");
    let store = DynamoStore::new(client.clone(), table.clone());
    store.create_table().await.unwrap();
    let base = format!("{}/v1", upstream.url);
    let gw = Gateway::with_toml(
        Arc::new(store),
        toml,
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", OPENAI_KEY)],
    );
    (gw, client, table)
}

fn texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A user message of about `words` tokens, tagged so it can be found upstream.
fn long_message(tag: &str, words: usize) -> String {
    format!("{tag} {}", "lorem ".repeat(words))
}

#[tokio::test]
async fn the_conversations_api_lists_reads_updates_and_deletes() {
    let upstream = MockUpstream::openai().await;
    let gw = gateway(&upstream, "").await;
    let key = gw.key("acme", &[]).await;
    let other = gw.key("globex", &[]).await;

    // Create, with everything optional given.
    let (status, _, created) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(
                json!({"id": "trip-9", "title": "Trip", "system_prompt": "Be brief.",
                        "metadata": {"user": "u-1"}, "retention_days": 2}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], "trip-9");
    assert_eq!(created["system_prompt"], "Be brief.");
    assert_eq!(created["metadata"]["user"], "u-1");
    assert_eq!(created["retention_days"], 2);
    let expires = created["expires_at"].as_i64().unwrap();
    assert!((expires - ctxgate::now_secs() - 2 * 86_400).abs() < 60);
    let (status, _, dup) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(json!({"id": "trip-9"})),
        )
        .await;
    assert_eq!((status, dup["error"]["param"].as_str()), (409, Some("id")));
    // Without an id, one is made up.
    let (status, _, anon) = gw
        .call("POST", "/v1/conversations", Some(&key), Some(json!({})))
        .await;
    assert_eq!(status, 201);
    assert!(anon["id"].as_str().unwrap().starts_with("conv_"));

    // Turns on it use the stored system prompt.
    for i in 0..3 {
        let (status, _, _) = gw
            .chat(&key, "openai/gpt-4o", Some("trip-9"), &format!("q{i}"))
            .await;
        assert_eq!(status, 200);
    }
    let sent = upstream.received().last().unwrap().body.clone();
    assert_eq!(sent["messages"][0]["content"], "Be brief.");

    // Read: header and messages, paginated both ways.
    let (status, _, conv) = gw
        .call("GET", "/v1/conversations/trip-9?limit=4", Some(&key), None)
        .await;
    assert_eq!(status, 200, "{conv}");
    assert_eq!(conv["turns"], 3);
    assert!(conv["tokens"].as_u64().unwrap() > 0);
    let page = &conv["messages"];
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
    assert_eq!(page["data"][0]["content"], "q0");
    assert_eq!(page["data"][0]["role"], "user");
    assert_eq!(page["has_more"], true);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, _, rest) = gw
        .call(
            "GET",
            &format!("/v1/conversations/trip-9?limit=4&cursor={cursor}"),
            Some(&key),
            None,
        )
        .await;
    let rest_texts: Vec<&str> = rest["messages"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(rest_texts, ["q2", "saw: q0 | q1 | q2"]);
    assert_eq!(rest["messages"]["has_more"], false);
    let (_, _, desc) = gw
        .call(
            "GET",
            "/v1/conversations/trip-9?order=desc&limit=1",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(desc["messages"]["data"][0]["role"], "assistant");
    // A cursor of the other order, another conversation or another tenant is refused.
    for (path, who) in [
        (
            format!("/v1/conversations/trip-9?order=desc&cursor={cursor}"),
            &key,
        ),
        (
            format!(
                "/v1/conversations/{}?cursor={cursor}",
                anon["id"].as_str().unwrap()
            ),
            &key,
        ),
        (format!("/v1/conversations/trip-9?cursor={cursor}"), &other),
        (format!("/v1/conversations?cursor={cursor}"), &key),
    ] {
        let (status, _, body) = gw.call("GET", &path, Some(who), None).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        if status == 400 {
            assert_eq!(body["error"]["param"], "cursor");
        }
    }

    // List: newest-updated first, paginated, only the caller's.
    gw.call(
        "POST",
        "/v1/conversations",
        Some(&other),
        Some(json!({"id": "theirs"})),
    )
    .await;
    let (_, _, list) = gw
        .call("GET", "/v1/conversations?limit=1", Some(&key), None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["has_more"], true);
    let c = list["next_cursor"].as_str().unwrap();
    let (_, _, list2) = gw
        .call(
            "GET",
            &format!("/v1/conversations?cursor={c}"),
            Some(&key),
            None,
        )
        .await;
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(list2["data"].as_array().unwrap())
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want = vec!["trip-9".to_owned(), anon["id"].as_str().unwrap().to_owned()];
    want.sort();
    assert_eq!(ids, want);
    let (_, _, theirs) = gw
        .call(
            "GET",
            &format!("/v1/conversations?cursor={c}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(theirs["error"]["param"], "cursor");
    let (status, _, _) = gw
        .call("GET", "/v1/conversations/trip-9", Some(&other), None)
        .await;
    assert_eq!(status, 404);

    // Update.
    let (status, _, patched) = gw
        .call(
            "PATCH",
            "/v1/conversations/trip-9",
            Some(&key),
            Some(json!({"title": null, "system_prompt": "Be verbose.", "metadata": {"a": "b"}})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["title"], Value::Null);
    assert_eq!(patched["system_prompt"], "Be verbose.");
    assert_eq!(patched["metadata"], json!({"a": "b"}));
    assert_eq!(patched["turns"], 3);
    gw.chat(&key, "openai/gpt-4o", Some("trip-9"), "q3").await;
    let sent = upstream.received().last().unwrap().body.clone();
    assert_eq!(sent["messages"][0]["content"], "Be verbose.");

    // Bad input names the field; nothing changes.
    let bad = [
        (
            "PATCH",
            "/v1/conversations/trip-9",
            json!({"metadata": {"k": 5}}),
            "metadata.k",
        ),
        (
            "PATCH",
            "/v1/conversations/trip-9",
            json!({"retention_days": "x"}),
            "retention_days",
        ),
        (
            "PATCH",
            "/v1/conversations/trip-9",
            json!({"turns": 0}),
            "turns",
        ),
        ("POST", "/v1/conversations", json!({"id": "bad id"}), "id"),
        (
            "POST",
            "/v1/conversations",
            json!({"title": ["x"]}),
            "title",
        ),
    ];
    for (method, path, body, param) in bad {
        let (status, _, err) = gw.call(method, path, Some(&key), Some(body)).await;
        assert_eq!((status, err["error"]["param"].as_str()), (400, Some(param)));
    }
    for q in ["limit=0", "limit=101", "limit=x", "order=up"] {
        let (status, _, err) = gw
            .call(
                "GET",
                &format!("/v1/conversations/trip-9?{q}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(err["error"]["param"], q.split('=').next().unwrap());
    }
    let (status, _, _) = gw
        .call(
            "PATCH",
            "/v1/conversations/nope",
            Some(&key),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(status, 404);

    // Scopes.
    let reader = gw.key("acme", &["conversations:read"]).await;
    let chat_only = gw.key("acme", &["chat"]).await;
    assert_eq!(
        gw.call("GET", "/v1/conversations", Some(&chat_only), None)
            .await
            .0,
        403
    );
    assert_eq!(
        gw.call("GET", "/v1/conversations/trip-9", Some(&reader), None)
            .await
            .0,
        200
    );
    assert_eq!(
        gw.call("DELETE", "/v1/conversations/trip-9", Some(&reader), None)
            .await
            .0,
        403
    );

    // Delete: everything goes, twice is fine, the other tenant's stays.
    assert_eq!(
        gw.call("DELETE", "/v1/conversations/trip-9", Some(&key), None)
            .await
            .0,
        200
    );
    assert_eq!(
        gw.call("DELETE", "/v1/conversations/trip-9", Some(&key), None)
            .await
            .0,
        200
    );
    assert_eq!(
        gw.call("GET", "/v1/conversations/trip-9", Some(&key), None)
            .await
            .0,
        404
    );
    let raw = gw
        .state
        .store
        .message_page(
            "acme",
            "trip-9",
            ctxgate::now_secs(),
            Default::default(),
            None,
            100,
        )
        .await
        .unwrap();
    assert!(raw.messages.is_empty());
    assert_eq!(
        gw.call("GET", "/v1/conversations/theirs", Some(&other), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn long_conversations_keep_the_newest_turns_that_fit() {
    let upstream = MockUpstream::start(|_| Reply::json(openai_completion("ok", 10, 3))).await;
    let gw = gateway(
        &upstream,
        "[[models]]\nid = \"openai/small\"\ncontext_window = 2000\n",
    )
    .await;
    let key = gw.key("acme", &[]).await;
    let (status, _, _) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(json!({"id": "long", "system_prompt": "SYSTEM"})),
        )
        .await;
    assert_eq!(status, 201);
    // 20 turns of ~200 tokens each: far more than a 2000-token window.
    for i in 0..20 {
        let body = json!({"model": "openai/small", "conversation_id": "long", "max_tokens": 200,
                          "messages": [{"role": "user", "content": long_message(&format!("T{i}"), 200)}]});
        let (status, _, resp) = gw
            .call("POST", "/v1/chat/completions", Some(&key), Some(body))
            .await;
        assert_eq!(status, 200, "turn {i}: {resp}");
    }
    let last = upstream.received().last().unwrap().body.clone();
    let sent = texts(&last);
    // System prompt first, the new message last, then the newest turns, whole.
    assert_eq!(sent[0], "SYSTEM");
    assert!(sent.last().unwrap().starts_with("T19 "));
    let kept_tags: Vec<&str> = sent[1..sent.len() - 1]
        .chunks(2)
        .map(|pair| {
            assert!(pair[0].starts_with('T'), "a turn starts with its question");
            assert_eq!(pair[1], "saw: ok");
            pair[0].split(' ').next().unwrap()
        })
        .collect();
    assert!(!kept_tags.is_empty() && kept_tags.len() < 19);
    let newest: Vec<String> = (19 - kept_tags.len()..19)
        .map(|i| format!("T{i}"))
        .collect();
    assert_eq!(kept_tags, newest);
    // The budget: window - output reserve - 5% margin, by the gateway's estimate.
    let sent: Vec<ctxgate::wire::openai_chat::types::ChatMessage> =
        serde_json::from_value(last["messages"].clone()).unwrap();
    let estimate = ctxgate::tokens::estimate_all(
        &sent
            .iter()
            .map(ctxgate::wire::openai_chat::decode_message)
            .collect::<Vec<_>>(),
    );
    assert!(estimate <= 2000 - 200 - 100, "prompt of {estimate} tokens");
    // Nothing was dropped from the store.
    let conv = gw
        .state
        .store
        .load_conversation("acme", "long", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(conv.messages.len(), 40);
}

fn summary_reply() -> Reply {
    Reply::json(json!({
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "SUMMARY-x"}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56}
    }))
}

#[tokio::test]
async fn summaries_fold_dropped_turns_into_the_prompt() {
    let upstream = MockUpstream::start(|_| Reply::json(openai_completion("ok", 10, 3))).await;
    let gw = gateway(
        &upstream,
        r#"
[[models]]
id = "openai/small"
context_window = 2000
[[models]]
id = "openai/summarizer"
[context]
strategy = "summarize"
summary_model = "openai/summarizer"
summarize_after_turns = 2
"#,
    )
    .await;
    // What the chat handler derives for this model and request (its
    // provider caches prompts, so the window is kept stable).
    let settings = ctxgate::context::WindowSettings {
        context_window: 2000,
        output_reserve: 200,
        safety_margin: 100,
        summarize: true,
        summarize_after_turns: 2,
        stable_slack: Some(0.2),
    };
    let key = gw.key("acme", &[]).await;
    let mut summarised = Vec::new();
    let mut prompts = Vec::new();
    for i in 0..16 {
        let messages = vec![
            ChatMessage::text(Role::System, "SYSTEM"),
            ChatMessage::text(Role::User, long_message(&format!("T{i}"), 200)),
        ];
        // Will this turn summarise? If so, the main answer waits for the
        // summary request (the summary itself answers at once), so the
        // summary is always ready within the turn's wait.
        let plan = ctxgate::context::prepare(
            &*gw.state.store,
            "acme",
            Some("sum"),
            messages.clone(),
            ctxgate::now_secs(),
            &settings,
            None,
        )
        .await
        .unwrap();
        let gate = Arc::new(tokio::sync::Notify::new());
        if plan.summary_job.is_some() {
            summarised.push(i);
            upstream.respond(move |r: &Received| {
                if r.body["model"] == "summarizer" {
                    gate.notify_one();
                    summary_reply()
                } else {
                    Reply {
                        gate: Some(gate.clone()),
                        ..Reply::json(openai_completion("ok", 10, 3))
                    }
                }
            });
        } else {
            upstream.respond(|_| Reply::json(openai_completion("ok", 10, 3)));
        }
        // The same messages as a client sends them.
        let wire = ctxgate::wire::openai_chat::encode_messages(&messages).unwrap();
        let body = json!({"model": "openai/small", "conversation_id": "sum", "max_tokens": 200,
                          "messages": wire});
        let (status, _, resp) = gw
            .call("POST", "/v1/chat/completions", Some(&key), Some(body))
            .await;
        assert_eq!(status, 200, "turn {i}: {resp}");
        prompts.push(
            upstream
                .received()
                .into_iter()
                .rfind(|r| r.body["model"] == "small")
                .unwrap()
                .body,
        );
    }
    assert!(summarised.len() >= 2, "summaries at turns {summarised:?}");
    let summary_requests: Vec<Received> = upstream
        .received()
        .into_iter()
        .filter(|r| r.body["model"] == "summarizer")
        .collect();
    assert_eq!(summary_requests.len(), summarised.len());
    // The first summary covers the oldest turns; later ones extend the previous.
    let first = summary_requests[0].body["messages"][1]["content"]
        .as_str()
        .unwrap();
    assert!(first.starts_with("user: T0 "), "{first}");
    assert!(first.contains("assistant: saw: ok"));
    let later = summary_requests[1].body["messages"][1]["content"]
        .as_str()
        .unwrap();
    assert!(later.starts_with("Earlier summary:\nSUMMARY-x"));
    assert!(!later.contains("user: T0 "));
    // Before the first summary the prompt has none; after it: system prompt,
    // summary, the turns after it, the new message.
    let before = texts(&prompts[summarised[0]]);
    assert!(!before.iter().any(|t| t.contains("SUMMARY")));
    let after = &prompts[summarised[0] + 1];
    let sent = texts(after);
    assert_eq!(sent[0], "SYSTEM");
    assert_eq!(after["messages"][1]["role"], "system");
    assert!(sent[1].starts_with("Summary of the earlier part") && sent[1].contains("SUMMARY-x"));
    assert!(
        sent.last()
            .unwrap()
            .starts_with(&format!("T{} ", summarised[0] + 1))
    );
    let meta = gw
        .state
        .store
        .conversation_meta("acme", "sum")
        .await
        .unwrap()
        .unwrap();
    let summary = meta.summary.expect("summary stored with the turn");
    assert_eq!(summary.model, "openai/summarizer");
    assert_eq!(summary.tokens, 6);
    // What the summary covers is not sent again.
    let last = texts(prompts.last().unwrap());
    let first_kept: u64 = last[2].split(' ').next().unwrap()[1..].parse().unwrap();
    assert!(
        2 * first_kept > summary.through_seq,
        "{first_kept} vs {}",
        summary.through_seq
    );
    // The API shows it; usage counts the summariser too.
    let (_, _, conv) = gw
        .call("GET", "/v1/conversations/sum", Some(&key), None)
        .await;
    assert_eq!(conv["summary"]["text"], "SUMMARY-x");
    let (_, _, usage) = gw.call("GET", "/v1/usage", Some(&key), None).await;
    let models: Vec<&str> = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert!(models.contains(&"openai/summarizer"), "{usage}");
}

#[tokio::test]
async fn idempotent_retries_replay_refuse_or_wait() {
    let upstream = MockUpstream::openai().await;
    let gw = Arc::new(gateway(&upstream, "").await);
    let key = gw.key("acme", &[]).await;
    let body = json!({"model": "openai/gpt-4o", "conversation_id": "idem",
                      "messages": [{"role": "user", "content": "book it"}]});
    let send = |idem: &'static str, body: Value| {
        let gw = gw.clone();
        let key = key.clone();
        async move {
            gw.call_raw(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                &[("idempotency-key", idem)],
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let (status, headers, first) = send("order-1", body.clone()).await;
    assert_eq!(status, 200);
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = send("order-1", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(headers["x-conversation-id"], "idem");
    assert_eq!(again, first);
    assert_eq!(upstream.received().len(), 1, "the provider was called once");
    let conv = gw
        .state
        .store
        .load_conversation("acme", "idem", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(conv.messages.len(), 2, "the turn was stored once");
    let usage = gw.call("GET", "/v1/usage", Some(&key), None).await.2;
    assert_eq!(usage["data"][0]["requests"], 1);

    // The same key with another body.
    let mut changed = body.clone();
    changed["messages"][0]["content"] = "cancel it".into();
    let (status, _, err) = send("order-1", changed).await;
    assert_eq!(status, 422);
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    assert_eq!(err["error"]["param"], "Idempotency-Key");

    // The same key and body on another conversation (by header) is another request.
    let (status, _, err) = gw
        .call_raw(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            &[
                ("idempotency-key", "order-1"),
                ("x-conversation-id", "elsewhere"),
            ],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );

    // A repeat while the first is still running.
    let gate = Arc::new(tokio::sync::Notify::new());
    upstream.respond({
        let gate = gate.clone();
        move |_| Reply {
            gate: Some(gate.clone()),
            ..Reply::json(openai_completion("slow", 1, 1))
        }
    });
    let stateless =
        json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]});
    let running = tokio::spawn(send("order-2", stateless.clone()));
    while upstream.received().len() < 2 {
        tokio::task::yield_now().await;
    }
    let (status, headers, err) = send("order-2", stateless.clone()).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "idempotency_in_progress");
    assert_eq!(headers["retry-after"], "1");
    gate.notify_one();
    assert_eq!(running.await.unwrap().0, 200);
    let (status, headers, _) = send("order-2", stateless.clone()).await;
    assert_eq!(
        (status, headers["idempotent-replayed"].to_str().unwrap()),
        (200, "true")
    );
    assert_eq!(upstream.received().len(), 2);

    // A failure is not remembered: the retry runs again.
    upstream.respond(|_| Reply::status(500, "{}"));
    assert_eq!(send("order-3", stateless.clone()).await.0, 502);
    upstream.respond(|_| Reply::json(openai_completion("fine", 1, 1)));
    let (status, headers, _) = send("order-3", stateless).await;
    assert_eq!(status, 200);
    assert!(headers.get("idempotent-replayed").is_none());

    // A malformed key is a 400 naming the header.
    let (status, _, err) = send("bad key", body).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("Idempotency-Key"))
    );
}

#[tokio::test]
async fn fifty_concurrent_turns_store_each_success_once_in_order() {
    let upstream = MockUpstream::openai().await;
    let gw = Arc::new(gateway(&upstream, "").await);
    let key = gw.key("acme", &[]).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let gw = gw.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let (status, _, _) = gw
                    .chat(&key, "echo", Some("crowd"), &format!("turn {i}"))
                    .await;
                (format!("turn {i}"), status)
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for t in tasks {
        let (text, status) = t.await.unwrap();
        match status {
            200 => ok.push(text),
            409 => failed.push(text),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok.len() >= 10, "only {} of 50 succeeded", ok.len());
    let conv = gw
        .state
        .store
        .load_conversation("acme", "crowd", ctxgate::now_secs())
        .await
        .unwrap();
    assert_eq!(conv.messages.len(), 2 * ok.len());
    let seqs: Vec<u64> = conv.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "one consistent order"
    );
    let mut stored = Vec::new();
    for pair in conv.messages.chunks(2) {
        assert_eq!(pair[0].message.role, Role::User);
        assert_eq!(pair[1].message.role, Role::Assistant);
        // echo answers with the question: each answer follows its own question.
        assert_eq!(
            pair[0].message.text_content(),
            pair[1].message.text_content()
        );
        stored.push(pair[0].message.text_content());
    }
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "no turn stored twice");
    ok.sort();
    assert_eq!(unique, ok, "exactly the turns that got a 200");
    assert!(failed.iter().all(|f| !stored.contains(f)));
    assert_eq!(conv.meta.turns as usize, ok.len());
    println!(
        "{} of 50 concurrent turns stored, {} got 409",
        ok.len(),
        failed.len()
    );
}

#[tokio::test]
async fn expired_conversations_are_gone_from_every_route_at_once() {
    let upstream = MockUpstream::openai().await;
    let (gw, client, table) = gateway_on_known_table(&upstream, "retention_days = 1\n").await;
    let key = gw.key("acme", &[]).await;
    // A conversation whose retention ran out a minute ago, not yet swept.
    let now = ctxgate::now_secs();
    let mut q = StoredMessage::new(
        0,
        ChatMessage::text(Role::User, "old secret plan"),
        now - 90_000,
    );
    q.tokens = Some(3);
    let write = TurnWrite {
        expected_version: 0,
        meta: ConversationMeta {
            version: 1,
            next_seq: 1,
            turns: 1,
            created: now - 90_000,
            updated: now - 90_000,
            expires_at: Some(now - 60),
            title: Some("old".into()),
            ..ConversationMeta::default()
        },
        messages: vec![q],
        ..TurnWrite::default()
    };
    gw.state
        .store
        .append_turn("acme", "old", &write)
        .await
        .unwrap();

    assert_eq!(
        gw.call("GET", "/v1/conversations/old", Some(&key), None)
            .await
            .0,
        404
    );
    let (_, _, list) = gw.call("GET", "/v1/conversations", Some(&key), None).await;
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");
    let patch = json!({"title": "revived"});
    assert_eq!(
        gw.call("PATCH", "/v1/conversations/old", Some(&key), Some(patch))
            .await
            .0,
        404
    );
    // A new turn starts afresh: the old history never reaches the provider.
    let (status, _, _) = gw
        .chat(&key, "openai/gpt-4o", Some("old"), "hello again")
        .await;
    assert_eq!(status, 200);
    let sent = upstream.received().last().unwrap().body.clone();
    assert_eq!(texts(&sent), ["hello again"]);
    let (_, _, conv) = gw
        .call("GET", "/v1/conversations/old", Some(&key), None)
        .await;
    assert_eq!(conv["turns"], 1);
    assert_eq!(conv["title"], Value::Null);
    assert_eq!(conv["messages"]["data"].as_array().unwrap().len(), 2);
    // And the old life's message is purged from the table itself.
    let items = client
        .query()
        .table_name(&table)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("T#acme#C#old".into()))
        .send()
        .await
        .unwrap();
    let sks: Vec<&str> = items
        .items()
        .iter()
        .map(|i| i["SK"].as_s().unwrap().as_str())
        .collect();
    assert_eq!(sks, ["M#000000000001", "M#000000000002", "META"]);

    // Each turn refreshes the retention: the default, or the conversation's own.
    let expires = conv["expires_at"].as_i64().unwrap();
    assert!((expires - ctxgate::now_secs() - 86_400).abs() < 60);
    gw.call(
        "PATCH",
        "/v1/conversations/old",
        Some(&key),
        Some(json!({"retention_days": 0})),
    )
    .await;
    gw.chat(&key, "openai/gpt-4o", Some("old"), "and again")
        .await;
    let (_, _, conv) = gw
        .call("GET", "/v1/conversations/old", Some(&key), None)
        .await;
    assert_eq!(conv["expires_at"], Value::Null);
    assert_eq!(conv["retention_days"], 0);
}

#[tokio::test]
async fn each_answer_records_how_it_came_about() {
    let upstream = MockUpstream::start(|_| {
        Reply::json(json!({
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": "write to ada@example.com"}}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
        }))
    })
    .await;
    let gw = gateway(&upstream, "").await;
    let key = gw.key("acme", &[]).await;
    let (status, _, _) = gw
        .chat(&key, "openai/gpt-4o-mini", Some("meta"), "who?")
        .await;
    assert_eq!(status, 200);
    let (_, _, conv) = gw
        .call(
            "GET",
            "/v1/conversations/meta?order=desc&limit=1",
            Some(&key),
            None,
        )
        .await;
    let answer = &conv["messages"]["data"][0];
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["content"], "write to [EMAIL]");
    assert_eq!(answer["model"], "openai/gpt-4o-mini");
    assert_eq!(answer["provider"], "openai");
    assert_eq!(answer["finish_reason"], "length");
    assert_eq!(answer["usage"]["prompt_tokens"], 21);
    assert_eq!(answer["usage"]["completion_tokens"], 9);
    assert_eq!(answer["tokens"], 9);
    assert!(answer["latency_ms"].is_u64());
    assert_eq!(answer["redactions"]["response"]["email"], 1);
    assert_eq!(answer["redactions"]["stored"]["email"], 1);
    let (_, _, question) = gw
        .call("GET", "/v1/conversations/meta?limit=1", Some(&key), None)
        .await;
    let q = &question["messages"]["data"][0];
    assert_eq!(q["role"], "user");
    assert!(q["tokens"].as_u64().unwrap() >= 1);
    assert!(q.get("provider").is_none());
}

#[tokio::test]
async fn the_sweeper_purges_what_ttl_left_and_new_lives_start_above_it() {
    let upstream = MockUpstream::openai().await;
    let (gw, client, table) = gateway_on_known_table(&upstream, "").await;
    let store = DynamoStore::new(client.clone(), table.clone());
    let key = gw.key("acme", &[]).await;
    for q in ["first", "second"] {
        assert_eq!(
            gw.chat(&key, "openai/gpt-4o", Some("swept"), q).await.0,
            200
        );
    }
    let old = gw
        .state
        .store
        .conversation_meta("acme", "swept")
        .await
        .unwrap()
        .unwrap();
    // DynamoDB's TTL removes the head; the stream carries its old image.
    let pk = AttributeValue::S("T#acme#C#swept".into());
    let removed = client
        .delete_item()
        .table_name(&table)
        .key("PK", pk.clone())
        .key("SK", AttributeValue::S("META".into()))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
        .send()
        .await
        .unwrap();
    let doc = removed.attributes().unwrap()["doc"].as_s().unwrap().clone();
    // Before the sweeper runs, the id starts a new life above the leftovers.
    assert_eq!(
        gw.chat(&key, "openai/gpt-4o", Some("swept"), "third")
            .await
            .0,
        200
    );
    let sent = upstream.received().last().unwrap().body.clone();
    assert_eq!(texts(&sent), ["third"]);
    let (_, _, conv) = gw
        .call("GET", "/v1/conversations/swept", Some(&key), None)
        .await;
    assert_eq!(conv["turns"], 1);
    assert_eq!(conv["messages"]["data"][0]["content"], "third");
    assert_eq!(conv["messages"]["data"][0]["seq"], old.next_seq);

    let event = json!({"Records": [{
        "eventID": "1", "eventName": "REMOVE", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
        "dynamodb": {
            "Keys": {"PK": {"S": "T#acme#C#swept"}, "SK": {"S": "META"}},
            "OldImage": {"PK": {"S": "T#acme#C#swept"}, "SK": {"S": "META"},
                         "version": {"N": old.version.to_string()}, "doc": {"S": doc}},
            "SequenceNumber": "100", "SizeBytes": 200, "StreamViewType": "OLD_IMAGE"
        }
    }]});
    assert_eq!(ctxgate::sweep::sweep(&store, &event).await.unwrap(), 1);
    // Twice is harmless (Lambda may retry a batch).
    ctxgate::sweep::sweep(&store, &event).await.unwrap();
    let left = client
        .query()
        .table_name(&table)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", pk)
        .send()
        .await
        .unwrap();
    let sks: Vec<String> = left
        .items()
        .iter()
        .map(|i| i["SK"].as_s().unwrap().clone())
        .collect();
    assert_eq!(
        sks.len(),
        3,
        "the new life's two messages and head: {sks:?}"
    );
    assert!(sks.contains(&format!("M#{:012}", old.next_seq)));
}

/// Issue 12, point 10: conversation titles, metadata values and the message
/// `name` field follow the tenant's `stored` policy, as message content does:
/// redacted when it redacts, refused with a 400 naming the field when it
/// blocks, on both stores.
#[tokio::test]
async fn titles_metadata_and_names_follow_the_stored_policy() {
    let upstream = MockUpstream::openai().await;
    for (toml, block) in [
        (
            "[redaction]\nresponse = \"redact\"\nstored = \"redact\"\n",
            false,
        ),
        (
            "[redaction]\nresponse = \"redact\"\nstored = \"block\"\n",
            true,
        ),
    ] {
        let dynamo = gateway(&upstream, toml).await;
        let (embedded_store, _dir) = ctxgate_tests::embedded_store();
        let base = format!("{}/v1", upstream.url);
        let embedded = Gateway::with_toml(
            embedded_store,
            toml,
            &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", OPENAI_KEY)],
        );
        for gw in [dynamo, embedded] {
            let key = gw.key("acme", &[]).await;
            let create = json!({"id": "pii", "title": "call ｂｏｂ@example.com",
                "metadata": {"owner": "bob@exa\u{200b}mple.com", "plain": "ok"}});
            let (status, _, body) = gw
                .call("POST", "/v1/conversations", Some(&key), Some(create))
                .await;
            if block {
                assert_eq!(
                    (status, body["error"]["param"].as_str()),
                    (400, Some("title")),
                    "{body}"
                );
                let (status, _, body) = gw
                    .call(
                        "POST",
                        "/v1/conversations",
                        Some(&key),
                        Some(json!({"id": "pii", "metadata": {"owner": "4111 1111 1111 1111"}})),
                    )
                    .await;
                assert_eq!(
                    (status, body["error"]["param"].as_str()),
                    (400, Some("metadata.owner")),
                    "{body}"
                );
                let (status, _, _) = gw
                    .call("GET", "/v1/conversations/pii", Some(&key), None)
                    .await;
                assert_eq!(status, 404, "nothing was stored");
                continue;
            }
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["title"], "call [EMAIL]");
            assert_eq!(body["metadata"], json!({"owner": "[EMAIL]", "plain": "ok"}));
            let (status, _, body) = gw
                .call(
                    "PATCH",
                    "/v1/conversations/pii",
                    Some(&key),
                    Some(json!({"title": "card 4111-1111-1111-1111"})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let (_, _, body) = gw
                .call("GET", "/v1/conversations/pii", Some(&key), None)
                .await;
            assert_eq!(body["title"], "card [CARD]");
            assert_eq!(body["metadata"]["owner"], "[EMAIL]");
            // A participant name is stored text too.
            let (status, _, body) = gw
                .call(
                    "POST",
                    "/v1/chat/completions",
                    Some(&key),
                    Some(json!({"model": "openai/gpt-4o-mini", "conversation_id": "pii",
                        "messages": [{"role": "user", "name": "alice@example.com", "content": "hi"}]})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let (_, _, conv) = gw
                .call("GET", "/v1/conversations/pii?limit=10", Some(&key), None)
                .await;
            let user = &conv["messages"]["data"][0];
            assert_eq!(user["role"], "user");
            assert_eq!(user["name"], "[EMAIL]", "{conv}");
        }
    }
}
