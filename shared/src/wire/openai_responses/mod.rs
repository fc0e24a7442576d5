//! OpenAI Responses: the codec between its requests, items, response
//! objects and stream events and the model. The `/v1/responses` door decodes
//! requests ([`decode_request`]) and encodes answers ([`encode_response`])
//! and streams ([`EventEncoder`]) with it; the stored-history readers (a
//! response's input items, the Conversations API) show stored messages as
//! items with [`encode_items`]. The OpenAI provider called with
//! `api = "responses"` writes its upstream requests and reads the answers
//! with [`encode_upstream_request`], [`decode_upstream_response`] and
//! [`ResponsesDecoder`]. Pure code: no I/O.

mod decode_stream;
mod items;
mod request;
mod response;
mod stream;
pub mod types;
mod upstream;

pub use decode_stream::ResponsesDecoder;
pub use items::{ItemIds, SIGNATURE_PREFIX, decode_items, encode_items, parse_item_id};
pub use request::{Decoded, decode_request};
pub use response::{ResponseHead, encode_response, encode_usage, output_items, status_of};
pub use stream::EventEncoder;
pub use types::{
    ContentPart, ConversationRef, CreateRequest, Input, Item, ItemRole, ItemStatus, MessageItem,
    ResponseObject, ToolChoiceParam, ToolParam,
};

pub use upstream::{
    ENCRYPTED_REASONING, UpstreamOptions, decode_upstream_response, encode_upstream_request,
    is_openai_encrypted,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod upstream_tests;
