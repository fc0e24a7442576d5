//! OpenAI Responses: the codec between its requests, items, response
//! objects and stream events and the model. The `/v1/responses` door decodes
//! requests ([`decode_request`]) and encodes answers ([`encode_response`])
//! and streams ([`EventEncoder`]) with it; the stored-history readers (a
//! response's input items, the Conversations API) show stored messages as
//! items with [`encode_items`]. Pure code: no I/O.

mod items;
pub mod types;

pub use items::{ItemIds, SIGNATURE_PREFIX, decode_items, encode_items, parse_item_id};
pub use types::{
    ContentPart, ConversationRef, CreateRequest, Input, Item, ItemRole, ItemStatus, MessageItem,
    ResponseObject, ToolChoiceParam, ToolParam,
};

#[cfg(test)]
mod tests;
