//! One contract, two stores: every case runs against the embedded store and
//! against DynamoDB (through the emulator).

use std::sync::Arc;

use ctxgate::auth::{hash_key, mint_key};
use ctxgate::store::{
    ConversationMeta, MAX_ITEM_BYTES, Store, StoreError, StoredMessage, TurnWrite,
};
use ctxgate::wire::{ChatMessage, Role};

fn msg(seq: u64, role: Role, text: &str, expires_at: Option<i64>) -> StoredMessage {
    StoredMessage {
        seq,
        message: ChatMessage::text(role, text),
        tokens: Some(1),
        created: 100,
        model: None,
        expires_at,
    }
}

/// A turn of `texts` appended after `meta`, expiring at `expires_at`.
fn turn(meta: &ConversationMeta, texts: &[&str], now: i64, expires_at: Option<i64>) -> TurnWrite {
    let messages: Vec<StoredMessage> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            msg(
                meta.next_seq + i as u64,
                if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                t,
                expires_at,
            )
        })
        .collect();
    TurnWrite {
        expected_version: meta.version,
        meta: ConversationMeta {
            version: meta.version + 1,
            next_seq: meta.next_seq + texts.len() as u64,
            turns: meta.turns + 1,
            tokens: meta.tokens + 10,
            created: if meta.version == 0 { now } else { meta.created },
            updated: now,
            system: vec![ChatMessage::text(Role::System, "sys")],
            expires_at,
        },
        messages,
    }
}

fn texts(c: &ctxgate::store::Conversation) -> Vec<String> {
    c.messages
        .iter()
        .map(|m| m.message.text_content())
        .collect()
}

async fn ordering_and_versions(store: Arc<dyn Store>) {
    let empty = store.load_conversation("t1", "c1", 1000).await.unwrap();
    assert_eq!(empty.meta.version, 0);
    assert!(empty.messages.is_empty());
    assert!(store.conversation_meta("t1", "c1").await.unwrap().is_none());

    let mut meta = ConversationMeta::default();
    for i in 0..12 {
        let t = turn(&meta, &[&format!("q{i}"), &format!("a{i}")], 1000 + i, None);
        store.append_turn("t1", "c1", &t).await.unwrap();
        meta = t.meta;
    }
    let c = store.load_conversation("t1", "c1", 2000).await.unwrap();
    assert_eq!(c.meta, meta);
    assert_eq!(c.meta.system[0].text_content(), "sys");
    let want: Vec<String> = (0..12)
        .flat_map(|i| [format!("q{i}"), format!("a{i}")])
        .collect();
    assert_eq!(texts(&c), want);
    assert_eq!(
        c.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (0..24).collect::<Vec<_>>()
    );
    assert_eq!(
        store.conversation_meta("t1", "c1").await.unwrap(),
        Some(meta)
    );
}

async fn version_conflict(store: Arc<dyn Store>) {
    let base = ConversationMeta::default();
    let first = turn(&base, &["q", "a"], 10, None);
    store.append_turn("t1", "race", &first).await.unwrap();
    // A second writer that read the same (empty) state loses.
    let stale = turn(&base, &["other", "answer"], 11, None);
    assert!(matches!(
        store.append_turn("t1", "race", &stale).await,
        Err(StoreError::Conflict)
    ));
    // A writer holding an old version loses too, and writes nothing.
    let next = turn(&first.meta, &["q2", "a2"], 12, None);
    store.append_turn("t1", "race", &next).await.unwrap();
    let stale2 = turn(&first.meta, &["x", "y"], 13, None);
    assert!(matches!(
        store.append_turn("t1", "race", &stale2).await,
        Err(StoreError::Conflict)
    ));
    let c = store.load_conversation("t1", "race", 20).await.unwrap();
    assert_eq!(texts(&c), vec!["q", "a", "q2", "a2"]);
    assert_eq!(c.meta.version, 2);
}

async fn expiry(store: Arc<dyn Store>) {
    let t1 = turn(
        &ConversationMeta::default(),
        &["old-q", "old-a"],
        100,
        Some(200),
    );
    store.append_turn("t1", "exp", &t1).await.unwrap();
    let t2 = turn(&t1.meta, &["new-q", "new-a"], 150, Some(250));
    store.append_turn("t1", "exp", &t2).await.unwrap();
    // Before any expiry: everything.
    assert_eq!(
        texts(&store.load_conversation("t1", "exp", 199).await.unwrap()).len(),
        4
    );
    // Old messages expired, the conversation not yet.
    let c = store.load_conversation("t1", "exp", 220).await.unwrap();
    assert!(c.meta.is_live(220));
    assert_eq!(texts(&c), vec!["new-q", "new-a"]);
    // Everything expired: reads as an empty conversation that keeps its version.
    let gone = store.load_conversation("t1", "exp", 300).await.unwrap();
    assert!(!gone.meta.is_live(300));
    assert!(gone.messages.is_empty());
    assert_eq!(gone.meta.version, 2);
}

async fn tenant_separation(store: Arc<dyn Store>) {
    let t = turn(
        &ConversationMeta::default(),
        &["secret-of-a", "ok"],
        10,
        None,
    );
    store
        .append_turn("tenant-a", "shared-id", &t)
        .await
        .unwrap();
    let other = store
        .load_conversation("tenant-b", "shared-id", 20)
        .await
        .unwrap();
    assert_eq!(other.meta.version, 0);
    assert!(other.messages.is_empty());
    assert!(
        store
            .conversation_meta("tenant-b", "shared-id")
            .await
            .unwrap()
            .is_none()
    );
    // B may use the same id for its own conversation without touching A's.
    let tb = turn(&ConversationMeta::default(), &["b-q", "b-a"], 30, None);
    store
        .append_turn("tenant-b", "shared-id", &tb)
        .await
        .unwrap();
    assert_eq!(
        texts(
            &store
                .load_conversation("tenant-a", "shared-id", 40)
                .await
                .unwrap()
        ),
        vec!["secret-of-a", "ok"]
    );
    assert_eq!(
        texts(
            &store
                .load_conversation("tenant-b", "shared-id", 40)
                .await
                .unwrap()
        ),
        vec!["b-q", "b-a"]
    );
}

async fn too_large(store: Arc<dyn Store>) {
    let big = "x".repeat(MAX_ITEM_BYTES);
    let t = turn(&ConversationMeta::default(), &[big.as_str(), "a"], 10, None);
    assert!(matches!(
        store.append_turn("t1", "big", &t).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(
        store
            .load_conversation("t1", "big", 20)
            .await
            .unwrap()
            .meta
            .version,
        0
    );
    // Just under the limit fits.
    let fits = "y".repeat(MAX_ITEM_BYTES - 1024);
    let t = turn(
        &ConversationMeta::default(),
        &[fits.as_str(), "a"],
        10,
        None,
    );
    store.append_turn("t1", "big", &t).await.unwrap();
    assert_eq!(
        store
            .load_conversation("t1", "big", 20)
            .await
            .unwrap()
            .messages[0]
            .message
            .text_content()
            .len(),
        fits.len()
    );
}

async fn keys(store: Arc<dyn Store>) {
    let a = mint_key("acme", "one", &[], None, 10).unwrap();
    let b = mint_key("globex", "two", &["chat".into()], Some(99), 11).unwrap();
    store.put_key(&a.record).await.unwrap();
    store.put_key(&b.record).await.unwrap();
    assert_eq!(
        store.key_by_hash(&hash_key(&a.secret)).await.unwrap(),
        Some(a.record.clone())
    );
    assert_eq!(
        store.key_by_hash(&hash_key("cgk_nope")).await.unwrap(),
        None
    );
    let all = store.list_keys(None).await.unwrap();
    assert!(all.contains(&a.record) && all.contains(&b.record));
    assert_eq!(
        store.list_keys(Some("acme")).await.unwrap(),
        vec![a.record.clone()]
    );
    assert!(store.revoke_key(&a.record.key_id).await.unwrap());
    assert!(
        store
            .key_by_hash(&a.record.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(store.list_keys(Some("acme")).await.unwrap()[0].revoked);
    assert!(!store.revoke_key("key_missing").await.unwrap());
    assert!(
        !store
            .key_by_hash(&b.record.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

async fn counters(store: Arc<dyn Store>) {
    use ctxgate::store::CounterKey;
    let k = CounterKey {
        pk: "R#key_1".into(),
        sk: "100".into(),
    };
    assert_eq!(store.counter_get(&k).await.unwrap(), 0);
    assert!(
        store
            .counter_add(&k, 3, Some(5), Some(9_999))
            .await
            .unwrap()
    );
    assert!(store.counter_add(&k, 2, Some(5), None).await.unwrap());
    // Would pass the limit: refused, unchanged.
    assert!(!store.counter_add(&k, 1, Some(5), None).await.unwrap());
    assert!(!store.counter_add(&k, 10, Some(5), None).await.unwrap());
    assert_eq!(store.counter_get(&k).await.unwrap(), 5);
    // Giving back is never refused, even over a limit.
    assert!(store.counter_add(&k, -4, Some(0), None).await.unwrap());
    assert_eq!(store.counter_get(&k).await.unwrap(), 1);
    assert!(store.counter_add(&k, 100, None, None).await.unwrap());
    assert_eq!(store.counter_get(&k).await.unwrap(), 101);
    // Other windows and partitions are separate.
    assert_eq!(
        store
            .counter_get(&CounterKey {
                pk: "R#key_1".into(),
                sk: "101".into()
            })
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .counter_get(&CounterKey {
                pk: "R#key_2".into(),
                sk: "100".into()
            })
            .await
            .unwrap(),
        0
    );
}

async fn usage_rows(store: Arc<dyn Store>) {
    use ctxgate::store::UsageRow;
    let row = |day: &str, model: &str, tokens: u64| UsageRow {
        day: day.into(),
        model: model.into(),
        requests: 1,
        prompt_tokens: tokens,
        completion_tokens: 1,
        total_tokens: tokens + 1,
        cached_tokens: 2,
        reasoning_tokens: 3,
        cost_micro_usd: 7,
        price_version: "v1".into(),
    };
    for r in [
        row("2026-11-24", "echo", 10),
        row("2026-11-25", "echo", 5),
        row("2026-11-25", "echo", 5),
        row("2026-11-25", "openai/gpt-4o", 1),
        row("2026-11-26", "echo", 1),
    ] {
        store.add_usage("acme", &r).await.unwrap();
    }
    store
        .add_usage("other", &row("2026-11-25", "echo", 99))
        .await
        .unwrap();
    let rows = store
        .usage("acme", "2026-11-25", "2026-11-25")
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0].model.as_str(),
            rows[0].requests,
            rows[0].prompt_tokens,
            rows[0].cost_micro_usd
        ),
        ("echo", 2, 10, 14)
    );
    assert_eq!(
        (
            rows[0].cached_tokens,
            rows[0].reasoning_tokens,
            rows[0].price_version.as_str()
        ),
        (4, 6, "v1")
    );
    assert_eq!(rows[1].model, "openai/gpt-4o");
    assert_eq!(
        store
            .usage("acme", "2026-11-24", "2026-11-26")
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(
        store
            .usage("acme", "2026-12-01", "2026-12-31")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .usage("nobody", "2026-11-01", "2026-11-30")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn key_by_id(store: Arc<dyn Store>) {
    let spec = ctxgate::auth::KeySpec {
        tenant: "acme".into(),
        name: "n".into(),
        models: vec!["echo".into()],
        rpm: Some(9),
        ..Default::default()
    };
    let k = ctxgate::auth::mint(&spec, 5).unwrap();
    store.put_key(&k.record).await.unwrap();
    assert_eq!(
        store.get_key(&k.record.key_id).await.unwrap(),
        Some(k.record.clone())
    );
    assert_eq!(store.get_key("key_none").await.unwrap(), None);
}

macro_rules! conformance {
    ($($case:ident),*) => {
        mod embedded {
            $(#[tokio::test] async fn $case() { let (s, _dir) = ctxgate_tests::embedded_store(); super::$case(s).await; })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $case() { super::$case(ctxgate_tests::dynamo_store().await).await; })*
        }
    };
}

conformance!(
    ordering_and_versions,
    version_conflict,
    expiry,
    tenant_separation,
    too_large,
    keys,
    counters,
    usage_rows,
    key_by_id
);

#[tokio::test]
async fn embedded_store_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = ctxgate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        let t = turn(&ConversationMeta::default(), &["q", "a"], 10, None);
        store.append_turn("t1", "c", &t).await.unwrap();
    }
    let store = ctxgate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        texts(&store.load_conversation("t1", "c", 20).await.unwrap()),
        vec!["q", "a"]
    );
}
