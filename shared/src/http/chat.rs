//! `POST /v1/chat/completions`: authenticate, validate, load context, call
//! the provider, store the turn, answer in the OpenAI format.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{RequestLog, caller, chat_stream, read_json_body, with_log};
use crate::auth::{Principal, SCOPE_CHAT};
use crate::config::{Price, ProviderKind, Strategy};
use crate::meter::Meter;
use crate::processor::{self, Counts};
use crate::provider::{Completion, ResolvedModel};
use crate::redact::{Blocked, Place};
use crate::store::{IdempotencyDone, UsageRow};
use crate::wire::{ChatCompletion, ChatRequest, Choice, Usage};
use crate::{
    ApiError, AppState, context, idempotency, ids, limits, now_secs, summary, tokens, usage,
    validate,
};

/// Header naming a stored conversation (alternative to the body field).
pub const CONVERSATION_HEADER: &str = "x-conversation-id";
/// Header reporting how many values the response processor replaced.
pub const REDACTIONS_HEADER: &str = "x-ctxgate-redactions";
/// Header naming the model that answered (a fallback chain may move on).
pub const MODEL_HEADER: &str = "x-ctxgate-model";

/// The chat completions handler.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::default();
    let resp = match complete(&state, &headers, body, &mut log).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    with_log(resp, log)
}

/// The conversation id from the body or the header; both must agree.
fn conversation_id(body: Option<String>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let header = match headers.get(CONVERSATION_HEADER) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::invalid(CONVERSATION_HEADER, "invalid conversation id"))?;
            validate::conversation_id(v, CONVERSATION_HEADER)?;
            Some(v.to_owned())
        }
    };
    match (body, header) {
        (Some(b), Some(h)) if b != h => Err(ApiError::invalid(
            "conversation_id",
            "conversation_id and the x-conversation-id header name different conversations",
        )),
        (Some(b), _) => Ok(Some(b)),
        (None, h) => Ok(h),
    }
}

async fn complete(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let now = now_secs();
    let principal = caller(state, headers, SCOPE_CHAT, log).await?;
    let bytes = read_json_body(headers, body, state.config.max_body_bytes).await?;

    let Some(key) = idempotency::key_from(headers)? else {
        return turn(state, &principal, headers, &bytes, None, log).await;
    };
    // The conversation header changes what the request does, like its body.
    let fingerprint = idempotency::fingerprint(
        "/v1/chat/completions",
        headers,
        &[CONVERSATION_HEADER],
        &bytes,
    );
    // A claim outlives any attempt of its holder: the deadline bounds those.
    let lease = i64::try_from(state.config.deadline.as_secs()).unwrap_or(600) + 30;
    let claim = match idempotency::begin(
        &*state.store,
        &principal.tenant,
        key,
        &fingerprint,
        now,
        lease,
    )
    .await?
    {
        idempotency::Begin::Replay(stored) => {
            // A replay answers only for a model the caller may still use, from
            // a conversation life that still exists.
            model_chain(
                state,
                &principal,
                &validate::chat_request(&bytes, &state.config.limits)?,
            )?;
            idempotency::check_replay(&*state.store, &principal.tenant, &stored, now).await?;
            return Ok(idempotency::replay(stored));
        }
        idempotency::Begin::Run(claim) => claim,
    };
    let result = turn(state, &principal, headers, &bytes, Some(&claim), log).await;
    if result.is_err() {
        // Failures are not remembered: give the key back so a retry runs.
        let released = state
            .store
            .idempotency_release(&principal.tenant, &claim.key, &claim.token);
        if let Err(e) = released.await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    }
    result
}

/// The request's model chain, refused when the caller may not use its model
/// (or any model of its chain).
fn model_chain(
    state: &AppState,
    principal: &Principal,
    req: &ChatRequest,
) -> Result<Vec<ResolvedModel>, ApiError> {
    let chain = state.providers.route(&req.model).ok_or_else(|| {
        let mut e = ApiError::not_found(
            "model",
            format!("the model '{}' does not exist on this gateway", req.model),
        );
        e.code = "model_not_found";
        e
    })?;
    // A key limited to some models may use an alias it names, or a chain
    // whose every model it may use.
    for m in &chain {
        principal.require_model(&req.model, &m.id)?;
    }
    Ok(chain)
}

/// The token budget of a turn on `chain` (the smallest window of its models,
/// so that any fallback can take the same prompt).
fn window_settings(
    state: &AppState,
    chain: &[ResolvedModel],
    req: &ChatRequest,
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
            .max_completion_tokens
            .or(req.max_tokens)
            .map_or(c.default_output_reserve.min(window / 4), u64::from),
        safety_margin: (window as f64 * c.safety_margin_ratio) as u64,
        summarize: c.strategy == Strategy::Summarize,
        summarize_after_turns: c.summarize_after_turns,
    }
}

/// One chat turn, from the validated body to the response.
async fn turn(
    state: &Arc<AppState>,
    principal: &Principal,
    headers: &HeaderMap,
    bytes: &[u8],
    claim: Option<&idempotency::Claim>,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let now = now_secs();
    let deadline = Instant::now() + state.config.deadline;
    let mut req = validate::chat_request(bytes, &state.config.limits)?;
    let chain = model_chain(state, principal, &req)?;
    let worst_price = priced(state, &principal.tenant, &chain)?;
    let model = chain[0].clone();
    log.model = Some(model.id.clone());
    let conversation = conversation_id(req.conversation_id.take(), headers)?;

    let messages = std::mem::take(&mut req.messages);
    let settings = window_settings(state, &chain, &req);
    let mut prepared = context::prepare(
        &*state.store,
        &principal.tenant,
        conversation.as_deref(),
        messages,
        now,
        &settings,
        state.config.limits.conversation_cap(),
    )
    .await?;

    // The response processor, before anything is spent: what will be stored,
    // then what goes to the provider. A block refuses the request.
    let redactor = state.redactors.for_tenant(&principal.tenant);
    let mut counts = Counts::default();
    if let Some(turn) = prepared.turn.as_mut() {
        processor::apply(
            redactor,
            turn.new_messages_mut(),
            Place::Stored,
            &mut counts,
        )
        .map_err(blocked("messages"))?;
        if let Some(system) = turn.new_system_mut() {
            processor::apply(redactor, system, Place::Stored, &mut counts)
                .map_err(blocked("messages"))?;
        }
    }
    processor::apply(redactor, &mut prepared.prompt, Place::Upstream, &mut counts)
        .map_err(blocked("messages"))?;
    let prompt_estimate = tokens::estimate_messages(&prepared.prompt);
    let limits = &state.config.limits;
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

    // Reserve the worst case: the whole prompt plus the largest answer the
    // request allows, or, without a cap of its own, the largest its models
    // produce, cut to what the budget has left (and that cut sent upstream).
    let most = chain
        .iter()
        .map(|m| state.config.max_output(&m.id))
        .max()
        .unwrap_or(state.config.limits.max_output_tokens);
    let output = match req.max_completion_tokens.or(req.max_tokens) {
        Some(n) => limits::Output::Capped(n),
        None => limits::Output::UpTo(most),
    };
    let budget = limits::Budget::new(
        &state.config.quotas(&principal.tenant),
        state.config.limits.budget_tolerance,
    );
    let prompt_reserved = limits::prompt_reserve(prompt_estimate);
    let (reservation, reserved) = limits::reserve_call(
        &state.store,
        &principal.tenant,
        budget,
        worst_price.as_ref(),
        prompt_reserved,
        output,
        now,
    )
    .await?;
    if output == limits::Output::UpTo(most) && reserved < most {
        if state.providers.kind(&model) == ProviderKind::Openai {
            req.max_completion_tokens = Some(reserved);
        } else {
            req.max_tokens = Some(reserved);
        }
    }
    let mut meter = Meter::new(
        state.store.clone(),
        state.config.clone(),
        &principal.tenant,
        &model.id,
        now,
        Usage::new(prompt_reserved, u64::from(reserved)),
        reservation,
    );

    // A summary of dropped turns is written beside the provider call.
    let pending_summary = match (&prepared.summary_job, &prepared.turn) {
        (Some(job), Some(turn)) => Some(summary::Pending::start(
            state.clone(),
            principal.tenant.clone(),
            turn.id.clone(),
            job.clone(),
        )),
        _ => None,
    };
    if req.stream == Some(true) {
        let call = chat_stream::StreamCall {
            tenant: principal.tenant.clone(),
            chain,
            model,
            request: req,
            prompt: prepared.prompt,
            turn: prepared.turn,
            conversation,
            meter,
            prompt_estimate,
            counts,
            now,
            deadline,
            claim: claim.cloned(),
            summary: pending_summary,
        };
        return chat_stream::respond(state.clone(), call).await;
    }
    let started = Instant::now();
    // From here on the provider may be working: a client that goes away is
    // still charged (the meter's drop), whatever it had cost.
    meter.sent();
    let result = state
        .providers
        .complete_routed(&chain, &prepared.prompt, &req, deadline)
        .await;
    let elapsed = started.elapsed();
    let (mut completion, model) = match result {
        Ok(routed) => (routed.value, routed.model),
        Err(e) => {
            meter.failed(&e).await;
            if let Some(p) = pending_summary {
                p.cancel();
            }
            return Err(e.into());
        }
    };
    let (spent, estimated) =
        usage::or_estimate(completion.usage, prompt_estimate, &completion.message);
    completion.usage = spent;
    log.usage = Some(completion.usage);
    log.model = Some(model.id.clone());
    let row = meter
        .answered(&model.id, &completion.usage, estimated)
        .await;
    let mut answer = completion.message.clone();
    // A blocked answer was paid for all the same: metered, then refused.
    if let Err(b) = processor::apply(
        redactor,
        std::slice::from_mut(&mut answer),
        Place::Response,
        &mut counts,
    ) {
        meter.record().await;
        return Err(blocked("choices[0].message")(b));
    }

    let completion_id = ids::completion_id();
    let mut stored = None;
    if let Some(turn) = prepared.turn.as_ref() {
        let mut s = completion.clone();
        if let Err(b) = processor::apply(
            redactor,
            std::slice::from_mut(&mut s.message),
            Place::Stored,
            &mut counts,
        ) {
            meter.record().await;
            return Err(blocked("choices[0].message")(b));
        }
        stored = Some((turn.id.clone(), s));
    }

    let body = ChatCompletion {
        id: completion_id,
        object: "chat.completion".into(),
        created: now,
        model: model.id.clone(),
        choices: vec![Choice {
            index: 0,
            message: answer,
            finish_reason: completion.finish_reason,
            logprobs: None,
        }],
        usage: completion.usage,
        conversation_id: conversation.clone(),
        redactions: (!counts.is_empty()).then(|| counts.0.clone()),
    };
    let json = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
    let mut resp = (StatusCode::OK, json.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = conversation.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(CONVERSATION_HEADER, id);
    }
    if let Ok(v) = HeaderValue::from_str(&model.id) {
        h.insert(MODEL_HEADER, v);
    }
    if !counts.is_empty()
        && let Ok(v) = HeaderValue::from_str(&counts.header())
    {
        h.insert(REDACTIONS_HEADER, v);
    }
    let done = claim.map(|c| IdempotencyDone {
        key: c.key.clone(),
        token: c.token.clone(),
        response: idempotency::keep(
            StatusCode::OK,
            resp.headers(),
            &json,
            &[CONVERSATION_HEADER, REDACTIONS_HEADER, MODEL_HEADER],
        ),
        expires_at: now + idempotency::KEEP_SECS,
    });

    match (prepared.turn, stored) {
        (Some(turn), Some((_, stored))) => {
            let finished = Finished {
                tenant: principal.tenant.clone(),
                turn,
                stored,
                model: model.clone(),
                latency: elapsed,
                redactions: counts.0.clone(),
                row,
                idempotency: done,
                now,
                meter,
                summary: pending_summary,
            };
            store_turn(state, finished).await?;
        }
        _ => {
            meter.record().await;
            if let Some(done) = done
                && let Err(e) = state
                    .store
                    .idempotency_complete(&principal.tenant, &done)
                    .await
            {
                tracing::warn!(error = %e, "could not store an idempotent response");
            }
        }
    }
    Ok(resp)
}

/// A model without a price is not free: for a tenant with a cost budget,
/// every model the turn may use must be priced (see `PriceTable::get`).
/// Returns the highest input and output prices among them, the worst case a
/// reservation covers; `None` when the tenant has no cost budget.
fn priced(
    state: &AppState,
    tenant: &str,
    chain: &[ResolvedModel],
) -> Result<Option<Price>, ApiError> {
    if state.config.quotas(tenant).cost_per_day_usd.is_none() {
        return Ok(None);
    }
    let mut worst = Price {
        input: 0.0,
        output: 0.0,
        cached_input: None,
    };
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
        worst.input = worst.input.max(p.input);
        worst.output = worst.output.max(p.output);
    }
    Ok(Some(worst))
}

/// A turn whose answer is in, ready to store (streamed or not).
pub(super) struct Finished {
    /// The caller's tenant.
    pub tenant: String,
    /// The conversation turn being completed.
    pub turn: context::Turn,
    /// The answer as stored (redacted per the stored policy).
    pub stored: Completion,
    /// The model that answered.
    pub model: ResolvedModel,
    /// Provider call time.
    pub latency: Duration,
    /// Redaction counts of the turn.
    pub redactions: BTreeMap<String, BTreeMap<String, u32>>,
    /// The answer's usage row, settled.
    pub row: UsageRow,
    /// The idempotency claim the turn completes.
    pub idempotency: Option<IdempotencyDone>,
    /// Request time, Unix seconds.
    pub now: i64,
    /// The answer's metering.
    pub meter: Meter,
    /// A summary being written beside the call.
    pub summary: Option<summary::Pending>,
}

/// Stores a finished turn with its usage rows (and summary), in a task of
/// its own that runs to the end even if the client goes away meanwhile: a
/// commit cut half-way would leave its usage neither surely stored nor surely
/// not, so it would be counted twice or never. A commit that fails records
/// the usage on its own (the provider was paid) and returns the error.
pub(super) async fn store_turn(state: &Arc<AppState>, f: Finished) -> Result<(), ApiError> {
    let state = state.clone();
    let task = tokio::spawn(async move {
        let Finished {
            tenant,
            turn,
            stored,
            model,
            latency,
            redactions,
            row,
            idempotency,
            now,
            mut meter,
            summary,
        } = f;
        let written = match summary {
            Some(p) => p.finish(summary::wait_budget(latency)).await,
            None => None,
        };
        let mut rows = vec![row];
        rows.extend(written.as_ref().map(|w| w.usage.clone()));
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
        };
        let answer = context::Answer {
            completion: &stored,
            model: &model.id,
            provider: &model.provider,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            redactions,
        };
        let committed = context::commit(&*state.store, &tenant, turn, &answer, &extras, now).await;
        if committed.is_err() {
            // The provider was paid even though the turn is not stored.
            record_usage(&state, &tenant, &extras.usage).await;
        }
        meter.recorded();
        if let Some(m) = summary_meter.as_mut() {
            m.recorded();
        }
        committed.map_err(ApiError::from)
    });
    task.await.unwrap_or_else(|_| Err(ApiError::internal()))
}

/// Accounts usage outside a turn's transaction (stateless turns, failed commits).
pub(super) async fn record_usage(state: &AppState, tenant: &str, rows: &[UsageRow]) {
    for row in rows {
        if let Err(e) = state.store.add_usage(tenant, row).await {
            tracing::error!(error = %e, "usage accounting failed");
        }
    }
}

/// A redaction block as a 400 naming the category.
fn blocked(param: &'static str) -> impl Fn(Blocked) -> ApiError {
    move |b| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "content_blocked",
            format!(
                "blocked by the redaction policy: the content contains {}",
                b.category.as_str()
            ),
        )
        .with_param(param)
    }
}
