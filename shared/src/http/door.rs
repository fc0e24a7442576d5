//! A turn's way through a front door, whatever its wire format ([`Door`]):
//! authenticate, read the body, take or replay the idempotency claim, decode
//! into the model, prepare and generate the turn, then answer whole or
//! streamed ([`super::answer`]). Errors are rendered in the door's envelope.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::HeaderMap;

use super::answer::{self, Wire};
use super::{RequestLog, identified, read_json_body, with_log};
use crate::auth::{Principal, SCOPE_CHAT};
use crate::limits::RateCount;
use crate::store::StoredResponse;
use crate::turn::{self, Answering, Input};
use crate::{ApiError, AppState, idempotency};

/// A request decoded by a door.
pub struct Decoded<O> {
    /// The turn's input.
    pub input: Input,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The door's own options for its answer (OpenAI's `include_usage`...).
    pub options: O,
}

/// A front door: its path, its request codec and its answer codec.
pub trait Door {
    /// What the door's decoder hands its answer writer.
    type Options: Send;
    /// Its answer codec.
    type Wire: Wire;
    /// The route, part of the idempotency fingerprint.
    const PATH: &'static str;
    /// Headers that change what a request does, besides its body (fingerprinted).
    const MEANINGFUL_HEADERS: &'static [&'static str];

    /// The request body, validated and decoded.
    fn decode(
        state: &AppState,
        headers: &HeaderMap,
        bytes: &[u8],
    ) -> Result<Decoded<Self::Options>, ApiError>;
    /// The model a request body names (validated as `decode` does), for
    /// the check that a replay is still the caller's to see.
    fn model_of(state: &AppState, bytes: &[u8]) -> Result<String, ApiError>;
    /// The answer writer for a turn under way.
    fn wire(options: Self::Options, answering: &Answering, prompt_estimate: u64) -> Self::Wire;
}

/// Serves one request through door `D`.
pub async fn serve<D: Door>(state: &Arc<AppState>, headers: &HeaderMap, body: Body) -> Response {
    let mut log = RequestLog::default();
    let resp = match run::<D>(state, headers, body, &mut log).await {
        Ok(resp) => resp,
        Err(e) => e.render(D::Wire::DIALECT),
    };
    with_log(resp, log)
}

async fn run<D: Door>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let now = crate::now_secs();
    let principal = identified(state, headers, None, now, log).await?;
    // Counted with the turn's reservation, in the same write; a request
    // that never gets there is counted on its own (and refused if over).
    let rate = RateCount::of(&principal, &state.config, now);
    let admitted = admit::<D>(state, headers, body, &principal, now).await;
    if let (false, Some(rate)) = (matches!(admitted, Ok(Admitted::Turn(_))), &rate) {
        rate.count(&*state.store).await?;
    }
    let decoded = match admitted? {
        Admitted::Turn(decoded) => *decoded,
        Admitted::Replay(resp) => return Ok(resp),
    };
    let Decoded {
        input,
        stream,
        options,
    } = decoded;
    let prepared = turn::prepare(state, &principal, input, rate).await?;
    log.model = Some(prepared.model().id.clone());
    let estimate = prepared.prompt_estimate();
    let answering = turn::generate(prepared, stream).await?;
    log.model = Some(answering.model().id.clone());
    let wire = D::wire(options, &answering, estimate);
    if stream {
        return Ok(answer::streamed(wire, answering));
    }
    answer::whole(wire, answering, log).await
}

/// What a request is before its turn: a turn to run, or a replay.
enum Admitted<O> {
    /// Decoded, holding its idempotency claim if it sent a key.
    Turn(Box<Decoded<O>>),
    /// An answer stored under its idempotency key.
    Replay(Response),
}

/// The scope, the body, the idempotency claim (or replay) and the decode.
async fn admit<D: Door>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    principal: &Principal,
    now: i64,
) -> Result<Admitted<D::Options>, ApiError> {
    principal.require(SCOPE_CHAT)?;
    let bytes = read_json_body(headers, body, state.config.max_body_bytes).await?;

    let claim = match idempotency::key_from(headers)? {
        None => None,
        Some(key) => {
            let fingerprint =
                idempotency::fingerprint(D::PATH, headers, D::MEANINGFUL_HEADERS, &bytes);
            // A claim outlives any attempt of its holder: the deadline bounds those.
            let lease = i64::try_from(state.config.deadline.as_secs()).unwrap_or(600) + 30;
            let begun = idempotency::begin(
                &*state.store,
                &principal.tenant,
                key,
                &fingerprint,
                now,
                lease,
            )
            .await?;
            match begun {
                idempotency::Begin::Replay(stored) => {
                    return replay::<D>(state, principal, &bytes, stored, now)
                        .await
                        .map(Admitted::Replay);
                }
                idempotency::Begin::Run(claim) => Some(claim),
            }
        }
    };
    match D::decode(state, headers, &bytes) {
        Ok(mut decoded) => {
            decoded.input.claim = claim;
            Ok(Admitted::Turn(Box::new(decoded)))
        }
        Err(e) => {
            if let Some(c) = &claim {
                idempotency::release(&*state.store, &principal.tenant, c).await;
            }
            Err(e)
        }
    }
}

/// A replay answers only for a model the caller may still use, from a
/// conversation life that still exists.
async fn replay<D: Door>(
    state: &AppState,
    principal: &Principal,
    bytes: &[u8],
    stored: StoredResponse,
    now: i64,
) -> Result<Response, ApiError> {
    let model = D::model_of(state, bytes)?;
    turn::model_chain(state, principal, &model)?;
    idempotency::check_replay(&*state.store, &principal.tenant, &stored, now).await?;
    Ok(idempotency::replay(stored))
}
