//! The tool loop: a turn whose model may use MCP servers' tools answers in
//! steps. A step that ends in calls to those tools has them run (several at
//! once), their results appended, and the model asked again, until it
//! answers, calls a tool of the client's, or reaches `max_tool_steps` (then
//! it is asked once more with tools off). The client sees one answer: every
//! step's text as it is produced, never the MCP calls, one finish reason and
//! the usage of every step; each tool run is announced as a [`Step::Tool`].
//!
//! A turn with no MCP servers passes its one call's steps through unchanged.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{Future, StreamExt};

use super::generate::{Call, call};
use super::{Done, Prepared, Step, TurnError};
use crate::ApiError;
use crate::mcp::{Outcome, ToolRun, Toolbox};
use crate::model::{
    Block, BlockStart, Event, FinishReason, Image, MediaSource, Message, Role, ToolCall,
    ToolResult, ToolResultPart,
};
use crate::processor::Counts;
use crate::provider::ResolvedModel;
use crate::provider::keep_alive;
use crate::store::ToolInfo;

/// A tool call the loop ran, as a front door may announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolNote {
    /// The MCP server (empty when the model named no known tool).
    pub server: String,
    /// The tool's name on its server.
    pub tool: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

type Running = Pin<Box<dyn Future<Output = (usize, ToolRun)> + Send>>;

/// A turn's answer on its way, over as many model steps as its tool loop
/// takes: see [`generate`].
pub struct Answering {
    /// The model call under way (none while tools run or once answered).
    call: Option<Call>,
    /// The loop, when the turn uses MCP servers.
    tools: Option<Loop>,
    model: ResolvedModel,
    conversation: Option<String>,
    counts: Counts,
    now: i64,
    keeps_replay: bool,
    /// The last step's answer, settled (tool loop only).
    finished: Option<Done>,
    /// MCP servers whose tools could not be listed, by name.
    unavailable: Vec<String>,
}

/// The loop's state between model steps.
struct Loop {
    toolbox: Arc<Toolbox>,
    /// The client's own tools: a call to one of them is the client's to run;
    /// any other call is the loop's (an unknown name gets an error result).
    client_tools: Vec<String>,
    max_steps: u32,
    /// Steps whose tool calls have run.
    steps: u32,
    /// This step is the last: tools are off.
    forced: bool,
    /// Block indices of this step are shifted by this much, so that every
    /// step's blocks are distinct in the one answer the client sees.
    offset: u32,
    /// One past the highest block index this step used.
    top: u32,
    /// Blocks of this step that are MCP calls (not the client's to see).
    hidden: Vec<u32>,
    /// This step's finish reason and usage, held until it is known whether
    /// the step is the last.
    held: Vec<Event>,
    ready: VecDeque<Step>,
    running: Option<Run>,
    /// The answer has begun (one `Start` goes out).
    started: bool,
    ended: bool,
    /// The turn's deadline, which tool calls share with model calls.
    deadline: Instant,
}

/// Tool calls of one step under way.
struct Run {
    done: Done,
    /// The step also called tools of the client's: the turn ends after these.
    client_calls: bool,
    pending: FuturesUnordered<Running>,
    runs: Vec<Option<ToolRun>>,
}

/// Calls the provider (see [`call`]); with MCP servers, runs the tool loop
/// over as many steps as the model takes.
pub async fn generate(prepared: Prepared, streamed: bool) -> Result<Answering, ApiError> {
    let toolbox = prepared.core.toolbox.clone();
    let client_tools: Vec<String> = prepared
        .core
        .request
        .tools
        .iter()
        .filter_map(|t| t.name())
        .filter(|n| !toolbox.as_ref().is_some_and(|b| b.owns(n)))
        .map(str::to_owned)
        .collect();
    let unavailable = toolbox.as_ref().map_or_else(Vec::new, |t| {
        t.unavailable().iter().map(|(s, _)| s.clone()).collect()
    });
    let deadline = prepared.core.deadline;
    let max_steps = prepared.core.state.config.mcp.max_tool_steps;
    let first = call(prepared, streamed).await?;
    Ok(Answering {
        model: first.model().clone(),
        conversation: first.conversation().map(str::to_owned),
        counts: first.request_counts().clone(),
        now: first.now(),
        keeps_replay: first.keeps_replay(),
        tools: toolbox.map(|toolbox| Loop {
            toolbox,
            client_tools,
            max_steps,
            steps: 0,
            forced: false,
            offset: 0,
            top: 0,
            hidden: Vec::new(),
            held: Vec::new(),
            ready: VecDeque::new(),
            running: None,
            started: false,
            ended: false,
            deadline,
        }),
        call: Some(first),
        finished: None,
        unavailable,
    })
}

impl Answering {
    /// The model that is answering (a fallback chain may have moved on).
    pub fn model(&self) -> &ResolvedModel {
        self.call.as_ref().map_or(&self.model, Call::model)
    }

    /// The conversation the turn belongs to.
    pub fn conversation(&self) -> Option<&str> {
        self.conversation.as_deref()
    }

    /// Replacements made on the request.
    pub fn request_counts(&self) -> &Counts {
        &self.counts
    }

    /// Request time, Unix seconds.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// MCP servers the turn named whose tools could not be listed (down,
    /// refusing its credential...): the model answered without them.
    pub fn unavailable_servers(&self) -> &[String] {
        &self.unavailable
    }

    /// Whether the turn holds an idempotency claim (so the front door keeps
    /// what it sends, for a replay).
    pub fn keeps_replay(&self) -> bool {
        self.keeps_replay
    }

    /// Runs the answer to its end, assembled (a whole answer: silences and
    /// tool runs are nobody's to see).
    pub async fn assemble(&mut self) -> Result<crate::model::Assembler, TurnError> {
        let mut sent = crate::model::Assembler::new(false);
        loop {
            match self.next().await? {
                Step::Event(e) => sent.push(&e),
                Step::Silence | Step::Tool(_) => {}
                Step::End => return Ok(sent),
            }
        }
    }

    /// The next step of the answer. An error ends it: by then the provider's
    /// work so far is accounted, nothing is stored, and the claim and any
    /// summary are given back.
    pub async fn next(&mut self) -> Result<Step, TurnError> {
        if self.tools.is_none() {
            return match self.call.as_mut() {
                Some(c) => c.next().await,
                None => Ok(Step::End),
            };
        }
        loop {
            let Some(lp) = self.tools.as_mut() else {
                return Ok(Step::End);
            };
            if let Some(s) = lp.ready.pop_front() {
                return Ok(s);
            }
            if lp.ended {
                return Ok(Step::End);
            }
            if let Some(run) = lp.running.as_mut() {
                match tokio::time::timeout(keep_alive::INTERVAL, run.pending.next()).await {
                    Err(_) => return Ok(Step::Silence),
                    Ok(Some((i, r))) => {
                        lp.ready.push_back(Step::Tool(note(&r)));
                        run.runs[i] = Some(r);
                    }
                    Ok(None) => self.tools_ran().await?,
                }
                continue;
            }
            let Some(c) = self.call.as_mut() else {
                return Ok(Step::End);
            };
            match c.next().await? {
                Step::Event(e) => lp.route(e),
                Step::End => self.step_ended().await?,
                other => return Ok(other),
            }
        }
    }

    /// A model step is complete: its MCP calls start running, or it was the last.
    async fn step_ended(&mut self) -> Result<(), TurnError> {
        let (Some(c), Some(lp)) = (self.call.take(), self.tools.as_mut()) else {
            return Ok(());
        };
        self.model = c.model().clone();
        let mut done = c.done().await?;
        let toolbox = lp.toolbox.clone();
        let calls: Vec<ToolCall> = done
            .response()
            .message
            .content
            .iter()
            .filter_map(|b| match b {
                Block::ToolCall(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let (client, mcp): (Vec<ToolCall>, Vec<ToolCall>) = calls
            .into_iter()
            .partition(|c| lp.client_tools.contains(&c.name));
        lp.offset += lp.top;
        lp.top = 0;
        lp.hidden.clear();
        let held = std::mem::take(&mut lp.held);
        if mcp.is_empty() || lp.forced {
            if !mcp.is_empty() {
                // Tools were off and the model called one anyway: no result
                // will answer it, so it is neither sent nor stored.
                let client_tools = lp.client_tools.clone();
                done.drop_calls(|name| !client_tools.contains(&name.to_owned()));
            }
            lp.last(&done, held);
            self.finished = Some(done);
            return Ok(());
        }
        lp.steps += 1;
        let deadline = lp.deadline;
        let pending: FuturesUnordered<Running> = mcp
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let toolbox = toolbox.clone();
                Box::pin(async move {
                    let started = Instant::now();
                    let run = tokio::time::timeout_at(deadline.into(), toolbox.call(&c)).await;
                    (
                        i,
                        run.unwrap_or_else(|_| past_deadline(&toolbox, &c, started)),
                    )
                }) as Running
            })
            .collect();
        // A beat at once: the client hears from the gateway before the tools do.
        lp.ready.push_back(Step::Silence);
        lp.running = Some(Run {
            done,
            client_calls: !client.is_empty(),
            runs: (0..pending.len()).map(|_| None).collect(),
            pending,
        });
        Ok(())
    }

    /// A step's tool calls have all run: the model is asked again with
    /// their results (with tools off past the bound), or, when the step also
    /// called the client's tools, the answer ends there with the results kept.
    async fn tools_ran(&mut self) -> Result<(), TurnError> {
        let Some(lp) = self.tools.as_mut() else {
            return Ok(());
        };
        let Some(run) = lp.running.take() else {
            return Ok(());
        };
        let mut done = run.done;
        let images = done.takes_tool_result_images();
        let runs: Vec<ToolRun> = run.runs.into_iter().flatten().collect();
        runs.iter()
            .for_each(|r| crate::metrics::tool_call(r.outcome.is_ok()));
        let infos: Vec<ToolInfo> = runs.iter().map(info).collect();
        done.count_tool_calls(&infos);
        let results: Vec<(Message, Option<ToolInfo>)> = runs
            .into_iter()
            .zip(infos)
            .map(|(r, i)| (result_message(r, images), Some(i)))
            .collect();
        if run.client_calls {
            done.keep_after(results)?;
            lp.last(&done, Vec::new());
            self.finished = Some(done);
            return Ok(());
        }
        let tools_off = lp.steps >= lp.max_steps;
        lp.forced = tools_off;
        let next = done.next_step(results, tools_off).await?;
        self.model = next.model().clone();
        self.call = Some(next);
        Ok(())
    }

    /// The answer is complete (after [`Step::End`]): settles its cost and
    /// redacts it for storage; see [`Done`].
    pub async fn done(mut self) -> Result<Done, TurnError> {
        if let Some(done) = self.finished.take() {
            return Ok(done);
        }
        match self.call.take() {
            Some(c) => c.done().await,
            None => Err(TurnError::Api(ApiError::internal())),
        }
    }
}

impl Loop {
    /// Passes one event of the current step on, shifted to its place in the
    /// whole answer, unless it belongs to an MCP call or ends the step.
    fn route(&mut self, event: Event) {
        let index = match &event {
            Event::Start { .. } => {
                if !std::mem::replace(&mut self.started, true) {
                    self.ready.push_back(Step::Event(event));
                }
                return;
            }
            Event::Finish { .. } | Event::Usage(_) => {
                self.held.push(event);
                return;
            }
            Event::BlockStart {
                index,
                block: BlockStart::ToolCall { name, .. },
            } if !self.client_tools.contains(name) => {
                self.hidden.push(*index);
                self.top = self.top.max(index + 1);
                return;
            }
            Event::BlockStart { index, .. }
            | Event::BlockDelta { index, .. }
            | Event::BlockStop { index } => *index,
        };
        self.top = self.top.max(index + 1);
        if self.hidden.contains(&index) {
            return;
        }
        let shifted = index + self.offset;
        let event = match event {
            Event::BlockStart { block, .. } => Event::BlockStart {
                index: shifted,
                block,
            },
            Event::BlockDelta { delta, .. } => Event::BlockDelta {
                index: shifted,
                delta,
            },
            Event::BlockStop { .. } => Event::BlockStop { index: shifted },
            e => e,
        };
        self.ready.push_back(Step::Event(event));
    }

    /// The last step: its finish reason (as settled), then the usage of
    /// every step of the turn.
    fn last(&mut self, done: &Done, held: Vec<Event>) {
        let stop_sequence = held.iter().find_map(|e| match e {
            Event::Finish { stop_sequence, .. } => stop_sequence.clone(),
            _ => None,
        });
        let reason = done.response().finish;
        let client_calls = done
            .response()
            .message
            .content
            .iter()
            .any(|b| matches!(b, Block::ToolCall(c) if self.client_tools.contains(&c.name)));
        let reason = match (reason, client_calls) {
            // The MCP calls are the gateway's: what is left is an answer.
            (FinishReason::ToolCalls, false) => FinishReason::Stop,
            (r, _) => r,
        };
        self.ready.push_back(Step::Event(Event::Finish {
            reason,
            stop_sequence,
        }));
        self.ready
            .push_back(Step::Event(Event::Usage(done.usage())));
        self.ended = true;
    }
}

/// A call cut off by the turn's deadline: an error result the model sees.
fn past_deadline(toolbox: &Toolbox, call: &ToolCall, started: Instant) -> ToolRun {
    let (server, tool) = toolbox
        .route(&call.name)
        .map_or((String::new(), call.name.clone()), |(s, t)| {
            (s.to_owned(), t.to_owned())
        });
    ToolRun {
        server,
        tool,
        outcome: Outcome::TimedOut,
        duration: started.elapsed(),
        result: ToolResult {
            call_id: call.id.clone(),
            content: vec![ToolResultPart::Text {
                text: "the tool did not answer before the request's deadline".to_owned(),
                cache: None,
            }],
            is_error: true,
            cache: None,
        },
    }
}

/// A tool run as announced.
fn note(r: &ToolRun) -> ToolNote {
    ToolNote {
        server: r.server.clone(),
        tool: r.tool.clone(),
        outcome: r.outcome,
        duration: r.duration,
    }
}

/// A tool run as stored with its result.
fn info(r: &ToolRun) -> ToolInfo {
    ToolInfo {
        server: r.server.clone(),
        tool: r.tool.clone(),
        duration_ms: u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
        outcome: serde_json::to_value(r.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// A tool's result as the model gets it: a tool message. Images become a
/// line of text for providers that take none in tool results.
fn result_message(run: ToolRun, images: bool) -> Message {
    let mut result = run.result;
    if !images {
        for part in &mut result.content {
            if let ToolResultPart::Image(i) = part {
                *part = ToolResultPart::Text {
                    text: image_line(i),
                    cache: None,
                };
            }
        }
    }
    Message {
        role: Role::Tool,
        content: vec![Block::ToolResult(result)],
        name: None,
    }
}

fn image_line(i: &Image) -> String {
    let what = match &i.source {
        MediaSource::Base64 { media_type, data } => {
            format!("{media_type}, about {} bytes", data.len() / 4 * 3)
        }
        MediaSource::Url { .. } => "a linked image".to_owned(),
        _ => "an image".to_owned(),
    };
    format!("[the tool returned an image ({what}) that this model cannot be shown]")
}
