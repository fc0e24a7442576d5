//! `echo`: a deterministic test model with no network. It answers with the
//! text of the last user message; usage is the gateway's own estimate
//! ([`crate::tokens`]). Useful for trying the gateway with no keys, never a fallback.

use async_trait::async_trait;
use futures_util::stream;

use super::{Completion, Provider, ProviderError, ProviderRequest};
use crate::stream::{Delta, DeltaStream};
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

    async fn stream(&self, req: ProviderRequest<'_>) -> Result<DeltaStream, ProviderError> {
        // The same answer as `complete`, one word per delta.
        let c = self.complete(req).await?;
        let text = c.message.text_content();
        let mut deltas: Vec<Result<Delta, ProviderError>> = text
            .split_inclusive(' ')
            .map(|w| Ok(Delta::Text(w.to_owned())))
            .collect();
        deltas.push(Ok(Delta::Finish(c.finish_reason)));
        deltas.push(Ok(Delta::Usage(c.usage)));
        Ok(Box::pin(stream::iter(deltas)))
    }
}
