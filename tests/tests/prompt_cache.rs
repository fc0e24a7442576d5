//! Issue 14: provider prompt caching on a stored conversation's prefix,
//! through mock upstreams that record every request and keep a prompt cache
//! as the providers do (`ctxgate_tests::cache_sim`), so the usage they report
//! is what the gateway's prompts would cost.
//!
//! - Anthropic: breakpoints at the end of the instructions (system prompt and
//!   summary) and of the stored history, and nowhere else; turn N+1 sends
//!   turn N's prefix unchanged up to N's history breakpoint and reads from
//!   the cache what N wrote; across window drops and summary refreshes the
//!   prefix changes once and is then stable again.
//! - A client's own `cache_control` is kept exactly, counted against the
//!   limit of four, and never stored in the history.
//! - Off switches (tenant, model), TTL per tenant, the minimum length.
//! - OpenAI: the prompt of turn N is a prefix of turn N+1's, byte for byte,
//!   with one `prompt_cache_key` per conversation.
//! - The figures of the closing note: a 20-turn conversation's input cost
//!   with caching on and off, and the share read from the cache by turn 20.

use std::sync::{Arc, Mutex};

use ctxgate::store::Store;
use ctxgate_tests::cache_sim::{
    AnthropicCache, CacheUse, OpenAiCache, Unit, anthropic_units, tokens,
};
use ctxgate_tests::{Gateway, MockUpstream, Received, Reply, dynamo_store, embedded_store};
use serde_json::{Value, json};

/// A system prompt of about 2500 tokens: above every model's minimum but Haiku 4.5's.
fn system_prompt() -> String {
    (0..150)
        .map(|i| format!("Rule {i:03}: answer the customer politely, precisely and briefly. "))
        .collect::<String>()
        + "You are the support assistant of a bicycle shop."
}

/// The user's message of turn `i`: about 200 tokens, different every turn.
fn question(i: usize) -> String {
    format!("Question {i}: ")
        + &format!("my bike number {i} makes a noise when I brake. ").repeat(16)
}

/// The mock's answer to a request: about 100 tokens, naming the question.
fn answer_text(body: &Value) -> String {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(b) => b.iter().filter_map(|b| b["text"].as_str()).collect(),
            _ => String::new(),
        })
        .unwrap_or_default();
    let head: String = last.chars().take(12).collect();
    format!("About '{head}': ") + &"check the brake pads and the cable tension. ".repeat(9)
}

/// One mock provider's cache and what it reported, request by request.
struct Recorder<C> {
    cache: Mutex<C>,
    uses: Mutex<Vec<(Value, CacheUse)>>,
}

impl<C> Recorder<C> {
    fn new(cache: C) -> Arc<Self> {
        Arc::new(Self {
            cache: Mutex::new(cache),
            uses: Mutex::default(),
        })
    }

    /// Bodies and cache use of the requests for `model`, in order.
    fn calls(&self, model: &str) -> Vec<(Value, CacheUse)> {
        self.uses
            .lock()
            .unwrap()
            .iter()
            .filter(|(b, _)| b["model"] == model)
            .cloned()
            .collect()
    }
}

const OUTPUT_TOKENS: u64 = 100;

fn anthropic_reply(rec: &Recorder<AnthropicCache>, r: &Received) -> Reply {
    let used = rec.cache.lock().unwrap().serve(&r.body);
    rec.uses.lock().unwrap().push((r.body.clone(), used));
    let text = answer_text(&r.body);
    let usage = used.anthropic_usage(OUTPUT_TOKENS);
    if r.body["stream"] != true {
        return Reply::json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": r.body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage
        }));
    }
    let mut start = usage.clone();
    start["output_tokens"] = json!(1);
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_2", "type": "message",
            "role": "assistant", "model": r.body["model"], "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": OUTPUT_TOKENS}}),
        json!({"type": "message_stop"}),
    ];
    Reply::sse(
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect::<String>(),
    )
}

fn openai_reply(rec: &Recorder<OpenAiCache>, r: &Received) -> Reply {
    let used = rec.cache.lock().unwrap().serve(&r.body);
    rec.uses.lock().unwrap().push((r.body.clone(), used));
    let (text, usage) = (answer_text(&r.body), used.openai_usage(OUTPUT_TOKENS));
    if r.body["stream"] != true {
        return Reply::json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": r.body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}}],
            "usage": usage
        }));
    }
    let chunk = |choices: Value, usage: Value| {
        json!({"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1,
            "model": r.body["model"], "choices": choices, "usage": usage})
    };
    let chunks = [
        chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]),
            Value::Null,
        ),
        chunk(
            json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
            Value::Null,
        ),
        chunk(json!([]), usage),
    ];
    Reply::sse(
        chunks
            .iter()
            .map(|c| format!("data: {c}\n\n"))
            .collect::<String>()
            + "data: [DONE]\n\n",
    )
}

/// A gateway on `store` whose Anthropic and OpenAI upstreams keep caches.
struct Setup {
    gw: Gateway,
    anthropic: Arc<Recorder<AnthropicCache>>,
    openai: Arc<Recorder<OpenAiCache>>,
    _mocks: (MockUpstream, MockUpstream),
}

async fn setup(store: Arc<dyn Store>, toml: &str) -> Setup {
    let anthropic = Recorder::new(AnthropicCache::new(1024));
    let openai = Recorder::new(OpenAiCache::default());
    let a = anthropic.clone();
    let anthropic_up = MockUpstream::start(move |r| anthropic_reply(&a, r)).await;
    let o = openai.clone();
    let openai_up = MockUpstream::start(move |r| openai_reply(&o, r)).await;
    let base = format!("{}/v1", openai_up.url);
    let gw = Gateway::with_toml(
        store,
        toml,
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-openai"),
            ("ANTHROPIC_BASE_URL", anthropic_up.url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant"),
        ],
    );
    Setup {
        gw,
        anthropic,
        openai,
        _mocks: (anthropic_up, openai_up),
    }
}

/// Runs `turns` turns of conversation `conv` on `model` for `tenant`, the
/// system prompt sent with the first only, every other turn streamed.
async fn converse(s: &Setup, tenant: &str, model: &str, conv: &str, turns: usize) {
    let key = s.gw.key(tenant, &[]).await;
    for i in 0..turns {
        let mut messages = vec![];
        if i == 0 {
            messages.push(json!({"role": "system", "content": system_prompt()}));
        }
        messages.push(json!({"role": "user", "content": question(i)}));
        let body = json!({"model": model, "conversation_id": conv, "max_tokens": 300,
            "stream": i % 2 == 1, "messages": messages});
        let (status, _, text) =
            s.gw.call_text("/v1/chat/completions", &key, &[], body)
                .await;
        assert_eq!(status, 200, "turn {i}: {text}");
    }
}

/// As [`converse`], through the Anthropic Messages door.
async fn converse_messages(s: &Setup, tenant: &str, model: &str, conv: &str, turns: usize) {
    let key = s.gw.key(tenant, &[]).await;
    for i in 0..turns {
        let mut body = json!({"model": model, "max_tokens": 300, "stream": i % 2 == 1,
            "messages": [{"role": "user", "content": question(i)}]});
        if i == 0 {
            body["system"] = json!(system_prompt());
        }
        let (status, _, text) =
            s.gw.call_text("/v1/messages", &key, &[("x-conversation-id", conv)], body)
                .await;
        assert_eq!(status, 200, "turn {i}: {text}");
    }
}

/// Where a request's breakpoints are: indices into its units.
fn marks(units: &[Unit]) -> Vec<usize> {
    (0..units.len())
        .filter(|&k| units[k].hint.is_some())
        .collect()
}

fn texts(units: &[Unit]) -> Vec<&str> {
    units.iter().map(|u| u.text.as_str()).collect()
}

/// Tokens of units `..=k`, as the mock counts them.
fn upto(units: &[Unit], k: usize) -> u64 {
    units[..=k].iter().map(|u| tokens(&u.text)).sum()
}

/// How a conversation's prefix behaved from one turn to the next.
#[derive(Debug, Default)]
struct Prefix {
    /// Turns whose prefix differed from the previous turn's before its
    /// history breakpoint, with the reason (`window`, `instructions`).
    changes: Vec<(usize, &'static str)>,
}

/// Checks, for every turn after the first, that the breakpoints sit at the
/// end of the system blocks and at the end of the stored history, and that
/// the turn either sends the previous turn's prefix unchanged up to that
/// turn's last breakpoint and reads all of it from the cache, or changed it
/// for a reason: the window moved, or the instructions (summary) changed,
/// in which case it still reads the system prompt when only the summary did.
fn check_prefix(calls: &[(Value, CacheUse)]) -> Prefix {
    let mut out = Prefix::default();
    for (i, w) in calls.windows(2).enumerate() {
        let turn = i + 1;
        let (before, after) = (anthropic_units(&w[0].0), anthropic_units(&w[1].0));
        let (read, _) = (w[1].1.read, w[1].1.written);
        let m_before = marks(&before);
        let m_after = marks(&after);
        // Where ours go: the last system block, and the last block of the
        // message before the new one (when there is a stored history).
        let last_system = after
            .iter()
            .rposition(|u| u.text.starts_with("system["))
            .unwrap();
        let messages = w[1].0["messages"].as_array().unwrap().len();
        let mut want = vec![last_system];
        if messages > 1 {
            let prefix = format!("messages[{}]:", messages - 2);
            want.push(
                after
                    .iter()
                    .rposition(|u| u.text.starts_with(&prefix))
                    .unwrap(),
            );
        }
        assert_eq!(m_after, want, "turn {turn}: breakpoints");
        for &m in &m_after {
            assert_eq!(
                after[m].hint,
                Some(json!({"type": "ephemeral"})),
                "turn {turn}"
            );
        }
        let p = *m_before.last().unwrap();
        if after.len() > p && texts(&after)[..=p] == texts(&before)[..=p] {
            // Turn N+1 reads what turn N wrote.
            assert!(
                read >= upto(&before, p),
                "turn {turn}: read {read} of {}",
                upto(&before, p)
            );
            continue;
        }
        let system = |u: &[Unit]| -> Vec<String> {
            u.iter()
                .filter(|u| u.text.starts_with("system["))
                .map(|u| u.text.clone())
                .collect()
        };
        if system(&before) != system(&after) {
            out.changes.push((turn, "instructions"));
            // The system prompt itself is unchanged: read from the cache.
            assert!(read >= upto(&after, 0), "turn {turn}: read {read}");
        } else {
            out.changes.push((turn, "window"));
            // The instructions are unchanged: read through their breakpoint.
            assert!(read >= upto(&after, m_after[0]), "turn {turn}: read {read}");
        }
    }
    out
}

/// Input cost in micro-USD at Claude Sonnet 4.5's prices (3.00 in, 0.30
/// read, 3.75 written per million): tokens x price is micro-USD.
fn input_cost(uses: &[CacheUse]) -> f64 {
    uses.iter()
        .map(|u| {
            (u.total - u.read - u.written) as f64 * 3.0
                + u.read as f64 * 0.3
                + u.written as f64 * 3.75
        })
        .sum()
}

const TWO_TENANTS: &str = "[tenants.plain]\nprompt_cache = { enabled = false }\n";

async fn anthropic_breakpoints_follow_the_conversation(store: Arc<dyn Store>) {
    let s = setup(store, TWO_TENANTS).await;
    converse(&s, "acme", "anthropic/claude-sonnet-4-5", "long-1", 20).await;
    let calls = s.anthropic.calls("claude-sonnet-4-5");
    assert_eq!(calls.len(), 20);
    // The first turn has no history: one breakpoint, after the system prompt.
    let first = anthropic_units(&calls[0].0);
    assert_eq!(marks(&first), [0]);
    // Nothing moves in a window that holds everything.
    let prefix = check_prefix(&calls);
    assert!(prefix.changes.is_empty(), "{:?}", prefix.changes);

    // The same conversation for a tenant with caching off: no breakpoints.
    converse(&s, "plain", "anthropic/claude-sonnet-4-5", "long-1", 20).await;
    let all = s.anthropic.calls("claude-sonnet-4-5");
    let plain = &all[20..];
    assert!(
        plain
            .iter()
            .all(|(b, _)| !b.to_string().contains("cache_control"))
    );

    // The figures: input cost of the 20 turns, and the share of turn 20's
    // prompt read from the cache.
    let on: Vec<CacheUse> = calls.iter().map(|c| c.1).collect();
    let off: Vec<CacheUse> = plain.iter().map(|c| c.1).collect();
    let (cost_on, cost_off) = (input_cost(&on), input_cost(&off));
    let last = on[19];
    let share = last.read as f64 / last.total as f64;
    println!(
        "anthropic/claude-sonnet-4-5, 20 turns: input {} tokens; input cost with caching {:.0} micro-USD, without {:.0} ({:.1}%); turn 20 read {} of {} prompt tokens from the cache ({:.1}%)",
        on.iter().map(|u| u.total).sum::<u64>(),
        cost_on,
        cost_off,
        100.0 * cost_on / cost_off,
        last.read,
        last.total,
        100.0 * share
    );
    assert!(cost_on < 0.5 * cost_off, "{cost_on} vs {cost_off}");
    assert!(share > 0.9, "{share}");
    // The gateway priced the same usage: its rows hold the same costs.
    let key = s.gw.key("acme", &["usage:read"]).await;
    let (_, _, usage) = s.gw.call("GET", "/v1/usage", Some(&key), None).await;
    let row = &usage["data"][0];
    // (Each request's cost is rounded to a micro-USD on its own.)
    let priced: u64 = on
        .iter()
        .map(|u| (input_cost(&[*u]) + OUTPUT_TOKENS as f64 * 15.0).round() as u64)
        .sum();
    assert_eq!(row["cost_micro_usd"], json!(priced), "{usage}");
    assert_eq!(
        row["cached_tokens"],
        json!(on.iter().map(|u| u.read).sum::<u64>())
    );
    assert_eq!(
        row["cache_write_tokens"],
        json!(on.iter().map(|u| u.written).sum::<u64>())
    );
}

#[tokio::test]
async fn anthropic_breakpoints_follow_the_conversation_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    anthropic_breakpoints_follow_the_conversation(store).await;
}

#[tokio::test]
async fn anthropic_breakpoints_follow_the_conversation_on_dynamodb() {
    anthropic_breakpoints_follow_the_conversation(dynamo_store().await).await;
}

#[tokio::test]
async fn the_messages_door_caches_the_stored_prefix_as_chat_does() {
    let (store, _dir) = embedded_store();
    let s = setup(store, "").await;
    converse_messages(
        &s,
        "acme",
        "anthropic/claude-sonnet-4-5",
        "via-messages",
        12,
    )
    .await;
    let calls = s.anthropic.calls("claude-sonnet-4-5");
    assert_eq!(calls.len(), 12);
    assert_eq!(marks(&anthropic_units(&calls[0].0)), [0]);
    let prefix = check_prefix(&calls);
    assert!(prefix.changes.is_empty(), "{:?}", prefix.changes);
    let last = calls[11].1;
    assert!(
        last.read as f64 > 0.8 * last.total as f64,
        "turn 12 read {} of {}",
        last.read,
        last.total
    );
}

/// A model whose window holds about eight turns besides the system prompt.
const SMALL_WINDOW: &str = r#"
[[models]]
id = "anthropic/claude-opus-4-1"
context_window = 5000

[tenants.plain]
prompt_cache = { enabled = false }
"#;

async fn windows_that_drop_turns_keep_their_start(store: Arc<dyn Store>) {
    let s = setup(store, SMALL_WINDOW).await;
    converse(&s, "acme", "anthropic/claude-opus-4-1", "drops", 20).await;
    let calls = s.anthropic.calls("claude-opus-4-1");
    let prefix = check_prefix(&calls);
    let moves = prefix.changes.len();
    // The window had to move, and each move held for several turns.
    assert!(moves >= 1, "the window never dropped a turn");
    assert!(
        prefix.changes.iter().all(|(_, why)| *why == "window"),
        "{:?}",
        prefix.changes
    );
    assert!(moves <= 5, "{:?}", prefix.changes);
    // Without caching the window starts anew whenever it overflows, which
    // is nearly every turn once full.
    converse(&s, "plain", "anthropic/claude-opus-4-1", "drops", 20).await;
    let plain = &s.anthropic.calls("claude-opus-4-1")[20..];
    let starts: Vec<String> = plain
        .iter()
        .map(|(b, _)| b["messages"][0].to_string())
        .collect();
    let plain_moves = starts.windows(2).filter(|w| w[0] != w[1]).count();
    println!(
        "window of 5000 tokens, 20 turns: the prefix moved {moves} times with caching, {plain_moves} without"
    );
    assert!(plain_moves > 2 * moves, "{plain_moves} vs {moves}");
}

#[tokio::test]
async fn windows_that_drop_turns_keep_their_start_on_the_embedded_store() {
    let (store, _dir) = embedded_store();
    windows_that_drop_turns_keep_their_start(store).await;
}

#[tokio::test]
async fn windows_that_drop_turns_keep_their_start_on_dynamodb() {
    windows_that_drop_turns_keep_their_start(dynamo_store().await).await;
}

#[tokio::test]
async fn a_summary_refresh_changes_the_prefix_once() {
    let (store, _dir) = embedded_store();
    let toml = format!(
        "{SMALL_WINDOW}\n[context]\nstrategy = \"summarize\"\nsummary_model = \"openai/gpt-4o-mini\"\nsummarize_after_turns = 1\n"
    );
    let s = setup(store, &toml).await;
    converse(&s, "acme", "anthropic/claude-opus-4-1", "summed", 20).await;
    let calls = s.anthropic.calls("claude-opus-4-1");
    let prefix = check_prefix(&calls);
    let refreshes: Vec<usize> = prefix
        .changes
        .iter()
        .filter(|(_, why)| *why == "instructions")
        .map(|(t, _)| *t)
        .collect();
    assert!(!refreshes.is_empty(), "no summary: {:?}", prefix.changes);
    println!(
        "summarising window, 20 turns: prefix changes at turns {:?}",
        prefix.changes
    );
    // Each refresh is followed by a stable turn (checked by check_prefix:
    // the turn after reads everything up to the refresh's history breakpoint).
    for t in &refreshes {
        assert!(
            !prefix.changes.iter().any(|(u, _)| u == &(t + 1)),
            "{:?}",
            prefix.changes
        );
    }
    assert!(
        !s.openai.calls("gpt-4o-mini").is_empty(),
        "summaries were written"
    );
}

/// Sends one turn and returns the request the Anthropic mock received.
async fn one_turn(s: &Setup, key: &str, conv: &str, messages: Value) -> Value {
    let body = json!({"model": "anthropic/claude-sonnet-4-5", "conversation_id": conv,
        "max_tokens": 300, "messages": messages});
    let (status, _, text) = s.gw.call_text("/v1/chat/completions", key, &[], body).await;
    assert_eq!(status, 200, "{text}");
    s.anthropic.calls("claude-sonnet-4-5").pop().unwrap().0
}

fn hinted(text: &str, ttl: Option<&str>) -> Value {
    let mut cc = json!({"type": "ephemeral"});
    if let Some(t) = ttl {
        cc["ttl"] = json!(t);
    }
    json!({"type": "text", "text": text, "cache_control": cc})
}

#[tokio::test]
async fn a_clients_own_breakpoints_are_kept_exactly() {
    let (store, _dir) = embedded_store();
    let s = setup(store, "").await;
    let key = s.gw.key("acme", &[]).await;
    let system = json!({"role": "system", "content": system_prompt()});
    one_turn(
        &s,
        &key,
        "own",
        json!([system, {"role": "user", "content": question(0)}]),
    )
    .await;
    // Four of its own: exactly those go upstream, where it put them.
    let parts: Vec<Value> = (0..4).map(|i| hinted(&format!("part {i}"), None)).collect();
    let body = one_turn(&s, &key, "own", json!([{"role": "user", "content": parts}])).await;
    let units = anthropic_units(&body);
    let hinted_units: Vec<&str> = marks(&units)
        .iter()
        .map(|&k| units[k].text.as_str())
        .collect();
    assert_eq!(hinted_units.len(), 4, "{hinted_units:?}");
    assert!(
        hinted_units.iter().all(|t| t.contains("\"part ")),
        "{hinted_units:?}"
    );
    // They are not stored: the next turn's history carries none of them,
    // and ctxgate's own are back.
    let body = one_turn(
        &s,
        &key,
        "own",
        json!([{"role": "user", "content": question(2)}]),
    )
    .await;
    let units = anthropic_units(&body);
    let m = marks(&units);
    assert_eq!(m.len(), 2);
    assert!(units[m[0]].text.starts_with("system["));
    assert!(units[m[1]].text.contains(":assistant["));
    // One of its own, for an hour, on the new message: it stays, and ours
    // are raised to an hour so that none outlives an earlier one.
    let body = one_turn(
        &s,
        &key,
        "own",
        json!([{"role": "user", "content": [hinted("late", Some("1h"))]}]),
    )
    .await;
    let units = anthropic_units(&body);
    let hints: Vec<Value> = marks(&units)
        .iter()
        .map(|&k| units[k].hint.clone().unwrap())
        .collect();
    assert_eq!(hints, vec![json!({"type": "ephemeral", "ttl": "1h"}); 3]);
}

#[tokio::test]
async fn switches_ttls_and_the_minimum() {
    let (store, _dir) = embedded_store();
    let toml = r#"
[[models]]
id = "anthropic/claude-opus-4-1"
prompt_cache = { enabled = false }

[tenants.off]
prompt_cache = { enabled = false }

[tenants.hour]
prompt_cache = { ttl = "1h" }
"#;
    let s = setup(store, toml).await;
    let turn = |model: &str, conv: &str, system: String| {
        json!({"model": model, "conversation_id": conv, "max_tokens": 300,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question(0)}]})
    };
    for (tenant, model, system, want) in [
        (
            "acme",
            "anthropic/claude-sonnet-4-5",
            system_prompt(),
            Some(json!({"type": "ephemeral"})),
        ),
        (
            "hour",
            "anthropic/claude-sonnet-4-5",
            system_prompt(),
            Some(json!({"type": "ephemeral", "ttl": "1h"})),
        ),
        ("off", "anthropic/claude-sonnet-4-5", system_prompt(), None),
        ("acme", "anthropic/claude-opus-4-1", system_prompt(), None),
        // Below the model's minimum (1024 tokens): nothing to cache.
        (
            "acme",
            "anthropic/claude-sonnet-4-5",
            "Be brief.".into(),
            None,
        ),
        // Haiku 4.5 caches from 4096 tokens.
        ("acme", "anthropic/claude-haiku-4-5", system_prompt(), None),
    ] {
        let key = s.gw.key(tenant, &[]).await;
        let conv = format!("{tenant}-{}", s.anthropic.uses.lock().unwrap().len());
        let (status, _, text) =
            s.gw.call_text(
                "/v1/chat/completions",
                &key,
                &[],
                turn(model, &conv, system),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        let body = s.anthropic.uses.lock().unwrap().last().unwrap().0.clone();
        let units = anthropic_units(&body);
        let hints: Vec<Value> = marks(&units)
            .iter()
            .map(|&k| units[k].hint.clone().unwrap())
            .collect();
        assert_eq!(
            hints,
            want.into_iter().collect::<Vec<_>>(),
            "{tenant} {model}"
        );
    }
    // OpenAI: the key goes with caching on, not off.
    for (tenant, sent) in [("acme", true), ("off", false)] {
        let key = s.gw.key(tenant, &[]).await;
        let body = json!({"model": "openai/gpt-4o", "conversation_id": "k",
            "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, _) =
            s.gw.call("POST", "/v1/chat/completions", Some(&key), Some(body))
                .await;
        assert_eq!(status, 200);
        let body = s.openai.uses.lock().unwrap().last().unwrap().0.clone();
        assert_eq!(
            body.get("prompt_cache_key").is_some(),
            sent,
            "{tenant}: {body}"
        );
    }
}

#[tokio::test]
async fn openai_prompts_grow_by_appending_only() {
    let (store, _dir) = embedded_store();
    let s = setup(store, "").await;
    converse(&s, "acme", "openai/gpt-4o", "oa-1", 20).await;
    converse(&s, "acme", "openai/gpt-4o", "oa-2", 2).await;
    let calls = s.openai.calls("gpt-4o");
    let (one, two) = calls.split_at(20);
    for (i, w) in one.windows(2).enumerate() {
        let (before, after) = (&w[0].0["messages"], &w[1].0["messages"]);
        let before = before.as_array().unwrap();
        let after = after.as_array().unwrap();
        // Turn N's whole prompt, byte for byte, then N's answer and the new question.
        assert_eq!(after.len(), before.len() + 2, "turn {}", i + 1);
        for (a, b) in before.iter().zip(after) {
            assert_eq!(a.to_string(), b.to_string(), "turn {}", i + 1);
        }
        assert_eq!(w[0].0.get("tools"), w[1].0.get("tools"));
    }
    // One key per conversation, naming neither it nor the tenant.
    let key = one[0].0["prompt_cache_key"].as_str().unwrap().to_owned();
    assert!(
        one.iter()
            .all(|(b, _)| b["prompt_cache_key"] == key.as_str())
    );
    assert_ne!(two[0].0["prompt_cache_key"], key.as_str());
    assert!(!key.contains("oa-1") && !key.contains("acme"), "{key}");
    let last = one[19].1;
    println!(
        "openai/gpt-4o, 20 turns: turn 20 read {} of {} prompt tokens from the cache ({:.1}%)",
        last.read,
        last.total,
        100.0 * last.read as f64 / last.total as f64
    );
    assert!(last.read as f64 > 0.9 * last.total as f64);
}

#[tokio::test]
async fn a_bad_breakpoint_is_refused_and_a_clients_key_is_kept() {
    let (store, _dir) = embedded_store();
    let s = setup(store, "").await;
    let key = s.gw.key("acme", &[]).await;
    for cc in [
        json!({"type": "ephemeral", "ttl": "2h"}),
        json!({"type": "persistent"}),
        json!({"type": "ephemeral", "extra": 1}),
    ] {
        let body = json!({"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user",
            "content": [{"type": "text", "text": "hi", "cache_control": cc}]}]});
        let (status, _, resp) =
            s.gw.call("POST", "/v1/chat/completions", Some(&key), Some(body))
                .await;
        assert_eq!(status, 400, "{cc}: {resp}");
        let param = resp["error"]["param"].as_str().unwrap_or_default();
        assert!(param.starts_with("messages[0].content"), "{cc}: {resp}");
    }
    assert!(s.anthropic.uses.lock().unwrap().is_empty());
    // A client's own prompt_cache_key goes upstream instead of ctxgate's.
    let body = json!({"model": "openai/gpt-4o", "conversation_id": "mine",
        "prompt_cache_key": "my-key", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, resp) =
        s.gw.call("POST", "/v1/chat/completions", Some(&key), Some(body))
            .await;
    assert_eq!(status, 200, "{resp}");
    let sent = s.openai.uses.lock().unwrap().last().unwrap().0.clone();
    assert_eq!(sent["prompt_cache_key"], "my-key");
}
