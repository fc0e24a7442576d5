//! A request's input tokens without a turn (Anthropic's `count_tokens`):
//! the model's provider counts them where it has an API for that, after the
//! upstream redaction policy, as a turn's prompt would go; elsewhere the
//! gateway estimates, and says so. Nothing is stored or spent.

use std::sync::Arc;

use super::Input;
use super::prepare::{model_chain, previous_response, window_settings};
use crate::auth::Principal;
use crate::model::Request;
use crate::processor::{self, Counts};
use crate::redact::Place;
use crate::{ApiError, AppState, context, tokens};

/// A token count and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// The input tokens.
    pub input_tokens: u64,
    /// Whether the gateway estimated them (the provider has no count).
    pub estimated: bool,
}

/// Counts `request`'s input tokens for `model` as `principal` may use it.
pub async fn count_tokens(
    state: &Arc<AppState>,
    principal: &Principal,
    model: &str,
    mut request: Request,
) -> Result<TokenCount, ApiError> {
    let chain = model_chain(state, principal, model)?;
    let first = &chain[0];
    let redactor = state.redactors.for_tenant(&principal.tenant);
    processor::apply(
        redactor,
        &mut request.messages,
        Place::Upstream,
        &mut Counts::default(),
    )
    .map_err(|b| ApiError::blocked(&b, "messages"))?;
    if let Some(n) = state.providers.count_tokens(first, &request).await? {
        return Ok(TokenCount {
            input_tokens: n,
            estimated: false,
        });
    }
    Ok(TokenCount {
        input_tokens: tokens::estimate_all(&request.messages)
            + tokens::estimate_tools(&request.tools),
        estimated: true,
    })
}

/// Counts the input tokens a turn of `input` would send: its stored history
/// (by conversation or previous response, read and never written), its
/// turn-only instructions and its input, as [`count_tokens`] counts them.
pub async fn count_input(
    state: &Arc<AppState>,
    principal: &Principal,
    input: Input,
) -> Result<TokenCount, ApiError> {
    let Input {
        model,
        mut request,
        conversation,
        continuation,
        ..
    } = input;
    let chain = model_chain(state, principal, &model)?;
    let tenant = &principal.tenant;
    let now = crate::now_secs();
    let from = match &continuation.previous_response {
        Some(rid) => {
            Some(previous_response(state, tenant, rid, conversation.as_deref(), now).await?)
        }
        None => None,
    };
    let settings = window_settings(state, &chain, &request, false);
    let scope = context::Scope {
        conversation: from
            .as_ref()
            .map_or(conversation, |(r, _)| Some(r.conversation.clone())),
        from,
        instructions: continuation.instructions,
        read_only: true,
        strict: false,
    };
    let messages = std::mem::take(&mut request.messages);
    let prepared =
        context::prepare_in(&*state.store, tenant, messages, now, &settings, None, scope).await?;
    request.messages = prepared.prompt;
    count_tokens(state, principal, &model, request).await
}
