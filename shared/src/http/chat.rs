//! `POST /v1/chat/completions`, the OpenAI Chat front door: the request
//! decoded into the model, the answer encoded as a `chat.completion`, or,
//! with `stream: true`, as `chat.completion.chunk` events ending in
//! `[DONE]`. The way through the turn is every door's ([`super::door`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;

use super::answer::Wire;
use super::door::{self, Decoded, Door};
use crate::error::Dialect;
use crate::model::{self, Event};
use crate::turn::{self, Answering, Input};
use crate::wire::openai_chat::chunk::{ChunkEncoder, ChunkMeta, DONE, KEEP_ALIVE, error_event};
use crate::wire::openai_chat::types::ChatRequest;
use crate::wire::openai_chat::{self as codec, ResponseMeta};
use crate::{ApiError, AppState, ids, validate};

/// Header naming a stored conversation (alternative to the body field).
pub const CONVERSATION_HEADER: &str = "x-conversation-id";
/// Header reporting how many values the response processor replaced.
pub const REDACTIONS_HEADER: &str = "x-ctxgate-redactions";
/// Header naming the model that answered (a fallback chain may move on).
pub const MODEL_HEADER: &str = "x-ctxgate-model";
/// Header naming the MCP servers whose tools could not be listed for the
/// turn (the model answered without them; the log says why).
pub const MCP_UNAVAILABLE_HEADER: &str = "x-ctxgate-mcp-unavailable";
/// The field holding a whole answer's text, named by redaction blocks.
const ANSWER_PARAM: &str = "choices[0].message";
/// The field a blocked streamed answer is reported on.
pub const BLOCKED_PARAM: &str = "choices[0].delta.content";

/// The chat completions handler.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    door::serve::<Chat>(&state, &headers, body).await
}

/// The conversation id from the body or the header; both must agree.
pub fn conversation_id(
    body: Option<String>,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    let header = match headers.get(CONVERSATION_HEADER) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::invalid(CONVERSATION_HEADER, "invalid conversation id"))?;
            validate::conversation_id(v, CONVERSATION_HEADER)?;
            Some(v.to_owned())
        }
    };
    match (body, header) {
        (Some(b), Some(h)) if b != h => Err(ApiError::invalid(
            "conversation_id",
            "conversation_id and the x-conversation-id header name different conversations",
        )),
        (Some(b), _) => Ok(Some(b)),
        (None, h) => Ok(h),
    }
}

/// The OpenAI Chat door.
struct Chat;

impl Door for Chat {
    /// `stream_options.include_usage`.
    type Options = bool;
    type Wire = ChatWire;
    const PATH: &'static str = "/v1/chat/completions";
    const MEANINGFUL_HEADERS: &'static [&'static str] = &[CONVERSATION_HEADER];

    fn decode(
        state: &AppState,
        headers: &HeaderMap,
        bytes: &[u8],
    ) -> Result<Decoded<bool>, ApiError> {
        let mut req: ChatRequest = validate::chat_request(bytes, &state.config.limits)?;
        let conversation = conversation_id(req.conversation_id.take(), headers)?;
        let request = codec::decode_request(&req);
        Ok(Decoded {
            stream: req.stream == Some(true),
            options: req
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            input: Input {
                model: std::mem::take(&mut req.model),
                request,
                conversation,
                claim: None,
                mcp_servers: req.mcp_servers.take(),
                continuation: Default::default(),
            },
        })
    }

    fn model_of(state: &AppState, bytes: &[u8]) -> Result<String, ApiError> {
        Ok(validate::chat_request(bytes, &state.config.limits)?.model)
    }

    fn wire(include_usage: bool, answering: &Answering, _prompt_estimate: u64) -> ChatWire {
        ChatWire(ChunkEncoder::new(ChunkMeta {
            id: ids::completion_id(),
            created: answering.now(),
            model: answering.model().id.clone(),
            include_usage,
        }))
    }
}

/// Answers as `chat.completion` and its chunks.
struct ChatWire(ChunkEncoder);

impl Wire for ChatWire {
    const DIALECT: Dialect = Dialect::OpenAi;
    const ANSWER_PARAM: &'static str = ANSWER_PARAM;
    const STREAM_PARAM: &'static str = BLOCKED_PARAM;

    fn whole(&self, answer: &model::Response, done: &turn::Done) -> Result<Vec<u8>, ApiError> {
        let counts = done.counts();
        let body = codec::encode_response(
            answer,
            ResponseMeta {
                id: ids::completion_id(),
                created: done.now(),
                model: done.model().id.clone(),
                conversation_id: done.conversation().map(str::to_owned),
                redactions: (!counts.is_empty()).then(|| counts.0.clone()),
            },
        );
        serde_json::to_vec(&body).map_err(|_| ApiError::internal())
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        out.push(self.0.start());
    }

    fn event(&mut self, event: &Event, out: &mut Vec<Bytes>) {
        self.0.push(event, out);
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.0.end(out);
    }

    fn done(&mut self, _: &turn::Done) -> Bytes {
        Bytes::from_static(DONE)
    }

    fn keep_alive(&self) -> Bytes {
        Bytes::from_static(KEEP_ALIVE)
    }

    fn error(&self, e: &ApiError) -> Bytes {
        error_event(&e.body())
    }
}
