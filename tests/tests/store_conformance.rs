//! One contract, two stores: every case runs against the embedded store and
//! against DynamoDB (through the emulator).

use std::sync::Arc;

use ctxgate::auth::{hash_key, mint_key};
use ctxgate::model::{Message as ChatMessage, Role};
use ctxgate::store::{
    ConversationMeta, ConversationStore, IdempotencyClaim, IdempotencyDone, IdempotencyRequest,
    ListPosition, MAX_ITEM_BYTES, MessageEdit, Order, PART_BYTES, Store, StoreError, StoredMessage,
    StoredResponse, TurnWrite, UsageRow, WindowLimit,
};

fn msg(seq: u64, role: Role, text: &str) -> StoredMessage {
    let mut m = StoredMessage::new(seq, ChatMessage::text(role, text), 100);
    m.tokens = Some(1);
    m
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
            ..meta.clone()
        },
        messages,
        ..TurnWrite::default()
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
    // A conversation expires as a whole: each turn refreshes it.
    let c = store.load_conversation("t1", "exp", 220).await.unwrap();
    assert!(c.meta.is_live(220));
    assert_eq!(texts(&c), vec!["old-q", "old-a", "new-q", "new-a"]);
    let page = store
        .message_page("t1", "exp", 300, Order::Asc, None, 10)
        .await
        .unwrap();
    assert!(page.meta.is_none() && page.messages.is_empty());
    let listed = store.list_conversations("t1", 300, None, 10).await.unwrap();
    assert!(listed.conversations.iter().all(|(id, _)| id != "exp"));
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
    // Issue 12, point 7: a message over one item is stored (split into
    // parts), not refused; only a header over the item limit is.
    let big = "x".repeat(MAX_ITEM_BYTES);
    let t = turn(&ConversationMeta::default(), &[big.as_str(), "a"], 10, None);
    store.append_turn("t1", "big", &t).await.unwrap();
    let c = store.load_conversation("t1", "big", 20).await.unwrap();
    assert_eq!(c.messages[0].message.text_content().len(), big.len());
    assert_eq!(c.messages[1].message.text_content(), "a");
    let mut header = turn(&ConversationMeta::default(), &["q", "a"], 10, None);
    header.meta.system = vec![ChatMessage::text(Role::System, big.as_str())];
    assert!(matches!(
        store.append_turn("t1", "big-head", &header).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(
        store
            .load_conversation("t1", "big-head", 20)
            .await
            .unwrap()
            .meta
            .version,
        0
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
    use ctxgate::store::{CounterAdd, CounterKey};
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

    // Several counters in one write, all or none (issue 19, point 1: a
    // turn's rate count and its reservation).
    let key = |pk: &str, sk: &str| CounterKey {
        pk: pk.into(),
        sk: sk.into(),
    };
    let (rate, tokens, cost) = (
        key("R#t#k", "7"),
        key("T#t#B", "d#tokens"),
        key("T#t#B", "d#cost"),
    );
    let add = |k: &CounterKey, delta, limit| CounterAdd {
        key: k.clone(),
        delta,
        limit: Some(limit),
        expires_at: Some(9_999),
    };
    let all = |t, c| vec![add(&rate, 1, 2), add(&tokens, t, 100), add(&cost, c, 50)];
    let values = async || {
        let mut v = Vec::new();
        for k in [&rate, &tokens, &cost] {
            v.push(store.counter_get(k).await.unwrap());
        }
        v
    };
    assert_eq!(store.counters_add(&[]).await.unwrap(), None);
    assert_eq!(store.counters_add(&all(60, 30)).await.unwrap(), None);
    assert_eq!(values().await, [1, 60, 30]);
    // The cost would pass its limit: nothing changes, and it is named.
    assert_eq!(store.counters_add(&all(10, 30)).await.unwrap(), Some(2));
    // The first to fail is named, or one larger than its limit alone.
    assert_eq!(store.counters_add(&all(41, 20)).await.unwrap(), Some(1));
    assert_eq!(store.counters_add(&all(41, 99)).await.unwrap(), Some(2));
    assert_eq!(store.counters_add(&all(500, 1)).await.unwrap(), Some(1));
    assert_eq!(values().await, [1, 60, 30]);
    assert_eq!(store.counters_add(&all(40, 20)).await.unwrap(), None);
    assert_eq!(values().await, [2, 100, 50]);
    // The rate window is full: refused first, nothing reserved.
    assert_eq!(store.counters_add(&all(0, 0)).await.unwrap(), Some(0));
    assert_eq!(values().await, [2, 100, 50]);
    // One addition alone, and giving back, which is never refused.
    assert_eq!(
        store.counters_add(&[add(&tokens, -100, 0)]).await.unwrap(),
        None
    );
    assert_eq!(
        store.counters_add(&[add(&rate, 1, 2)]).await.unwrap(),
        Some(0)
    );
    assert_eq!(values().await, [2, 0, 50]);
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
        cache_write_tokens: 4,
        reasoning_tokens: 3,
        cost_micro_usd: 7,
        price_version: "v1".into(),
        estimated_requests: 1,
        tool_errors: 1,
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
            rows[0].price_version.as_str(),
            // Issue 12, point 3: estimated requests add up like the others.
            rows[0].estimated_requests
        ),
        (4, 6, "v1", 2)
    );
    // Issue 14, point 5: cache writes add up beside the reads.
    assert_eq!((rows[0].cached_tokens, rows[0].cache_write_tokens), (4, 8));
    // Issue 15, point 7: failed tool calls add up too.
    assert_eq!(rows[0].tool_errors, 2);
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

/// Appends `n` turns of one question and one answer (10 tokens each) to `id`.
async fn fill(store: &dyn Store, tenant: &str, id: &str, n: u64, now: i64) -> ConversationMeta {
    let mut meta = store
        .conversation_meta(tenant, id)
        .await
        .unwrap()
        .unwrap_or_default();
    for i in 0..n {
        let mut t = turn(&meta, &[&format!("q{i}"), &format!("a{i}")], now, None);
        for m in &mut t.messages {
            m.tokens = Some(10);
        }
        store.append_turn(tenant, id, &t).await.unwrap();
        meta = t.meta;
    }
    meta
}

async fn windowed_reads(store: Arc<dyn Store>) {
    fill(&*store, "t1", "w", 30, 100).await;
    // Each message counts 10 + 4 overhead: a 70-token budget reads 6 messages
    // (the sixth crosses it) and reports the read as cut short.
    let c = store
        .load_window("t1", "w", 200, &|m| WindowLimit {
            from_seq: m.first_seq,
            tokens: 70,
        })
        .await
        .unwrap();
    assert_eq!(
        c.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (54..60).collect::<Vec<_>>()
    );
    assert!(!c.complete);
    assert_eq!(c.meta.next_seq, 60);
    // A start slot bounds the read; everything after it fits.
    let c = store
        .load_window("t1", "w", 200, &|_| WindowLimit {
            from_seq: 50,
            tokens: u64::MAX,
        })
        .await
        .unwrap();
    assert_eq!(c.messages.first().map(|m| m.seq), Some(50));
    assert_eq!(c.messages.len(), 10);
    assert!(c.complete);
}

/// Issue 13, point 6: the window walk over more messages than one page of
/// either backend (DynamoDB: 100 items a Query; embedded: 32 rows a read).
async fn windows_across_pages(store: Arc<dyn Store>) {
    fill(&*store, "t1", "long", 130, 100).await;
    let seqs =
        |c: &ctxgate::store::Conversation| c.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let all = store.load_conversation("t1", "long", 200).await.unwrap();
    assert_eq!(seqs(&all), (0..260).collect::<Vec<_>>());
    assert!(all.complete);
    // 14 tokens a message: a budget one token short of 150 messages stops
    // at the 150th, pages into the read.
    let c = store
        .load_window("t1", "long", 200, &|m| WindowLimit {
            from_seq: m.first_seq,
            tokens: 150 * 14 - 1,
        })
        .await
        .unwrap();
    assert_eq!(seqs(&c), (110..260).collect::<Vec<_>>());
    assert!(!c.complete);
    let c = store
        .load_window("t1", "long", 200, &|_| WindowLimit {
            from_seq: 5,
            tokens: u64::MAX,
        })
        .await
        .unwrap();
    assert_eq!(seqs(&c), (5..260).collect::<Vec<_>>());
    assert!(c.complete);
}

/// Issue 13, point 6: a message split into parts reads whole in a window,
/// also when its parts straddle two pages of the descending read.
async fn split_messages_in_windows(store: Arc<dyn Store>) {
    let big = "y".repeat(2 * PART_BYTES + 10);
    let t = turn(
        &ConversationMeta::default(),
        &[big.as_str(), "a"],
        100,
        None,
    );
    store.append_turn("t1", "split", &t).await.unwrap();
    // On DynamoDB the first page (100 items) then holds the head, the 96
    // newer messages, "a" and two of the big message's three parts.
    let meta = fill(&*store, "t1", "split", 48, 100).await;
    assert_eq!(meta.next_seq, 98);
    let c = store.load_conversation("t1", "split", 200).await.unwrap();
    assert_eq!(c.messages.len(), 98);
    assert_eq!(texts(&c)[..2], [big.clone(), "a".to_owned()]);
    assert!(c.complete);
    // A budget used up by the big message (96 x 14 + 5 + 5 tokens) still
    // returns it whole, and says the read stopped there.
    let c = store
        .load_window("t1", "split", 200, &|m| WindowLimit {
            from_seq: m.first_seq,
            tokens: 96 * 14 + 5 + 4,
        })
        .await
        .unwrap();
    assert_eq!(c.messages.len(), 98);
    assert_eq!(texts(&c)[0], big);
    assert!(!c.complete);
}

async fn message_pages(store: Arc<dyn Store>) {
    fill(&*store, "t1", "p", 5, 100).await;
    let page = |order, after, limit| {
        let store = store.clone();
        async move {
            store
                .message_page("t1", "p", 200, order, after, limit)
                .await
                .unwrap()
        }
    };
    let first = page(Order::Asc, None, 4).await;
    assert!(first.meta.is_some() && first.has_more);
    assert_eq!(
        first.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let next = page(Order::Asc, Some(3), 4).await;
    assert_eq!(
        next.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
    let last = page(Order::Asc, Some(7), 4).await;
    assert_eq!(
        last.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [8, 9]
    );
    assert!(!last.has_more);
    let desc = page(Order::Desc, None, 3).await;
    assert_eq!(
        desc.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [9, 8, 7]
    );
    let desc2 = page(Order::Desc, Some(7), 10).await;
    assert_eq!(desc2.messages.first().map(|m| m.seq), Some(6));
    assert_eq!(desc2.messages.len(), 7);
    assert!(!desc2.has_more);
    let missing = store
        .message_page("t1", "none", 200, Order::Asc, None, 5)
        .await
        .unwrap();
    assert!(missing.meta.is_none());
    assert!(
        store
            .message_page("t2", "p", 200, Order::Asc, None, 5)
            .await
            .unwrap()
            .meta
            .is_none()
    );
}

async fn listing(store: Arc<dyn Store>) {
    for (i, id) in ["c-a", "c-b", "c-c", "c-d", "c-e"].iter().enumerate() {
        fill(&*store, "lister", id, 1, 1000 + i as i64).await;
    }
    fill(&*store, "other", "c-z", 1, 5000).await;
    // Touching c-b makes it the newest.
    fill(&*store, "lister", "c-b", 1, 2000).await;
    let ids = |p: &ctxgate::store::ConversationPage| {
        p.conversations
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>()
    };
    let p1 = store
        .list_conversations("lister", 3000, None, 2)
        .await
        .unwrap();
    assert_eq!(ids(&p1), ["c-b", "c-e"]);
    assert_eq!(p1.conversations[0].1.turns, 2);
    let next = p1.next.clone().expect("more to come");
    assert_eq!(
        next,
        ListPosition {
            updated: 1004,
            id: "c-e".into()
        }
    );
    let p2 = store
        .list_conversations("lister", 3000, Some(&next), 10)
        .await
        .unwrap();
    assert_eq!(ids(&p2), ["c-d", "c-c", "c-a"]);
    assert!(p2.next.is_none());
    let other = store
        .list_conversations("other", 3000, None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&other), ["c-z"]);
}

async fn deletion(store: Arc<dyn Store>) {
    // More than one batch of deletes (25 a batch).
    fill(&*store, "t1", "del", 40, 100).await;
    fill(&*store, "t1", "keep", 1, 100).await;
    store.delete_conversation("t1", "del").await.unwrap();
    let c = store.load_conversation("t1", "del", 200).await.unwrap();
    assert!(c.messages.is_empty());
    // Issue 12, point 5: what is left is a tombstone that keeps the version.
    assert!(
        store
            .conversation_meta("t1", "del")
            .await
            .unwrap()
            .is_none_or(|m| m.is_tombstone() && !m.is_live(200))
    );
    let listed = store.list_conversations("t1", 200, None, 10).await.unwrap();
    assert_eq!(listed.conversations.len(), 1);
    // Idempotent, and the neighbour is untouched.
    store.delete_conversation("t1", "del").await.unwrap();
    assert_eq!(
        store
            .load_conversation("t1", "keep", 200)
            .await
            .unwrap()
            .messages
            .len(),
        2
    );
    // The id can start again from scratch.
    fill(&*store, "t1", "del", 1, 300).await;
    let again = store.load_conversation("t1", "del", 400).await.unwrap();
    assert_eq!(texts(&again), ["q0", "a0"]);
    // Purging a range removes exactly those slots.
    fill(&*store, "t1", "pur", 3, 100).await;
    store.purge_messages("t1", "pur", 0, 4).await.unwrap();
    let page = store
        .message_page("t1", "pur", 200, Order::Asc, None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [4, 5]
    );
}

async fn idempotency(store: Arc<dyn Store>) {
    let req = |fp: &'static str, token: &'static str, now: i64| IdempotencyRequest {
        key: "k-1",
        fingerprint: fp,
        token,
        now,
        lease_until: now + 60,
        expires_at: now + 86_400,
    };
    let claim = |r: IdempotencyRequest<'static>| {
        let store = store.clone();
        async move { store.idempotency_claim("t1", &r).await.unwrap() }
    };
    assert_eq!(
        claim(req("fp", "tok-a", 100)).await,
        IdempotencyClaim::Acquired
    );
    assert_eq!(
        claim(req("fp", "tok-b", 101)).await,
        IdempotencyClaim::InProgress
    );
    assert_eq!(
        claim(req("other", "tok-b", 101)).await,
        IdempotencyClaim::Mismatch
    );
    // Another tenant's key of the same name is its own.
    assert_eq!(
        store
            .idempotency_claim("t2", &req("other", "x", 101))
            .await
            .unwrap(),
        IdempotencyClaim::Acquired
    );
    // A released claim can be taken again; a stranger's release does nothing.
    store
        .idempotency_release("t1", "k-1", "tok-zzz")
        .await
        .unwrap();
    assert_eq!(
        claim(req("fp", "tok-b", 102)).await,
        IdempotencyClaim::InProgress
    );
    store
        .idempotency_release("t1", "k-1", "tok-a")
        .await
        .unwrap();
    assert_eq!(
        claim(req("fp", "tok-c", 103)).await,
        IdempotencyClaim::Acquired
    );
    // A dead attempt's claim is taken over once its lease ran out.
    assert_eq!(
        claim(req("fp", "tok-d", 170)).await,
        IdempotencyClaim::Acquired
    );
    // Completing with a lost claim is a conflict and stores nothing.
    let response = StoredResponse {
        status: 200,
        headers: vec![("x-conversation-id".into(), "c".into())],
        body: "{\"ok\":true}".into(),
        conversation: None,
    };
    let done = |token: &str| IdempotencyDone {
        key: "k-1".into(),
        token: token.into(),
        response: response.clone(),
        expires_at: 170 + 86_400,
    };
    assert!(matches!(
        store.idempotency_complete("t1", &done("tok-c")).await,
        Err(StoreError::Conflict)
    ));
    // Completed inside a turn's transaction, with the turn's usage.
    let mut t = turn(&ConversationMeta::default(), &["q", "a"], 170, None);
    t.idempotency = Some(done("tok-d"));
    t.usage = vec![UsageRow {
        day: "2026-01-01".into(),
        model: "echo".into(),
        requests: 1,
        total_tokens: 5,
        ..UsageRow::default()
    }];
    store.append_turn("t1", "idem-conv", &t).await.unwrap();
    assert_eq!(
        claim(req("fp", "tok-e", 171)).await,
        IdempotencyClaim::Replay(response.clone())
    );
    assert_eq!(
        claim(req("other", "tok-e", 171)).await,
        IdempotencyClaim::Mismatch
    );
    let usage = store.usage("t1", "2026-01-01", "2026-01-01").await.unwrap();
    assert_eq!(usage[0].total_tokens, 5);
    // A turn whose claim was lost is refused whole.
    let mut lost = turn(&t.meta, &["q2", "a2"], 172, None);
    lost.idempotency = Some(done("tok-stolen"));
    assert!(matches!(
        store.append_turn("t1", "idem-conv", &lost).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .load_conversation("t1", "idem-conv", 180)
            .await
            .unwrap()
            .messages
            .len(),
        2
    );
    // After 24 hours the key is free again, whatever the body.
    assert_eq!(
        claim(req("new", "tok-f", 170 + 86_400)).await,
        IdempotencyClaim::Acquired
    );
}

/// Issue 18: one slot rewritten shorter or removed, with the header, only
/// at the version read: a split message leaves no stale part, every reader
/// (window, pages, listing) skips a removed slot, another tenant's edit
/// touches nothing of this one.
async fn message_edits(store: Arc<dyn Store>) {
    let big = "y".repeat(2 * PART_BYTES + 10);
    let t = turn(
        &ConversationMeta::default(),
        &[big.as_str(), "a", "q2"],
        100,
        None,
    );
    store.append_turn("t1", "e", &t).await.unwrap();
    let meta = t.meta;
    let edit = |meta: &ConversationMeta, seq: u64, message: Option<StoredMessage>| MessageEdit {
        expected_version: meta.version,
        meta: ConversationMeta {
            version: meta.version + 1,
            updated: meta.updated + 1,
            ..meta.clone()
        },
        seq,
        message,
    };
    // A stale version changes nothing.
    let mut stale = edit(&meta, 0, None);
    stale.expected_version -= 1;
    assert!(matches!(
        store.edit_message("t1", "e", &stale).await,
        Err(StoreError::Conflict)
    ));
    // The split message (three parts) rewritten as a short one.
    let e = edit(&meta, 0, Some(msg(0, Role::User, "short")));
    store.edit_message("t1", "e", &e).await.unwrap();
    let meta = e.meta;
    let c = store.load_conversation("t1", "e", 200).await.unwrap();
    assert_eq!(texts(&c), ["short", "a", "q2"]);
    assert_eq!(c.meta, meta);
    let pages = store
        .message_page("t1", "e", 200, Order::Asc, None, 10)
        .await
        .unwrap();
    assert_eq!(pages.messages.len(), 3);
    // A slot removed: windows and pages of both orders skip it.
    let e = edit(&meta, 1, None);
    store.edit_message("t1", "e", &e).await.unwrap();
    let meta = e.meta;
    let c = store.load_conversation("t1", "e", 200).await.unwrap();
    assert_eq!(texts(&c), ["short", "q2"]);
    for order in [Order::Asc, Order::Desc] {
        let p = store
            .message_page("t1", "e", 200, order, None, 1)
            .await
            .unwrap();
        assert_eq!(p.messages.len(), 1);
        assert!(p.has_more);
        let p = store
            .message_page("t1", "e", 200, order, Some(p.messages[0].seq), 5)
            .await
            .unwrap();
        assert_eq!(p.messages.len(), 1);
        assert!(!p.has_more);
    }
    let listed = store.list_conversations("t1", 200, None, 10).await.unwrap();
    assert_eq!(listed.conversations.len(), 1);
    assert_eq!(listed.conversations[0].1.version, meta.version);
    // A split message rewritten as another split one: no part of the old stays.
    let other = "z".repeat(PART_BYTES + 10);
    let e = edit(&meta, 0, Some(msg(0, Role::User, &other)));
    store.edit_message("t1", "e", &e).await.unwrap();
    let c = store.load_conversation("t1", "e", 200).await.unwrap();
    assert_eq!(texts(&c), [other.as_str(), "q2"]);
    // The same id of another tenant is another conversation.
    assert!(matches!(
        store.edit_message("t2", "e", &edit(&meta, 0, None)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        texts(&store.load_conversation("t1", "e", 200).await.unwrap()).len(),
        2
    );
    // Deleting the conversation removes what the edits left.
    store.delete_conversation("t1", "e").await.unwrap();
    assert!(
        store
            .load_conversation("t1", "e", 200)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}

// Issue 19, point 1: a usage batch adds its rows and counter deltas
// atomically, and the same batch (same id) applied again counts once.
async fn usage_batches(store: Arc<dyn Store>) {
    use ctxgate::store::{CounterKey, UsageBatch};
    let row = |model: &str, tokens: u64| UsageRow {
        day: "2026-11-30".into(),
        model: model.into(),
        requests: 2,
        total_tokens: tokens,
        price_version: "v1".into(),
        ..UsageRow::default()
    };
    let budget = CounterKey {
        pk: "T#acme#B".into(),
        sk: "2026-11-30#tokens".into(),
    };
    assert!(
        store
            .counter_add(&budget, 100, Some(1000), None)
            .await
            .unwrap()
    );
    store.add_usage("acme", &row("echo", 1)).await.unwrap();
    let batch = UsageBatch {
        id: ctxgate_tests::unique("batch"),
        rows: vec![
            ("acme".into(), row("echo", 10)),
            ("acme".into(), row("openai/gpt-4o", 5)),
            ("other".into(), row("echo", 7)),
        ],
        counters: vec![(budget.clone(), -60)],
    };
    store.add_usage_batch(&batch).await.unwrap();
    // A flush whose answer was lost is retried as it was.
    store.add_usage_batch(&batch).await.unwrap();
    let rows = store
        .usage("acme", "2026-11-30", "2026-11-30")
        .await
        .unwrap();
    let got: Vec<(&str, u64, u64)> = rows
        .iter()
        .map(|r| (r.model.as_str(), r.requests, r.total_tokens))
        .collect();
    assert_eq!(got, vec![("echo", 4, 11), ("openai/gpt-4o", 2, 5)]);
    let other = store
        .usage("other", "2026-11-30", "2026-11-30")
        .await
        .unwrap();
    assert_eq!((other[0].requests, other[0].total_tokens), (2, 7));
    assert_eq!(store.counter_get(&budget).await.unwrap(), 40);
    // Another batch is another id: it counts.
    let again = UsageBatch {
        id: ctxgate_tests::unique("batch"),
        ..batch
    };
    store.add_usage_batch(&again).await.unwrap();
    assert_eq!(store.counter_get(&budget).await.unwrap(), -20);
    store.add_usage_batch(&UsageBatch::default()).await.unwrap();
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
    usage_batches,
    key_by_id,
    windowed_reads,
    windows_across_pages,
    split_messages_in_windows,
    message_pages,
    listing,
    deletion,
    idempotency,
    message_edits
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
