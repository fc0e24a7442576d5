//! Golden translation tests across the two wire formats, both ways, at the
//! codec level (issue 17, "golden translation tests both ways"):
//!
//! - (a) Anthropic front door -> OpenAI upstream: a Messages request decoded
//!   and encoded as a Chat Completions body; the upstream's chunk stream read
//!   by the OpenAI provider's decoder and written as Messages SSE by
//!   [`anthropic::EventEncoder`]; its whole answer likewise.
//! - (b) OpenAI front door -> Anthropic upstream: the reverse, through the
//!   Anthropic provider's decoder and [`ChunkEncoder`].
//!
//! Upstream bodies go through the production SSE framing
//! ([`provider::sse::events`]), so splits of the body at any byte are the
//! network's. Every client Messages stream is checked against Anthropic's
//! event grammar ([`messages_blocks`]).

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::model::{self, Assembler, Event};
use crate::provider;
use crate::provider::anthropic::stream::EventDecoder;
use crate::provider::openai::stream::ChunkDecoder;
use crate::wire::anthropic::{self, EventEncoder, MessagesRequest};
use crate::wire::openai_chat::chunk::{ChunkEncoder, ChunkMeta};
use crate::wire::openai_chat::types::ChatRequest;
use crate::wire::openai_chat::{self, ResponseMeta};
use crate::wire::{StreamDecoder, anthropic::UpstreamOptions as AnthropicOptions};

const CASES: &str = include_str!("anthropic/golden/translation.json");

/// Tool arguments with everything that breaks naive splitting: two- three-
/// and four-byte UTF-8, escaped quotes and backslashes, a `\u` escape and
/// numbers in exponent form.
const ARGS: &str = r#"{"city":"Zoë \"Ålesund\"","path":"C:\\tmp\\n","note":"日本 👋 \u0007","n":[1,2.5e3,null,true]}"#;

// ---------------------------------------------------------------- upstreams

/// One recorded-style OpenAI `chat.completion.chunk`.
fn oa_chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1731000000,
        "model": "gpt-4o-mini", "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null})
}

/// The usage chunk OpenAI sends last (`stream_options.include_usage`).
fn oa_usage(usage: Value) -> Value {
    json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1731000000,
        "model": "gpt-4o-mini", "system_fingerprint": "fp_1", "choices": [], "usage": usage})
}

fn oa_role() -> Value {
    oa_chunk(
        json!({"role": "assistant", "content": null, "refusal": null}),
        Value::Null,
    )
}

fn oa_call_start(index: u32, id: &str, name: &str, arguments: &str) -> Value {
    oa_chunk(
        json!({"tool_calls": [{"index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": arguments}}]}),
        Value::Null,
    )
}

fn oa_call_args(index: u32, arguments: &str) -> Value {
    oa_chunk(
        json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
        Value::Null,
    )
}

/// JSON with every non-ASCII character as `\u` escapes (surrogate pairs
/// beyond the BMP), as Python servers write it; only strings hold such
/// characters, so escaping them in place keeps the JSON valid.
fn ascii_json(v: &Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// An OpenAI upstream body: `data:` events and `[DONE]`.
fn oa_sse(chunks: &[Value], ascii: bool) -> Vec<u8> {
    let mut out = String::new();
    for c in chunks {
        let data = if ascii { ascii_json(c) } else { c.to_string() };
        out.push_str(&format!("data: {data}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// An Anthropic upstream body: each event named by its type.
fn an_sse(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect::<String>()
        .into_bytes()
}

fn an_start(usage: Value) -> Value {
    json!({"type": "message_start", "message": {"id": "msg_up", "type": "message",
        "role": "assistant", "content": [], "model": "claude-up", "stop_reason": null,
        "stop_sequence": null, "usage": usage}})
}

fn an_block_start(index: u32, block: Value) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": block})
}

fn an_delta(index: u32, delta: Value) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": delta})
}

fn an_block_stop(index: u32) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn an_message_delta(stop_reason: &str, stop_sequence: Value, usage: Value) -> Value {
    json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence}, "usage": usage})
}

fn an_stop() -> Value {
    json!({"type": "message_stop"})
}

/// Upstream body pieces through the production SSE framing and `decoder`:
/// the model events (the stream must not fail).
async fn upstream<D: StreamDecoder>(pieces: Vec<Vec<u8>>, decoder: D) -> Vec<Event> {
    let body = stream::iter(pieces.into_iter().map(|p| Ok(Bytes::from(p))));
    let mut events = provider::sse::events("upstream", body, decoder);
    let mut out = Vec::new();
    while let Some(e) = events.next().await {
        out.push(e.expect("the upstream stream decodes"));
    }
    out
}

async fn from_openai(body: &[u8]) -> Vec<Event> {
    upstream(vec![body.to_vec()], ChunkDecoder::new()).await
}

async fn from_anthropic(body: &[u8]) -> Vec<Event> {
    upstream(vec![body.to_vec()], EventDecoder::new()).await
}

/// `body` split in two at every byte, and byte by byte.
fn splits(body: &[u8]) -> impl Iterator<Item = Vec<Vec<u8>>> + '_ {
    (0..=body.len())
        .map(|at| vec![body[..at].to_vec(), body[at..].to_vec()])
        .chain(std::iter::once(body.iter().map(|b| vec![*b]).collect()))
}

// ------------------------------------------------------------------ clients

/// The Messages SSE a client of the Anthropic front door gets for `events`.
fn to_messages(events: &[Event], input_estimate: u64) -> Vec<u8> {
    let mut enc = EventEncoder::new("msg_gw", "gw-model", input_estimate);
    let mut out = Vec::new();
    for e in events {
        enc.push(e, &mut out);
    }
    enc.finish(&mut out);
    out
}

/// The (event name, data) pairs of a Messages SSE body.
fn messages_events(body: &[u8]) -> Vec<(String, Value)> {
    let body = std::str::from_utf8(body).unwrap();
    assert!(body.ends_with("\n\n"), "{body}");
    body.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap();
            let data = data.strip_prefix("data: ").unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

/// One content block as the client streamed it.
#[derive(Debug, Clone, PartialEq)]
struct Streamed {
    /// `content_block` of its `content_block_start`.
    start: Value,
    /// The `delta`s, in order.
    deltas: Vec<Value>,
}

impl Streamed {
    /// The pieces of `field` in the deltas of type `kind`, as sent.
    fn pieces(&self, kind: &str, field: &str) -> Vec<String> {
        self.deltas
            .iter()
            .filter(|d| d["type"] == kind)
            .map(|d| d[field].as_str().unwrap().to_owned())
            .collect()
    }

    /// A `tool_use` block's input as streamed: its `partial_json` joined.
    fn input_json(&self) -> String {
        assert_eq!(self.start["type"], "tool_use", "{:?}", self.start);
        assert_eq!(self.start["input"], json!({}));
        let pieces = self.pieces("input_json_delta", "partial_json");
        assert!(pieces.iter().all(|p| !p.is_empty()), "{pieces:?}");
        pieces.concat()
    }
}

/// Anthropic's event grammar, asserted: `message_start`; then blocks one at
/// a time (`content_block_start`, its deltas, `content_block_stop`),
/// numbered 0, 1, 2... in order; then `message_delta` and `message_stop`.
/// Returns the blocks, `message_start`'s message and `message_delta`.
fn messages_blocks(body: &[u8]) -> (Vec<Streamed>, Value, Value) {
    let events = messages_events(body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "{names:?}");
    }
    let n = events.len();
    assert!(n >= 3, "{names:?}");
    assert_eq!(names[0], "message_start", "{names:?}");
    assert_eq!(
        names[n - 2..],
        ["message_delta", "message_stop"],
        "{names:?}"
    );
    let mut blocks: Vec<Streamed> = Vec::new();
    let mut open = false;
    for (name, data) in &events[1..n - 2] {
        let index = data["index"].as_u64().map(|i| i as usize);
        match name.as_str() {
            "content_block_start" => {
                assert!(!open, "a block starts inside another: {names:?}");
                assert_eq!(index, Some(blocks.len()), "{names:?}");
                blocks.push(Streamed {
                    start: data["content_block"].clone(),
                    deltas: Vec::new(),
                });
                open = true;
            }
            "content_block_delta" => {
                assert!(open, "a delta outside a block: {names:?}");
                assert_eq!(index, Some(blocks.len() - 1), "{names:?}");
                blocks
                    .last_mut()
                    .unwrap()
                    .deltas
                    .push(data["delta"].clone());
            }
            "content_block_stop" => {
                assert!(open, "a stop outside a block: {names:?}");
                assert_eq!(index, Some(blocks.len() - 1), "{names:?}");
                open = false;
            }
            other => panic!("unexpected {other} in {names:?}"),
        }
    }
    assert!(!open);
    let start = events[0].1["message"].clone();
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    (blocks, start, events[n - 2].1.clone())
}

/// The chunks an OpenAI Chat client gets for `events` (usage asked for).
fn to_chunks(events: &[Event], reasoning_field: Option<&'static str>) -> Vec<Value> {
    let mut enc = ChunkEncoder::new(ChunkMeta {
        id: "chatcmpl-gw".into(),
        created: 1,
        model: "gw/model".into(),
        include_usage: true,
    })
    .with_reasoning_field(reasoning_field);
    let mut out = vec![enc.start()];
    for e in events {
        enc.push(e, &mut out);
    }
    enc.end(&mut out);
    out.iter()
        .map(|b| {
            let s = std::str::from_utf8(b).unwrap();
            let data = s
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

/// What an OpenAI Chat client reads from its chunks.
#[derive(Debug, Default, PartialEq)]
struct ChatAnswer {
    content: String,
    reasoning: String,
    refusal: Option<String>,
    /// (id, name, arguments joined), by `index`.
    calls: Vec<(String, String, String)>,
    /// Every arguments piece as sent, by call.
    pieces: Vec<Vec<String>>,
    finish: String,
    usage: Value,
}

/// Reads a chunk sequence as an OpenAI client does, asserting its grammar:
/// the role first, a call's id and name on its first chunk only, calls
/// numbered 0, 1, 2... by first appearance, one finish chunk, the usage
/// chunk last.
fn chat_answer(chunks: &[Value]) -> ChatAnswer {
    let mut a = ChatAnswer::default();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let (last, body) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    a.usage = last["usage"].clone();
    let mut finishes = 0;
    for c in &body[1..] {
        assert_eq!(c["usage"], Value::Null);
        let choice = &c["choices"][0];
        let delta = &choice["delta"];
        if let Some(f) = choice["finish_reason"].as_str() {
            finishes += 1;
            a.finish = f.to_owned();
            assert_eq!(delta, &json!({}));
        }
        if let Some(t) = delta["content"].as_str() {
            a.content.push_str(t);
        }
        if let Some(t) = delta["reasoning_content"].as_str() {
            a.reasoning.push_str(t);
        }
        if let Some(t) = delta["refusal"].as_str() {
            a.refusal.get_or_insert_with(String::new).push_str(t);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            let args = call["function"]["arguments"].as_str().unwrap();
            if i == a.calls.len() {
                a.calls.push((
                    call["id"]
                        .as_str()
                        .expect("a call's first chunk has its id")
                        .into(),
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
                a.pieces.push(Vec::new());
            } else {
                assert!(i < a.calls.len(), "call {i} skips a number");
                assert!(call.get("id").is_none() && call["function"].get("name").is_none());
            }
            a.calls[i].2.push_str(args);
            if !args.is_empty() {
                a.pieces[i].push(args.to_owned());
            }
        }
    }
    assert_eq!(finishes, 1);
    a
}

fn assemble(events: &[Event], canonical_arguments: bool) -> model::Response {
    let mut a = Assembler::new(canonical_arguments);
    events.iter().for_each(|e| a.push(e));
    a.finish()
}

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-gw".into(),
        created: 1,
        model: "gw/model".into(),
        conversation_id: None,
        redactions: None,
    }
}

/// The client's Messages stream read back by the Anthropic decoder and
/// assembled: the answer the client ends up holding.
async fn reread_messages(body: &[u8]) -> model::Response {
    assemble(&from_anthropic(body).await, true)
}

// ------------------------------------------------- 1. arguments split anyhow

/// An OpenAI stream calling `f` with `args` sent in `pieces`.
fn oa_call_stream(pieces: &[&str]) -> Vec<Value> {
    let mut chunks = vec![oa_role(), oa_call_start(0, "call_1", "f", "")];
    chunks.extend(pieces.iter().map(|p| oa_call_args(0, p)));
    chunks.push(oa_chunk(json!({}), json!("tool_calls")));
    chunks.push(oa_usage(
        json!({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}),
    ));
    chunks
}

/// An Anthropic stream calling `f` with `args` sent in `pieces` (after the
/// empty first `input_json_delta` the API sends).
fn an_call_stream(pieces: &[&str]) -> Vec<Value> {
    let mut events = vec![
        an_start(json!({"input_tokens": 12, "output_tokens": 1})),
        an_block_start(
            0,
            json!({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        ),
        an_delta(0, json!({"type": "input_json_delta", "partial_json": ""})),
    ];
    events.extend(
        pieces
            .iter()
            .map(|p| an_delta(0, json!({"type": "input_json_delta", "partial_json": p}))),
    );
    events.push(an_block_stop(0));
    events.push(an_message_delta(
        "tool_use",
        Value::Null,
        json!({"output_tokens": 7}),
    ));
    events.push(an_stop());
    events
}

/// Every way to cut `s` in two at a character boundary (a JSON string cannot
/// end inside a character; cuts inside one are the framing's, below).
fn cuts(s: &str) -> impl Iterator<Item = [&str; 2]> {
    (0..=s.len())
        .filter(|at| s.is_char_boundary(*at))
        .map(|at| [&s[..at], &s[at..]])
}

fn charwise(s: &str) -> Vec<&str> {
    s.char_indices()
        .map(|(i, c)| &s[i..i + c.len_utf8()])
        .collect()
}

// Issue 17 (a): an OpenAI upstream's tool arguments, cut anywhere (inside
// escapes and next to multi-byte characters) or sent a character at a time,
// in UTF-8 or `\u` escapes, reach the Messages client whole: its
// `input_json_delta` pieces join to exactly the arguments, and the block
// is a well-formed `tool_use`.
#[tokio::test]
async fn openai_tool_arguments_cut_anywhere_reach_a_messages_client_whole() {
    let parsed: Value = serde_json::from_str(ARGS).unwrap();
    let mut ways: Vec<Vec<&str>> = cuts(ARGS).map(|c| c.to_vec()).collect();
    ways.push(charwise(ARGS));
    for pieces in ways {
        for ascii in [false, true] {
            let body = oa_sse(&oa_call_stream(&pieces), ascii);
            let out = to_messages(&from_openai(&body).await, 3);
            let (blocks, _, delta) = messages_blocks(&out);
            assert_eq!(blocks.len(), 1, "{pieces:?}");
            assert_eq!(blocks[0].start["id"], "call_1");
            assert_eq!(blocks[0].start["name"], "f");
            assert_eq!(blocks[0].input_json(), ARGS, "{pieces:?}");
            assert_eq!(delta["delta"]["stop_reason"], "tool_use");
            // The answer the client assembles holds the arguments as JSON.
            let whole = reread_messages(&out).await;
            let call = whole.message.tool_calls().next().unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&call.arguments).unwrap(),
                parsed
            );
        }
    }
}

// Issue 17 (b): an Anthropic upstream's `partial_json`, cut anywhere or a
// character at a time, reaches an OpenAI client whole (its `arguments`
// pieces join to exactly the input JSON), and a Messages client piece for
// piece as the upstream sent them.
#[tokio::test]
async fn anthropic_tool_input_cut_anywhere_reaches_both_clients_whole() {
    let mut ways: Vec<Vec<&str>> = cuts(ARGS).map(|c| c.to_vec()).collect();
    ways.push(charwise(ARGS));
    for pieces in ways {
        let events = from_anthropic(&an_sse(&an_call_stream(&pieces))).await;
        let chat = chat_answer(&to_chunks(&events, None));
        assert_eq!(
            chat.calls,
            [("toolu_1".into(), "f".into(), ARGS.into())],
            "{pieces:?}"
        );
        let sent: Vec<&str> = pieces.iter().copied().filter(|p| !p.is_empty()).collect();
        assert_eq!(chat.pieces[0], sent);
        assert_eq!(chat.finish, "tool_calls");

        let (blocks, _, _) = messages_blocks(&to_messages(&events, 0));
        assert_eq!(blocks[0].pieces("input_json_delta", "partial_json"), sent);
    }
}

// Issue 17 (a), (b): the SSE framing itself cut at every byte (inside
// `data:`, inside `\u` escapes, inside multi-byte characters, between the
// two newlines) and byte by byte: each client gets the same bytes as from
// the body in one piece.
#[tokio::test]
async fn upstream_bodies_cut_at_every_byte_translate_the_same() {
    // Cuts after `Zo`, inside the `\"` escape, before the emoji.
    let zo = ARGS.find('ë').unwrap();
    let escape = ARGS.find("\\\"").unwrap() + 1;
    let emoji = ARGS.find('👋').unwrap();
    let pieces = [
        &ARGS[..zo],
        &ARGS[zo..escape],
        &ARGS[escape..emoji],
        &ARGS[emoji..],
    ];
    assert_eq!(pieces.concat(), ARGS);
    for ascii in [false, true] {
        let body = oa_sse(&oa_call_stream(&pieces), ascii);
        let want = to_messages(&from_openai(&body).await, 3);
        let (blocks, _, _) = messages_blocks(&want);
        assert_eq!(blocks[0].input_json(), ARGS);
        for split in splits(&body) {
            let got = to_messages(&upstream(split, ChunkDecoder::new()).await, 3);
            assert_eq!(got, want, "ascii: {ascii}");
        }
    }

    let body = an_sse(&an_call_stream(&pieces));
    let events = from_anthropic(&body).await;
    let want_chunks = to_chunks(&events, None);
    assert_eq!(chat_answer(&want_chunks).calls[0].2, ARGS);
    let want_messages = to_messages(&events, 0);
    messages_blocks(&want_messages);
    for split in splits(&body) {
        let events = upstream(split, EventDecoder::new()).await;
        assert_eq!(to_chunks(&events, None), want_chunks);
        assert_eq!(to_messages(&events, 0), want_messages);
    }
}

// ------------------------------------------------------ 2. parallel calls

fn parallel_openai_stream() -> Vec<Value> {
    vec![
        oa_role(),
        oa_chunk(json!({"content": "Checking "}), Value::Null),
        oa_chunk(json!({"content": "three things."}), Value::Null),
        oa_call_start(0, "call_a", "weather", ""),
        oa_call_start(1, "call_b", "time", "{\"tz\""),
        oa_call_args(0, "{\"city\":"),
        oa_call_start(2, "call_c", "search", ""),
        oa_call_args(2, "{\"q\":\"Zo"),
        oa_call_args(1, ":\"CET\"}"),
        oa_call_args(0, "\"Oslo\"}"),
        oa_call_args(2, "ë\"}"),
        oa_chunk(json!({}), json!("tool_calls")),
        oa_usage(json!({"prompt_tokens": 40, "completion_tokens": 30, "total_tokens": 70})),
    ]
}

// Issue 17 (a): three calls interleaved by `index` in one OpenAI stream
// reach a Messages client as consecutive `tool_use` blocks after the text,
// each opened, filled and closed before the next, numbered 1, 2, 3, each
// with exactly its own arguments; the recorded parallel stream likewise.
#[tokio::test]
async fn interleaved_openai_calls_become_consecutive_tool_use_blocks() {
    let body = oa_sse(&parallel_openai_stream(), false);
    let events = from_openai(&body).await;
    let out = to_messages(&events, 9);
    let (blocks, _, delta) = messages_blocks(&out);
    assert_eq!(blocks.len(), 4);
    assert_eq!(blocks[0].start, json!({"type": "text", "text": ""}));
    assert_eq!(
        blocks[0].pieces("text_delta", "text").concat(),
        "Checking three things."
    );
    let calls: Vec<(Value, Value, String)> = blocks[1..]
        .iter()
        .map(|b| {
            (
                b.start["id"].clone(),
                b.start["name"].clone(),
                b.input_json(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            (
                json!("call_a"),
                json!("weather"),
                r#"{"city":"Oslo"}"#.into()
            ),
            (json!("call_b"), json!("time"), r#"{"tz":"CET"}"#.into()),
            (json!("call_c"), json!("search"), r#"{"q":"Zoë"}"#.into()),
        ]
    );
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    // The streamed answer is the whole one: the client's stream, read back,
    // assembles to the model answer the upstream's events assemble to.
    assert_eq!(
        reread_messages(&out).await.message,
        assemble(&events, true).message
    );
    // And it is what a non-streamed client gets.
    let whole = json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1,
        "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": "Checking three things.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{\"tz\":\"CET\"}"}},
            {"id": "call_c", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"Zoë\"}"}}]}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 30, "total_tokens": 70}});
    let whole = openai_chat::decode_response(whole).unwrap();
    let encoded = anthropic::encode_response(&whole, "msg_gw", "gw-model");
    let streamed = anthropic::encode_response(&reread_messages(&out).await, "msg_gw", "gw-model");
    assert_eq!(streamed["content"], encoded["content"]);
    assert_eq!(encoded["stop_reason"], "tool_use");

    // The recording: two calls one after the other.
    let recorded = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/streams/openai_parallel_tools.sse"),
    )
    .unwrap();
    let (blocks, _, _) = messages_blocks(&to_messages(&from_openai(&recorded).await, 0));
    let inputs: Vec<String> = blocks.iter().map(Streamed::input_json).collect();
    assert_eq!(inputs, [r#"{"city": "Oslo"}"#, r#"{"tz":"CET"}"#]);
}

// Issue 17 (a): OpenAI-compatible servers that number every parallel call 0
// (or leave `index` out) still start each call with its own id: a new id
// at an index is a new call, so calls are neither merged nor their
// arguments run together.
#[tokio::test]
async fn calls_all_numbered_zero_stay_apart() {
    let chunks = vec![
        oa_role(),
        oa_call_start(0, "call_a", "weather", "{\"city\":"),
        oa_call_args(0, "\"Oslo\"}"),
        oa_call_start(0, "call_b", "time", "{\"tz\":\"CET\"}"),
        oa_chunk(
            json!({"tool_calls": [
                {"id": "call_c", "type": "function", "function": {"name": "search", "arguments": "{}"}},
            ]}),
            Value::Null,
        ),
        // A repeated id is the same call (some servers repeat it).
        oa_chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_c", "function": {"arguments": ""}}]}),
            Value::Null,
        ),
        oa_chunk(json!({}), json!("tool_calls")),
    ];
    let events = from_openai(&oa_sse(&chunks, false)).await;
    let (blocks, _, _) = messages_blocks(&to_messages(&events, 0));
    let calls: Vec<(Value, String)> = blocks
        .iter()
        .map(|b| (b.start["id"].clone(), b.input_json()))
        .collect();
    assert_eq!(
        calls,
        [
            (json!("call_a"), r#"{"city":"Oslo"}"#.into()),
            (json!("call_b"), r#"{"tz":"CET"}"#.into()),
            (json!("call_c"), "{}".into()),
        ]
    );
    let chat = chat_answer(&to_chunks(&events, None));
    let ids: Vec<&str> = chat.calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids, ["call_a", "call_b", "call_c"]);
}

fn parallel_anthropic_stream() -> Vec<Value> {
    let tool =
        |id: &str, name: &str| json!({"type": "tool_use", "id": id, "name": name, "input": {}});
    let args = |s: &str| json!({"type": "input_json_delta", "partial_json": s});
    vec![
        an_start(json!({"input_tokens": 40, "output_tokens": 1})),
        an_block_start(0, json!({"type": "text", "text": ""})),
        an_delta(0, json!({"type": "text_delta", "text": "Checking."})),
        an_block_stop(0),
        an_block_start(1, tool("toolu_a", "weather")),
        an_delta(1, args("{\"city\":")),
        an_delta(1, args("\"Oslo\"}")),
        an_block_stop(1),
        an_block_start(2, tool("toolu_b", "time")),
        an_block_stop(2),
        an_block_start(3, tool("toolu_c", "search")),
        an_delta(3, args("{\"q\":\"Zoë\"}")),
        an_block_stop(3),
        an_message_delta("tool_use", Value::Null, json!({"output_tokens": 30})),
        an_stop(),
    ]
}

// Issue 17 (b): consecutive `tool_use` blocks (one without input) reach an
// OpenAI client as calls numbered 0, 1, 2 among tool calls, each with its id
// and name once and its own arguments (`{}` for the one without input);
// streamed and whole agree.
#[tokio::test]
async fn anthropic_tool_use_blocks_become_numbered_openai_calls() {
    let events = from_anthropic(&an_sse(&parallel_anthropic_stream())).await;
    let chat = chat_answer(&to_chunks(&events, None));
    let calls = vec![
        (
            "toolu_a".to_owned(),
            "weather".to_owned(),
            r#"{"city":"Oslo"}"#.to_owned(),
        ),
        ("toolu_b".into(), "time".into(), "{}".into()),
        ("toolu_c".into(), "search".into(), r#"{"q":"Zoë"}"#.into()),
    ];
    assert_eq!(chat.calls, calls);
    assert_eq!(chat.content, "Checking.");
    assert_eq!(chat.finish, "tool_calls");

    let whole = anthropic::decode_response(json!({"id": "msg_up", "type": "message",
        "role": "assistant", "model": "claude-up", "stop_reason": "tool_use", "stop_sequence": null,
        "content": [{"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}},
            {"type": "tool_use", "id": "toolu_c", "name": "search", "input": {"q": "Zoë"}}],
        "usage": {"input_tokens": 40, "output_tokens": 30}}))
    .unwrap();
    let v = serde_json::to_value(openai_chat::encode_response(&whole, meta())).unwrap();
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], "Checking.");
    let whole_calls: Vec<(String, String, String)> = message["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |p: &str| c.pointer(p).unwrap().as_str().unwrap().to_owned();
            (s("/id"), s("/function/name"), s("/function/arguments"))
        })
        .collect();
    assert_eq!(whole_calls, calls);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(assemble(&events, true), whole);
}

// ---------------------------------------------------- 3. thinking, signed

fn thinking_anthropic_stream() -> Vec<Value> {
    vec![
        an_start(json!({"input_tokens": 21, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 1})),
        an_block_start(0, json!({"type": "thinking", "thinking": ""})),
        an_delta(
            0,
            json!({"type": "thinking_delta", "thinking": "The user wants "}),
        ),
        an_delta(
            0,
            json!({"type": "thinking_delta", "thinking": "Zoë's answer."}),
        ),
        an_delta(
            0,
            json!({"type": "signature_delta", "signature": "EqQBCkYIARgCKkA+/sig=="}),
        ),
        an_block_stop(0),
        an_block_start(
            1,
            json!({"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}),
        ),
        an_block_stop(1),
        an_block_start(2, json!({"type": "text", "text": ""})),
        an_delta(2, json!({"type": "text_delta", "text": "Here it is."})),
        an_block_stop(2),
        an_message_delta("end_turn", Value::Null, json!({"output_tokens": 58})),
        an_stop(),
    ]
}

/// Anthropic -> Anthropic: `events`, decoded from the upstream `body`, give
/// a Messages client (named as upstream) `body` again, byte for byte.
fn assert_passes_byte_exact(body: &[u8], events: &[Event]) {
    let mut enc = EventEncoder::new("msg_up", "claude-up", 0);
    let mut out = Vec::new();
    for e in events {
        enc.push(e, &mut out);
    }
    enc.finish(&mut out);
    messages_blocks(&out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(body.to_vec()).unwrap()
    );
}

// Issue 17, point 3, Anthropic -> Anthropic: thinking with its signature and
// redacted thinking pass through the model to a Messages client byte for
// byte as the upstream sent them.
#[tokio::test]
async fn signed_thinking_passes_anthropic_to_anthropic_byte_exact() {
    let body = an_sse(&thinking_anthropic_stream());
    assert_passes_byte_exact(&body, &from_anthropic(&body).await);
}

// Issue 17, point 3: a server tool's streamed input (a block type the
// model has no type for, kept whole) passes Anthropic -> Anthropic byte for
// byte, is kept in the assembled answer as the whole answer has it, and is
// no tool call of an OpenAI client's.
#[tokio::test]
async fn server_tool_input_passes_anthropic_to_anthropic_whole() {
    let body = an_sse(&[
        an_start(json!({"input_tokens": 9, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 1})),
        an_block_start(
            0,
            json!({"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}}),
        ),
        an_delta(
            0,
            json!({"type": "input_json_delta", "partial_json": "{\"query\": "}),
        ),
        an_delta(
            0,
            json!({"type": "input_json_delta", "partial_json": "\"Q3 figures\"}"}),
        ),
        an_block_stop(0),
        an_block_start(
            1,
            json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []}),
        ),
        an_block_stop(1),
        an_block_start(2, json!({"type": "text", "text": ""})),
        an_delta(2, json!({"type": "text_delta", "text": "Found it."})),
        an_block_stop(2),
        an_message_delta("end_turn", Value::Null, json!({"output_tokens": 20})),
        an_stop(),
    ]);
    let events = from_anthropic(&body).await;
    assert_passes_byte_exact(&body, &events);

    let whole = anthropic::decode_response(json!({"id": "msg_up", "model": "claude-up",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "Q3 figures"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
            {"type": "text", "text": "Found it."}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 20}}))
    .unwrap();
    assert_eq!(assemble(&events, true), whole);

    let chat = chat_answer(&to_chunks(&events, None));
    assert_eq!(chat.calls, []);
    assert_eq!(chat.content, "Found it.");
}

// Issue 17 (b), Anthropic -> OpenAI: OpenAI Chat has no thinking: streamed,
// the reasoning text goes out only under a configured reasoning field and
// the signature and redacted thinking never; whole, the answer is its text.
#[tokio::test]
async fn signed_thinking_reaches_an_openai_client_as_the_codec_maps_it() {
    let events = from_anthropic(&an_sse(&thinking_anthropic_stream())).await;
    let plain = chat_answer(&to_chunks(&events, None));
    assert_eq!(plain.content, "Here it is.");
    assert_eq!(plain.reasoning, "");
    let with_field = to_chunks(&events, Some("reasoning_content"));
    assert_eq!(
        chat_answer(&with_field).reasoning,
        "The user wants Zoë's answer."
    );
    let text = serde_json::to_string(&with_field).unwrap();
    assert!(
        !text.contains("EqQBCkYI") && !text.contains("EmwKAhgB"),
        "{text}"
    );

    // The model keeps both blocks, signature included, for the next turn.
    let whole = assemble(&events, true);
    assert!(matches!(&whole.message.content[0],
        model::Block::Reasoning { signature: Some(s), .. } if s == "EqQBCkYIARgCKkA+/sig=="));
    assert!(matches!(&whole.message.content[1],
        model::Block::Reasoning { encrypted: Some(d), .. } if d == "EmwKAhgBEgy3va3pzix/LafPsn4a"));
    let v = serde_json::to_value(openai_chat::encode_response(&whole, meta())).unwrap();
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Here it is."})
    );
}

// Issue 17 (a): an OpenAI-compatible upstream's `reasoning_content` reaches a
// Messages client as a thinking block (no signature: it has none), before
// the text, in Anthropic's order.
#[tokio::test]
async fn openai_reasoning_reaches_a_messages_client_as_thinking() {
    let chunks = vec![
        oa_role(),
        oa_chunk(json!({"reasoning_content": "Think"}), Value::Null),
        oa_chunk(json!({"reasoning_content": "ing."}), Value::Null),
        oa_chunk(json!({"content": "Done."}), Value::Null),
        oa_chunk(json!({}), json!("stop")),
        oa_usage(
            json!({"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14,
            "completion_tokens_details": {"reasoning_tokens": 6}}),
        ),
    ];
    let (blocks, _, delta) =
        messages_blocks(&to_messages(&from_openai(&oa_sse(&chunks, false)).await, 5));
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].start, json!({"type": "thinking", "thinking": ""}));
    assert_eq!(
        blocks[0].pieces("thinking_delta", "thinking"),
        ["Think", "ing."]
    );
    assert!(blocks[0].pieces("signature_delta", "signature").is_empty());
    assert_eq!(blocks[1].pieces("text_delta", "text"), ["Done."]);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 9);
}

// Issue 17 (a): a Messages request's signed and redacted thinking is kept for
// an Anthropic upstream (unchanged) and left out for an OpenAI one, whose
// format has no place for it; the rest of the turn is translated.
#[test]
fn thinking_in_the_history_is_kept_for_anthropic_and_left_out_for_openai() {
    let req = messages_request(json!({"model": "m", "max_tokens": 100,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "Why?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "EqQBsig"},
                {"type": "redacted_thinking", "data": "EmwKredacted"},
                {"type": "text", "text": "Because."}]},
            {"role": "user", "content": "Sure?"}]}));
    let m = anthropic::decode_request(&req).unwrap();
    let back = anthropic::encode_request(&m, "m", &anthropic_opts()).unwrap();
    assert_eq!(
        back["messages"],
        json!([
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "EqQBsig"},
            {"type": "redacted_thinking", "data": "EmwKredacted"},
            {"type": "text", "text": "Because."}]},
        {"role": "user", "content": [{"type": "text", "text": "Sure?"}]}])
    );
    assert_eq!(
        back["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    let openai = openai_chat::encode_request(&m, "gpt", &openai_opts()).unwrap();
    assert_eq!(
        openai["messages"],
        json!([{"role": "user", "content": "Why?"},
            {"role": "assistant", "content": "Because."},
            {"role": "user", "content": "Sure?"}])
    );
    assert!(openai.get("thinking").is_none(), "{openai}");
}

// ------------------------------------------------------------- 4. images

fn messages_request(v: Value) -> MessagesRequest {
    serde_json::from_value(v).unwrap()
}

fn chat_request(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn anthropic_opts() -> AnthropicOptions<'static> {
    AnthropicOptions {
        default_max_tokens: 4096,
        stream: false,
        breakpoints: &[],
    }
}

fn openai_opts() -> openai_chat::UpstreamOptions<'static> {
    openai_chat::UpstreamOptions {
        stream: false,
        max_tokens_field: openai_chat::MaxTokensField::MaxCompletionTokens,
        prompt_cache_key: None,
    }
}

/// A golden case from `anthropic/golden/translation.json`.
fn golden(name: &str) -> Value {
    let cases: Value = serde_json::from_str(CASES).unwrap();
    cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no golden case {name}"))
        .clone()
}

// Issue 17 (a), (b): requests both ways, with base64 and URL images, cache
// hints, tools, a tool round and the sampling parameters, against the
// golden bodies in `anthropic/golden/translation.json`.
#[test]
fn requests_translate_to_the_golden_bodies_both_ways() {
    let case = golden("anthropic_request_to_openai");
    let m = anthropic::decode_request(&messages_request(case["anthropic"].clone())).unwrap();
    let body = openai_chat::encode_request(&m, "gpt-4o", &openai_opts()).unwrap();
    assert_eq!(body, case["openai"], "{body:#}");

    let case = golden("openai_request_to_anthropic");
    let m = openai_chat::decode_request(&chat_request(case["openai"].clone()));
    let body = anthropic::encode_request(&m, "claude-up", &anthropic_opts()).unwrap();
    assert_eq!(body, case["anthropic"], "{body:#}");
}

// Issue 17 (a), (b): an image goes Anthropic -> OpenAI -> Anthropic (and
// OpenAI -> Anthropic -> OpenAI) unchanged: base64 as a data URL and back,
// a URL as itself.
#[test]
fn images_survive_a_trip_through_the_other_format() {
    let user = json!([
        {"type": "text", "text": "Compare."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]);
    let req = messages_request(json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": user}]}));
    let m = anthropic::decode_request(&req).unwrap();
    let openai = openai_chat::encode_request(&m, "gpt", &openai_opts()).unwrap();
    assert_eq!(
        openai["messages"][0]["content"],
        json!([{"type": "text", "text": "Compare."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}])
    );
    let again = openai_chat::decode_request(&chat_request(openai.clone()));
    let back = anthropic::encode_request(&again, "m", &anthropic_opts()).unwrap();
    assert_eq!(back["messages"][0]["content"], user);
    let m = openai_chat::decode_request(&chat_request(openai.clone()));
    let anthropic_body = anthropic::encode_request(&m, "m", &anthropic_opts()).unwrap();
    let req = messages_request(anthropic_body);
    let m = anthropic::decode_request(&req).unwrap();
    let round = openai_chat::encode_request(&m, "gpt", &openai_opts()).unwrap();
    assert_eq!(round["messages"], openai["messages"]);
}

// Issue 17 (a): OpenAI takes only text in a tool message, so an Anthropic
// tool result's image (a screenshot tool's) and document go in a user
// message after the tool messages; the results keep their text.
#[test]
fn tool_result_media_from_a_messages_client_goes_in_a_user_message() {
    let req = messages_request(json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Look."}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}},
            {"type": "tool_use", "id": "t2", "name": "read", "input": {"path": "a.pdf"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "Taken."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
            {"type": "tool_result", "tool_use_id": "t2", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/p1.png"}}]},
            {"type": "text", "text": "What do you see?"}]}]}));
    let m = anthropic::decode_request(&req).unwrap();
    let body = openai_chat::encode_request(&m, "gpt", &openai_opts()).unwrap();
    assert_eq!(
        body["messages"].as_array().unwrap()[2..],
        [
            json!({"role": "tool", "tool_call_id": "t1", "content": "Taken."}),
            json!({"role": "tool", "tool_call_id": "t2", "content": ""}),
            json!({"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/p1.png"}}]}),
            json!({"role": "user", "content": "What do you see?"}),
        ]
    );
}

// ------------------------------------------------------- 5. stop reasons

/// (OpenAI finish_reason, Messages stop_reason) for an OpenAI upstream.
const OPENAI_TO_MESSAGES: [(&str, &str); 4] = [
    ("stop", "end_turn"),
    ("length", "max_tokens"),
    ("tool_calls", "tool_use"),
    ("content_filter", "refusal"),
];

/// (Messages stop_reason, OpenAI finish_reason) for an Anthropic upstream.
const MESSAGES_TO_OPENAI: [(&str, &str); 7] = [
    ("end_turn", "stop"),
    ("max_tokens", "length"),
    ("stop_sequence", "stop"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("pause_turn", "stop"),
    ("model_context_window_exceeded", "length"),
];

// Issue 17 (a): every OpenAI finish reason reaches a Messages client as its
// stop reason, streamed (in `message_delta`) and whole.
#[tokio::test]
async fn openai_finish_reasons_become_messages_stop_reasons() {
    for (finish, stop) in OPENAI_TO_MESSAGES {
        let chunks = vec![
            oa_role(),
            oa_chunk(json!({"content": "x"}), Value::Null),
            oa_chunk(json!({}), json!(finish)),
            oa_usage(json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})),
        ];
        let out = to_messages(&from_openai(&oa_sse(&chunks, false)).await, 1);
        let (_, _, delta) = messages_blocks(&out);
        assert_eq!(
            delta["delta"],
            json!({"stop_reason": stop, "stop_sequence": null}),
            "{finish}"
        );
        let whole = openai_chat::decode_response(json!({"choices": [{"index": 0,
            "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}))
        .unwrap();
        let v = anthropic::encode_response(&whole, "msg_gw", "gw-model");
        assert_eq!(v["stop_reason"], stop, "{finish}");
        assert_eq!(v["stop_sequence"], Value::Null);
    }
}

// Issue 17 (b): every Messages stop reason reaches an OpenAI client as its
// finish reason, streamed and whole; Anthropic -> Anthropic keeps the stop
// reason and the matched stop sequence.
#[tokio::test]
async fn messages_stop_reasons_become_openai_finish_reasons() {
    for (stop, finish) in MESSAGES_TO_OPENAI {
        let seq = if stop == "stop_sequence" {
            json!("END")
        } else {
            Value::Null
        };
        let body = an_sse(&[
            an_start(json!({"input_tokens": 1, "output_tokens": 1})),
            an_block_start(0, json!({"type": "text", "text": ""})),
            an_delta(0, json!({"type": "text_delta", "text": "x"})),
            an_block_stop(0),
            an_message_delta(stop, seq.clone(), json!({"output_tokens": 2})),
            an_stop(),
        ]);
        let events = from_anthropic(&body).await;
        assert_eq!(
            chat_answer(&to_chunks(&events, None)).finish,
            finish,
            "{stop}"
        );
        let (_, _, delta) = messages_blocks(&to_messages(&events, 0));
        assert_eq!(
            delta["delta"],
            json!({"stop_reason": stop, "stop_sequence": seq})
        );

        let whole = anthropic::decode_response(json!({"content": [{"type": "text", "text": "x"}],
            "stop_reason": stop, "stop_sequence": seq}))
        .unwrap();
        let v = serde_json::to_value(openai_chat::encode_response(&whole, meta())).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{stop}");
        let v = anthropic::encode_response(&whole, "m", "c");
        assert_eq!(
            (&v["stop_reason"], &v["stop_sequence"]),
            (&json!(stop), &seq)
        );
    }
}

// ------------------------------------------------------------- 6. usage

// Issue 17 (a): an OpenAI upstream reports usage only at the end:
// `message_start` carries the front door's input estimate, `message_delta`
// the upstream's counts, cached tokens split out of `input_tokens` (and
// cache writes from compatible servers that report them); the whole answer
// carries the same counts.
#[tokio::test]
async fn openai_usage_with_cache_reaches_a_messages_client() {
    let usage = json!({"prompt_tokens": 1200, "completion_tokens": 30, "total_tokens": 1230,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "completion_tokens_details": {"reasoning_tokens": 4},
        "cache_creation_input_tokens": 150});
    let chunks = vec![
        oa_role(),
        oa_chunk(json!({"content": "Hi."}), Value::Null),
        oa_chunk(json!({}), json!("stop")),
        oa_usage(usage.clone()),
    ];
    let out = to_messages(&from_openai(&oa_sse(&chunks, false)).await, 1190);
    let (_, start, delta) = messages_blocks(&out);
    assert_eq!(
        start["usage"],
        json!({"input_tokens": 1190, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 0})
    );
    let counts = json!({"input_tokens": 50, "cache_creation_input_tokens": 150,
        "cache_read_input_tokens": 1000, "output_tokens": 30});
    assert_eq!(delta["usage"], counts);
    // What the client sums (the SDK takes message_delta's counts over
    // message_start's) is the upstream's.
    assert_eq!(reread_messages(&out).await.usage.input, 1200);

    let whole = openai_chat::decode_response(json!({"choices": [{"index": 0,
        "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}],
        "usage": usage}))
    .unwrap();
    assert_eq!(
        anthropic::encode_response(&whole, "m", "c")["usage"],
        counts
    );
}

// Issue 17 (b): an Anthropic upstream's cache reads and writes (with the
// one-hour part) reach an OpenAI client as prompt tokens with
// `cached_tokens` and `cache_creation_input_tokens`, streamed and whole;
// a Messages client gets them as sent, the one-hour split included.
#[tokio::test]
async fn anthropic_usage_with_cache_reaches_both_clients() {
    let usage = json!({"input_tokens": 4, "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 10, "output_tokens": 1,
        "cache_creation": {"ephemeral_5m_input_tokens": 18, "ephemeral_1h_input_tokens": 12}});
    let body = an_sse(&[
        an_start(usage.clone()),
        an_block_start(0, json!({"type": "text", "text": ""})),
        an_delta(0, json!({"type": "text_delta", "text": "Hi."})),
        an_block_stop(0),
        an_message_delta("end_turn", Value::Null, json!({"output_tokens": 25})),
        an_stop(),
    ]);
    let events = from_anthropic(&body).await;
    let want = json!({"prompt_tokens": 44, "completion_tokens": 25, "total_tokens": 69,
        "prompt_tokens_details": {"cached_tokens": 10}, "cache_creation_input_tokens": 30});
    assert_eq!(chat_answer(&to_chunks(&events, None)).usage, want);

    let (_, start, delta) = messages_blocks(&to_messages(&events, 999));
    assert_eq!(
        start["usage"], usage,
        "the upstream's counts, not the estimate"
    );
    assert_eq!(delta["usage"], json!({"output_tokens": 25}));

    let mut whole_usage = usage.clone();
    whole_usage["output_tokens"] = json!(25);
    let whole = anthropic::decode_response(json!({"content": [{"type": "text", "text": "Hi."}],
        "stop_reason": "end_turn", "usage": whole_usage}))
    .unwrap();
    let v = serde_json::to_value(openai_chat::encode_response(&whole, meta())).unwrap();
    assert_eq!(v["usage"], want);
    assert_eq!(
        anthropic::encode_response(&whole, "m", "c")["usage"],
        whole_usage
    );
}

/// Issue 18: a Responses request's `reasoning.effort` reaches an OpenAI
/// Chat upstream as `reasoning_effort`; its `instructions` stay apart.
#[test]
fn responses_reasoning_effort_reaches_an_openai_chat_upstream() {
    use crate::wire::openai_responses::{decode_request, types::CreateRequest};
    let req: CreateRequest = serde_json::from_value(json!({
        "model": "openai/o4-mini", "input": "think", "instructions": "be brief",
        "reasoning": {"effort": "high"}
    }))
    .unwrap();
    let decoded = decode_request(&req).unwrap();
    assert_eq!(decoded.instructions.len(), 1);
    let body = openai_chat::encode_request(&decoded.request, "o4-mini", &openai_opts()).unwrap();
    assert_eq!(body["reasoning_effort"], "high", "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "{body}");
}

/// Issue 18: OpenAI's encrypted reasoning, stored by an `api = "responses"`
/// provider, never reaches Anthropic (which would refuse the request);
/// Anthropic's own redacted thinking still does.
#[test]
fn openai_encrypted_reasoning_is_left_out_for_anthropic() {
    use crate::model::{Block, Message, Role};
    let reasoning = |data: &str| Block::Reasoning {
        text: String::new(),
        signature: None,
        encrypted: Some(data.to_owned()),
    };
    let req = model::Request {
        messages: vec![
            Message::text(Role::User, "q"),
            Message {
                role: Role::Assistant,
                content: vec![
                    reasoning("gAAAAABopenai"),
                    reasoning("anthropic-redacted"),
                    Block::text("a"),
                ],
                ..Message::text(Role::Assistant, "")
            },
            Message::text(Role::User, "q2"),
        ],
        ..model::Request::default()
    };
    let body = anthropic::encode_request(&req, "claude-sonnet-4-5", &anthropic_opts()).unwrap();
    let text = body.to_string();
    assert!(!text.contains("gAAAAAB"), "{text}");
    assert!(text.contains("anthropic-redacted"), "{text}");
}
