//! `echo`: a deterministic test model with no network. It answers with the
//! text of the last user message; usage is the gateway's own estimate
//! ([`crate::tokens`]). Useful for trying the gateway with no keys, never a fallback.

use async_trait::async_trait;
use futures_util::stream;

use super::{Call, Capabilities, EventStream, KeyUse, Provider, ProviderError};
use crate::model::{
    Assembler, BlockDelta, BlockStart, Event, FinishReason, Message, Response, Role, Usage,
};
use crate::tokens::{estimate_all, estimate_text};

/// The echo model.
pub struct Echo;

/// The answer's events: the text one word per delta, the finish reason, usage.
fn answer(call: &Call<'_>) -> Vec<Event> {
    let messages = &call.request.messages;
    let mut text = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::text_content)
        .unwrap_or_default();
    let prompt = estimate_all(messages);
    let mut completion = estimate_text(&text);
    let mut finish = FinishReason::Stop;
    if let Some(cap) = call.request.max_output_tokens.map(u64::from)
        && completion > cap
    {
        text = text.chars().take((cap * 4) as usize).collect();
        completion = cap;
        finish = FinishReason::Length;
    }
    let mut events = vec![Event::Start {
        id: None,
        model: Some(call.model.to_owned()),
    }];
    if !text.is_empty() {
        events.push(Event::BlockStart {
            index: 0,
            block: BlockStart::Text,
        });
        events.extend(text.split_inclusive(' ').map(|w| Event::BlockDelta {
            index: 0,
            delta: BlockDelta::Text(w.to_owned()),
        }));
        events.push(Event::BlockStop { index: 0 });
    }
    events.push(Event::Finish {
        reason: finish,
        stop_sequence: None,
    });
    events.push(Event::Usage(Usage::new(prompt, completion)));
    events
}

#[async_trait]
impl Provider for Echo {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            key: KeyUse::None,
            cache_breakpoints: false,
            canonical_tool_arguments: false,
            default_output_cap: None,
        }
    }

    async fn complete(&self, call: Call<'_>) -> Result<Response, ProviderError> {
        let mut a = Assembler::new(false);
        for e in answer(&call) {
            a.push(&e);
        }
        Ok(a.finish())
    }

    async fn stream(&self, call: Call<'_>) -> Result<EventStream, ProviderError> {
        Ok(Box::pin(stream::iter(answer(&call).into_iter().map(Ok))))
    }
}
