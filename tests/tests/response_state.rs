//! Issue 18, state: every stored response is a turn of a conversation;
//! continuing from the latest response stays in its conversation, from an
//! earlier one forks a new conversation that reads the shared history in
//! place; a read-only turn stores nothing; records are per tenant. On both
//! stores, through the context manager the turn pipeline uses.

use std::collections::BTreeMap;

use ctxgate::context::{
    self, Answer, ContextError, ResponseDraft, Scope, TurnExtras, WindowSettings,
};
use ctxgate::model::{FinishReason, Message, Response, Role, Usage};
use ctxgate::store::{ResponseRecord, Store};
use serde_json::json;

const SETTINGS: WindowSettings = WindowSettings {
    context_window: 1_000_000,
    output_reserve: 1000,
    safety_margin: 0,
    summarize: false,
    summarize_after_turns: 2,
    stable_slack: None,
};

fn texts(prompt: &[Message]) -> Vec<String> {
    prompt.iter().map(|m| m.text_content()).collect()
}

/// One turn: `question` in `scope`, answered `answer`, stored as response
/// `rid` unless the scope is read-only. Returns the prompt and the record.
async fn turn(
    store: &dyn Store,
    tenant: &str,
    scope: Scope,
    question: &str,
    answer: &str,
    rid: &str,
    now: i64,
) -> Result<(Vec<String>, Option<ResponseRecord>), ContextError> {
    let prepared = context::prepare_in(
        store,
        tenant,
        vec![Message::text(Role::User, question)],
        now,
        &SETTINGS,
        None,
        scope,
    )
    .await?;
    let prompt = texts(&prepared.prompt);
    let Some(t) = prepared.turn else {
        return Ok((prompt, None));
    };
    let c = Response {
        id: None,
        model: None,
        message: Message::text(Role::Assistant, answer),
        finish: FinishReason::Stop,
        stop_sequence: None,
        usage: Usage::new(1, 1),
        usage_reported: true,
    };
    let a = Answer {
        earlier: &[],
        response: &c,
        model: "echo",
        provider: "echo",
        latency_ms: 1,
        redactions: BTreeMap::new(),
        after: &[],
    };
    let extras = TurnExtras {
        response: Some(ResponseDraft {
            id: rid.to_owned(),
            fields: json!({"metadata": {"n": rid}}),
        }),
        ..TurnExtras::default()
    };
    context::commit(store, tenant, t, &a, &extras, now).await?;
    Ok((prompt, store.get_response(tenant, rid, now).await.unwrap()))
}

fn from(record: &ResponseRecord, fork: &str) -> Scope {
    Scope {
        from: Some((record.clone(), fork.to_owned())),
        ..Scope::default()
    }
}

async fn state(store: &dyn Store) {
    let t = ctxgate_tests::unique("t");
    let conv = Scope {
        conversation: Some("c1".into()),
        ..Scope::default()
    };
    let (_, r1) = turn(store, &t, conv, "q1", "a1", "resp_1", 100)
        .await
        .unwrap();
    let r1 = r1.expect("a stored response has a record");
    assert_eq!(
        (r1.conversation.as_str(), r1.first_seq, r1.answer_seq),
        ("c1", 0, 1)
    );

    // The latest response: the turn stays in its conversation.
    let (prompt, r2) = turn(store, &t, from(&r1, "unused"), "q2", "a2", "resp_2", 101)
        .await
        .unwrap();
    assert_eq!(prompt, ["q1", "a1", "q2"]);
    let r2 = r2.unwrap();
    assert_eq!(
        (r2.conversation.as_str(), r2.first_seq, r2.last_seq),
        ("c1", 2, 3)
    );
    // The answer carries the response's own fields.
    let page = store
        .message_page(&t, "c1", 101, Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.messages[3].response,
        Some(json!({"metadata": {"n": "resp_2"}}))
    );

    // An earlier response: a fork that holds the history up to it.
    let (prompt, r3) = turn(store, &t, from(&r1, "fork1"), "q3", "a3", "resp_3", 102)
        .await
        .unwrap();
    assert_eq!(prompt, ["q1", "a1", "q3"]);
    let r3 = r3.unwrap();
    assert_eq!((r3.conversation.as_str(), r3.first_seq), ("fork1", 2));
    // Nothing was copied: the fork stores only its own turn.
    let own = store
        .message_page(&t, "fork1", 102, Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        own.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [2, 3]
    );
    // The original is unchanged.
    let original = store.load_conversation(&t, "c1", 102).await.unwrap();
    assert_eq!(original.messages.len(), 4);
    // The fork's next turn reads its own turn and the parent's history below it.
    let (prompt, r4) = turn(store, &t, from(&r3, "unused"), "q4", "a4", "resp_4", 103)
        .await
        .unwrap();
    assert_eq!(prompt, ["q1", "a1", "q3", "a3", "q4"]);
    assert_eq!(r4.unwrap().conversation, "fork1");
    // A fork of a fork reads through both.
    let r3 = store
        .get_response(&t, "resp_3", 104)
        .await
        .unwrap()
        .unwrap();
    let (prompt, _) = turn(store, &t, from(&r3, "fork2"), "q5", "a5", "resp_5", 104)
        .await
        .unwrap();
    assert_eq!(prompt, ["q1", "a1", "q3", "a3", "q5"]);
    let (prompt, _) = turn(
        store,
        &t,
        Scope {
            conversation: Some("fork2".into()),
            ..Scope::default()
        },
        "q6",
        "a6",
        "resp_6",
        105,
    )
    .await
    .unwrap();
    assert_eq!(prompt, ["q1", "a1", "q3", "a3", "q5", "a5", "q6"]);

    // A read-only turn sees the history and leaves nothing behind.
    let r2 = store
        .get_response(&t, "resp_2", 106)
        .await
        .unwrap()
        .unwrap();
    let before = store.conversation_meta(&t, "c1").await.unwrap();
    let scope = Scope {
        read_only: true,
        ..from(&r2, "fork-never")
    };
    let (prompt, none) = turn(store, &t, scope, "q7", "a7", "resp_7", 106)
        .await
        .unwrap();
    assert_eq!(prompt, ["q1", "a1", "q2", "a2", "q7"]);
    assert!(none.is_none());
    assert_eq!(store.conversation_meta(&t, "c1").await.unwrap(), before);
    assert!(
        store
            .conversation_meta(&t, "fork-never")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_response(&t, "resp_7", 106)
            .await
            .unwrap()
            .is_none()
    );

    // Records are the tenant's own.
    assert!(
        store
            .get_response("other", "resp_1", 106)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.delete_response("other", "resp_1").await.unwrap());
    assert!(
        store
            .get_response(&t, "resp_1", 106)
            .await
            .unwrap()
            .is_some()
    );
    // A deleted response is gone; its turn stays in the conversation.
    assert!(store.delete_response(&t, "resp_1").await.unwrap());
    assert!(
        store
            .get_response(&t, "resp_1", 106)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .load_conversation(&t, "c1", 106)
            .await
            .unwrap()
            .messages
            .len(),
        4
    );

    // A deleted conversation: its responses cannot be continued (404), and
    // the forks that shared its history lose it with it.
    store.delete_conversation(&t, "c1").await.unwrap();
    let e = turn(store, &t, from(&r2, "f"), "q", "a", "resp_8", 107)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ContextError::NotFound { param, .. } if param == "previous_response_id"),
        "{e:?}"
    );
    let fork = store.load_conversation(&t, "fork1", 107).await.unwrap();
    assert_eq!(
        fork.messages
            .iter()
            .map(|m| m.message.text_content())
            .collect::<Vec<_>>(),
        ["q3", "a3", "q4", "a4"]
    );
}

#[tokio::test]
async fn responses_are_turns_forks_share_history_embedded() {
    let (store, _dir) = ctxgate_tests::embedded_store();
    state(&*store).await;
}

#[tokio::test]
async fn responses_are_turns_forks_share_history_dynamodb() {
    let store = ctxgate_tests::dynamo_store().await;
    state(&*store).await;
}
