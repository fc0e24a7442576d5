//! Summaries of what falls out of a conversation's context window (with
//! `context.strategy = "summarize"`).
//!
//! A summary is written by the configured (cheap) model *while* the turn's
//! own provider call runs, and stored in the same transaction as the turn.
//! The turn waits for it at most half as long as its own call took (at least
//! [`MIN_WAIT`]); a summary not ready by then is dropped and tried again on a
//! later turn. So summarising never doubles a turn's latency, and on Lambda
//! nothing runs after the response (a frozen sandbox would lose it).
//!
//! A summary call is metered like a turn's: reserved against the tenant's
//! budget first (skipped, to be tried later, when it does not fit or its
//! model has no price under a cost budget), settled to its usage, and
//! charged even when it is cut off or its summary is discarded.

use std::time::Duration;

use crate::context::SummaryJob;
use crate::limits::{self, Budget, LimitError, Output};
use crate::meter::Meter;
use crate::model::{Block, Message, Request, Response, Role, Usage};
use crate::processor;
use crate::redact::Place;
use crate::store::{Order, StoredMessage, Summary};
use crate::tokens;
use crate::{AppState, now_secs, usage};

/// Least time a turn waits for a summary running beside it.
pub const MIN_WAIT: Duration = Duration::from_millis(50);
/// Most stored messages folded into one summary.
pub const MAX_MESSAGES: usize = 400;

/// How long a turn whose provider call took `elapsed` waits for its summary.
pub fn wait_budget(elapsed: Duration) -> Duration {
    (elapsed / 2).max(MIN_WAIT)
}

const INSTRUCTIONS: &str = "You maintain the memory of a conversation between a user and an AI \
assistant. Summarise the transcript below (and the earlier summary, if given) so that the \
assistant can continue the conversation without it. Keep facts, names, numbers, decisions, \
preferences, open questions and commitments; drop small talk. Write in the third person, in \
at most a few short paragraphs, in the conversation's language. Output only the summary.";

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool result",
    }
}

/// A message's text for the transcript: its text, and its tool results'.
fn transcript_text(m: &Message) -> String {
    let mut parts: Vec<String> = Vec::new();
    for b in &m.content {
        match b {
            Block::Text { text, .. } => parts.push(text.clone()),
            Block::ToolResult(r) => parts.push(r.text()),
            _ => {}
        }
    }
    parts.join("\n")
}

/// The prompt that asks for a summary of `messages` extending `previous`.
pub fn prompt(previous: Option<&Summary>, messages: &[StoredMessage]) -> Vec<Message> {
    let mut transcript = String::new();
    if let Some(p) = previous {
        transcript.push_str("Earlier summary:\n");
        transcript.push_str(&p.text);
        transcript.push_str("\n\nTranscript that follows it:\n");
    }
    for m in messages {
        transcript.push_str(role_name(m.message.role));
        transcript.push_str(": ");
        transcript.push_str(&transcript_text(&m.message));
        for call in m.message.tool_calls() {
            transcript.push_str(&format!("\n[calls {}({})]", call.name, call.arguments));
        }
        transcript.push('\n');
    }
    vec![
        Message::text(Role::System, INSTRUCTIONS),
        Message::text(Role::User, transcript),
    ]
}

/// A summary and the usage row its call cost.
pub struct Written {
    /// The summary to store.
    pub summary: Summary,
    /// Usage to account to the tenant.
    pub usage: crate::store::UsageRow,
    /// The call's metering: mark it recorded once `usage` is stored; dropped
    /// unrecorded, it records `usage` itself.
    pub meter: Meter,
}

/// Reads the dropped messages, and if they make enough turns, has the summary
/// model summarise them. `Ok(None)`: nothing worth summarising yet.
pub async fn write(
    state: &AppState,
    tenant: &str,
    id: &str,
    job: SummaryJob,
) -> Result<Option<Written>, crate::ApiError> {
    let cfg = &state.config.context;
    let Some(model) = cfg
        .summary_model
        .as_deref()
        .and_then(|m| state.providers.resolve(m))
    else {
        return Ok(None);
    };
    let now = now_secs();
    let wanted = usize::try_from(job.to_seq - job.from_seq).unwrap_or(usize::MAX);
    let page = state
        .store
        .message_page(
            tenant,
            id,
            now,
            Order::Asc,
            job.from_seq.checked_sub(1),
            wanted.min(MAX_MESSAGES),
        )
        .await?;
    let mut messages: Vec<StoredMessage> = page
        .messages
        .into_iter()
        .filter(|m| m.seq < job.to_seq)
        .collect();
    // Stay well inside the summary model's own window.
    let room = state.config.context_window(&model.id) / 2;
    let mut used = job.previous.as_ref().map_or(0, |s| s.tokens);
    let fits = messages
        .iter()
        .take_while(|m| {
            used += m.window_tokens();
            used <= room
        })
        .count();
    messages.truncate(fits.max(1).min(messages.len()));
    let turns = messages
        .iter()
        .filter(|m| m.message.role == Role::User)
        .count() as u64;
    let Some(last) = messages.last() else {
        return Ok(None);
    };
    if turns < cfg.summarize_after_turns.max(1) {
        return Ok(None);
    }
    let through_seq = last.seq;
    let redactor = state.redactors.for_tenant(tenant);
    let mut counts = processor::Counts::default();
    let mut prompt = prompt(job.previous.as_ref(), &messages);
    if processor::apply(redactor, &mut prompt, Place::Upstream, &mut counts).is_err() {
        return Ok(None);
    }

    let quotas = state.config.quotas(tenant);
    let price = state.config.prices.get(&model.id);
    if quotas.cost_per_day_usd.is_some() && price.is_none() {
        tracing::warn!(model = %model.id, "summary model has no price; no summary under a cost budget");
        return Ok(None);
    }
    let prompt_estimate = tokens::estimate_all(&prompt);
    let prompt_reserved = limits::prompt_reserve(prompt_estimate);
    let budget = Budget::new(&quotas, state.config.limits.budget_tolerance);
    let ask = limits::Ask {
        tenant,
        budget,
        price,
        prompt: prompt_reserved,
        output: Output::Capped(cfg.summary_max_tokens),
        rate: None,
        now,
    };
    let reserved = limits::reserve_call(&state.store, ask).await;
    let (reservation, out) = match reserved {
        Ok(r) => r,
        // Out of budget: the summary waits for a later turn.
        Err(LimitError::BudgetExceeded { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut meter = Meter::new(
        state.usage.clone(),
        state.config.clone(),
        tenant,
        &model.id,
        now,
        Usage::new(prompt_reserved, u64::from(out)),
        reservation,
    );
    meter.sent();
    let request = Request {
        messages: prompt,
        max_output_tokens: Some(cfg.summary_max_tokens),
        temperature: Some(0.2),
        ..Request::default()
    };
    let Response {
        mut message, usage, ..
    } = match state.providers.complete(&model, &request).await {
        Ok(c) => c,
        Err(e) => {
            meter.failed(&e).await;
            return Err(e.into());
        }
    };
    let (usage, estimated) = usage::or_estimate(usage, prompt_estimate, &message);
    let row = meter.answered(&model.id, &usage, estimated).await;
    // A summary thrown away was still paid for: its usage is recorded.
    if processor::apply(
        redactor,
        std::slice::from_mut(&mut message),
        Place::Stored,
        &mut counts,
    )
    .is_err()
    {
        meter.record().await;
        return Ok(None);
    }
    let text = message.text_content();
    if text.trim().is_empty() {
        meter.record().await;
        return Ok(None);
    }
    let tokens = if usage.output > 0 {
        usage.output
    } else {
        tokens::estimate_text(&text)
    };
    Ok(Some(Written {
        summary: Summary {
            text,
            through_seq,
            tokens,
            model: model.id.clone(),
            created: now,
        },
        usage: row,
        meter,
    }))
}

/// Runs the summary beside the turn's provider call; see the module docs.
pub struct Pending {
    handle: tokio::task::JoinHandle<Option<Written>>,
}

impl Pending {
    /// Starts writing a summary for `job` in the background.
    pub fn start(
        state: std::sync::Arc<AppState>,
        tenant: String,
        id: String,
        job: SummaryJob,
    ) -> Self {
        let handle = tokio::spawn(async move {
            match write(&state, &tenant, &id, job).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(code = e.code, status = e.status.as_u16(), "summary failed");
                    None
                }
            }
        });
        Self { handle }
    }

    /// Waits for the summary at most `budget`; gives up (and stops it) after.
    pub async fn finish(self, budget: Duration) -> Option<Written> {
        let mut handle = self.handle;
        match tokio::time::timeout(budget, &mut handle).await {
            Ok(Ok(written)) => written,
            Ok(Err(_)) => None,
            Err(_) => {
                handle.abort();
                tracing::info!("summary not ready in time; will retry on a later turn");
                None
            }
        }
    }

    /// Stops the summary (the turn failed).
    pub fn cancel(self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_carries_the_previous_summary_and_the_transcript() {
        let previous = Summary {
            text: "User likes tea.".into(),
            through_seq: 3,
            ..Summary::default()
        };
        let msgs = vec![
            StoredMessage::new(4, Message::text(Role::User, "I live in Oslo"), 0),
            StoredMessage::new(5, Message::text(Role::Assistant, "Noted"), 0),
        ];
        let p = prompt(Some(&previous), &msgs);
        assert_eq!(p.len(), 2);
        let text = p[1].text_content();
        assert!(text.contains("User likes tea."));
        assert!(text.contains("user: I live in Oslo\nassistant: Noted\n"));
    }

    #[test]
    fn the_wait_is_half_the_call_with_a_floor() {
        assert_eq!(wait_budget(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(wait_budget(Duration::from_millis(10)), MIN_WAIT);
    }
}
