//! A streamed answer in two upstream wires, as the benchmarks' mock upstreams send it (the
//! `bench-upstream` binary, and the paced mock of the streaming table): OpenAI's SSE chunks and
//! Bedrock ConverseStream's binary event stream, framed by `aws-smithy-eventstream`'s encoder
//! (prelude and message CRCs included). Both carry the same text per event, one write per
//! event, so that the two providers' rows compare like with like.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use serde_json::{Value, json};

/// The content type of a ConverseStream answer.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Input tokens every mock answer reports.
const INPUT_TOKENS: usize = 5;

/// Text delta `i` of `bytes` bytes (ASCII; longer when the marker alone is): it starts with the
/// marker `[i]`, which the benchmarks look for in whatever reaches the client.
pub fn delta_text(i: usize, bytes: usize) -> String {
    const FILLER: &str = "the quick brown fox jumps over the lazy dog, again and again. ";
    let mut text = format!("[{i}] ");
    while text.len() < bytes {
        let take = FILLER.len().min(bytes - text.len());
        text.push_str(&FILLER[..take]);
    }
    text
}

/// One ConverseStream event frame: `event_type` with its JSON payload, as Bedrock sends it.
pub fn bedrock_frame(event_type: &str, payload: &Value) -> Bytes {
    let mut message = Message::new(Bytes::from(payload.to_string()));
    for (name, value) in [
        (":message-type", "event"),
        (":event-type", event_type),
        (":content-type", "application/json"),
    ] {
        message = message.add_header(Header::new(
            name,
            HeaderValue::String(value.to_owned().into()),
        ));
    }
    let mut out = Vec::new();
    write_message_to(&message, &mut out).expect("a frame within the format's limits");
    Bytes::from(out)
}

/// Delta `i` of a ConverseStream answer (the first also carries `messageStart`, which Bedrock
/// sends just before it).
pub fn bedrock_delta(i: usize, text: &str) -> Bytes {
    let delta = bedrock_frame(
        "contentBlockDelta",
        &json!({"contentBlockIndex": 0, "delta": {"text": text}}),
    );
    if i > 0 {
        return delta;
    }
    let start = bedrock_frame("messageStart", &json!({"role": "assistant"}));
    Bytes::from([start, delta].concat())
}

/// The end of a ConverseStream answer of `deltas` deltas: `contentBlockStop`, `messageStop`
/// and `metadata` with the usage.
pub fn bedrock_end(deltas: usize) -> Bytes {
    let usage = json!({"inputTokens": INPUT_TOKENS, "outputTokens": deltas,
        "totalTokens": INPUT_TOKENS + deltas});
    Bytes::from(
        [
            bedrock_frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
            bedrock_frame("messageStop", &json!({"stopReason": "end_turn"})),
            bedrock_frame(
                "metadata",
                &json!({"usage": usage, "metrics": {"latencyMs": 1}}),
            ),
        ]
        .concat(),
    )
}

/// A whole ConverseStream answer of `deltas` text deltas of `bytes` bytes each, one item per write.
pub fn bedrock_stream(deltas: usize, bytes: usize) -> Vec<Bytes> {
    let mut writes: Vec<Bytes> = (0..deltas)
        .map(|i| bedrock_delta(i, &delta_text(i, bytes)))
        .collect();
    writes.push(bedrock_end(deltas));
    writes
}

/// A whole Converse (not streamed) answer: a short text and its usage.
pub fn bedrock_converse() -> Bytes {
    let answer = json!({
        "output": {"message": {"role": "assistant",
            "content": [{"text": "The quick brown fox jumps over the lazy dog."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": INPUT_TOKENS, "outputTokens": 10, "totalTokens": INPUT_TOKENS + 10},
        "metrics": {"latencyMs": 1}
    });
    Bytes::from(answer.to_string())
}

/// Delta `i` of an OpenAI chat completion stream, SSE-framed.
pub fn openai_delta(text: &str) -> Bytes {
    let chunk = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// The end of an OpenAI chat completion stream of `deltas` deltas: the finish chunk with the
/// usage, then `[DONE]`.
pub fn openai_end(deltas: usize) -> Bytes {
    let last = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": deltas,
            "total_tokens": INPUT_TOKENS + deltas}});
    Bytes::from(format!("data: {last}\n\ndata: [DONE]\n\n"))
}

/// A whole OpenAI chat completion stream of `deltas` text deltas of `bytes` bytes each, one item
/// per write.
pub fn openai_stream(deltas: usize, bytes: usize) -> Vec<Bytes> {
    let mut writes: Vec<Bytes> = (0..deltas)
        .map(|i| openai_delta(&delta_text(i, bytes)))
        .collect();
    writes.push(openai_end(deltas));
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};

    /// The frames decode with the crate's own decoder (both CRCs checked) into the events
    /// ConverseStream sends, in order, with the text and the usage.
    #[test]
    fn bedrock_stream_decodes_into_converse_stream_events() {
        let mut buf = bytes::BytesMut::from(&bedrock_stream(3, 40).concat()[..]);
        let mut decoder = MessageFrameDecoder::new();
        let mut events = Vec::new();
        while let DecodedFrame::Complete(m) = decoder.decode_frame(&mut buf).unwrap() {
            let kind = m
                .headers()
                .iter()
                .find(|h| h.name().as_str() == ":event-type")
                .and_then(|h| h.value().as_string().ok())
                .unwrap()
                .as_str()
                .to_owned();
            let payload: Value = serde_json::from_slice(m.payload()).unwrap();
            events.push((kind, payload));
        }
        assert!(buf.is_empty());
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        let text = events[2].1["delta"]["text"].as_str().unwrap();
        assert!(text.starts_with("[1] ") && text.len() == 40, "{text:?}");
        assert_eq!(events[6].1["usage"]["outputTokens"], 3);
    }

    /// The gateway's own Bedrock decoders read the mock's answers: the stream through the
    /// provider's event-stream translator (as the gateway reads it, one write per read), the
    /// Converse answer through the codec.
    #[tokio::test]
    async fn the_gateway_s_bedrock_decoders_read_both_answers() {
        use ctxgate::model::{Assembler, FinishReason};
        use ctxgate::provider::{ProviderError, bedrock};
        use futures_util::StreamExt;

        let body = futures_util::stream::iter(
            bedrock_stream(3, 40)
                .into_iter()
                .map(Ok::<_, ProviderError>),
        );
        let caps = ctxgate::capped::Caps {
            body: 1 << 20,
            event: 1 << 20,
            stream: 1 << 20,
        };
        let decoder = bedrock::stream::EventDecoder::new();
        let mut events = bedrock::stream::events("bedrock", body, caps, decoder);
        let mut answer = Assembler::new(false);
        while let Some(event) = events.next().await {
            answer.push(&event.expect("a good event"));
        }
        let answer = answer.finish();
        let text: String = (0..3).map(|i| delta_text(i, 40)).collect();
        assert_eq!(answer.message.text_content(), text);
        assert_eq!(answer.finish, FinishReason::Stop);
        assert_eq!((answer.usage.input, answer.usage.output), (5, 3));

        let whole: Value = serde_json::from_slice(&bedrock_converse()).unwrap();
        let answer = ctxgate::wire::bedrock::decode_response(&whole).unwrap();
        assert_eq!(
            answer.message.text_content(),
            "The quick brown fox jumps over the lazy dog."
        );
        assert_eq!(answer.finish, FinishReason::Stop);
        assert_eq!((answer.usage.input, answer.usage.output), (5, 10));
    }

    /// Both wires carry the same text per event, in the same number of writes.
    #[test]
    fn both_wires_carry_the_same_text_per_event() {
        let (openai, bedrock) = (openai_stream(5, 80), bedrock_stream(5, 80));
        assert_eq!(openai.len(), bedrock.len());
        for i in 0..5 {
            let text = delta_text(i, 80);
            assert_eq!(text.len(), 80);
            let quoted = serde_json::to_string(&text).unwrap();
            for write in [&openai[i], &bedrock[i]] {
                let write = String::from_utf8_lossy(write);
                assert_eq!(write.matches(&quoted).count(), 1, "{write}");
            }
        }
        assert!(openai[5].ends_with(b"data: [DONE]\n\n"));
        assert_eq!(delta_text(12, 2), "[12] ");
    }
}
