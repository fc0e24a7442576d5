//! `echo`: a deterministic test model with no network. It answers with the
//! text of the last user message; usage is the gateway's own estimate
//! ([`crate::tokens`]). Useful for trying the gateway with no keys, never a fallback.

use async_trait::async_trait;

use super::{Completion, Provider, ProviderError, ProviderRequest};
use crate::tokens::{estimate_messages, estimate_text};
use crate::wire::{ChatMessage, FinishReason, Role, Usage};

/// The echo model.
pub struct Echo;

#[async_trait]
impl Provider for Echo {
    async fn complete(&self, req: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let reply = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(ChatMessage::text_content)
            .unwrap_or_default();
        let prompt = estimate_messages(req.messages);
        let mut completion = estimate_text(&reply);
        let mut text = reply;
        let cap = req
            .params
            .max_completion_tokens
            .or(req.params.max_tokens)
            .map(u64::from);
        let mut finish = FinishReason::Stop;
        if let Some(cap) = cap
            && completion > cap
        {
            text = text.chars().take((cap * 4) as usize).collect();
            completion = cap;
            finish = FinishReason::Length;
        }
        Ok(Completion {
            message: ChatMessage::text(Role::Assistant, text),
            finish_reason: finish,
            usage: Usage::new(prompt, completion),
        })
    }
}
