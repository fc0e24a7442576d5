//! The second stage: the provider's answer as model events, filtered
//! through the response policy on the way to the client and assembled as it
//! came for storage and accounting.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Instant;

use futures_util::{Stream, StreamExt, stream};
use tracing::Instrument;

use super::prepare::Core;
use super::{Done, Guard, Prepared, TurnError};
use crate::model::{Assembler, BlockDelta, BlockStart, Event, Usage, events_of};
use crate::processor::stream::StreamRedactor;
use crate::provider::keep_alive::{self, Beat};
use crate::provider::{ProviderError, ResolvedModel};
use crate::redact::{Blocked, Place};
use crate::{ApiError, tokens};

type Beats = Pin<Box<dyn Stream<Item = Beat> + Send>>;

/// What the answer does next.
#[derive(Debug)]
pub enum Step {
    /// An event for the client (its text already through the response policy).
    Event(Event),
    /// The provider (or a tool) has been silent a while: a keep-alive may go out.
    Silence,
    /// The tool loop ran a tool call (a front door may announce it in a way
    /// clients ignore; the call itself is not the client's to see).
    Tool(super::ToolNote),
    /// The answer is complete; call [`super::Answering::done`].
    End,
}

/// One provider call's answer on its way: see [`call`].
pub(super) struct Call {
    core: Core,
    tally: Tally,
    model: ResolvedModel,
    events: Beats,
    filter: Option<StreamRedactor>,
    /// The block whose text the filter holds back, if any.
    text_block: Option<u32>,
    started: Instant,
    ready: VecDeque<Event>,
    ended: bool,
    /// The provider call's client span (`trace::chat_span`), ended with the call.
    span: tracing::Span,
}

/// The answer as it came from the provider, and the guard to settle it with.
struct Tally {
    /// Taken once the turn is settled one way or the other.
    guard: Option<Guard>,
    raw: Assembler,
    prompt_estimate: u64,
    model: String,
    /// The usage came with a whole answer: final, not a figure so far.
    whole: bool,
}

impl Tally {
    /// What a cut answer cost: the provider's figures so far where it sent
    /// them, and at least an estimate of what was generated (`true`: estimated).
    fn spent(&self) -> (Usage, bool) {
        let generated = tokens::estimate_text(&self.raw.generated_chars());
        match self.raw.usage() {
            Some(u) if self.whole || u.output >= generated => (u, false),
            Some(u) => (
                Usage {
                    output: generated,
                    ..u
                },
                true,
            ),
            None => (Usage::new(self.prompt_estimate, generated), true),
        }
    }

    /// Settles a cut answer and gives everything back.
    async fn cut(&mut self) {
        let (usage, estimated) = self.spent();
        if let Some(g) = self.guard.take() {
            g.cut(&self.model, usage, estimated).await;
        }
    }
}

impl Drop for Tally {
    /// The client went away mid-answer: nothing is stored, but the provider
    /// was paid for what it generated, so that is accounted in the background.
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let (usage, estimated) = self.spent();
        let model = std::mem::take(&mut self.model);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { guard.cut(&model, usage, estimated).await });
        }
    }
}

/// Calls the provider: streamed (`stream: true` at the front door), the
/// upstream answer as it arrives, retries and fallbacks only before its
/// first event; otherwise the whole answer, as the same events. A failure
/// before the answer starts is metered as it warrants and gives everything back.
pub(super) async fn call(prepared: Prepared, streamed: bool) -> Result<Call, ApiError> {
    let Prepared {
        mut core,
        mut guard,
    } = prepared;
    core.streamed = streamed;
    let state = core.state.clone();
    let started = Instant::now();
    guard.sent();
    let span = crate::trace::chat_span(&core.model.upstream, core.conversation.as_deref());
    let opened: Result<(Beats, ResolvedModel), ProviderError> = if streamed {
        state
            .providers
            .stream_routed(&core.chain, &core.request, core.deadline)
            .instrument(span.clone())
            .await
            .map(|routed| {
                let beats = keep_alive::watch(
                    routed.value,
                    keep_alive::INTERVAL,
                    state.config.upstream_timeout,
                    routed.model.provider.clone(),
                );
                (Box::pin(beats) as Beats, routed.model)
            })
    } else {
        state
            .providers
            .complete_routed(&core.chain, &core.request, core.deadline)
            .instrument(span.clone())
            .await
            .map(|routed| {
                let events = events_of(&routed.value).into_iter();
                let beats = stream::iter(events.map(|e| Beat::Item(Ok(e))));
                (Box::pin(beats) as Beats, routed.model)
            })
    };
    let (events, model) = match opened {
        Ok(o) => o,
        Err(e) => {
            guard.failed(&e).await;
            let e = ApiError::from(e);
            crate::trace::failed(&span, e.code);
            return Err(e);
        }
    };
    let kind = state.config.providers.get(&model.provider);
    crate::trace::routed(&span, &model.provider, kind.map_or("", |p| p.kind.as_str()));
    let canonical = state
        .providers
        .capabilities(&model.provider)
        .is_some_and(|c| c.canonical_tool_arguments);
    // A whole answer is redacted once it is complete; a stream as it flows.
    let redactor = state.redactors.for_tenant(&core.tenant);
    let filter = if streamed {
        StreamRedactor::new(redactor, Place::Response)
    } else {
        StreamRedactor::whole(redactor, Place::Response)
    };
    let tally = Tally {
        guard: Some(guard),
        raw: Assembler::new(canonical),
        prompt_estimate: core.prompt_estimate,
        model: model.id.clone(),
        whole: !streamed,
    };
    Ok(Call {
        core,
        tally,
        model,
        events,
        filter,
        text_block: None,
        started,
        ready: VecDeque::new(),
        ended: false,
        span,
    })
}

impl Call {
    /// The model that is answering (a fallback chain may have moved on).
    pub fn model(&self) -> &ResolvedModel {
        &self.model
    }

    /// The conversation the turn belongs to.
    pub fn conversation(&self) -> Option<&str> {
        self.core.conversation.as_deref()
    }

    /// Replacements made on the request.
    pub fn request_counts(&self) -> &crate::processor::Counts {
        &self.core.counts
    }

    /// Request time, Unix seconds.
    pub fn now(&self) -> i64 {
        self.core.now
    }

    /// Whether the turn holds an idempotency claim (so the front door keeps
    /// what it sends, for a replay).
    pub fn keeps_replay(&self) -> bool {
        self.tally
            .guard
            .as_ref()
            .is_some_and(|g| g.claim().is_some())
    }

    /// The next step of the answer. An error ends it: by then the provider's
    /// work so far is accounted, nothing is stored, and the claim and any
    /// summary are given back.
    pub async fn next(&mut self) -> Result<Step, TurnError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Step::Event(e));
            }
            if self.ended {
                return Ok(Step::End);
            }
            match self.events.next().await {
                Some(Beat::Silence) => return Ok(Step::Silence),
                Some(Beat::Item(Ok(event))) => {
                    self.tally.raw.push(&event);
                    if let Err(b) = self.filter(event) {
                        return Err(self.blocked(b).await);
                    }
                }
                Some(Beat::Item(Err(e))) => {
                    let e = ApiError::from(e);
                    crate::trace::failed(&self.span, e.code);
                    // Dropping the upstream stream closes the provider connection.
                    self.events = Box::pin(stream::empty());
                    self.tally.cut().await;
                    return Err(TurnError::Api(e));
                }
                None => {
                    if let Err(b) = self.flush() {
                        return Err(self.blocked(b).await);
                    }
                    self.ended = true;
                }
            }
        }
    }

    /// Passes one upstream event through the response policy into `ready`.
    fn filter(&mut self, event: Event) -> Result<(), Blocked> {
        match event {
            Event::BlockDelta {
                index,
                delta: BlockDelta::Text(text),
            } => {
                if self.filter.is_none() {
                    self.ready.push_back(Event::BlockDelta {
                        index,
                        delta: BlockDelta::Text(text),
                    });
                    return Ok(());
                }
                if self.text_block.is_some_and(|b| b != index) {
                    self.flush()?;
                }
                self.text_block = Some(index);
                let safe = match self.filter.as_mut() {
                    Some(f) => f.push(&text)?,
                    None => text,
                };
                if !safe.is_empty() {
                    self.ready.push_back(Event::BlockDelta {
                        index,
                        delta: BlockDelta::Text(safe),
                    });
                }
            }
            // Held-back text goes out before anything that follows it.
            e @ (Event::BlockStart { .. } | Event::BlockStop { .. } | Event::Finish { .. }) => {
                let text_start = matches!(
                    e,
                    Event::BlockStart {
                        block: BlockStart::Text,
                        ..
                    }
                );
                if !text_start {
                    self.flush()?;
                }
                self.ready.push_back(e);
            }
            e => self.ready.push_back(e),
        }
        Ok(())
    }

    /// Sends what the filter held back.
    fn flush(&mut self) -> Result<(), Blocked> {
        let (Some(f), Some(index)) = (self.filter.as_mut(), self.text_block) else {
            return Ok(());
        };
        let rest = f.flush()?;
        self.text_block = None;
        if !rest.is_empty() {
            self.ready.push_back(Event::BlockDelta {
                index,
                delta: BlockDelta::Text(rest),
            });
        }
        Ok(())
    }

    /// The answer was blocked on its way out: accounted as cut.
    async fn blocked(&mut self, b: Blocked) -> TurnError {
        crate::trace::failed(&self.span, "blocked");
        self.events = Box::pin(stream::empty());
        self.ready.clear();
        self.tally.cut().await;
        TurnError::Blocked {
            blocked: b,
            place: Place::Response,
        }
    }

    /// The answer is complete (after [`Step::End`]): settles its cost and
    /// redacts it for storage; see [`Done`].
    pub async fn done(mut self) -> Result<Done, TurnError> {
        let guard = self.tally.guard.take();
        let raw = std::mem::take(&mut self.tally.raw);
        let counts = self
            .filter
            .as_ref()
            .map(|f| f.counts().clone())
            .unwrap_or_default();
        let span = self.span.clone();
        let done = Done::settle(self.core, guard, self.model, raw, counts, self.started).await;
        match &done {
            Ok(d) => crate::trace::answered(&span, d.response()),
            Err(_) => crate::trace::failed(&span, "blocked"),
        }
        done
    }
}
