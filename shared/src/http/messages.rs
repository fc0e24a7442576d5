//! `POST /v1/messages`, the Anthropic Messages front door, on any model: the
//! request decoded into the model (blocks, tools, thinking and cache hints
//! kept, so an Anthropic upstream gets it back unchanged), the answer
//! encoded as a `message`, or, with `stream: true`, as Anthropic's event
//! sequence with `ping` during silences; `message_stop` goes out only once
//! the turn is stored. Errors are Anthropic's envelope. The way through the
//! turn is every door's ([`super::door`]); ctxgate's own fields are
//! `x-conversation-id` (or `conversation_id`) and `mcp_servers`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::answer::Wire;
use super::chat::conversation_id;
use super::door::{self, Decoded, Door};
use super::{RequestLog, caller, read_json_body, with_log};
use crate::auth::SCOPE_CHAT;
use crate::error::Dialect;
use crate::model::{self, Event};
use crate::provider::anthropic::BETA_HEADER;
use crate::turn::{self, Answering, Input};
use crate::validate::messages::{Purpose, messages_request};
use crate::wire::anthropic::{self as codec, EventEncoder};
use crate::{ApiError, AppState, ids};

/// The field naming a whole answer's text.
const ANSWER_PARAM: &str = "content";
/// The field naming a streamed answer's text.
const STREAM_PARAM: &str = "content_block_delta.delta.text";

/// The Messages handler.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    door::serve::<Messages>(&state, &headers, body).await
}

/// `anthropic-beta`, to pass on to Anthropic upstreams.
pub(super) fn betas(headers: &HeaderMap) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for v in headers.get_all(BETA_HEADER) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::invalid(BETA_HEADER, "anthropic-beta must be ASCII"))?;
        out.push((BETA_HEADER.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// A checked Messages body as a turn's input.
pub(super) fn decode_input(
    state: &AppState,
    headers: &HeaderMap,
    bytes: &[u8],
    purpose: Purpose,
) -> Result<(Input, bool), ApiError> {
    let checked = messages_request(bytes, &state.config.limits, purpose)?;
    let conversation = conversation_id(checked.conversation_id, headers)?;
    // A first message's tool_result may answer the stored conversation's last turn.
    if let (None, Some(e)) = (&conversation, checked.unanswered) {
        return Err(e.into());
    }
    let mut request = codec::decode_request(&checked.request)
        .map_err(|e| ApiError::invalid(e.param, e.message))?;
    request.extensions.headers = betas(headers)?;
    Ok((
        Input {
            model: checked.request.model.clone(),
            request,
            conversation,
            claim: None,
            mcp_servers: checked.mcp_servers,
            continuation: Default::default(),
        },
        checked.request.stream == Some(true),
    ))
}

/// The Anthropic Messages door.
struct Messages;

impl Door for Messages {
    type Options = ();
    type Wire = MessagesWire;
    const PATH: &'static str = "/v1/messages";
    const MEANINGFUL_HEADERS: &'static [&'static str] =
        &[super::chat::CONVERSATION_HEADER, BETA_HEADER];

    fn decode(
        state: &AppState,
        headers: &HeaderMap,
        bytes: &[u8],
    ) -> Result<Decoded<()>, ApiError> {
        let (input, stream) = decode_input(state, headers, bytes, Purpose::Turn)?;
        Ok(Decoded {
            input,
            stream,
            options: (),
        })
    }

    fn model_of(state: &AppState, bytes: &[u8]) -> Result<String, ApiError> {
        Ok(
            messages_request(bytes, &state.config.limits, Purpose::Turn)?
                .request
                .model,
        )
    }

    fn wire(_: (), answering: &Answering, prompt_estimate: u64) -> MessagesWire {
        let id = ids::message_id();
        let model = answering.model().id.clone();
        MessagesWire {
            encoder: EventEncoder::new(&id, &model, prompt_estimate),
            id,
        }
    }
}

/// Answers as a `message` and its events.
struct MessagesWire {
    encoder: EventEncoder,
    id: String,
}

impl Wire for MessagesWire {
    const DIALECT: Dialect = Dialect::Anthropic;
    const ANSWER_PARAM: &'static str = ANSWER_PARAM;
    const STREAM_PARAM: &'static str = STREAM_PARAM;

    fn whole(&self, answer: &model::Response, done: &turn::Done) -> Result<Vec<u8>, ApiError> {
        let body = codec::encode_response(answer, &self.id, &done.model().id);
        serde_json::to_vec(&body).map_err(|_| ApiError::internal())
    }

    fn start(&mut self, _out: &mut Vec<Bytes>) {}

    fn event(&mut self, event: &Event, out: &mut Vec<Bytes>) {
        let mut buf = Vec::new();
        self.encoder.push(event, &mut buf);
        if !buf.is_empty() {
            out.push(Bytes::from(buf));
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        let mut buf = Vec::new();
        self.encoder.delta(&mut buf);
        out.push(Bytes::from(buf));
    }

    fn done(&mut self, _: &turn::Done) -> Bytes {
        Bytes::from(EventEncoder::stop())
    }

    fn keep_alive(&self) -> Bytes {
        Bytes::from(EventEncoder::ping())
    }

    fn silence(&mut self, out: &mut Vec<Bytes>) {
        // Anthropic's clients expect `message_start` before any `ping`.
        let mut start = Vec::new();
        self.encoder.begin(&mut start);
        if !start.is_empty() {
            out.push(Bytes::from(start));
        }
        out.push(self.keep_alive());
    }

    fn error(&self, e: &ApiError) -> Bytes {
        Bytes::from(EventEncoder::error(
            e.anthropic_type(),
            &e.anthropic_message(),
        ))
    }
}

/// Header marking a token count as ctxgate's own estimate (the model's
/// provider has no count API): `x-ctxgate-token-count: estimate`.
pub const COUNT_SOURCE_HEADER: &str = "x-ctxgate-token-count";

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let resp = match count(&state, &headers, body, &mut log).await {
        Ok(resp) => resp,
        Err(e) => e.render(Dialect::Anthropic),
    };
    with_log(resp, log)
}

async fn count(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let principal = caller(state, headers, SCOPE_CHAT, log).await?;
    let bytes = read_json_body(headers, body, state.config.max_body_bytes).await?;
    let (input, _) = decode_input(state, headers, &bytes, Purpose::Count)?;
    log.model = Some(input.model.clone());
    let counted = turn::count_tokens(state, &principal, &input.model, input.request).await?;
    let mut resp = axum::Json(json!({"input_tokens": counted.input_tokens})).into_response();
    let source = if counted.estimated {
        "estimate"
    } else {
        "provider"
    };
    resp.headers_mut()
        .insert(COUNT_SOURCE_HEADER, HeaderValue::from_static(source));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlockDelta, BlockStart};

    fn names(out: &[Bytes]) -> Vec<String> {
        out.iter()
            .flat_map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .filter_map(|l| l.strip_prefix("event: ").map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_silence_pings_after_message_start_and_a_failure_is_an_error_event() {
        let mut w = MessagesWire {
            encoder: EventEncoder::new("msg_1", "m", 42),
            id: "msg_1".into(),
        };
        let mut out = Vec::new();
        w.silence(&mut out);
        assert_eq!(names(&out), ["message_start", "ping"]);
        assert!(String::from_utf8_lossy(&out[0]).contains("\"input_tokens\":42"));
        out.clear();
        w.event(
            &Event::BlockStart {
                index: 0,
                block: BlockStart::Text,
            },
            &mut out,
        );
        w.event(
            &Event::BlockDelta {
                index: 0,
                delta: BlockDelta::Text("hi".into()),
            },
            &mut out,
        );
        w.silence(&mut out);
        assert_eq!(
            names(&out),
            ["content_block_start", "content_block_delta", "ping"]
        );
        let e = w.error(&ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "upstream_unavailable",
            "the provider is unavailable",
        ));
        let text = String::from_utf8_lossy(&e).into_owned();
        assert!(text.starts_with("event: error\n"), "{text}");
        assert!(text.contains("\"type\":\"overloaded_error\""), "{text}");
    }
}
