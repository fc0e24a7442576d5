//! Golden and round-trip tests of the Responses codec: items <-> model
//! messages, requests, response objects and the event stream.

use serde_json::{Value, json};

use super::*;
use crate::model::{Block, Document, Image, MediaSource, Message, Role, ToolCall, ToolResult};

fn items_of(v: Value) -> Vec<Value> {
    v.as_array().cloned().unwrap()
}

fn to_json(items: &[Item]) -> Value {
    serde_json::to_value(items).unwrap()
}

#[test]
fn item_ids_are_stable_and_parse_back() {
    let ids = ItemIds { seq: 7 };
    assert_eq!(ids.id("msg", 0), "msg_7_0");
    assert_eq!(parse_item_id("msg_7_0"), Some((7, 0)));
    assert_eq!(parse_item_id("fc_12_3"), Some((12, 3)));
    assert_eq!(parse_item_id("fco_0_1"), Some((0, 1)));
    assert_eq!(
        parse_item_id("rs_18446744073709551615_2"),
        Some((u64::MAX, 2))
    );
    for bad in [
        "",
        "msg_",
        "msg_1",
        "msg_1_",
        "msg__1",
        "msg_a_1",
        "msg_1_2_3",
        "xx_1_2",
        "msg_-1_2",
        "msg_+1_2",
        "resp_1_2",
        "fc_99999999999999999999_1",
    ] {
        assert_eq!(parse_item_id(bad), None, "{bad}");
    }
}

#[test]
fn a_function_call_round_trip_merges_assistant_side_items() {
    let input = items_of(json!([
        {"role": "developer", "content": "be brief"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "reasoning", "id": "rs_x", "summary": [{"type": "summary_text", "text": "think"}],
         "encrypted_content": "gAAAAsecret"},
        {"type": "message", "role": "assistant", "id": "msg_x", "status": "completed",
         "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
        {"type": "function_call", "id": "fc_x", "call_id": "call_1", "name": "weather",
         "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
        {"type": "function_call", "call_id": "call_2", "name": "time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "noon"}]}
    ]));
    let messages = decode_items(&input, "input").unwrap();
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool
        ]
    );
    let answer = &messages[2];
    assert_eq!(answer.content.len(), 4);
    assert_eq!(
        answer.content[0],
        Block::Reasoning {
            text: "think".into(),
            signature: None,
            encrypted: Some("gAAAAsecret".into())
        }
    );
    assert_eq!(answer.content[1], Block::text("let me look"));
    assert_eq!(
        answer.content[2],
        Block::ToolCall(ToolCall {
            id: "call_1".into(),
            name: "weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
            cache: None
        })
    );
    let Block::ToolResult(r) = &messages[3].content[0] else {
        panic!("not a tool result")
    };
    assert_eq!((r.call_id.as_str(), r.text()), ("call_1", "sunny".into()));

    // Encoding the stored answer gives the items back, with ctxgate's ids.
    let items = encode_items(answer, &ItemIds { seq: 4 });
    assert_eq!(
        to_json(&items),
        json!([
            {"type": "reasoning", "id": "rs_4_0", "summary": [{"type": "summary_text", "text": "think"}],
             "encrypted_content": "gAAAAsecret", "status": "completed"},
            {"type": "message", "id": "msg_4_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
            {"type": "function_call", "id": "fc_4_2", "call_id": "call_1", "name": "weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "id": "fc_4_3", "call_id": "call_2", "name": "time",
             "arguments": "{}", "status": "completed"}
        ])
    );
    assert_eq!(
        to_json(&encode_items(&messages[3], &ItemIds { seq: 5 })),
        json!([{"type": "function_call_output", "id": "fco_5_0", "call_id": "call_1",
                "output": "sunny", "status": "completed"}])
    );
    // The items decode to the same messages again: one mapping both ways.
    let mut again = Vec::new();
    for (k, m) in messages.iter().enumerate() {
        again.extend(
            encode_items(m, &ItemIds { seq: k as u64 })
                .iter()
                .map(|i| serde_json::to_value(i).unwrap()),
        );
    }
    let decoded = decode_items(&again, "items").unwrap();
    assert_eq!(decoded[2..], messages[2..]);
    // Instructions read back with their role, as input_text.
    assert_eq!(decoded[0], Message::text(Role::Developer, "be brief"));
}

#[test]
fn an_anthropic_signature_rides_in_encrypted_content() {
    let m = Message {
        role: Role::Assistant,
        content: vec![
            Block::Reasoning {
                text: "thinking".into(),
                signature: Some("sig123".into()),
                encrypted: None,
            },
            Block::Reasoning {
                text: String::new(),
                signature: None,
                encrypted: Some("redacted".into()),
            },
            Block::text("hi"),
        ],
        name: None,
    };
    let items = encode_items(&m, &ItemIds { seq: 1 });
    let v = to_json(&items);
    assert_eq!(
        v[0]["encrypted_content"],
        json!(format!("{SIGNATURE_PREFIX}sig123"))
    );
    assert_eq!(v[1]["summary"], json!([]));
    assert_eq!(v[1]["encrypted_content"], "redacted");
    let back = decode_items(&items_of(v), "input").unwrap();
    assert_eq!(back, vec![m]);
}

#[test]
fn media_parts_map_both_ways() {
    let input = items_of(json!([
        {"role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "high"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
            {"type": "input_image", "file_id": "file-1", "detail": "low"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
            {"type": "input_file", "file_id": "file-2"},
            {"type": "input_file", "file_url": "https://x/a.pdf"}
        ]}
    ]));
    let messages = decode_items(&input, "input").unwrap();
    let c = &messages[0].content;
    assert_eq!(
        c[2],
        Block::Image(Image {
            source: MediaSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            },
            detail: Some("auto".into()),
            cache: None
        })
    );
    assert_eq!(
        c[4],
        Block::Document(Document {
            source: MediaSource::Base64 {
                media_type: "application/pdf".into(),
                data: "JVBE".into()
            },
            filename: Some("a.pdf".into()),
            title: None,
            context: None,
            citations: None,
            cache: None
        })
    );
    let items = encode_items(&messages[0], &ItemIds { seq: 0 });
    let mut expected = input[0].clone();
    expected["type"] = json!("message");
    expected["id"] = json!("msg_0_0");
    expected["status"] = json!("completed");
    assert_eq!(to_json(&items), json!([expected]));
}

#[test]
fn a_tool_result_in_a_user_message_is_its_own_item() {
    // As the Messages door stores it: results first, then the user's text.
    let m = Message {
        role: Role::User,
        content: vec![
            Block::ToolResult(ToolResult {
                call_id: "toolu_1".into(),
                content: vec![],
                is_error: true,
                cache: None,
            }),
            Block::text("and now?"),
        ],
        name: None,
    };
    assert_eq!(
        to_json(&encode_items(&m, &ItemIds { seq: 9 })),
        json!([
            {"type": "function_call_output", "id": "fco_9_0", "call_id": "toolu_1", "output": "", "status": "completed"},
            {"type": "message", "id": "msg_9_1", "role": "user", "status": "completed",
             "content": [{"type": "input_text", "text": "and now?"}]}
        ])
    );
}

#[test]
fn bad_items_name_their_field() {
    let cases = [
        (
            json!([{"type": "message", "role": "user"}]),
            "input[0].content",
        ),
        (json!([{"role": "tool", "content": "x"}]), "input[0].role"),
        (json!(["hi"]), "input[0]"),
        (json!([{"content": "x"}]), "input[0].type"),
        (
            json!([{"type": "computer_call", "id": "x"}]),
            "input[0].type",
        ),
        (
            json!([{"type": "item_reference", "id": "msg_1"}]),
            "input[0]",
        ),
        (
            json!([{"role": "user", "content": "a"}, {"type": "function_call", "name": "f", "arguments": "{}"}]),
            "input[1].call_id",
        ),
        (
            json!([{"type": "function_call_output", "call_id": "c"}]),
            "input[0].output",
        ),
        (
            json!([{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]),
            "input[0].content[0].type",
        ),
        (
            json!([{"role": "assistant", "content": [{"type": "input_image", "image_url": "x"}]}]),
            "input[0].content[0].type",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_text"}]}]),
            "input[0].content[0].text",
        ),
        (
            json!([{"role": "user", "content": [{"type": "input_image", "detail": "auto"}]}]),
            "input[0].content[0].image_url",
        ),
        (
            json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                   {"role": "user", "content": [{"type": "text", "text": "x"}]}]),
            "input[2].content[0].type",
        ),
        (
            json!([{"type": "function_call_output", "call_id": "c", "output": [{"type": "refusal", "refusal": "x"}]}]),
            "input[0].output[0].type",
        ),
        (
            json!([{"type": "reasoning", "summary": [{"type": "x", "text": "t"}]}]),
            "input[0].summary[0].type",
        ),
    ];
    for (items, param) in cases {
        let e = decode_items(&items_of(items.clone()), "input").unwrap_err();
        assert_eq!(e.param, param, "{items}: {}", e.message);
    }
}
