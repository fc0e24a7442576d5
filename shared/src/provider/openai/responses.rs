//! OpenAI's Responses API as the upstream of an `openai` provider with
//! `api = "responses"`: `{base_url}/responses`, stateless (`store: false`),
//! the encrypted reasoning asked for and carried back with the history.
//! Bodies are written and read by the
//! [`openai_responses`](crate::wire::openai_responses) codec; sending,
//! failure classification, body caps and keys are the Chat path's.

use serde_json::Value;

use super::super::{Call, ProviderError};
use crate::model::Response;
use crate::wire::openai_responses::{self, ResponsesDecoder, UpstreamOptions};

/// The upstream body of `call`.
pub(super) fn body(
    call: &Call<'_>,
    stream: bool,
    prompt_cache_key: Option<&str>,
) -> Result<Value, ProviderError> {
    let opts = UpstreamOptions {
        stream,
        prompt_cache_key,
    };
    openai_responses::encode_upstream_request(call.request, call.model, &opts)
        .map_err(ProviderError::invalid)
}

/// A whole answer.
pub(super) fn decode(provider: &str, answer: Value) -> Result<Response, ProviderError> {
    openai_responses::decode_upstream_response(answer)
        .map_err(|e| ProviderError::unreadable(provider, e))
}

/// The translator of a streamed answer.
pub(super) fn decoder() -> ResponsesDecoder {
    ResponsesDecoder::new()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::{StreamExt, stream};
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{Assembler, Event};
    use crate::provider::sse;

    /// A reasoning item with encrypted content, text, then a call, as
    /// `(event, data)` pairs of OpenAI's stream, and the whole response.
    fn answer() -> (String, Value) {
        let whole = json!({"id": "resp_1", "model": "gpt-5", "status": "completed",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [],
                    "encrypted_content": "gAAAAABoZ-enc"},
                {"type": "message", "id": "msg_1", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Zoë — 日本 👋", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f",
                    "arguments": "{\"a\":1}"}],
            "usage": {"input_tokens": 9, "output_tokens": 4,
                "output_tokens_details": {"reasoning_tokens": 2}}});
        let events = [
            json!({"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5"}}),
            json!({"type": "response.output_item.done", "output_index": 0,
                "item": whole["output"][0]}),
            json!({"type": "response.output_text.delta", "output_index": 1,
                "content_index": 0, "delta": "Zoë — "}),
            json!({"type": "response.output_text.delta", "output_index": 1,
                "content_index": 0, "delta": "日本 👋"}),
            json!({"type": "response.output_item.added", "output_index": 2,
                "item": {"type": "function_call", "call_id": "call_1", "name": "f",
                    "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 2,
                "delta": "{\"a\""}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 2,
                "delta": ":1}"}),
            json!({"type": "response.output_item.done", "output_index": 2,
                "item": whole["output"][2]}),
            json!({"type": "response.completed", "response": whole}),
        ];
        let body = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect();
        (body, whole)
    }

    async fn events(pieces: Vec<Vec<u8>>) -> Vec<Result<Event, String>> {
        let body = stream::iter(pieces.into_iter().map(|p| Ok(Bytes::from(p))));
        sse::events("openai", body, decoder())
            .map(|e| e.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    // Issue 18, point 6: the upstream's stream, however its bytes are split
    // (UTF-8 included), gives the same events, which assemble to the whole
    // answer as `complete` reads it.
    #[tokio::test]
    async fn a_stream_split_anywhere_is_the_whole_answer() {
        let (body, whole) = answer();
        let bytes = body.into_bytes();
        let once = events(vec![bytes.clone()]).await;
        let mut a = Assembler::new(false);
        for e in &once {
            a.push(e.as_ref().unwrap());
        }
        assert_eq!(a.finish(), decode("openai", whole).unwrap());
        for at in 0..=bytes.len() {
            let pieces = vec![bytes[..at].to_vec(), bytes[at..].to_vec()];
            assert_eq!(events(pieces).await, once, "split at {at}");
        }
        // Cut before `response.completed`: the answer so far, then a failure.
        let cut = bytes[..bytes.len() / 2].to_vec();
        let got = events(vec![cut]).await;
        assert!(got.last().unwrap().is_err(), "{got:?}");
    }
}
