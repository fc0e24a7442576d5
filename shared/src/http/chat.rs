//! `POST /v1/chat/completions`: authenticate, validate, load context, call
//! the provider, store the turn, answer in the OpenAI format.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{RequestLog, authorization, read_body, with_log};
use crate::auth::SCOPE_CHAT;
use crate::context;
use crate::wire::{ChatCompletion, Choice};
use crate::{ApiError, AppState, ids, now_secs, validate};

/// Header naming a stored conversation (alternative to the body field).
pub const CONVERSATION_HEADER: &str = "x-conversation-id";

/// The chat completions handler.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let resp = match complete(&state, &headers, body, &mut log).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    with_log(resp, log)
}

/// The conversation id from the body or the header; both must agree.
fn conversation_id(body: Option<String>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

async fn complete(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let now = now_secs();
    let principal = state.auth.authenticate(authorization(headers), now).await?;
    log.tenant = Some(principal.tenant.clone());
    principal.require(SCOPE_CHAT)?;

    let bytes = read_body(headers, body, state.config.max_body_bytes).await?;
    let mut req = validate::chat_request(&bytes)?;
    let model = state.providers.resolve(&req.model).ok_or_else(|| {
        let mut e = ApiError::not_found(
            "model",
            format!("the model '{}' does not exist on this gateway", req.model),
        );
        e.code = "model_not_found";
        e
    })?;
    log.model = Some(model.id.clone());
    let conversation = conversation_id(req.conversation_id.take(), headers)?;

    let messages = std::mem::take(&mut req.messages);
    let prepared = context::prepare(
        &*state.store,
        &principal.tenant,
        conversation.as_deref(),
        messages,
        now,
    )
    .await?;
    let completion = state
        .providers
        .complete(&model, &prepared.prompt, &req)
        .await?;
    log.usage = Some(completion.usage);
    if let Some(turn) = prepared.turn {
        context::commit(
            &*state.store,
            &principal.tenant,
            turn,
            &completion,
            &model.id,
            state.config.retention_secs(),
            now,
        )
        .await?;
    }

    let body = ChatCompletion {
        id: ids::completion_id(),
        object: "chat.completion".into(),
        created: now,
        model: model.id,
        choices: vec![Choice {
            index: 0,
            message: completion.message,
            finish_reason: completion.finish_reason,
            logprobs: None,
        }],
        usage: completion.usage,
        conversation_id: conversation.clone(),
    };
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    if let Some(id) = conversation.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(CONVERSATION_HEADER, id);
    }
    Ok(resp)
}
