//! The first stage of a turn: everything that must hold before a provider
//! is paid.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;

use super::Guard;
use crate::auth::Principal;
use crate::config::{Price, Strategy};
use crate::mcp::{ResolveError, Toolbox};
use crate::meter::Meter;
use sha2::{Digest, Sha256};

use crate::context::ResponseDraft;
use crate::model::{CacheTtl, Message, Request, StablePrefix, Usage};
use crate::processor::{self, Counts};
use crate::provider::ResolvedModel;
use crate::redact::{Blocked, Place};
use crate::{ApiError, AppState, context, idempotency, limits, summary, tokens};

/// What a front door hands the pipeline.
pub struct Input {
    /// The model or alias the client asked for.
    pub model: String,
    /// The request: this turn's messages (with a conversation) or the whole
    /// prompt (without), and the generation parameters.
    pub request: Request,
    /// The stored conversation to continue, if any.
    pub conversation: Option<String>,
    /// The idempotency claim the request holds, if it sent a key.
    pub claim: Option<idempotency::Claim>,
    /// The MCP servers whose tools the model may use (the request's
    /// `mcp_servers`); `None`: the key's default.
    pub mcp_servers: Option<Vec<String>>,
    /// What a stateful front door (the Responses API) adds.
    pub continuation: Continuation,
}

/// What the Responses API adds to a turn: state by response id, turn-only
/// instructions, turns that store nothing, and the record a turn becomes.
#[derive(Debug, Clone, Default)]
pub struct Continuation {
    /// Continue from this stored response (in its conversation, or in a
    /// fork when it is not the latest turn there).
    pub previous_response: Option<String>,
    /// Instructions for this turn only: sent first, never stored.
    pub instructions: Vec<Message>,
    /// Read the history but store nothing of the turn, usage aside.
    pub read_only: bool,
    /// Refuse the turn rather than leave history out of the window.
    pub strict_window: bool,
    /// The response a stored turn becomes.
    pub response: Option<ResponseDraft>,
}

/// A turn ready to call its provider.
pub struct Prepared {
    pub(super) core: Core,
    pub(super) guard: Guard,
}

impl Prepared {
    /// The model answering: the chain's first until a fallback answers.
    pub fn model(&self) -> &ResolvedModel {
        &self.core.model
    }

    /// Replacements made on the request (stored and upstream policies).
    pub fn counts(&self) -> &Counts {
        &self.core.counts
    }

    /// The gateway's estimate of the prompt's tokens (history, instructions
    /// and tools included), for a stream that must report input usage
    /// before the provider does.
    pub fn prompt_estimate(&self) -> u64 {
        self.core.prompt_estimate
    }
}

/// Everything a prepared turn established.
pub(super) struct Core {
    pub(super) state: Arc<AppState>,
    pub(super) tenant: String,
    pub(super) chain: Vec<ResolvedModel>,
    /// The model answering: the chain's first until a fallback answers.
    pub(super) model: ResolvedModel,
    /// The whole request as it goes upstream (redacted per the upstream policy).
    pub(super) request: Request,
    pub(super) turn: Option<context::Turn>,
    /// The conversation the turn belongs to (a fork's own id).
    pub(super) conversation: Option<String>,
    /// The response a stored turn becomes.
    pub(super) response: Option<ResponseDraft>,
    /// Replacements made on the request (stored and upstream policies).
    pub(super) counts: Counts,
    pub(super) prompt_estimate: u64,
    /// Request time, Unix seconds.
    pub(super) now: i64,
    pub(super) deadline: Instant,
    /// The highest prices among the chain's models (tenants with a cost budget).
    pub(super) worst_price: Option<Price>,
    /// The output cap the client set, if any.
    pub(super) client_cap: Option<u32>,
    /// Model steps of this turn before the current one (a tool loop's).
    pub(super) steps: Vec<super::finish::StepDone>,
    /// Whether the front door streams the answer.
    pub(super) streamed: bool,
    /// The MCP tools the model may use, when the turn names servers.
    pub(super) toolbox: Option<Arc<Toolbox>>,
    /// Tool calls so far per MCP server.
    pub(super) tool_calls: super::finish::ToolTally,
}

/// The chain of models `model` names, refused when the caller may not use
/// its model (or any model of its chain).
pub fn model_chain(
    state: &AppState,
    principal: &Principal,
    model: &str,
) -> Result<Vec<ResolvedModel>, ApiError> {
    let chain = state.providers.route(model).ok_or_else(|| {
        let mut e = ApiError::not_found(
            "model",
            format!("the model '{model}' does not exist on this gateway"),
        );
        e.code = "model_not_found";
        e
    })?;
    // A key limited to some models may use an alias it names, or a chain
    // whose every model it may use.
    for m in &chain {
        principal.require_model(model, &m.id)?;
    }
    Ok(chain)
}

/// The token budget of a turn on `chain` (the smallest window of its models,
/// so that any fallback can take the same prompt); the window is kept stable
/// when the first model's prompt cache is in use.
pub(super) fn window_settings(
    state: &AppState,
    chain: &[ResolvedModel],
    req: &Request,
    caching: bool,
) -> context::WindowSettings {
    let c = &state.config.context;
    let window = chain
        .iter()
        .map(|m| state.config.context_window(&m.id))
        .min()
        .unwrap_or(c.default_window);
    context::WindowSettings {
        context_window: window,
        output_reserve: req
            .max_output_tokens
            .map_or(c.default_output_reserve.min(window / 4), u64::from),
        safety_margin: (window as f64 * c.safety_margin_ratio) as u64,
        summarize: c.strategy == Strategy::Summarize,
        summarize_after_turns: c.summarize_after_turns,
        stable_slack: caching.then_some(state.config.prompt_cache.window_slack_ratio),
    }
}

/// The stable prefix of a conversation's prompt, as providers' caches are
/// told of it: `prefix` is its (instructions, history) message counts. The
/// key hashes tenant and conversation, so neither id reaches the provider.
fn stable_prefix(
    tenant: &str,
    conversation: &str,
    prefix: (usize, usize),
    ttl: Option<CacheTtl>,
) -> StablePrefix {
    let digest = Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0])
        .chain_update(conversation.as_bytes())
        .finalize();
    StablePrefix {
        instructions: prefix.0,
        history: prefix.1,
        key: format!("ctxgate-{}", hex::encode(&digest[..16])),
        ttl,
    }
}

/// A model without a price is not free: for a tenant with a cost budget,
/// every model the turn may use must be priced (see `PriceTable::get`).
/// Returns the highest input and output prices among them, the worst case a
/// reservation covers (an input token may be written to the prompt cache at
/// up to 2x the input price, so the input price is the highest of the input
/// and cache-write prices); `None` when the tenant has no cost budget.
fn priced(
    state: &AppState,
    tenant: &str,
    chain: &[ResolvedModel],
) -> Result<Option<Price>, ApiError> {
    if state.config.quotas(tenant).cost_per_day_usd.is_none() {
        return Ok(None);
    }
    let mut worst = Price::new(0.0, 0.0);
    for m in chain {
        let Some(p) = state.config.prices.get(&m.id) else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_not_priced",
                format!(
                    "the model '{}' has no price in the gateway's price table, and this tenant has a cost budget",
                    m.id
                ),
            )
            .with_param("model"));
        };
        worst.input = worst.input.max(p.highest_input());
        worst.output = worst.output.max(p.output);
    }
    Ok(Some(worst))
}

/// Most tools one request may hand the model (OpenAI's limit per request).
const MAX_TOOLS: usize = 128;

/// The MCP servers' tools for a turn that names servers (or whose key does),
/// added to the request's tools after the client's own. A server that cannot
/// be listed is left out (the toolbox logs why; the front door tells the client).
async fn open_toolbox(
    state: &AppState,
    principal: &Principal,
    asked: Option<Vec<String>>,
    request: &mut Request,
) -> Result<Option<Arc<Toolbox>>, ApiError> {
    let from_key = asked.is_none();
    let names = asked.unwrap_or_else(|| principal.mcp_servers.clone());
    if names.is_empty() {
        return Ok(None);
    }
    let servers = state
        .mcp
        .resolve(&principal.tenant, &names)
        .await
        .map_err(|e| match e {
            // The key's default names a server since removed: the client
            // sent no `mcp_servers`, so say where the name came from.
            ResolveError::Unknown { name, .. } if from_key => ApiError::invalid(
                "mcp_servers",
                format!(
                    "this API key's default MCP server '{name}' is no longer registered; \
                     name the servers in mcp_servers, or change the key"
                ),
            ),
            ResolveError::Unknown { index, name } => ApiError::invalid(
                format!("mcp_servers[{index}]"),
                format!("no MCP server named '{name}' is registered for this tenant"),
            ),
            ResolveError::Duplicate { index } => ApiError::invalid(
                format!("mcp_servers[{index}]"),
                "this MCP server is named twice",
            ),
            ResolveError::TooMany { limit } => ApiError::invalid(
                "mcp_servers",
                format!("at most {limit} MCP servers may be named"),
            ),
            ResolveError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "mcp_registry_unavailable",
                "the MCP server registry could not be read; retry shortly",
            ),
        })?;
    let toolbox = state.mcp.toolbox(&principal.tenant, servers).await;
    for (i, t) in request.tools.iter().enumerate() {
        if let Some(name) = t.name()
            && toolbox.owns(name)
        {
            return Err(ApiError::invalid(
                format!("tools[{i}].function.name"),
                format!("'{name}' is the name of a tool of an MCP server this request uses"),
            ));
        }
    }
    let total = request.tools.len() + toolbox.tools().len();
    if total > MAX_TOOLS {
        return Err(ApiError::invalid(
            "mcp_servers",
            format!(
                "the request's tools and its MCP servers' tools number {total}; models take at \
                 most {MAX_TOOLS} (narrow a server's allowed_tools, or name fewer servers)"
            ),
        ));
    }
    request.tools.extend(toolbox.tools().iter().cloned());
    Ok(Some(Arc::new(toolbox)))
}

/// The stored response a turn continues from, and the id a fork of it would
/// take; a 404 for one that does not exist (or is another tenant's: keys
/// begin with the tenant), a 400 when `conversation` names another.
pub(super) async fn previous_response(
    state: &AppState,
    tenant: &str,
    id: &str,
    conversation: Option<&str>,
    now: i64,
) -> Result<(crate::store::ResponseRecord, String), ApiError> {
    let record = state
        .store
        .get_response(tenant, id, now)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "previous_response_id",
                format!("no response '{id}' is stored"),
            )
        })?;
    if let Some(c) = conversation.filter(|c| *c != record.conversation) {
        return Err(ApiError::invalid(
            "conversation",
            format!(
                "response '{id}' belongs to another conversation than '{c}'; send one of \
                 previous_response_id and conversation"
            ),
        ));
    }
    Ok((record, crate::ids::conversation_id()))
}

/// A redaction block on the request, as a 400 on its messages.
fn blocked(b: Blocked) -> ApiError {
    ApiError::blocked(&b, "messages")
}

/// Checks and reserves everything a turn needs before its provider call;
/// see the module docs of [`crate::turn`]. On a refusal the idempotency
/// claim is given back before the error returns, so a retry runs.
///
/// `rate` is the request's count against its rate limit when the caller
/// left it to the turn: made with the reservation (one conditional write),
/// or, when the turn fails before it, on its own (a request over the limit
/// is then refused as such).
pub async fn prepare(
    state: &Arc<AppState>,
    principal: &Principal,
    mut input: Input,
    rate: Option<limits::RateCount>,
) -> Result<Prepared, ApiError> {
    let mut guard = Guard::new(state.clone(), &principal.tenant, input.claim.take());
    guard.rate = rate;
    match build(state, principal, input, &mut guard).await {
        Ok(core) => Ok(Prepared { core, guard }),
        Err(e) => {
            guard.release().await;
            if let Some(rate) = guard.rate.take() {
                rate.count(&*state.store).await?;
            }
            Err(e)
        }
    }
}

async fn build(
    state: &Arc<AppState>,
    principal: &Principal,
    input: Input,
    guard: &mut Guard,
) -> Result<Core, ApiError> {
    let now = crate::now_secs();
    let deadline = Instant::now() + state.config.deadline;
    let Input {
        model,
        mut request,
        conversation,
        claim: _,
        mcp_servers,
        continuation,
    } = input;
    let tenant = &principal.tenant;
    let from = match &continuation.previous_response {
        Some(rid) => {
            Some(previous_response(state, tenant, rid, conversation.as_deref(), now).await?)
        }
        None => None,
    };
    let chain = model_chain(state, principal, &model)?;
    let worst_price = priced(state, tenant, &chain)?;
    let model = chain[0].clone();
    let toolbox = open_toolbox(state, principal, mcp_servers, &mut request).await?;

    let messages = std::mem::take(&mut request.messages);
    let cache = state.config.tenant_cache(tenant);
    let caching = cache.enabled && state.config.model_cache(&model.id).is_some();
    // Whether any model of the chain may use the stable prefix (a fallback too).
    let any_caches = cache.enabled
        && chain
            .iter()
            .any(|m| state.config.model_cache(&m.id).is_some());
    let settings = window_settings(state, &chain, &request, caching);
    let read = from
        .as_ref()
        .map_or(conversation, |(r, _)| Some(r.conversation.clone()));
    let scope = context::Scope {
        conversation: read.clone(),
        from,
        instructions: continuation.instructions,
        read_only: continuation.read_only,
        strict: continuation.strict_window,
    };
    let mut prepared = context::prepare_in(
        &*state.store,
        tenant,
        messages,
        now,
        &settings,
        state.config.limits.conversation_cap(),
        scope,
    )
    .await?;
    // The conversation the turn is stored in: a fork's own, or none.
    let conversation = prepared.turn.as_ref().map(|t| t.id.clone());

    // The redaction policy, before anything is spent: what will be stored,
    // then what goes to the provider. A block refuses the request.
    let redactor = state.redactors.for_tenant(tenant);
    let mut counts = Counts::default();
    if let Some(turn) = prepared.turn.as_mut() {
        processor::apply(
            redactor,
            turn.new_messages_mut(),
            Place::Stored,
            &mut counts,
        )
        .map_err(blocked)?;
        if let Some(system) = turn.new_system_mut() {
            processor::apply(redactor, system, Place::Stored, &mut counts).map_err(blocked)?;
        }
    }
    processor::apply(redactor, &mut prepared.prompt, Place::Upstream, &mut counts)
        .map_err(blocked)?;
    request.messages = prepared.prompt;
    request.stable = match (prepared.stable, &read) {
        (Some(prefix), Some(id)) if any_caches => {
            Some(stable_prefix(tenant, id, prefix, cache.ttl))
        }
        _ => None,
    };
    let client_cap = request.max_output_tokens;
    let mut core = Core {
        state: state.clone(),
        tenant: tenant.clone(),
        chain,
        model,
        request,
        turn: prepared.turn,
        conversation,
        response: continuation.response,
        counts,
        prompt_estimate: 0,
        now,
        deadline,
        worst_price,
        client_cap,
        steps: Vec::new(),
        streamed: false,
        toolbox,
        tool_calls: super::finish::ToolTally::new(state.usage.clone(), tenant, now),
    };
    reserve(&mut core, guard).await?;

    // A summary of dropped turns is written beside the provider call.
    if let (Some(job), Some(turn)) = (&prepared.summary_job, &core.turn) {
        guard.hold_summary(summary::Pending::start(
            state.clone(),
            tenant.clone(),
            turn.id.clone(),
            job.clone(),
        ));
    }
    Ok(core)
}

/// Checks the prompt against the size limit and reserves one model call's
/// worst case: the whole prompt plus the largest answer the request allows,
/// or, without a cap of its own, the largest its models produce, cut to what
/// the budget has left (and that cut sent upstream). The meter joins the guard.
pub(super) async fn reserve(core: &mut Core, guard: &mut Guard) -> Result<(), ApiError> {
    let state = &core.state;
    let limits = &state.config.limits;
    let prompt_estimate =
        tokens::estimate_all(&core.request.messages) + tokens::estimate_tools(&core.request.tools);
    if prompt_estimate > limits.max_prompt_tokens {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "prompt_too_large",
            format!(
                "the prompt (stored history included) is about {prompt_estimate} tokens; the limit is {}",
                limits.max_prompt_tokens
            ),
        )
        .with_param("messages"));
    }
    let most = core
        .chain
        .iter()
        .map(|m| state.providers.max_output(m))
        .max()
        .unwrap_or(limits.max_output_tokens);
    let output = match core.client_cap {
        Some(n) => limits::Output::Capped(n),
        None => limits::Output::UpTo(most),
    };
    let budget = limits::Budget::new(&state.config.quotas(&core.tenant), limits.budget_tolerance);
    let prompt_reserved = limits::prompt_reserve(prompt_estimate);
    // The turn's first call counts the request against its rate limit in
    // the same write as the reservation; later steps only reserve.
    let rate = guard.rate.take();
    let ask = limits::Ask {
        tenant: &core.tenant,
        budget,
        price: core.worst_price.as_ref(),
        prompt: prompt_reserved,
        output,
        rate: rate.as_ref(),
        now: core.now,
    };
    let (reservation, reserved) = limits::reserve_call(&state.store, ask).await?;
    core.request.max_output_tokens = match output {
        limits::Output::UpTo(most) if reserved < most => Some(reserved),
        _ => core.client_cap,
    };
    guard.meter = Some(Meter::new(
        state.usage.clone(),
        state.config.clone(),
        &core.tenant,
        &core.model.id,
        core.now,
        Usage::new(prompt_reserved, u64::from(reserved)),
        reservation,
    ));
    core.prompt_estimate = prompt_estimate;
    Ok(())
}
