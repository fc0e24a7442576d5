//! Issue 12, storage: deleted means deleted (point 5), answers of any size
//! are stored (point 7), the per-tenant conversation cap (point 4) and the
//! embedded store's sweep (point 13). Storage cases run on both stores.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ctxgate::context::{self, Answer, ContextError, TurnExtras, WindowSettings};
use ctxgate::model::{FinishReason, Message as ChatMessage, Response, Role, Usage};
use ctxgate::store::{
    ConversationMeta, ConversationStore, CounterKey, CounterStore, IdempotencyClaim,
    IdempotencyDone, IdempotencyRequest, IdempotencyStore, Order, Store, StoreError, StoredMessage,
    StoredResponse, TurnWrite,
};

const SETTINGS: WindowSettings = WindowSettings {
    context_window: 1_000_000,
    output_reserve: 1000,
    safety_margin: 0,
    summarize: false,
    summarize_after_turns: 2,
    stable_slack: None,
};

fn completion(text: String) -> Response {
    Response {
        id: None,
        model: None,
        message: ChatMessage::text(Role::Assistant, text),
        finish: FinishReason::Stop,
        stop_sequence: None,
        usage: Usage::new(1, 1),
        usage_reported: true,
    }
}

/// One turn through the context manager: prepare, then commit `answer`.
/// Returns the prompt it was prepared with and how the commit went.
async fn run_turn(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    question: String,
    answer: String,
    now: i64,
    cap: Option<u64>,
) -> (Vec<ChatMessage>, Result<(), ContextError>) {
    let prepared = match context::prepare(
        store,
        tenant,
        Some(id),
        vec![ChatMessage::text(Role::User, question)],
        now,
        &SETTINGS,
        cap,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let c = completion(answer);
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
        conversation_cap: cap,
        ..TurnExtras::default()
    };
    let turn = prepared.turn.expect("a conversation turn");
    let committed = context::commit(store, tenant, turn, &a, &extras, now).await;
    (prepared.prompt, committed)
}

/// Creates a conversation through the conversations API's path (fails if live).
async fn create(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    title: &str,
    system: &str,
    now: i64,
    cap: Option<u64>,
) -> Result<ConversationMeta, StoreError> {
    context::update_meta(store, tenant, id, now, None, cap, |meta, live| {
        if live {
            return Err(StoreError::Conflict);
        }
        meta.title = Some(title.to_owned());
        meta.system = vec![ChatMessage::text(Role::System, system)];
        Ok(())
    })
    .await
}

/// What one race round found wrong.
fn violations(
    conv: &ctxgate::store::Conversation,
    now: i64,
    round: u64,
    stale: &[String],
) -> Vec<String> {
    let mut found = Vec::new();
    let meta = &conv.meta;
    if !meta.is_live(now) {
        if !conv.messages.is_empty() {
            found.push(format!(
                "round {round}: a deleted conversation shows messages"
            ));
        }
        return found;
    }
    // No gaps: the life's slots are exactly first_seq..next_seq, in pairs.
    let seqs: Vec<u64> = conv.messages.iter().map(|m| m.seq).collect();
    let want: Vec<u64> = (meta.first_seq..meta.next_seq).collect();
    if seqs != want {
        found.push(format!("round {round}: slots {seqs:?}, expected {want:?}"));
    }
    if conv.messages.len() as u64 != 2 * meta.turns {
        found.push(format!(
            "round {round}: {} messages for {} turns",
            conv.messages.len(),
            meta.turns
        ));
    }
    let texts: Vec<String> = conv
        .messages
        .iter()
        .map(|m| m.message.text_content())
        .collect();
    for (i, pair) in texts.chunks(2).enumerate() {
        let [q, a] = pair else {
            continue;
        };
        if q.strip_prefix("q-") != a.strip_prefix("a-") {
            found.push(format!("round {round}: pair {i} is {q:?}/{a:?}"));
        }
    }
    // Nothing of the deleted life: its title, system prompt, messages, or
    // answers that were prepared on it.
    let old_title = format!("life-{round}");
    if meta.title.as_deref() == Some(old_title.as_str()) {
        found.push(format!("round {round}: the deleted life's title is back"));
    }
    if meta
        .system
        .iter()
        .any(|m| m.text_content() == format!("sys-{round}"))
    {
        found.push(format!(
            "round {round}: the deleted life's system prompt is back"
        ));
    }
    for t in &texts {
        let tag = t.get(2..).unwrap_or_default();
        if tag.starts_with(&format!("old-{round}-")) || stale.iter().any(|s| s == tag) {
            found.push(format!("round {round}: {t:?} belongs to the deleted life"));
        }
        if !tag.contains(&format!("-{round}-")) {
            found.push(format!("round {round}: {t:?} is from another round"));
        }
    }
    found
}

/// Issue 12, point 5: a turn that raced a delete never writes into a later
/// conversation with the same id (no old title, system prompt or messages,
/// no sequence gaps). Each round: a life with a title, system prompt and a
/// turn; then concurrently three turns, and a delete followed by a re-create.
/// Returns (turns run, turns stored, violations).
async fn delete_race(store: Arc<dyn Store>, rounds: u64) -> (u64, u64, Vec<String>) {
    let tenant = "racer";
    let id = "raced";
    let ran = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let mut found = Vec::new();
    for round in 0..rounds {
        let now = 1_000 + round as i64;
        // A clean start for the round: the previous round's life goes.
        store.delete_conversation(tenant, id).await.unwrap();
        create(
            &*store,
            tenant,
            id,
            &format!("life-{round}"),
            &format!("sys-{round}"),
            now,
            None,
        )
        .await
        .unwrap();
        let (_, first) = run_turn(
            &*store,
            tenant,
            id,
            format!("q-old-{round}-0"),
            format!("a-old-{round}-0"),
            now,
            None,
        )
        .await;
        first.unwrap();
        let mut tasks = Vec::new();
        for k in 0..3 {
            let store = store.clone();
            let (ran, stored) = (ran.clone(), stored.clone());
            tasks.push(tokio::spawn(async move {
                let tag = format!("t-{round}-{k}");
                let (prompt, result) = run_turn(
                    &*store,
                    tenant,
                    id,
                    format!("q-{tag}"),
                    format!("a-{tag}"),
                    now,
                    None,
                )
                .await;
                ran.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(()) => {
                        stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(ContextError::Store(StoreError::Gone | StoreError::Conflict)) => {}
                    Err(e) => panic!("turn failed: {e}"),
                }
                // A turn that saw the deleted life must not be visible after it.
                let saw_old = prompt.iter().any(|m| {
                    let t = m.text_content();
                    t == format!("sys-{round}") || t.contains(&format!("old-{round}-"))
                });
                saw_old.then_some(tag)
            }));
        }
        let deleter = {
            let store = store.clone();
            tokio::spawn(async move {
                store.delete_conversation(tenant, id).await.unwrap();
                // Another life may have begun already (a turn after the delete).
                let _ = create(
                    &*store,
                    tenant,
                    id,
                    &format!("new-{round}"),
                    "sys-new",
                    now,
                    None,
                )
                .await;
            })
        };
        let mut stale = Vec::new();
        for t in tasks {
            stale.extend(t.await.unwrap());
        }
        deleter.await.unwrap();
        let conv = store.load_conversation(tenant, id, now).await.unwrap();
        found.extend(violations(&conv, now, round, &stale));
    }
    (
        ran.load(Ordering::Relaxed),
        stored.load(Ordering::Relaxed),
        found,
    )
}

async fn race_reports(store: Arc<dyn Store>, name: &str, rounds: u64) {
    let (ran, stored, found) = delete_race(store, rounds).await;
    // The figure for the closing note.
    println!(
        "delete/re-create race on {name}: {rounds} rounds, {ran} turns run, {stored} stored, {} violations",
        found.len()
    );
    assert!(found.is_empty(), "{found:#?}");
    assert!(stored > 0, "some turns must have been stored");
}

/// Issue 12, point 5: a turn prepared on a deleted life fails its write,
/// even once a new life has reached the version it read.
async fn stale_turn_never_lands(store: Arc<dyn Store>) {
    let now = 100;
    create(&*store, "t1", "c", "life-1", "sys-1", now, None)
        .await
        .unwrap();
    let old = store.conversation_meta("t1", "c").await.unwrap().unwrap();
    store.delete_conversation("t1", "c").await.unwrap();
    let tomb = store.conversation_meta("t1", "c").await.unwrap().unwrap();
    assert!(!tomb.is_live(now) && tomb.version > old.version);
    // The new life numbers on above the old one: versions never repeat.
    let new = create(&*store, "t1", "c", "life-2", "sys-2", now, None)
        .await
        .unwrap();
    assert!(new.version > tomb.version && new.life != old.life);
    let write = TurnWrite {
        expected_version: old.version,
        meta: ConversationMeta {
            version: old.version + 1,
            ..old.clone()
        },
        ..TurnWrite::default()
    };
    assert!(matches!(
        store.append_turn("t1", "c", &write).await,
        Err(StoreError::Conflict)
    ));
    let now_meta = store.conversation_meta("t1", "c").await.unwrap().unwrap();
    assert_eq!(now_meta.title.as_deref(), Some("life-2"));
    // Deleted twice is still deleted once.
    store.delete_conversation("t1", "c").await.unwrap();
    store.delete_conversation("t1", "c").await.unwrap();
    let gone = store.load_conversation("t1", "c", now).await.unwrap();
    assert!(!gone.meta.is_live(now) && gone.messages.is_empty());
}

/// Issue 12, point 7: an answer of any size a provider can produce (here
/// about 1 MB, over DynamoDB's 400 KB item limit) is stored and reads back
/// whole from every read path.
async fn large_answers_are_split_and_reassembled(store: Arc<dyn Store>) {
    let now = 100;
    let big: String = (0..1_000_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    // Multi-byte characters straddle the part boundaries too.
    let wide = "é€𝄞".repeat(120_000);
    for (i, answer) in [big.clone(), wide.clone(), big.clone(), "small".to_owned()]
        .into_iter()
        .enumerate()
    {
        let (_, r) = run_turn(&*store, "t1", "big", format!("q{i}"), answer, now, None).await;
        r.unwrap();
    }
    let conv = store.load_conversation("t1", "big", now).await.unwrap();
    let texts: Vec<String> = conv
        .messages
        .iter()
        .map(|m| m.message.text_content())
        .collect();
    assert_eq!(texts.len(), 8);
    assert_eq!(texts[1], big);
    assert_eq!(texts[3], wide);
    assert_eq!(texts[5], big);
    assert_eq!(texts[7], "small");
    for order in [Order::Asc, Order::Desc] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .message_page("t1", "big", now, order, after, 3)
                .await
                .unwrap();
            seen.extend(page.messages.iter().map(|m| m.seq));
            after = page.messages.last().map(|m| m.seq);
            let sizes_ok = page.messages.iter().all(|m| {
                let t = m.message.text_content();
                t == big || t == wide || t.len() < 10
            });
            assert!(sizes_ok, "a split message read back partial");
            if !page.has_more {
                break;
            }
        }
        let mut want: Vec<u64> = (0..8).collect();
        if order == Order::Desc {
            want.reverse();
        }
        assert_eq!(seen, want, "{order:?}");
    }
    // A window that stops early still returns whole messages.
    let window = store
        .load_window("t1", "big", now, &|m| ctxgate::store::WindowLimit {
            from_seq: m.first_seq,
            tokens: 10,
        })
        .await
        .unwrap();
    assert!(!window.complete);
    assert_eq!(
        window.messages.last().unwrap().message.text_content(),
        "small"
    );
    // Deleting removes every part.
    store.delete_conversation("t1", "big").await.unwrap();
    let (_, r) = run_turn(
        &*store,
        "t1",
        "big",
        "again".into(),
        "fresh".into(),
        now,
        None,
    )
    .await;
    r.unwrap();
    let again = store.load_conversation("t1", "big", now).await.unwrap();
    assert_eq!(again.messages.len(), 2);
    assert_eq!(again.messages[1].message.text_content(), "fresh");
}

/// Issue 12, point 7: what cannot be stored is refused before the provider
/// is called, naming the field: a system prompt over the header item limit.
async fn oversized_header_is_refused_before_the_provider(store: Arc<dyn Store>) {
    let prepared = context::prepare(
        &*store,
        "t1",
        Some("sys"),
        vec![
            ChatMessage::text(Role::System, "s".repeat(400_000)),
            ChatMessage::text(Role::User, "hi"),
        ],
        100,
        &SETTINGS,
        None,
    )
    .await;
    match prepared {
        Err(ContextError::TooLarge { param, .. }) => assert_eq!(param, "messages[0]"),
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.window)),
    }
    // The same prompt as a message (split into parts) is fine.
    let ok = context::prepare(
        &*store,
        "t1",
        Some("sys"),
        vec![ChatMessage::text(Role::User, "u".repeat(400_000))],
        100,
        &SETTINGS,
        None,
    )
    .await;
    assert!(ok.is_ok());
    // More messages than one transaction holds beside the answer: refused
    // before the provider; one fewer fits.
    let many = |n: usize| {
        (0..n)
            .map(|i| ChatMessage::text(Role::User, format!("m{i}")))
            .collect::<Vec<_>>()
    };
    let refused =
        context::prepare(&*store, "t1", Some("many"), many(92), 100, &SETTINGS, None).await;
    assert!(
        matches!(&refused, Err(ContextError::TooLarge { param, .. }) if param == "messages"),
        "{:?}",
        refused.map(|p| p.window)
    );
    let fits = context::prepare(&*store, "t1", Some("many"), many(91), 100, &SETTINGS, None).await;
    assert!(fits.is_ok());
}

/// Issue 12, point 4: a tenant stores at most its cap of conversations;
/// the count is kept in the store's own transactions, so deleting frees a
/// place, and other tenants are not affected.
async fn conversation_cap(store: Arc<dyn Store>) {
    let now = 100;
    let cap = Some(2);
    create(&*store, "capped", "a", "a", "s", now, cap)
        .await
        .unwrap();
    let (_, r) = run_turn(&*store, "capped", "b", "q".into(), "a".into(), now, cap).await;
    r.unwrap();
    // More turns on a stored conversation are fine.
    let (_, r) = run_turn(&*store, "capped", "b", "q2".into(), "a2".into(), now, cap).await;
    r.unwrap();
    // A third conversation is refused, by a turn (before any provider call) or by create.
    let (prompt, r) = run_turn(&*store, "capped", "c", "q".into(), "a".into(), now, cap).await;
    assert!(prompt.is_empty());
    assert!(
        matches!(
            r,
            Err(ContextError::Store(StoreError::TooManyConversations {
                limit: 2
            }))
        ),
        "{r:?}"
    );
    assert!(matches!(
        create(&*store, "capped", "c", "c", "s", now, cap).await,
        Err(StoreError::TooManyConversations { limit: 2 })
    ));
    assert!(
        !store
            .load_conversation("capped", "c", now)
            .await
            .unwrap()
            .meta
            .is_live(now)
    );
    // The atomic check holds even when the early one is passed (a race).
    let write = TurnWrite {
        expected_version: 0,
        meta: ConversationMeta {
            version: 1,
            created: now,
            updated: now,
            ..ConversationMeta::default()
        },
        conversation_cap: cap,
        creates: true,
        ..TurnWrite::default()
    };
    assert!(matches!(
        store.append_turn("capped", "d", &write).await,
        Err(StoreError::TooManyConversations { .. })
    ));
    // Another tenant has its own count.
    create(&*store, "other", "c", "c", "s", now, cap)
        .await
        .unwrap();
    // Deleting frees a place; deleting twice frees it once.
    store.delete_conversation("capped", "a").await.unwrap();
    store.delete_conversation("capped", "a").await.unwrap();
    create(&*store, "capped", "c", "c", "s", now, cap)
        .await
        .unwrap();
    assert!(matches!(
        create(&*store, "capped", "a", "a", "s", now, cap).await,
        Err(StoreError::TooManyConversations { .. })
    ));
}

/// Issue 12, point 5: an idempotent replay of a turn is not served once its
/// conversation was deleted (even if the id lives again), and is served
/// while it lives.
async fn replay_of_a_deleted_turn(store: Arc<dyn Store>) {
    let now = 100;
    let claim = IdempotencyRequest {
        key: "k",
        fingerprint: "fp",
        token: "tok",
        now,
        lease_until: now + 60,
        expires_at: now + 86_400,
    };
    assert_eq!(
        store.idempotency_claim("t1", &claim).await.unwrap(),
        IdempotencyClaim::Acquired
    );
    let prepared = context::prepare(
        &*store,
        "t1",
        Some("idem"),
        vec![ChatMessage::text(Role::User, "q")],
        now,
        &SETTINGS,
        None,
    )
    .await
    .unwrap();
    let c = completion("a".into());
    let a = Answer {
        earlier: &[],
        response: &c,
        model: "echo",
        provider: "echo",
        latency_ms: 1,
        redactions: BTreeMap::new(),
        after: &[],
    };
    let response = StoredResponse {
        status: 200,
        headers: vec![],
        body: "{}".into(),
        conversation: None,
    };
    let extras = TurnExtras {
        idempotency: Some(IdempotencyDone {
            key: "k".into(),
            token: "tok".into(),
            response,
            expires_at: now + 86_400,
        }),
        ..TurnExtras::default()
    };
    context::commit(&*store, "t1", prepared.turn.unwrap(), &a, &extras, now)
        .await
        .unwrap();
    let again = IdempotencyRequest {
        token: "tok-2",
        ..claim.clone()
    };
    let IdempotencyClaim::Replay(stored) = store.idempotency_claim("t1", &again).await.unwrap()
    else {
        panic!("expected a replay");
    };
    assert!(stored.conversation.is_some());
    ctxgate::idempotency::check_replay(&*store, "t1", &stored, now)
        .await
        .unwrap();
    store.delete_conversation("t1", "idem").await.unwrap();
    let e = ctxgate::idempotency::check_replay(&*store, "t1", &stored, now)
        .await
        .unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (409, "conversation_deleted"));
    // A new life under the same id does not bring the old answer back.
    create(&*store, "t1", "idem", "new", "s", now, None)
        .await
        .unwrap();
    assert!(
        ctxgate::idempotency::check_replay(&*store, "t1", &stored, now)
            .await
            .is_err()
    );
}

macro_rules! both_stores {
    ($($case:ident),*) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
              async fn $case() { let (s, _dir) = ctxgate_tests::embedded_store(); super::$case(s).await; })*
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn delete_recreate_race() {
                let (s, _dir) = ctxgate_tests::embedded_store();
                super::race_reports(s, "embedded", 200).await;
            }
        }
        mod dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
              async fn $case() { super::$case(ctxgate_tests::dynamo_store().await).await; })*
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn delete_recreate_race() {
                super::race_reports(ctxgate_tests::dynamo_store().await, "dynamodb", 60).await;
            }
        }
    };
}

both_stores!(
    stale_turn_never_lands,
    large_answers_are_split_and_reassembled,
    oversized_header_is_refused_before_the_provider,
    conversation_cap,
    replay_of_a_deleted_turn
);

/// Issue 12, point 13: the embedded store sweeps expired counters,
/// idempotency records, expired conversations and tombstones, and leaves
/// everything still live.
#[tokio::test]
async fn the_embedded_store_sweeps_what_expired() {
    use ctxgate::store::TOMBSTONE_KEEP_SECS;
    let dir = tempfile::tempdir().unwrap();
    let store = ctxgate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let now = 1_000_000;
    let counter = |sk: &str| CounterKey {
        pk: "R#key".into(),
        sk: sk.into(),
    };
    store
        .counter_add(&counter("old"), 3, None, Some(now - 1))
        .await
        .unwrap();
    store
        .counter_add(&counter("new"), 3, None, Some(now + 60))
        .await
        .unwrap();
    for (key, expires) in [("old", now - 1), ("new", now + 60)] {
        let req = IdempotencyRequest {
            key,
            fingerprint: "fp",
            token: "t",
            now: now - 100,
            lease_until: now - 50,
            expires_at: expires,
        };
        store.idempotency_claim("t1", &req).await.unwrap();
    }
    // An expired conversation, a tombstone, a live one.
    let write = |expires_at| TurnWrite {
        expected_version: 0,
        meta: ConversationMeta {
            version: 1,
            next_seq: 1,
            turns: 1,
            created: now - 10,
            updated: now - 10,
            expires_at,
            ..ConversationMeta::default()
        },
        messages: vec![StoredMessage::new(
            0,
            ChatMessage::text(Role::User, "q"),
            now,
        )],
        creates: true,
        ..TurnWrite::default()
    };
    store
        .append_turn("t1", "expired", &write(Some(now - TOMBSTONE_KEEP_SECS - 1)))
        .await
        .unwrap();
    store
        .append_turn("t1", "deleted", &write(None))
        .await
        .unwrap();
    store.delete_conversation("t1", "deleted").await.unwrap();
    store.append_turn("t1", "live", &write(None)).await.unwrap();
    let count = ctxgate::store::conversation_count_key("t1");
    assert_eq!(store.counter_get(&count).await.unwrap(), 2);

    // Nothing is due yet for the tombstone (it was just written at real time).
    let swept = store.sweep(now).await.unwrap();
    assert_eq!(
        (swept.counters, swept.idempotency, swept.conversations),
        (1, 1, 1)
    );
    assert_eq!(store.counter_get(&counter("old")).await.unwrap(), 0);
    assert_eq!(store.counter_get(&counter("new")).await.unwrap(), 3);
    assert!(
        store
            .conversation_meta("t1", "expired")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.counter_get(&count).await.unwrap(), 1);
    let live = store.load_conversation("t1", "live", now).await.unwrap();
    assert_eq!(live.messages.len(), 1);
    let fresh = IdempotencyRequest {
        key: "new",
        fingerprint: "other",
        token: "t2",
        now,
        lease_until: now + 60,
        expires_at: now + 86_400,
    };
    assert_eq!(
        store.idempotency_claim("t1", &fresh).await.unwrap(),
        IdempotencyClaim::Mismatch,
        "a live record stays"
    );
    // The tombstone goes once its keep time is over; sweeping again is a no-op.
    let later = ctxgate::now_secs() + TOMBSTONE_KEEP_SECS + 1;
    let swept = store.sweep(later).await.unwrap();
    assert!(swept.conversations >= 1);
    assert!(
        store
            .conversation_meta("t1", "deleted")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.sweep(later).await.unwrap().conversations, 0);
}

/// Issue 12, point 13: writes sweep on their own, every `SWEEP_EVERY` of them.
#[tokio::test]
async fn writes_sweep_the_embedded_store_on_their_own() {
    use ctxgate::store::embedded::SWEEP_EVERY;
    let dir = tempfile::tempdir().unwrap();
    let store = ctxgate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let past = ctxgate::now_secs() - 10;
    let old = CounterKey {
        pk: "R#key".into(),
        sk: "w-old".into(),
    };
    store.counter_add(&old, 1, None, Some(past)).await.unwrap();
    let tick = CounterKey {
        pk: "R#key".into(),
        sk: "w-now".into(),
    };
    for _ in 0..SWEEP_EVERY {
        store.counter_add(&tick, 1, None, None).await.unwrap();
    }
    assert_eq!(store.counter_get(&old).await.unwrap(), 0);
    assert_eq!(
        store.counter_get(&tick).await.unwrap(),
        i64::try_from(SWEEP_EVERY).unwrap()
    );
}

/// Issue 12, point 5, through the gateway: a replay honours the caller's
/// current model allow-list (another key of the tenant without the model
/// gets 403, not the stored answer) and is refused once the conversation
/// was deleted (409 `conversation_deleted`, nothing re-run).
async fn replay_through_the_gateway(store: Arc<dyn Store>) {
    let gw = ctxgate_tests::Gateway::new(store.clone(), &[]);
    let all = gw.key("acme", &[]).await;
    let mut limited =
        ctxgate::auth::mint_key("acme", "limited", &[], None, ctxgate::now_secs()).unwrap();
    limited.record.models = vec!["openai/gpt-4o".into()];
    store.put_key(&limited.record).await.unwrap();
    let body = serde_json::json!({"model": "echo", "conversation_id": "replayed",
                                  "messages": [{"role": "user", "content": "hello"}]});
    let send = |key: String| {
        let gw = &gw;
        let body = body.to_string().into_bytes();
        async move {
            gw.call_raw(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                &[("idempotency-key", "order-7")],
                body,
            )
            .await
        }
    };
    let (status, _, first) = send(all.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, headers, again) = send(all.clone()).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, _, err) = send(limited.secret.clone()).await;
    assert_eq!(status, 403, "{err}");
    assert_ne!(err, first);
    let (status, _, _) = gw
        .call("DELETE", "/v1/conversations/replayed", Some(&all), None)
        .await;
    assert_eq!(status, 200);
    let (status, _, err) = send(all.clone()).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "conversation_deleted");
    let gone = store
        .load_conversation("acme", "replayed", ctxgate::now_secs())
        .await
        .unwrap();
    assert!(
        gone.messages.is_empty(),
        "the refused replay stored nothing"
    );
}

#[tokio::test]
async fn replay_through_the_gateway_embedded() {
    let (s, _dir) = ctxgate_tests::embedded_store();
    replay_through_the_gateway(s).await;
}

#[tokio::test]
async fn replay_through_the_gateway_dynamodb() {
    replay_through_the_gateway(ctxgate_tests::dynamo_store().await).await;
}

/// Issue 12, point 7, through the gateway: long answers (each over the
/// 400 KB item limit) are stored turn after turn, never refused after the
/// provider was paid; a response too large to keep for replay is replayed
/// as a 409 naming the problem, never by calling the provider again.
async fn long_answers_through_the_gateway(store: Arc<dyn Store>) {
    let long = "lorem ipsum dolor sit amet ".repeat(18_000);
    let upstream = ctxgate_tests::MockUpstream::start({
        let long = long.clone();
        move |_| ctxgate_tests::Reply::json(ctxgate_tests::openai_completion(&long, 10, 120_000))
    })
    .await;
    let base = format!("{}/v1", upstream.url);
    let gw = ctxgate_tests::Gateway::new(
        store.clone(),
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-test")],
    );
    let key = gw.key("acme", &[]).await;
    for turn in 0..4 {
        let (status, _, resp) = gw
            .chat(&key, "openai/gpt-4o", Some("long"), &format!("turn {turn}"))
            .await;
        assert_eq!(status, 200, "turn {turn}: {resp}");
    }
    // A fifth long turn, idempotent, then its replay.
    let body = serde_json::json!({"model": "openai/gpt-4o", "conversation_id": "long",
                                  "messages": [{"role": "user", "content": "last"}]});
    let send = || {
        gw.call_raw(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            &[("idempotency-key", "long-last")],
            body.to_string().into_bytes(),
        )
    };
    let (status, _, resp) = send().await;
    assert_eq!(status, 200);
    let answer = format!("saw: {long}");
    assert!(
        resp["choices"][0]["message"]["content"] == answer.as_str(),
        "the answer came back whole"
    );
    let calls = upstream.received().len();
    let (status, headers, resp) = send().await;
    assert_eq!(status, 409, "{resp}");
    assert_eq!(resp["error"]["code"], "idempotent_response_too_large");
    assert_eq!(headers["x-conversation-id"], "long");
    assert_eq!(
        upstream.received().len(),
        calls,
        "the replay did not call the provider"
    );
    let conv = store
        .load_conversation("acme", "long", ctxgate::now_secs())
        .await
        .unwrap();
    let answers: Vec<String> = conv
        .messages
        .iter()
        .filter(|m| m.message.role == Role::Assistant)
        .map(|m| m.message.text_content())
        .collect();
    assert_eq!(answers.len(), 5);
    assert!(
        answers.iter().all(|a| *a == answer),
        "every long answer is stored whole"
    );
}

#[tokio::test]
async fn long_answers_through_the_gateway_embedded() {
    let (s, _dir) = ctxgate_tests::embedded_store();
    long_answers_through_the_gateway(s).await;
}

#[tokio::test]
async fn long_answers_through_the_gateway_dynamodb() {
    long_answers_through_the_gateway(ctxgate_tests::dynamo_store().await).await;
}

/// Issue 12, points 4 and 7, through the API: the conversation cap is a 429
/// naming the conversation (before any provider call), deleting frees a
/// place, and a system prompt too large for the header is a 413 naming it.
async fn cap_and_header_through_the_api(store: Arc<dyn Store>) {
    let gw = ctxgate_tests::Gateway::with_toml(
        store,
        "[limits]\nmax_conversations_per_tenant = 1\n",
        &[],
    );
    let key = gw.key("acme", &[]).await;
    let (status, _, _) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(serde_json::json!({"id": "one"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, err) = gw.chat(&key, "echo", Some("two"), "hi").await;
    assert_eq!(status, 429, "{err}");
    assert_eq!(err["error"]["code"], "conversation_limit_reached");
    assert_eq!(err["error"]["param"], "conversation_id");
    let (status, _, err) = gw
        .call(
            "POST",
            "/v1/conversations",
            Some(&key),
            Some(serde_json::json!({"id": "two"})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (429, Some("conversation_limit_reached"))
    );
    // More turns on the stored one are fine; a stateless turn stores nothing.
    assert_eq!(gw.chat(&key, "echo", Some("one"), "hi").await.0, 200);
    assert_eq!(gw.chat(&key, "echo", None, "hi").await.0, 200);
    let big = "é".repeat(250_000);
    let (status, _, err) = gw
        .call(
            "PATCH",
            "/v1/conversations/one",
            Some(&key),
            Some(serde_json::json!({"system_prompt": big})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (413, Some("system_prompt"))
    );
    let (status, _, _) = gw
        .call("DELETE", "/v1/conversations/one", Some(&key), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(gw.chat(&key, "echo", Some("two"), "hi").await.0, 200);
}

#[tokio::test]
async fn cap_and_header_through_the_api_embedded() {
    let (s, _dir) = ctxgate_tests::embedded_store();
    cap_and_header_through_the_api(s).await;
}

#[tokio::test]
async fn cap_and_header_through_the_api_dynamodb() {
    cap_and_header_through_the_api(ctxgate_tests::dynamo_store().await).await;
}
