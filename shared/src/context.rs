//! The context manager: builds each turn's prompt from a stored conversation
//! within the model's token budget, and stores the finished turn atomically.
//!
//! System prompt rule: a conversation keeps one system prompt (its system and
//! developer messages). A request that carries system/developer messages
//! replaces it for this turn and from then on; a request without keeps the
//! stored one. It is never stored as history.
//!
//! Window rule: upstream gets the system prompt, then the conversation's
//! summary (with `strategy = "summarize"`), then as many of the most recent
//! stored turns as fit in `context window - output reserve - safety margin`,
//! then the request's new messages. Turns are dropped whole, oldest first; a
//! turn runs from a user message to the next one, so an assistant's tool
//! calls always travel with their results. A conversation never fails for
//! being long: what does not fit is left out (and, summarising, folded into
//! the summary).

use std::collections::BTreeMap;

use crate::model::{Message, Response, Role};
use crate::store::{
    self, ConversationMeta, IdempotencyDone, MAX_ITEM_BYTES, ParentRef, ResponseRecord, Store,
    StoreError, StoredMessage, Summary, ToolInfo, TurnInfo, TurnWrite, UsageRow, WindowLimit,
};
use crate::tokens;

pub use crate::store::MAX_WRITE_ATTEMPTS;

/// The text put before a summary in the prompt.
pub const SUMMARY_PREFIX: &str = "Summary of the earlier part of this conversation:\n";

/// A context failure.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The store failed or the turn kept losing races.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What the turn continues from is gone (a response whose conversation
    /// was deleted or expired).
    #[error("{param}: {message}")]
    NotFound {
        /// The offending field.
        param: String,
        /// What is missing.
        message: String,
    },
    /// The prompt does not fit the model's window and may not be cut.
    #[error("{param}: {message}")]
    TooLong {
        /// The offending field.
        param: String,
        /// What does not fit, with the limit.
        message: String,
    },
    /// The turn could not be stored once answered; refused before the provider.
    #[error("{param}: {message}")]
    TooLarge {
        /// The offending field.
        param: String,
        /// What does not fit, with the limit.
        message: String,
    },
}

/// Items kept free in a turn's transaction for the answer: three parts
/// (about 1 MB of answer document) cover the largest output a provider sends.
pub const ANSWER_ITEMS: usize = 3;

/// The token budget of one turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSettings {
    /// The model's context size in tokens.
    pub context_window: u64,
    /// Tokens kept free for the answer.
    pub output_reserve: u64,
    /// Tokens kept free for estimate error.
    pub safety_margin: u64,
    /// Whether dropped turns are summarised (else simply left out).
    pub summarize: bool,
    /// Dropped, unsummarised turns that trigger a summary.
    pub summarize_after_turns: u64,
    /// With providers' prompt caches in use: the window keeps its start
    /// while the history fits, and when it must move, drops this share of
    /// the history's budget at once, so that the prompt's prefix stays the
    /// same for several turns. `None`: the window starts wherever the most
    /// recent turns that fit begin.
    pub stable_slack: Option<f64>,
}

impl WindowSettings {
    /// Tokens available to system prompt, summary, history and new messages.
    pub fn prompt_budget(&self) -> u64 {
        self.context_window
            .saturating_sub(self.output_reserve)
            .saturating_sub(self.safety_margin)
    }
}

/// A conversation turn in progress.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Conversation id.
    pub id: String,
    /// The header as read.
    meta: ConversationMeta,
    /// The header a fork starts from (its parent's history by reference);
    /// `None` for a turn on an existing or plain new conversation.
    start: Option<ConversationMeta>,
    /// A replacement system prompt, if the request carried one.
    new_system: Option<Vec<Message>>,
    /// The request's non-system messages, to store before the answer.
    new_messages: Vec<Message>,
    /// Where this turn's window started, kept for the next (stable windows only).
    window_from: Option<u64>,
}

impl Turn {
    /// The request messages this turn will store, for the response processor.
    pub fn new_messages_mut(&mut self) -> &mut [Message] {
        &mut self.new_messages
    }

    /// A replacement system prompt this turn will store, if any.
    pub fn new_system_mut(&mut self) -> Option<&mut [Message]> {
        self.new_system.as_deref_mut()
    }
}

/// Where a turn's history comes from and where it goes, besides the
/// conversation's own rules.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The conversation to continue (`None`, and no `from`: a stateless turn).
    pub conversation: Option<String>,
    /// Continue from this stored response's turn: in its conversation when
    /// it is the latest turn there, else in a new conversation of this id
    /// that forks the history up to it.
    pub from: Option<(ResponseRecord, String)>,
    /// Instructions for this turn only: sent first, never stored.
    pub instructions: Vec<Message>,
    /// The history is read but nothing of the turn is stored.
    pub read_only: bool,
    /// Refuse the turn rather than leave history out of the window (the
    /// Responses API's `truncation: "disabled"`).
    pub strict: bool,
}

/// Stored messages that fell out of the window and are not summarised yet.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryJob {
    /// First dropped slot (inclusive).
    pub from_seq: u64,
    /// End of the dropped slots (exclusive): the first slot the window kept.
    pub to_seq: u64,
    /// The summary they extend, if any.
    pub previous: Option<Summary>,
}

/// What the window kept and left out, for logs and headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowReport {
    /// Stored messages sent upstream.
    pub kept: usize,
    /// Stored messages left out (not counting those a summary covers).
    pub dropped: u64,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
}

/// What to send upstream, and the turn to store afterwards (if any).
pub struct Prepared {
    /// The full prompt.
    pub prompt: Vec<Message>,
    /// How many of the prompt's leading messages are instructions (summary
    /// included), and how many are instructions or stored history: the
    /// prefix the next turn sends again. `None` without a conversation.
    pub stable: Option<(usize, usize)>,
    /// Present when the request continues a stored conversation.
    pub turn: Option<Turn>,
    /// Present when dropped turns should be summarised now.
    pub summary_job: Option<SummaryJob>,
    /// What the window did.
    pub window: WindowReport,
}

/// The system message that carries a summary into the prompt.
pub fn summary_message(summary: &Summary) -> Message {
    Message::text(Role::System, format!("{SUMMARY_PREFIX}{}", summary.text))
}

/// Where the window may start and how many tokens the stored history may use,
/// given the header, the request's system prompt (if any) and its new messages.
/// The start is the first message no summary covers; see [`read_limit`] for
/// where a stable window reads from.
fn window_limit(
    meta: &ConversationMeta,
    settings: &WindowSettings,
    new_system: Option<&[Message]>,
    new_tokens: u64,
) -> WindowLimit {
    let system = tokens::estimate_all(new_system.unwrap_or(&meta.system));
    let summary = meta.summary.as_ref().filter(|_| settings.summarize);
    let summary_tokens = summary.map_or(0, |s| tokens::estimate(&summary_message(s)));
    WindowLimit {
        from_seq: summary
            .map_or(meta.first_seq, |s| s.through_seq + 1)
            .max(meta.first_seq),
        tokens: settings
            .prompt_budget()
            .saturating_sub(system + summary_tokens + new_tokens),
    }
}

/// Where the window is read from: for a stable window, where the previous
/// turn's started (if that is still uncovered by a summary), else the start.
fn read_limit(
    meta: &ConversationMeta,
    settings: &WindowSettings,
    limit: WindowLimit,
) -> WindowLimit {
    let kept = meta
        .window_from
        .filter(|_| settings.stable_slack.is_some())
        .filter(|w| (limit.from_seq..=meta.next_seq).contains(w));
    WindowLimit {
        from_seq: kept.unwrap_or(limit.from_seq),
        ..limit
    }
}

/// Index of the first of `messages` (read newest first down to `from_seq`,
/// or until over `budget`) to keep. A plain window keeps the most recent
/// whole turns that fit; a stable one keeps everything read when it all
/// fits, and otherwise drops down to `1 - slack` of the budget.
fn keep_from(messages: &[StoredMessage], from_seq: u64, budget: u64, slack: Option<f64>) -> usize {
    let most = fit_window(messages, budget);
    let Some(slack) = slack else {
        return most;
    };
    let all_read = messages.first().is_none_or(|m| m.seq == from_seq);
    if most == 0 && all_read {
        return 0;
    }
    fit_window(messages, (budget as f64 * (1.0 - slack)) as u64)
}

/// Index of the first message to keep: whole turns (each starting at a user
/// message), newest first, while they fit in `budget`.
pub fn fit_window(messages: &[StoredMessage], budget: u64) -> usize {
    let mut keep_from = messages.len();
    let mut used = 0u64;
    let mut group = 0u64;
    for i in (0..messages.len()).rev() {
        group += messages[i].window_tokens();
        let starts_turn = messages[i].message.starts_turn() || i == 0;
        if starts_turn {
            if used + group > budget {
                break;
            }
            used += group;
            group = 0;
            keep_from = i;
        }
    }
    keep_from
}

/// What a turn brings to its conversation's header.
#[derive(Clone, Copy)]
struct HeaderCheck<'a> {
    /// The request's system prompt, if it carries one.
    new_system: Option<&'a [Message]>,
    /// The field to name when the header would be too large.
    param: &'a str,
    /// Now, Unix seconds.
    now: i64,
    /// The tenant's cap on stored conversations.
    cap: Option<u64>,
}

/// Refuses, before the provider is called, a turn whose header would not fit
/// one item (the system prompt it stores) or that would create a conversation
/// past the tenant's `cap` (the store checks the cap again atomically).
async fn check_header(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    meta: &ConversationMeta,
    check: &HeaderCheck<'_>,
) -> Result<(), ContextError> {
    let HeaderCheck {
        new_system,
        param,
        now,
        cap,
    } = *check;
    let mut header = if meta.is_live(now) {
        meta.clone()
    } else {
        meta.reborn(now)
    };
    if let Some(system) = new_system {
        header.system = system.to_vec();
    }
    let bytes = store::meta_item_bytes(tenant, id, &header);
    if bytes > MAX_ITEM_BYTES {
        return Err(ContextError::TooLarge {
            param: param.to_owned(),
            message: format!(
                "the conversation's system prompt, summary and metadata take {bytes} bytes once stored; the limit is {MAX_ITEM_BYTES}"
            ),
        });
    }
    if let Some(cap) = cap.filter(|_| meta.counts_as_new()) {
        let stored = store
            .counter_get(&store::conversation_count_key(tenant))
            .await?;
        if stored >= i64::try_from(cap).unwrap_or(i64::MAX) {
            return Err(StoreError::TooManyConversations { limit: cap }.into());
        }
    }
    Ok(())
}

/// Builds the prompt; with `conversation`, loads the part of its history that
/// fits the window first. Whatever would keep the turn from being stored
/// (sizes, the tenant's conversation cap) is refused here, before the
/// provider is paid.
pub async fn prepare(
    store: &dyn Store,
    tenant: &str,
    conversation: Option<&str>,
    messages: Vec<Message>,
    now: i64,
    settings: &WindowSettings,
    cap: Option<u64>,
) -> Result<Prepared, ContextError> {
    let scope = Scope {
        conversation: conversation.map(str::to_owned),
        ..Scope::default()
    };
    prepare_in(store, tenant, messages, now, settings, cap, scope).await
}

/// The header of a fork of `parent` (as read) at `record`'s turn: its
/// history is the parent's up to there, read in place; its own slots start
/// above it. What is small and still true there is copied: the system
/// prompt, and a summary that ends at or before the fork.
fn fork_header(parent: &ConversationMeta, record: &ResponseRecord, now: i64) -> ConversationMeta {
    ConversationMeta {
        first_seq: parent.first_seq,
        next_seq: record.last_seq + 1,
        created: now,
        updated: now,
        system: parent.system.clone(),
        summary: parent
            .summary
            .clone()
            .filter(|s| s.through_seq <= record.last_seq),
        retention_secs: parent.retention_secs,
        parent: Some(ParentRef {
            id: record.conversation.clone(),
            life: record.life,
            through_seq: record.last_seq,
        }),
        ..ConversationMeta::default()
    }
}

/// [`prepare`] with a [`Scope`]: history by response (continued or
/// forked), turn-only instructions, and read-only turns.
pub async fn prepare_in(
    store: &dyn Store,
    tenant: &str,
    messages: Vec<Message>,
    now: i64,
    settings: &WindowSettings,
    cap: Option<u64>,
    scope: Scope,
) -> Result<Prepared, ContextError> {
    let Scope {
        conversation,
        from,
        instructions,
        read_only,
        strict,
    } = scope;
    let id = match (&from, conversation) {
        (Some((r, _)), _) => r.conversation.clone(),
        (None, Some(id)) => id,
        (None, None) => {
            let mut prompt = instructions;
            prompt.extend(messages);
            let prompt_tokens = tokens::estimate_all(&prompt);
            return Ok(Prepared {
                prompt,
                stable: None,
                turn: None,
                summary_job: None,
                window: WindowReport {
                    prompt_tokens,
                    ..WindowReport::default()
                },
            });
        }
    };
    // A header too large is the system prompt's doing: name its first message.
    let system_param = messages
        .iter()
        .position(|m| m.role.is_instruction())
        .map_or_else(|| "messages".to_owned(), |i| format!("messages[{i}]"));
    let (system, rest): (Vec<Message>, Vec<Message>) =
        messages.into_iter().partition(|m| m.role.is_instruction());
    let new_system = (!system.is_empty()).then_some(system);
    // Everything the turn will store must fit one transaction, answer
    // included: checked before anything is spent on the provider.
    let items = rest.iter().map(store::request_message_items).sum::<usize>();
    if items + ANSWER_ITEMS + store::TURN_OVERHEAD_ITEMS > store::MAX_TRANSACTION_ITEMS {
        return Err(ContextError::TooLarge {
            param: "messages".into(),
            message: format!(
                "the messages take {items} stored items; a turn stores at most {} besides its answer",
                store::MAX_TRANSACTION_ITEMS - ANSWER_ITEMS - store::TURN_OVERHEAD_ITEMS
            ),
        });
    }
    let new_tokens = tokens::estimate_all(&rest) + tokens::estimate_all(&instructions);
    // Continuing from a response reads the history up to its turn; a
    // stable window's start only holds for the latest turn.
    let upto = from.as_ref().map(|(r, _)| r.last_seq + 1);
    let limit_of = |meta: &ConversationMeta| {
        let limit = window_limit(meta, settings, new_system.as_deref(), new_tokens);
        if upto.is_some_and(|u| u != meta.next_seq) {
            limit
        } else {
            read_limit(meta, settings, limit)
        }
    };
    let conv = store
        .load_window_to(tenant, &id, now, &limit_of, upto)
        .await?;
    let fork = match &from {
        Some((record, fork_id)) => {
            if !conv.meta.is_live(now) || conv.meta.life != record.life {
                return Err(ContextError::NotFound {
                    param: "previous_response_id".into(),
                    message: format!(
                        "the conversation of response '{}' was deleted or has expired",
                        record.id
                    ),
                });
            }
            (conv.meta.next_seq != record.last_seq + 1)
                .then(|| (fork_id.clone(), fork_header(&conv.meta, record, now)))
        }
        None => None,
    };
    let header = HeaderCheck {
        new_system: new_system.as_deref(),
        param: &system_param,
        now,
        cap,
    };
    if !read_only {
        let (check_id, check_meta) = match &fork {
            Some((fid, _)) => (fid.as_str(), &ConversationMeta::default()),
            None => (id.as_str(), &conv.meta),
        };
        check_header(store, tenant, check_id, check_meta, &header).await?;
    }
    let live = conv.meta.is_live(now);
    let meta = &conv.meta;
    let limit = window_limit(meta, settings, new_system.as_deref(), new_tokens);
    let read = limit_of(meta);
    let keep_from = keep_from(
        &conv.messages,
        read.from_seq,
        limit.tokens,
        settings.stable_slack.filter(|_| fork.is_none()),
    );
    let kept = &conv.messages[keep_from..];
    let end = upto.unwrap_or(meta.next_seq).min(meta.next_seq);
    let first_kept = kept.first().map_or(end, |m| m.seq);
    let dropped = if live {
        first_kept.saturating_sub(limit.from_seq)
    } else {
        0
    };

    let summary = meta.summary.as_ref().filter(|_| live && settings.summarize);
    // A turn is at least two messages: fewer dropped slots cannot be enough
    // turns. A summary reads its conversation's own slots, so a fork's
    // inherited history is never summarised under the fork's name.
    let own_from = meta.parent.as_ref().map_or(0, |p| p.through_seq + 1);
    let summary_job = (live
        && !read_only
        && fork.is_none()
        && settings.summarize
        && limit.from_seq >= own_from
        && dropped >= 2 * settings.summarize_after_turns.max(1))
    .then(|| SummaryJob {
        from_seq: limit.from_seq,
        to_seq: first_kept,
        previous: summary.cloned(),
    });

    let mut prompt = Vec::with_capacity(kept.len() + rest.len() + 3 + instructions.len());
    prompt.extend(instructions);
    match &new_system {
        Some(s) => prompt.extend(s.iter().cloned()),
        None if live => prompt.extend(meta.system.iter().cloned()),
        None => {}
    }
    prompt.extend(summary.map(summary_message));
    let instructions = prompt.len();
    prompt.extend(kept.iter().map(|m| m.message.clone()));
    let history = prompt.len();
    prompt.extend(rest.iter().cloned());
    let window = WindowReport {
        kept: kept.len(),
        dropped,
        prompt_tokens: tokens::estimate_all(&prompt),
    };
    if strict && (dropped > 0 || window.prompt_tokens > settings.prompt_budget()) {
        return Err(ContextError::TooLong {
            param: "input".into(),
            message: format!(
                "the conversation and the input take about {} tokens, more than the model's \
                 window leaves for a prompt ({}), and truncation is disabled",
                window.prompt_tokens.max(settings.prompt_budget() + 1),
                settings.prompt_budget()
            ),
        });
    }
    let window_from = settings.stable_slack.map(|_| first_kept);
    let turn = (!read_only).then(|| match fork {
        Some((fork_id, start)) => Turn {
            id: fork_id,
            meta: ConversationMeta::default(),
            start: Some(start),
            new_system,
            new_messages: rest,
            window_from: None,
        },
        None => Turn {
            id,
            meta: conv.meta,
            start: None,
            new_system,
            new_messages: rest,
            window_from,
        },
    });
    Ok(Prepared {
        prompt,
        stable: Some((instructions, history)),
        turn,
        summary_job,
        window,
    })
}

/// The answer of a turn and how it came about.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    /// Model steps before the final answer (a tool loop's calls and their
    /// results), stored in order before it; empty for a single-step turn.
    pub earlier: &'a [Step],
    /// The answer as it will be stored (redacted per the stored policy).
    pub response: &'a Response,
    /// `provider/model` that answered.
    pub model: &'a str,
    /// Provider name.
    pub provider: &'a str,
    /// Provider call time in milliseconds.
    pub latency_ms: u64,
    /// Redaction counts of the turn.
    pub redactions: BTreeMap<String, BTreeMap<String, u32>>,
    /// Results stored after the answer: the tool loop's results for the
    /// answer's MCP calls when it also called the client's own tools (whose
    /// results the client sends next), each with how it ran.
    pub after: &'a [(Message, Option<ToolInfo>)],
}

/// One earlier model step of a turn, as stored.
#[derive(Debug, Clone)]
pub struct Step {
    /// The step's answer (redacted per the stored policy).
    pub response: Response,
    /// `provider/model` that answered.
    pub model: String,
    /// Provider name.
    pub provider: String,
    /// Provider call time in milliseconds.
    pub latency_ms: u64,
    /// Messages that followed the answer within the turn (tool results),
    /// redacted per the stored policy, each with how its tool ran.
    pub results: Vec<(Message, Option<ToolInfo>)>,
}

/// Whether a turn with these earlier steps, one more whose answer is
/// `answer` and whose results are `results`, and a final answer still fits
/// the one write that stores it; checked before the next step is paid for.
pub fn step_fits(
    turn: &Turn,
    earlier: &[Step],
    answer: &Message,
    results: &[(Message, Option<ToolInfo>)],
) -> bool {
    let items = turn
        .new_messages
        .iter()
        .chain(earlier.iter().flat_map(|s| {
            std::iter::once(&s.response.message).chain(s.results.iter().map(|(m, _)| m))
        }))
        .chain(std::iter::once(answer))
        .chain(results.iter().map(|(m, _)| m))
        .map(store::request_message_items)
        .sum::<usize>();
    items + ANSWER_ITEMS + store::TURN_OVERHEAD_ITEMS <= store::MAX_TRANSACTION_ITEMS
}

/// A stored answer: the message and how it came about.
fn answer_message(
    seq: u64,
    response: &Response,
    model: &str,
    provider: &str,
    latency_ms: u64,
    redactions: BTreeMap<String, BTreeMap<String, u32>>,
    now: i64,
) -> StoredMessage {
    StoredMessage {
        seq,
        format: crate::store::format::MESSAGE_FORMAT,
        message: response.message.clone(),
        tokens: Some(response.usage.output),
        created: now,
        model: Some(model.to_owned()),
        turn: Some(TurnInfo {
            provider: provider.to_owned(),
            finish_reason: Some(response.finish),
            usage: response.usage,
            latency_ms,
            redactions,
        }),
        tool: None,
        response: None,
    }
}

/// A message of the request (or a tool result) as stored, with its estimate.
fn request_message(seq: u64, m: &Message, now: i64) -> StoredMessage {
    let mut m = m.clone();
    m.clear_cache_hints();
    let mut stored = StoredMessage::new(seq, m, now);
    stored.tokens =
        Some(tokens::estimate(&stored.message).saturating_sub(tokens::MESSAGE_OVERHEAD));
    stored
}

/// What else the turn's transaction writes.
#[derive(Debug, Clone, Default)]
pub struct TurnExtras {
    /// The config's retention in seconds (`None`: forever), unless the
    /// conversation overrides it.
    pub retention: Option<i64>,
    /// A fresher summary to store.
    pub summary: Option<Summary>,
    /// Usage rows of the turn (the answer's, the summary's).
    pub usage: Vec<UsageRow>,
    /// The idempotency claim the turn completes.
    pub idempotency: Option<IdempotencyDone>,
    /// The tenant's cap on stored conversations, if the turn creates one.
    pub conversation_cap: Option<u64>,
    /// The Responses API response this turn becomes.
    pub response: Option<ResponseDraft>,
}

/// A Responses API response a turn becomes once stored: its id, and its own
/// fields (echoed parameters, instructions, metadata) as its front door
/// writes them, kept on the answer message.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseDraft {
    /// `resp_...`.
    pub id: String,
    /// The front door's fields.
    pub fields: serde_json::Value,
}

/// The retention a conversation gets: its own override, else the default.
pub fn retention_of(meta: &ConversationMeta, default: Option<i64>) -> Option<i64> {
    match meta.retention_secs {
        Some(0) => None,
        Some(s) => Some(s),
        None => default,
    }
}

/// Sums rows of the same day and model (a transaction may touch an item once).
pub fn merge_usage(rows: Vec<UsageRow>) -> Vec<UsageRow> {
    let mut merged: Vec<UsageRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match merged
            .iter_mut()
            .find(|r| r.day == row.day && r.model == row.model)
        {
            Some(r) => r.add(&row),
            None => merged.push(row),
        }
    }
    merged
}

fn turn_write(turn: &Turn, answer: &Answer<'_>, extras: &TurnExtras, now: i64) -> TurnWrite {
    let old = &turn.meta;
    let base = match &turn.start {
        Some(start) => start.clone(),
        None if old.is_live(now) => old.clone(),
        None => old.reborn(now),
    };
    let expires_at = retention_of(&base, extras.retention).map(|r| now + r);
    let life = base.life;
    let mut seq = base.next_seq;
    let mut messages = Vec::with_capacity(turn.new_messages.len() + 1);
    for m in &turn.new_messages {
        messages.push(request_message(seq, m, now));
        seq += 1;
    }
    let mut spent = 0;
    for step in answer.earlier {
        let r = &step.response;
        messages.push(answer_message(
            seq,
            r,
            &step.model,
            &step.provider,
            step.latency_ms,
            BTreeMap::new(),
            now,
        ));
        spent += r.usage.total();
        seq += 1;
        for (m, tool) in &step.results {
            let mut stored = request_message(seq, m, now);
            stored.tool = tool.clone();
            messages.push(stored);
            seq += 1;
        }
    }
    let output_seq = base.next_seq + turn.new_messages.len() as u64;
    let c = answer.response;
    let mut final_answer = answer_message(
        seq,
        c,
        answer.model,
        answer.provider,
        answer.latency_ms,
        answer.redactions.clone(),
        now,
    );
    final_answer.response = extras.response.as_ref().map(|r| r.fields.clone());
    messages.push(final_answer);
    spent += c.usage.total();
    let answer_seq = seq;
    for (m, tool) in answer.after {
        seq += 1;
        let mut stored = request_message(seq, m, now);
        stored.tool = tool.clone();
        messages.push(stored);
    }
    // Keep whichever summary reaches further, and never one of a past life.
    let summary = [base.summary.clone(), extras.summary.clone()]
        .into_iter()
        .flatten()
        .filter(|s| s.through_seq >= base.first_seq && s.through_seq < answer_seq)
        .max_by_key(|s| s.through_seq);
    TurnWrite {
        expected_version: old.version,
        meta: ConversationMeta {
            version: old.version + 1,
            next_seq: seq + 1,
            turns: base.turns + 1,
            tokens: base.tokens + spent,
            updated: now,
            system: turn.new_system.clone().unwrap_or(base.system.clone()),
            expires_at,
            summary,
            window_from: turn.window_from,
            ..base
        },
        messages,
        usage: merge_usage(extras.usage.clone()),
        idempotency: extras.idempotency.clone().map(|mut done| {
            done.response.conversation = Some((turn.id.clone(), life));
            done
        }),
        conversation_cap: extras.conversation_cap,
        creates: old.counts_as_new(),
        response: extras.response.as_ref().map(|r| ResponseRecord {
            id: r.id.clone(),
            conversation: turn.id.clone(),
            life,
            first_seq: base.next_seq,
            output_seq,
            answer_seq,
            last_seq: seq,
            created: now,
            expires_at,
        }),
    }
}

/// Stores the turn (new messages + answer, usage, idempotency record) with a
/// version-conditioned write. A lost race re-reads the header and appends at
/// the new end, so turns never interleave; after [`MAX_WRITE_ATTEMPTS`] the
/// caller gets a conflict. A turn belongs to the life of the conversation it
/// was prepared on: if that life was deleted (or expired and started over)
/// meanwhile, nothing is written and the caller gets [`StoreError::Gone`].
pub async fn commit(
    store: &dyn Store,
    tenant: &str,
    mut turn: Turn,
    answer: &Answer<'_>,
    extras: &TurnExtras,
    now: i64,
) -> Result<(), ContextError> {
    let life = turn.meta.life_at(now);
    for attempt in 0..MAX_WRITE_ATTEMPTS {
        let write = turn_write(&turn, answer, extras, now);
        match store.append_turn(tenant, &turn.id, &write).await {
            Ok(()) => {
                purge_past_life(store, tenant, &turn.id, &turn.meta, now).await;
                return Ok(());
            }
            Err(StoreError::Conflict) => {
                let meta = store
                    .conversation_meta(tenant, &turn.id)
                    .await?
                    .unwrap_or_default();
                if meta.life_at(now) != life {
                    return Err(StoreError::Gone.into());
                }
                turn.meta = meta;
                tokio::time::sleep(crate::retry::backoff(attempt, 10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Removes what an expired life left once a new one has taken its place.
/// Invisible already (below `first_seq`), so a failure only costs storage.
async fn purge_past_life(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    old: &ConversationMeta,
    now: i64,
) {
    if old.version > 0 && !old.is_live(now) && old.next_seq > old.first_seq {
        let purge = store.purge_messages(tenant, id, old.first_seq, old.next_seq);
        if let Err(e) = purge.await {
            tracing::warn!(error = %e, "could not purge an expired conversation's messages");
        }
    }
}

/// Rewrites a conversation's header with `change` (create, update), retrying
/// lost races; `change` sees the live header (or a fresh one) and may refuse.
/// Every write refreshes the retention (`retention` is the config's default);
/// one that creates a conversation counts against `cap`.
pub async fn update_meta<E: From<StoreError>>(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    now: i64,
    retention: Option<i64>,
    cap: Option<u64>,
    change: impl Fn(&mut ConversationMeta, bool) -> Result<(), E>,
) -> Result<ConversationMeta, E> {
    append_messages(store, tenant, id, now, (retention, cap), &[], change).await
}

/// Like [`update_meta`], and appends `messages` (already redacted for
/// storage) after the conversation's last slot in the same write: items a
/// client adds through the Conversations API. Returns the header written;
/// the messages took the slots below its `next_seq`.
pub async fn append_messages<E: From<StoreError>>(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    now: i64,
    (retention, cap): (Option<i64>, Option<u64>),
    messages: &[Message],
    change: impl Fn(&mut ConversationMeta, bool) -> Result<(), E>,
) -> Result<ConversationMeta, E> {
    for attempt in 0..MAX_WRITE_ATTEMPTS {
        let old = store
            .conversation_meta(tenant, id)
            .await?
            .unwrap_or_default();
        let live = old.is_live(now);
        let mut meta = if live { old.clone() } else { old.reborn(now) };
        change(&mut meta, live)?;
        let stored: Vec<StoredMessage> = messages
            .iter()
            .zip(meta.next_seq..)
            .map(|(m, seq)| StoredMessage::new(seq, m.clone(), now))
            .collect();
        meta.next_seq += stored.len() as u64;
        meta.version = old.version + 1;
        meta.updated = now;
        meta.expires_at = retention_of(&meta, retention).map(|r| now + r);
        let write = TurnWrite {
            expected_version: old.version,
            meta: meta.clone(),
            messages: stored,
            conversation_cap: cap,
            creates: old.counts_as_new(),
            ..TurnWrite::default()
        };
        match store.append_turn(tenant, id, &write).await {
            Ok(()) => {
                purge_past_life(store, tenant, id, &old, now).await;
                return Ok(meta);
            }
            Err(StoreError::Conflict) => {
                tokio::time::sleep(crate::retry::backoff(attempt, 10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Rewrites one stored message of a live conversation with `change` (which
/// sees the header and the message, and returns what the slot holds
/// afterwards, `None` to remove it), retrying lost races; `missing` is the
/// error when the conversation or the slot is not there. Returns the header
/// written.
pub async fn edit_message<E: From<StoreError>>(
    store: &dyn Store,
    (tenant, id): (&str, &str),
    now: i64,
    retention: Option<i64>,
    seq: u64,
    missing: impl Fn() -> E,
    change: impl Fn(&StoredMessage) -> Result<Option<StoredMessage>, E>,
) -> Result<ConversationMeta, E> {
    for attempt in 0..MAX_WRITE_ATTEMPTS {
        let after = seq.checked_sub(1);
        let page = store
            .message_page(tenant, id, now, store::Order::Asc, after, 1)
            .await?;
        let Some(old) = page.meta else {
            return Err(missing());
        };
        let Some(stored) = page.messages.into_iter().next().filter(|m| m.seq == seq) else {
            return Err(missing());
        };
        let message = change(&stored)?;
        let mut meta = old.clone();
        meta.version = old.version + 1;
        meta.updated = now;
        meta.expires_at = retention_of(&meta, retention).map(|r| now + r);
        let edit = store::MessageEdit {
            expected_version: old.version,
            meta: meta.clone(),
            seq,
            message,
        };
        match store.edit_message(tenant, id, &edit).await {
            Ok(()) => return Ok(meta),
            Err(StoreError::Conflict) => {
                tokio::time::sleep(crate::retry::backoff(attempt, 10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Block, FinishReason, ToolCall, Usage};

    fn completion(text: &str) -> Response {
        Response {
            id: None,
            model: None,
            message: Message::text(Role::Assistant, text),
            finish: FinishReason::Stop,
            stop_sequence: None,
            usage: Usage::new(10, 2),
            usage_reported: true,
        }
    }

    fn answer(c: &Response) -> Answer<'_> {
        Answer {
            earlier: &[],
            response: c,
            model: "echo",
            provider: "echo",
            latency_ms: 3,
            redactions: BTreeMap::new(),
            after: &[],
        }
    }

    fn stored(seq: u64, role: Role, tokens: u64) -> StoredMessage {
        let mut m = StoredMessage::new(seq, Message::text(role, "x"), 0);
        m.tokens = Some(tokens);
        m
    }

    #[test]
    fn a_turn_appends_after_the_stored_messages() {
        let meta = ConversationMeta {
            version: 3,
            next_seq: 6,
            turns: 3,
            tokens: 50,
            created: 1,
            updated: 2,
            title: Some("t".into()),
            ..ConversationMeta::default()
        };
        let turn = Turn {
            start: None,
            id: "c".into(),
            meta,
            new_system: None,
            new_messages: vec![Message::text(Role::User, "q")],
            window_from: None,
        };
        let c = completion("a");
        let extras = TurnExtras {
            retention: Some(100),
            ..TurnExtras::default()
        };
        let w = turn_write(&turn, &answer(&c), &extras, 10);
        assert_eq!(w.expected_version, 3);
        assert_eq!(w.meta.version, 4);
        assert_eq!(
            w.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert_eq!(w.meta.next_seq, 8);
        assert_eq!(w.meta.turns, 4);
        assert_eq!(w.meta.tokens, 62);
        assert_eq!(w.meta.expires_at, Some(110));
        assert_eq!(w.meta.title.as_deref(), Some("t"));
        assert_eq!(w.messages[1].tokens, Some(2));
        let info = w.messages[1].turn.as_ref().unwrap();
        assert_eq!(info.provider, "echo");
        assert_eq!(info.latency_ms, 3);
        assert_eq!(info.finish_reason, Some(FinishReason::Stop));
    }

    #[test]
    fn an_expired_conversation_starts_over_without_reusing_slots() {
        let meta = ConversationMeta {
            version: 3,
            next_seq: 6,
            turns: 3,
            tokens: 50,
            created: 1,
            updated: 2,
            system: vec![Message::text(Role::System, "old")],
            expires_at: Some(5),
            title: Some("old".into()),
            retention_secs: Some(0),
            ..ConversationMeta::default()
        };
        let turn = Turn {
            start: None,
            id: "c".into(),
            meta,
            new_system: None,
            new_messages: vec![],
            window_from: None,
        };
        let c = completion("a");
        let w = turn_write(&turn, &answer(&c), &TurnExtras::default(), 10);
        assert_eq!(w.meta.turns, 1);
        assert_eq!(w.meta.tokens, 12);
        assert!(w.meta.system.is_empty());
        assert!(w.meta.title.is_none() && w.meta.retention_secs.is_none());
        assert_eq!(w.meta.first_seq, 6);
        assert_eq!(w.messages[0].seq, 6);
        assert_eq!(w.meta.created, 10);
    }

    #[test]
    fn the_override_wins_over_the_default_retention() {
        let mut meta = ConversationMeta::default();
        assert_eq!(retention_of(&meta, Some(30)), Some(30));
        meta.retention_secs = Some(0);
        assert_eq!(retention_of(&meta, Some(30)), None);
        meta.retention_secs = Some(7);
        assert_eq!(retention_of(&meta, None), Some(7));
    }

    #[test]
    fn whole_turns_fit_newest_first() {
        // Turns: [0,1] [2,3,4,5] (tool call + results) [6,7]; 10 tokens + 4 overhead each.
        let msgs = vec![
            stored(0, Role::User, 10),
            stored(1, Role::Assistant, 10),
            stored(2, Role::User, 10),
            stored(3, Role::Assistant, 10),
            stored(4, Role::Tool, 10),
            stored(5, Role::Assistant, 10),
            stored(6, Role::User, 10),
            stored(7, Role::Assistant, 10),
        ];
        assert_eq!(fit_window(&msgs, 1000), 0);
        assert_eq!(fit_window(&msgs, 28), 6);
        // The tool turn needs 56 more: with 83 it does not fit, so nothing older either.
        assert_eq!(fit_window(&msgs, 83), 6);
        assert_eq!(fit_window(&msgs, 84), 2);
        assert_eq!(fit_window(&msgs, 27), 8);
        assert_eq!(fit_window(&[], 10), 0);
    }

    #[test]
    fn tool_results_never_lose_their_call() {
        let mut call = stored(1, Role::Assistant, 5);
        call.message.content.push(Block::ToolCall(ToolCall {
            id: "t".into(),
            name: "f".into(),
            arguments: "{}".into(),
            cache: None,
        }));
        let msgs = vec![
            stored(0, Role::User, 5),
            call,
            stored(2, Role::Tool, 5),
            stored(3, Role::Assistant, 5),
        ];
        for budget in 0..100 {
            let from = fit_window(&msgs, budget);
            assert!(
                from == 0 || from == 4,
                "budget {budget} split a turn at {from}"
            );
        }
    }

    #[test]
    fn summaries_move_the_window_start() {
        let settings = WindowSettings {
            context_window: 1000,
            output_reserve: 100,
            safety_margin: 50,
            summarize: true,
            summarize_after_turns: 2,
            stable_slack: None,
        };
        let mut meta = ConversationMeta {
            version: 1,
            first_seq: 2,
            next_seq: 20,
            ..ConversationMeta::default()
        };
        assert_eq!(window_limit(&meta, &settings, None, 0).from_seq, 2);
        assert_eq!(window_limit(&meta, &settings, None, 0).tokens, 850);
        meta.summary = Some(Summary {
            text: "s".into(),
            through_seq: 9,
            ..Summary::default()
        });
        let l = window_limit(&meta, &settings, None, 10);
        assert_eq!(l.from_seq, 10);
        assert!(l.tokens < 840);
        let truncate = WindowSettings {
            summarize: false,
            ..settings
        };
        assert_eq!(window_limit(&meta, &truncate, None, 0).from_seq, 2);
    }

    #[test]
    fn usage_rows_of_one_model_merge() {
        let row = |model: &str, n| UsageRow {
            day: "2026-01-01".into(),
            model: model.into(),
            requests: 1,
            total_tokens: n,
            ..UsageRow::default()
        };
        let merged = merge_usage(vec![row("a", 1), row("b", 2), row("a", 3)]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].total_tokens, 4);
        assert_eq!(merged[0].requests, 2);
    }
}
