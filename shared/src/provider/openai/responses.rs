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
