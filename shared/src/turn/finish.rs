//! The last stage: the answer's cost settled, the answer redacted for
//! storage, and the turn committed with its usage, summary and idempotency
//! record in one write, on a task of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::{Duration, Instant};
use tracing::Instrument;

use super::generate::{Call, call};
use super::prepare::{Core, reserve};
use super::{Guard, Prepared, TurnError};
use crate::meter::Meter;
use crate::model::{Assembler, Block, FinishReason, Message, Response, ToolChoice, Usage};
use crate::processor::{self, Counts};
use crate::provider::ResolvedModel;
use crate::redact::Place;
use crate::store::{IdempotencyDone, StoredResponse, ToolInfo, UsageRow};
use crate::usage::flush::UsageBatcher;
use crate::{ApiError, AppState, context, idempotency, summary, usage};

/// An earlier model step of a turn, kept until the turn commits.
pub(super) struct StepDone {
    /// The step as stored.
    step: context::Step,
    /// Its usage row, written with the turn.
    row: UsageRow,
    /// Its metering, marked recorded once the row is written.
    meter: Option<Meter>,
}

/// A complete answer, its cost settled, ready to commit (or, in a tool
/// loop, to continue with another model step).
pub struct Done {
    core: Core,
    guard: Option<Guard>,
    model: ResolvedModel,
    response: Response,
    stored: Option<Response>,
    row: UsageRow,
    counts: Counts,
    latency: Duration,
    /// Tool results stored after the answer (see [`Done::keep_after`]).
    after: Vec<(Message, Option<ToolInfo>)>,
}

impl Done {
    /// Settles the budget to the answer's usage (the provider's, or the
    /// gateway's estimate when it reported none) and redacts the answer as
    /// it will be stored. A block there refuses the turn; the answer was
    /// paid for all the same, so its usage is recorded.
    pub(super) async fn settle(
        core: Core,
        mut guard: Option<Guard>,
        model: ResolvedModel,
        raw: Assembler,
        response_counts: Counts,
        started: Instant,
    ) -> Result<Done, TurnError> {
        let latency = started.elapsed();
        let mut response = raw.finish();
        let (spent, estimated) =
            usage::or_estimate(response.usage, core.prompt_estimate, &response.message);
        response.usage = spent;
        let mut row = UsageRow::default();
        if let Some(m) = guard.as_mut().and_then(|g| g.meter.as_mut()) {
            row = m.answered(&model.id, &spent, estimated).await;
        }
        crate::metrics::answered(
            &model.provider,
            &model.id,
            &spent,
            row.cost_micro_usd,
            latency,
        );
        let mut counts = core.counts.clone();
        counts.merge(&response_counts);
        let mut stored = None;
        if core.turn.is_some() {
            let mut s = response.clone();
            let redactor = core.state.redactors.for_tenant(&core.tenant);
            if let Err(b) = processor::apply(
                redactor,
                std::slice::from_mut(&mut s.message),
                Place::Stored,
                &mut counts,
            ) {
                if let Some(mut g) = guard {
                    if let Some(m) = g.meter.as_mut() {
                        m.record().await;
                    }
                    g.release().await;
                }
                return Err(TurnError::Blocked {
                    blocked: b,
                    place: Place::Stored,
                });
            }
            stored = Some(s);
        }
        Ok(Done {
            core,
            guard,
            model,
            response,
            stored,
            row,
            counts,
            latency,
            after: Vec::new(),
        })
    }

    /// The answer as the provider gave it (its text before the response
    /// policy), for a tool loop to read the calls it makes.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// Another model step in the same turn: the answer and `results` (the
    /// tool results it asked for, each with how its tool ran) are appended to
    /// the request, a new call is reserved and made, and the turn commits
    /// every step together. The results go through the redaction policy like
    /// the request's messages. `tools_off`: the model must answer this time
    /// (the loop's bound was reached), so its tools stay listed but unusable.
    pub(super) async fn next_step(
        mut self,
        results: Vec<(Message, Option<ToolInfo>)>,
        tools_off: bool,
    ) -> Result<Call, TurnError> {
        let state = self.core.state.clone();
        let redactor = state.redactors.for_tenant(&self.core.tenant);
        let blocked = |b| TurnError::Api(ApiError::blocked(&b, "messages"));
        let (mut results, infos): (Vec<Message>, Vec<Option<ToolInfo>>) =
            results.into_iter().unzip();
        let mut stored_results = results.clone();
        if self.core.turn.is_some() {
            processor::apply(
                redactor,
                &mut stored_results,
                Place::Stored,
                &mut self.counts,
            )
            .map_err(blocked)?;
        }
        let stored_results: Vec<(Message, Option<ToolInfo>)> =
            stored_results.into_iter().zip(infos).collect();
        let mut answer = self.response.message.clone();
        processor::apply(
            redactor,
            std::slice::from_mut(&mut answer),
            Place::Upstream,
            &mut self.counts,
        )
        .map_err(blocked)?;
        processor::apply(redactor, &mut results, Place::Upstream, &mut self.counts)
            .map_err(blocked)?;
        if let Some(turn) = &self.core.turn {
            let earlier: Vec<context::Step> =
                self.core.steps.iter().map(|s| s.step.clone()).collect();
            let answer = &self.stored.as_ref().unwrap_or(&self.response).message;
            if !context::step_fits(turn, &earlier, answer, &stored_results) {
                return Err(TurnError::Api(
                    ApiError::new(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request_error",
                        "turn_too_large",
                        "the turn's steps no longer fit one stored write",
                    )
                    .with_param("messages"),
                ));
            }
        }
        let Some(mut guard) = self.guard.take() else {
            return Err(TurnError::Api(ApiError::internal()));
        };
        let stored = self.stored.take().unwrap_or_else(|| self.response.clone());
        let mut core = self.core;
        core.steps.push(StepDone {
            step: context::Step {
                response: stored,
                model: self.model.id.clone(),
                provider: self.model.provider.clone(),
                latency_ms: u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
                results: stored_results,
            },
            row: self.row,
            meter: guard.meter.take(),
        });
        core.counts = self.counts;
        core.request.messages.push(answer);
        core.request.messages.extend(results);
        if tools_off {
            core.request.tool_choice = Some(ToolChoice::None);
        }
        if let Err(e) = reserve(&mut core, &mut guard).await {
            guard.release().await;
            return Err(TurnError::Api(e));
        }
        let streamed = core.streamed;
        call(Prepared { core, guard }, streamed)
            .await
            .map_err(TurnError::Api)
    }

    /// Keeps `results` (the tool loop's results for this answer's MCP calls,
    /// when the answer also called the client's tools) to store after the
    /// answer, redacted per the stored policy.
    pub(super) fn keep_after(
        &mut self,
        results: Vec<(Message, Option<ToolInfo>)>,
    ) -> Result<(), TurnError> {
        let redactor = self.core.state.redactors.for_tenant(&self.core.tenant);
        for (mut m, info) in results {
            processor::apply(
                redactor,
                std::slice::from_mut(&mut m),
                Place::Stored,
                &mut self.counts,
            )
            .map_err(|b| TurnError::Api(ApiError::blocked(&b, "messages")))?;
            self.after.push((m, info));
        }
        Ok(())
    }

    /// Removes the calls `drop` picks from the answer (as sent and as
    /// stored): the MCP calls of a last step made with tools off, which no
    /// result will ever answer.
    pub(super) fn drop_calls(&mut self, drop: impl Fn(&str) -> bool) {
        for r in std::iter::once(&mut self.response).chain(self.stored.as_mut()) {
            let before = r.message.content.len();
            r.message
                .content
                .retain(|b| !matches!(b, Block::ToolCall(c) if drop(&c.name)));
            let has_calls = r
                .message
                .content
                .iter()
                .any(|b| matches!(b, Block::ToolCall(_)));
            if r.message.content.len() != before && !has_calls {
                r.finish = FinishReason::Stop;
            }
        }
    }

    /// Whether the model that answered takes images in tool results.
    pub(super) fn takes_tool_result_images(&self) -> bool {
        self.core
            .state
            .providers
            .capabilities(&self.model.provider)
            .is_some_and(|c| c.tool_result_images)
    }

    /// Counts the tool calls of a step for the turn's usage rows.
    pub(super) fn count_tool_calls(&mut self, runs: &[ToolInfo]) {
        self.core.tool_calls.count(runs);
    }

    /// The turn's usage as billed, every model step of it (the estimate
    /// where the provider reported none).
    pub fn usage(&self) -> Usage {
        let mut total = self.response.usage;
        for s in &self.core.steps {
            total.add(&s.step.response.usage);
        }
        total
    }

    /// The model that answered.
    pub fn model(&self) -> &ResolvedModel {
        &self.model
    }

    /// Every replacement the turn made: request, answer as sent, answer as stored.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The conversation the turn belongs to.
    pub fn conversation(&self) -> Option<&str> {
        self.core.conversation.as_deref()
    }

    /// Request time, Unix seconds.
    pub fn now(&self) -> i64 {
        self.core.now
    }

    /// Commits the turn: with a conversation, its messages, answer, usage
    /// rows, summary and idempotency record in one write; without, the usage
    /// row and the idempotency record. `replay` is the response as the front
    /// door sent it, kept when the request holds an idempotency claim. A
    /// commit that fails gives the claim back (the usage is still recorded).
    pub async fn commit(mut self, replay: Option<StoredResponse>) -> Result<Committed, TurnError> {
        let state = self.core.state.clone();
        let tenant = self.core.tenant.clone();
        let now = self.core.now;
        let Some(mut guard) = self.guard.take() else {
            return Ok(Committed);
        };
        let done = match (guard.claim(), replay) {
            (Some(c), Some(response)) => Some(IdempotencyDone {
                key: c.key.clone(),
                token: c.token.clone(),
                response,
                expires_at: now + idempotency::KEEP_SECS,
            }),
            _ => None,
        };
        let meter = guard.meter.take();
        let steps = std::mem::take(&mut self.core.steps);
        let tool_rows = self.core.tool_calls.take_rows();
        match (self.core.turn.take(), self.stored.take(), meter) {
            (Some(turn), Some(stored), Some(meter)) => {
                let finished = Finished {
                    tenant: tenant.clone(),
                    turn,
                    steps,
                    stored,
                    model: self.model.clone(),
                    latency: self.latency,
                    redactions: self.counts.0.clone(),
                    row: self.row.clone(),
                    idempotency: done,
                    now,
                    meter,
                    summary: guard.take_summary(),
                    after: std::mem::take(&mut self.after),
                    tool_rows,
                    response: self.core.response.take(),
                };
                if let Err(e) = store_turn(&state, finished).await {
                    guard.release().await;
                    return Err(TurnError::Api(e));
                }
            }
            (_, _, meter) => {
                for mut m in steps.into_iter().filter_map(|s| s.meter) {
                    m.record().await;
                }
                if let Some(mut m) = meter {
                    m.record().await;
                }
                for row in &tool_rows {
                    state.usage.add(&tenant, row);
                }
                if let Some(done) = done
                    && let Err(e) = state.store.idempotency_complete(&tenant, &done).await
                {
                    tracing::warn!(error = %e, "could not store an idempotent response");
                }
            }
        }
        guard.disarm();
        Ok(Committed)
    }
}

/// A committed turn.
#[derive(Debug)]
pub struct Committed;

/// A turn whose answer is in, ready to store.
struct Finished {
    tenant: String,
    turn: context::Turn,
    /// Earlier model steps of the turn.
    steps: Vec<StepDone>,
    /// The answer as stored (redacted per the stored policy).
    stored: Response,
    model: ResolvedModel,
    latency: Duration,
    redactions: BTreeMap<String, BTreeMap<String, u32>>,
    row: UsageRow,
    idempotency: Option<IdempotencyDone>,
    now: i64,
    meter: Meter,
    summary: Option<summary::Pending>,
    /// Tool results stored after the answer.
    after: Vec<(Message, Option<ToolInfo>)>,
    /// The turn's tool calls, one usage row per server.
    tool_rows: Vec<UsageRow>,
    /// The Responses API response the turn becomes.
    response: Option<context::ResponseDraft>,
}

/// A turn's tool calls per MCP server: (calls, failures). They become usage
/// rows (`mcp/{server}`: the calls as requests, the failures as tool errors,
/// no tokens) written with the turn; a turn that ends without a commit (a
/// client gone, a provider failing after the tools ran) hands them to the usage
/// batcher when dropped, since the servers did the work all the same.
pub(super) struct ToolTally {
    usage: Arc<UsageBatcher>,
    tenant: String,
    now: i64,
    calls: BTreeMap<String, (u64, u64)>,
}

impl ToolTally {
    /// An empty tally for `tenant`'s turn at `now`.
    pub(super) fn new(usage: Arc<UsageBatcher>, tenant: &str, now: i64) -> Self {
        Self {
            usage,
            tenant: tenant.to_owned(),
            now,
            calls: BTreeMap::new(),
        }
    }

    /// Counts one call per run (a call of a tool no server offers belongs to none).
    fn count(&mut self, runs: &[ToolInfo]) {
        for r in runs.iter().filter(|r| !r.server.is_empty()) {
            let e = self.calls.entry(r.server.clone()).or_default();
            e.0 += 1;
            if r.outcome != "ok" {
                e.1 += 1;
            }
        }
    }

    /// The rows, handed to whoever writes them (nothing is left to write on drop).
    fn take_rows(&mut self) -> Vec<UsageRow> {
        let day = usage::day(self.now);
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(server, (n, errors))| UsageRow {
                day: day.clone(),
                model: format!("mcp/{server}"),
                requests: n,
                tool_errors: errors,
                ..UsageRow::default()
            })
            .collect()
    }
}

impl Drop for ToolTally {
    fn drop(&mut self) {
        for row in self.take_rows() {
            self.usage.add(&self.tenant, &row);
        }
    }
}

/// Stores a finished turn with its usage rows (and summary), in a task of
/// its own that runs to the end even if the client goes away meanwhile: a
/// commit cut half-way would leave its usage neither surely stored nor surely
/// not, so it would be counted twice or never. A commit that fails records
/// the usage on its own (the provider was paid) and returns the error.
async fn store_turn(state: &Arc<AppState>, f: Finished) -> Result<(), ApiError> {
    let state = state.clone();
    let task = tokio::spawn(
        async move {
            let Finished {
                tenant,
                turn,
                steps,
                stored,
                model,
                latency,
                redactions,
                row,
                idempotency,
                now,
                mut meter,
                summary,
                after,
                tool_rows,
                response,
            } = f;
            let written = match summary {
                Some(p) => p.finish(summary::wait_budget(latency)).await,
                None => None,
            };
            let mut rows: Vec<UsageRow> = steps.iter().map(|s| s.row.clone()).collect();
            rows.push(row);
            rows.extend(written.as_ref().map(|w| w.usage.clone()));
            rows.extend(tool_rows);
            let (earlier, mut step_meters): (Vec<context::Step>, Vec<Option<Meter>>) =
                steps.into_iter().map(|s| (s.step, s.meter)).unzip();
            let (summary, mut summary_meter) = match written {
                Some(w) => (Some(w.summary), Some(w.meter)),
                None => (None, None),
            };
            let extras = context::TurnExtras {
                retention: state.config.retention_secs(),
                summary,
                usage: rows,
                idempotency,
                conversation_cap: state.config.limits.conversation_cap(),
                response,
            };
            let answer = context::Answer {
                earlier: &earlier,
                response: &stored,
                model: &model.id,
                provider: &model.provider,
                latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                redactions,
                after: &after,
            };
            let committed =
                context::commit(&*state.store, &tenant, turn, &answer, &extras, now).await;
            if committed.is_err() {
                // The provider was paid even though the turn is not stored.
                for row in &extras.usage {
                    state.usage.add(&tenant, row);
                }
            }
            meter.recorded();
            for m in step_meters.iter_mut().flatten() {
                m.recorded();
            }
            if let Some(m) = summary_meter.as_mut() {
                m.recorded();
            }
            committed.map_err(ApiError::from)
        }
        .instrument(tracing::Span::current()),
    );
    task.await.unwrap_or_else(|_| Err(ApiError::internal()))
}
