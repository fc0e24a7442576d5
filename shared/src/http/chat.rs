//! `POST /v1/chat/completions`: authenticate, validate, load context, call
//! the provider, store the turn, answer in the OpenAI format.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{RequestLog, authorization, chat_stream, read_json_body, with_log};
use crate::auth::SCOPE_CHAT;
use crate::processor::{self, Counts};
use crate::provider::estimate_tokens;
use crate::redact::{Blocked, Place};
use crate::wire::{ChatCompletion, Choice, Usage};
use crate::{ApiError, AppState, context, ids, limits, now_secs, usage, validate};

/// Output tokens reserved against a budget when the client sets no cap.
pub const DEFAULT_OUTPUT_ESTIMATE: u32 = 4096;

/// Header naming a stored conversation (alternative to the body field).
pub const CONVERSATION_HEADER: &str = "x-conversation-id";
/// Header reporting how many values the response processor replaced.
pub const REDACTIONS_HEADER: &str = "x-ctxgate-redactions";

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
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let now = now_secs();
    let principal = state.auth.authenticate(authorization(headers), now).await?;
    log.tenant = Some(principal.tenant.clone());
    principal.require(SCOPE_CHAT)?;
    limits::check_rate(&*state.store, &principal, &state.config, now).await?;

    let bytes = read_json_body(headers, body, state.config.max_body_bytes).await?;
    let mut req = validate::chat_request(&bytes, &state.config.limits)?;
    let model = state.providers.resolve(&req.model).ok_or_else(|| {
        let mut e = ApiError::not_found(
            "model",
            format!("the model '{}' does not exist on this gateway", req.model),
        );
        e.code = "model_not_found";
        e
    })?;
    principal.require_model(&req.model, &model.id)?;
    log.model = Some(model.id.clone());
    let conversation = conversation_id(req.conversation_id.take(), headers)?;

    let messages = std::mem::take(&mut req.messages);
    let mut prepared = context::prepare(
        &*state.store,
        &principal.tenant,
        conversation.as_deref(),
        messages,
        now,
    )
    .await?;

    // The response processor, before anything is spent: what will be stored,
    // then what goes to the provider. A block refuses the request.
    let redactor = state.redactors.for_tenant(&principal.tenant);
    let mut counts = Counts::default();
    if let Some(turn) = prepared.turn.as_mut() {
        processor::apply(
            redactor,
            turn.new_messages_mut(),
            Place::Stored,
            &mut counts,
        )
        .map_err(blocked("messages"))?;
        if let Some(system) = turn.new_system_mut() {
            processor::apply(redactor, system, Place::Stored, &mut counts)
                .map_err(blocked("messages"))?;
        }
    }
    processor::apply(redactor, &mut prepared.prompt, Place::Upstream, &mut counts)
        .map_err(blocked("messages"))?;
    let prompt_estimate: u64 = prepared
        .prompt
        .iter()
        .map(|m| estimate_tokens(&m.text_content()) + 4)
        .sum();
    let limits = &state.config.limits;
    if prompt_estimate > limits.max_prompt_tokens {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "prompt_too_large",
            format!(
                "the prompt (stored history included) is about {prompt_estimate} tokens; the limit is {}",
                limits.max_prompt_tokens
            ),
        )
        .with_param("messages"));
    }

    // Reserve the worst case: the whole prompt plus the largest answer allowed.
    let output_cap = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
    let estimate = Usage::new(prompt_estimate, u64::from(output_cap));
    let prices = &state.config.prices;
    let mut reservation = limits::reserve(
        &state.store,
        &principal.tenant,
        &state.config.quotas(&principal.tenant),
        estimate.total_tokens,
        usage::cost_micro_usd(prices, &model.id, &estimate),
        now,
    )
    .await?;

    if req.stream == Some(true) {
        let call = chat_stream::StreamCall {
            tenant: principal.tenant.clone(),
            model,
            request: req,
            prompt: prepared.prompt,
            turn: prepared.turn,
            conversation,
            reservation,
            prompt_estimate,
            counts,
            now,
        };
        return chat_stream::respond(state.clone(), call).await;
    }

    let result = state
        .providers
        .complete(&model, &prepared.prompt, &req)
        .await;
    let completion = match result {
        Ok(c) => c,
        Err(e) => {
            if let Some(r) = reservation.as_mut() {
                r.settle(0, 0).await;
            }
            return Err(e.into());
        }
    };
    log.usage = Some(completion.usage);
    let row = usage::row(prices, usage::day(now), &model.id, &completion.usage);
    if let Some(r) = reservation.as_mut() {
        r.settle(row.total_tokens, row.cost_micro_usd).await;
    }
    // The provider was paid whatever happens next: account for it first.
    if let Err(e) = state.store.add_usage(&principal.tenant, &row).await {
        tracing::error!(error = %e, "usage accounting failed");
    }
    let mut answer = completion.message.clone();
    processor::apply(
        redactor,
        std::slice::from_mut(&mut answer),
        Place::Response,
        &mut counts,
    )
    .map_err(blocked("choices[0].message"))?;
    if let Some(turn) = prepared.turn {
        let mut stored = completion.clone();
        processor::apply(
            redactor,
            std::slice::from_mut(&mut stored.message),
            Place::Stored,
            &mut counts,
        )
        .map_err(blocked("choices[0].message"))?;
        context::commit(
            &*state.store,
            &principal.tenant,
            turn,
            &stored,
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
            message: answer,
            finish_reason: completion.finish_reason,
            logprobs: None,
        }],
        usage: completion.usage,
        conversation_id: conversation.clone(),
        redactions: (!counts.is_empty()).then(|| counts.0.clone()),
    };
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    if let Some(id) = conversation.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(CONVERSATION_HEADER, id);
    }
    if !counts.is_empty()
        && let Ok(v) = HeaderValue::from_str(&counts.header())
    {
        resp.headers_mut().insert(REDACTIONS_HEADER, v);
    }
    Ok(resp)
}

/// A redaction block as a 400 naming the category.
fn blocked(param: &'static str) -> impl Fn(Blocked) -> ApiError {
    move |b| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "content_blocked",
            format!(
                "blocked by the redaction policy: the content contains {}",
                b.category.as_str()
            ),
        )
        .with_param(param)
    }
}
