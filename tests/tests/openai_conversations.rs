//! Issue 18: the conversations API in OpenAI's Conversations shape, on both
//! stores: conversations with initial items, metadata updates through
//! `POST`, `conversation.deleted`; items listed in pages with `after`,
//! `limit` and `order`, added, read and deleted one by one (a message that
//! loses its last item goes, windows and listings skip it); bad input a
//! 400/404 naming the field that changes nothing; and a conversation made
//! here continued through both chat doors and listed back as items.

use std::sync::Arc;

use ctxgate::store::Store;
use ctxgate_tests::{Gateway, MockUpstream};
use serde_json::{Value, json};

fn gateway(store: Arc<dyn Store>, openai: &MockUpstream, anthropic: &MockUpstream) -> Gateway {
    let base = format!("{}/v1", openai.url);
    Gateway::new(
        store,
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-openai-PROVIDER"),
            ("ANTHROPIC_BASE_URL", anthropic.url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-PROVIDER"),
        ],
    )
}

/// A user turn, an answer of three items (reasoning, text, a function
/// call) and the call's output: three stored messages, five items.
fn exchange() -> Value {
    json!([
        {"type": "message", "role": "user", "content": "what is 6 x 7?"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "multiply"}]},
        {"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "let me check"}]},
        {"type": "function_call", "call_id": "call_1", "name": "calc", "arguments": "{\"x\":6}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    ])
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn list(gw: &Gateway, key: &str, id: &str, query: &str) -> (u16, Value) {
    let (status, _, body) = gw
        .call(
            "GET",
            &format!("/v1/conversations/{id}/items{query}"),
            Some(key),
            None,
        )
        .await;
    (status, body)
}

async fn conversation_lifecycle(store: Arc<dyn Store>) {
    let (openai, anthropic) = (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    );
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &[]).await;

    let (status, _, conv) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(json!({"items": exchange(), "metadata": {"topic": "maths"}})),
        )
        .await;
    assert_eq!(status, 201, "{conv}");
    assert_eq!(conv["object"], "conversation");
    assert_eq!(conv["metadata"], json!({"topic": "maths"}));
    assert!(conv["created_at"].as_i64().unwrap() > 0);
    let id = conv["id"].as_str().unwrap().to_owned();

    // Newest first by default, as OpenAI lists them; the ids name the slot
    // and the position in it.
    let (status, all) = list(&gw, &key, &id, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["object"], "list");
    assert_eq!(
        ids(&all),
        ["fco_2_0", "fc_1_2", "msg_1_1", "rs_1_0", "msg_0_0"]
    );
    assert_eq!(all["first_id"], "fco_2_0");
    assert_eq!(all["last_id"], "msg_0_0");
    assert_eq!(all["has_more"], false);
    assert_eq!(all["data"][0]["type"], "function_call_output");
    assert_eq!(all["data"][0]["output"], "42");
    assert_eq!(all["data"][4]["content"][0]["type"], "input_text");
    assert_eq!(all["data"][2]["content"][0]["type"], "output_text");

    // Pages of two, both ways, across the items of one message.
    for (order, want) in [
        ("asc", ["msg_0_0", "rs_1_0", "msg_1_1", "fc_1_2", "fco_2_0"]),
        (
            "desc",
            ["fco_2_0", "fc_1_2", "msg_1_1", "rs_1_0", "msg_0_0"],
        ),
    ] {
        let mut seen = Vec::new();
        let mut query = format!("?limit=2&order={order}");
        loop {
            let (status, page) = list(&gw, &key, &id, &query).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(ids(&page));
            if page["has_more"] == false {
                break;
            }
            query = format!(
                "?limit=2&order={order}&after={}",
                page["last_id"].as_str().unwrap()
            );
        }
        assert_eq!(seen, want, "{order}");
    }

    // Metadata through POST (OpenAI's verb); ctxgate's fields stay.
    let (status, _, updated) = gw
        .call(
            "POST",
            &format!("/v1/conversations/{id}"),
            Some(&key),
            Some(json!({"metadata": {"topic": "arithmetic"}})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["metadata"]["topic"], "arithmetic");
    assert_eq!(updated["created_at"], conv["created_at"]);
    let (_, _, read) = gw
        .call("GET", &format!("/v1/conversations/{id}"), Some(&key), None)
        .await;
    assert_eq!(read["metadata"]["topic"], "arithmetic");

    // Items added answer as a list.
    let (status, _, added) = gw
        .call(
            "POST",
            &format!("/v1/conversations/{id}/items?include[]=reasoning.encrypted_content"),
            Some(&key),
            Some(json!({"items": [{"role": "user", "content": [{"type": "input_text", "text": "thanks"}]}]})),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(ids(&added), ["msg_3_0"]);
    assert_eq!(added["first_id"], "msg_3_0");

    // One item read.
    let (status, _, item) = gw
        .call(
            "GET",
            &format!("/v1/conversations/{id}/items/fc_1_2"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["call_id"], "call_1");
    assert_eq!(item["name"], "calc");

    // Deleting the reasoning item of the answer keeps its other items
    // (the answer's later items move up one place) and answers the
    // conversation.
    let (status, _, after_delete) = gw
        .call(
            "DELETE",
            &format!("/v1/conversations/{id}/items/rs_1_0"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{after_delete}");
    assert_eq!(after_delete["object"], "conversation");
    assert_eq!(after_delete["id"], id.as_str());
    let (_, all) = list(&gw, &key, &id, "?order=asc").await;
    assert_eq!(
        ids(&all),
        ["msg_0_0", "msg_1_0", "fc_1_1", "fco_2_0", "msg_3_0"]
    );
    // The user's message loses its only item: the message goes, every
    // reader skips the slot.
    let (status, _, _) = gw
        .call(
            "DELETE",
            &format!("/v1/conversations/{id}/items/msg_0_0"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, all) = list(&gw, &key, &id, "?order=asc").await;
    assert_eq!(ids(&all), ["msg_1_0", "fc_1_1", "fco_2_0", "msg_3_0"]);
    let (_, _, read) = gw
        .call("GET", &format!("/v1/conversations/{id}"), Some(&key), None)
        .await;
    assert_eq!(
        read["messages"]["data"].as_array().unwrap().len(),
        3,
        "{read}"
    );
    let (_, _, listed) = gw.call("GET", "/v1/conversations", Some(&key), None).await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    let (status, _, gone) = gw
        .call(
            "GET",
            &format!("/v1/conversations/{id}/items/msg_0_0"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        (status, gone["error"]["param"].as_str()),
        (404, Some("item_id"))
    );
    // A turn on it still runs, on what is left.
    let (status, _, answer) = gw.chat(&key, "openai/gpt-4o", Some(&id), "next").await;
    assert_eq!(status, 200, "{answer}");
    let sent = openai.received().pop().unwrap().body;
    assert!(!sent.to_string().contains("what is 6 x 7?"), "{sent}");
    assert!(sent.to_string().contains("thanks"), "{sent}");

    // Delete answers OpenAI's object, and the items go with it.
    let (status, _, deleted) = gw
        .call(
            "DELETE",
            &format!("/v1/conversations/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "conversation.deleted", "deleted": true})
    );
    let (status, body) = list(&gw, &key, &id, "").await;
    assert_eq!((status, body["error"]["param"].as_str()), (404, Some("id")));
}

async fn bad_input_changes_nothing(store: Arc<dyn Store>) {
    let (openai, anthropic) = (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    );
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &[]).await;
    let other_tenant = gw.key("globex", &[]).await;
    for id in ["mine", "other"] {
        let (status, _, _) = gw
            .call(
                "POST",
                "/v1/conversations",
                Some(&key),
                Some(json!({"id": id, "items": [{"role": "user", "content": "one"}]})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (_, _, before) = gw
        .call("GET", "/v1/conversations/mine", Some(&key), None)
        .await;

    let item = |v: Value| Some(json!({"items": [v]}));
    let posts: Vec<(&str, Option<Value>, u16, &str)> = vec![
        (
            "/v1/conversations/mine/items",
            item(json!({"type": "message", "role": "user"})),
            400,
            "items[0].content",
        ),
        (
            "/v1/conversations/mine/items",
            item(json!({"type": "web_search_call", "id": "x"})),
            400,
            "items[0].type",
        ),
        (
            "/v1/conversations/mine/items",
            item(json!("just text")),
            400,
            "items[0]",
        ),
        (
            "/v1/conversations/mine/items",
            item(json!({"type": "message", "role": "robot", "content": "x"})),
            400,
            "items[0].role",
        ),
        (
            "/v1/conversations/mine/items",
            Some(json!({"items": "one"})),
            400,
            "items",
        ),
        (
            "/v1/conversations/mine/items",
            Some(json!({"items": []})),
            400,
            "items",
        ),
        (
            "/v1/conversations/mine/items",
            Some(json!({})),
            400,
            "items",
        ),
        (
            "/v1/conversations/mine/items",
            Some(json!({"items": vec![json!({"role": "user", "content": "x"}); 21]})),
            400,
            "items",
        ),
        (
            "/v1/conversations/mine/items",
            Some(json!({"items": [], "colour": 1})),
            400,
            "colour",
        ),
        (
            "/v1/conversations/mine/items?include[]=everything",
            item(json!({"role": "user", "content": "x"})),
            400,
            "include",
        ),
        (
            "/v1/conversations/nope/items",
            item(json!({"role": "user", "content": "x"})),
            404,
            "id",
        ),
        (
            "/v1/conversations",
            Some(json!({"id": "fresh", "items": [{"type": "nope"}]})),
            400,
            "items[0].type",
        ),
        (
            "/v1/conversations/mine",
            Some(json!({"metadata": {"k": 1}})),
            400,
            "metadata.k",
        ),
    ];
    for (path, body, want, param) in posts {
        let (status, _, err) = gw.call("POST", path, Some(&key), body).await;
        assert_eq!(
            (status, err["error"]["param"].as_str()),
            (want, Some(param)),
            "POST {path}: {err}"
        );
        assert!(err["error"]["message"].is_string(), "{err}");
    }
    let lookups: Vec<(&str, &str, &str, u16, &str)> = vec![
        // Slot 1 exists only in no conversation; `fc_0_0` is not what slot 0 holds.
        (
            "GET",
            "/v1/conversations/mine/items/msg_1_0",
            "acme",
            404,
            "item_id",
        ),
        (
            "GET",
            "/v1/conversations/mine/items/fc_0_0",
            "acme",
            404,
            "item_id",
        ),
        (
            "GET",
            "/v1/conversations/mine/items/msg_0_1",
            "acme",
            404,
            "item_id",
        ),
        (
            "GET",
            "/v1/conversations/mine/items/not-an-id",
            "acme",
            404,
            "item_id",
        ),
        (
            "DELETE",
            "/v1/conversations/mine/items/msg_1_0",
            "acme",
            404,
            "item_id",
        ),
        (
            "DELETE",
            "/v1/conversations/mine/items/fc_0_0",
            "acme",
            404,
            "item_id",
        ),
        // Another tenant's conversation of the same id is no conversation here.
        (
            "GET",
            "/v1/conversations/mine/items/msg_0_0",
            "globex",
            404,
            "id",
        ),
        (
            "DELETE",
            "/v1/conversations/mine/items/msg_0_0",
            "globex",
            404,
            "id",
        ),
        ("GET", "/v1/conversations/mine/items", "globex", 404, "id"),
        (
            "GET",
            "/v1/conversations/mine/items?after=bogus",
            "acme",
            400,
            "after",
        ),
        (
            "GET",
            "/v1/conversations/mine/items?order=up",
            "acme",
            400,
            "order",
        ),
        (
            "GET",
            "/v1/conversations/mine/items?limit=0",
            "acme",
            400,
            "limit",
        ),
        (
            "GET",
            "/v1/conversations/mine/items?include=everything",
            "acme",
            400,
            "include",
        ),
    ];
    for (method, path, tenant, want, param) in lookups {
        let k = if tenant == "acme" {
            &key
        } else {
            &other_tenant
        };
        let (status, _, err) = gw.call(method, path, Some(k), None).await;
        assert_eq!(
            (status, err["error"]["param"].as_str()),
            (want, Some(param)),
            "{method} {path}: {err}"
        );
    }
    let (_, _, after) = gw
        .call("GET", "/v1/conversations/mine", Some(&key), None)
        .await;
    assert_eq!(after, before);
    let (status, _, _) = gw
        .call("GET", "/v1/conversations/fresh", Some(&key), None)
        .await;
    assert_eq!(status, 404);
    let (_, items) = list(&gw, &key, "other", "").await;
    assert_eq!(ids(&items), ["msg_0_0"]);
}

/// A conversation made through the Conversations API continues through
/// Chat Completions and Anthropic Messages, and lists back as items.
async fn continues_through_both_chat_doors(store: Arc<dyn Store>) {
    let (openai, anthropic) = (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    );
    let gw = gateway(store, &openai, &anthropic);
    let key = gw.key("acme", &[]).await;
    let (status, _, conv) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(json!({"items": [
                {"type": "message", "role": "developer", "content": "Answer in French."},
                {"type": "message", "role": "user", "content": "seeded question"},
                {"type": "message", "role": "assistant",
                    "content": [{"type": "output_text", "text": "seeded answer"}]},
            ]})),
        )
        .await;
    assert_eq!(status, 201, "{conv}");
    let id = conv["id"].as_str().unwrap().to_owned();

    let (status, _, answer) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(json!({"model": "openai/gpt-4o-mini", "conversation_id": id,
                "messages": [{"role": "user", "content": "through chat"}]})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let up = openai.received().pop().unwrap().body;
    let roles: Vec<&str> = up["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["developer", "user", "assistant", "user"], "{up}");
    assert_eq!(up["messages"][1]["content"], "seeded question");

    let (status, _, text) = gw
        .call_raw_text(
            "POST",
            "/v1/messages",
            None,
            &[
                ("x-api-key", key.as_str()),
                ("anthropic-version", "2023-06-01"),
                ("x-conversation-id", id.as_str()),
            ],
            json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 50,
                "messages": [{"role": "user", "content": "through messages"}]})
            .to_string()
            .into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let up = anthropic.received().pop().unwrap().body;
    let sent = up.to_string();
    for seen in [
        "seeded question",
        "seeded answer",
        "through chat",
        "through messages",
    ] {
        assert!(sent.contains(seen), "{seen}: {sent}");
    }
    assert!(
        up["system"].to_string().contains("Answer in French."),
        "{up}"
    );

    let (status, all) = list(&gw, &key, &id, "?order=asc").await;
    assert_eq!(status, 200, "{all}");
    let kinds: Vec<(String, String)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["role"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want = [
        ("msg_0_0", "developer"),
        ("msg_1_0", "user"),
        ("msg_2_0", "assistant"),
        ("msg_3_0", "user"),
        ("msg_4_0", "assistant"),
        ("msg_5_0", "user"),
        ("msg_6_0", "assistant"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(kinds, want);
    assert_eq!(all["data"][6]["content"][0]["type"], "output_text");
    assert!(
        all["data"][6]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("through messages")
    );
}

macro_rules! both_stores {
    ($($case:ident),*) => {
        mod embedded {
            $(#[tokio::test] async fn $case() { let (s, _dir) = ctxgate_tests::embedded_store(); super::$case(s).await; })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $case() { super::$case(ctxgate_tests::dynamo_store().await).await; })*
        }
    };
}

both_stores!(
    conversation_lifecycle,
    bad_input_changes_nothing,
    continues_through_both_chat_doors
);
