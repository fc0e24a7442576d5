//! `echo`: a deterministic test model with no network. It answers with the
//! text of the last user message; usage is the gateway's own estimate
//! ([`crate::tokens`]). Useful for trying the gateway with no keys, never a fallback.
//!
//! It can also ask for tool calls, so that the tool loop can be tried with no
//! provider key: a user message whose every line is `/tool NAME JSON` (for
//! example `/tool crm__get_customer {"customer_id": "c-1001"}`) is answered
//! with one call of NAME per line, with those arguments (unless the request's
//! `tool_choice` is `none`). When the prompt ends in tool results, `echo`
//! answers `tool NAME said: RESULT`, one line per result.

use async_trait::async_trait;
use futures_util::stream;

use super::{Call, Capabilities, EventStream, KeyUse, Provider, ProviderError};
use crate::model::{
    Assembler, Block, BlockDelta, BlockStart, Event, FinishReason, Message, Response, Role,
    ToolChoice, Usage,
};
use crate::tokens::{estimate_all, estimate_text};

/// The echo model.
pub struct Echo;

/// `/tool NAME JSON` lines of a message: (name, arguments), when every
/// non-empty line is one.
fn tool_lines(text: &str) -> Option<Vec<(&str, &str)>> {
    let calls: Option<Vec<(&str, &str)>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let rest = l.strip_prefix("/tool ")?.trim_start();
            let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            Some((name, args.trim()))
        })
        .collect();
    calls.filter(|c| !c.is_empty())
}

/// `tool NAME said: RESULT` for the tool results the prompt ends with.
fn results_text(messages: &[Message]) -> Option<String> {
    let first = messages
        .iter()
        .rposition(|m| m.role != Role::Tool)
        .map_or(0, |i| i + 1);
    let results = &messages[first..];
    if results.is_empty() {
        return None;
    }
    let name_of = |id: &str| {
        messages[..first]
            .iter()
            .rev()
            .flat_map(|m| m.content.iter())
            .find_map(|b| match b {
                Block::ToolCall(c) if c.id == id => Some(c.name.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "?".to_owned())
    };
    let lines: Vec<String> = results
        .iter()
        .flat_map(|m| m.content.iter())
        .filter_map(|b| match b {
            Block::ToolResult(r) => {
                Some(format!("tool {} said: {}", name_of(&r.call_id), r.text()))
            }
            _ => None,
        })
        .collect();
    Some(lines.join("\n"))
}

/// The answer's events: the text one word per delta (or the tool calls
/// asked for), the finish reason, usage.
fn answer(call: &Call<'_>) -> Vec<Event> {
    let messages = &call.request.messages;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::text_content)
        .unwrap_or_default();
    let prompt = estimate_all(messages);
    let tools_on = call.request.tool_choice != Some(ToolChoice::None);
    let ends_in_results = messages.last().is_some_and(|m| m.role == Role::Tool);
    if !ends_in_results
        && tools_on
        && let Some(calls) = tool_lines(&last_user)
    {
        return tool_calls(call.model, messages.len(), &calls, prompt);
    }
    let mut text = match results_text(messages) {
        Some(t) => t,
        None => last_user,
    };
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

/// An answer made of tool calls.
fn tool_calls(model: &str, step: usize, calls: &[(&str, &str)], prompt: u64) -> Vec<Event> {
    let mut events = vec![Event::Start {
        id: None,
        model: Some(model.to_owned()),
    }];
    let mut completion = 0;
    for (i, (name, args)) in calls.iter().enumerate() {
        let index = i as u32;
        events.push(Event::BlockStart {
            index,
            block: BlockStart::ToolCall {
                id: format!("call_echo_{step}_{i}"),
                name: (*name).to_owned(),
            },
        });
        events.push(Event::BlockDelta {
            index,
            delta: BlockDelta::Arguments((*args).to_owned()),
        });
        events.push(Event::BlockStop { index });
        completion += estimate_text(name) + estimate_text(args);
    }
    events.push(Event::Finish {
        reason: FinishReason::ToolCalls,
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
            tool_result_images: false,
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
