//! One chat turn, whatever front door it came through, streamed or not:
//!
//! - [`prepare`]: the decoded request checked against the caller's models and
//!   the price table, the stored context window loaded, the redaction policy
//!   applied, the size limits checked and the budget reserved. A [`Guard`]
//!   holds the reservation, the idempotency claim and any summary being
//!   written from then on: dropped (client gone, error), it gives them back.
//! - [`generate`]: the provider called (retries and fallbacks before the
//!   first event) as a stream of model events; a non-streamed answer is the
//!   same events, assembled. The answer's text goes through the response
//!   policy on the way out.
//! - [`finish`]: the budget settled, the answer redacted for storage, the
//!   turn committed with its usage (and summary, and idempotency record) in
//!   one write, on a task of its own.
//!
//! A front door only decodes its wire format into [`Input`] and encodes the
//! events and errors back; nothing here knows a wire format.

mod count;
mod finish;
mod generate;
mod guard;
mod prepare;
mod tool_loop;

pub use count::{TokenCount, count_input, count_tokens};
pub use finish::{Committed, Done};
pub use generate::Step;
pub use guard::Guard;
pub use prepare::{Continuation, Input, Prepared, model_chain, prepare};
pub use tool_loop::{Answering, ToolNote, generate};

use crate::ApiError;
use crate::redact::{Blocked, Place};

/// Why a turn failed once it was under way. By then the pipeline has settled
/// what it must (budget, usage, claim, summary); the front door renders it.
#[derive(Debug)]
pub enum TurnError {
    /// A failure with its status and code (provider, store, limits...).
    Api(ApiError),
    /// The redaction policy blocked the answer, as sent (`Response`) or as
    /// stored (`Stored`): the front door names its own field.
    Blocked {
        /// What was found.
        blocked: Blocked,
        /// Which policy blocked it.
        place: Place,
    },
}

impl TurnError {
    /// The error as a front door renders it; `sent` and `stored` name the
    /// fields of its own format that hold the answer as sent and as stored.
    pub fn into_api(self, sent: &str, stored: &str) -> ApiError {
        match self {
            TurnError::Api(e) => e,
            TurnError::Blocked { blocked, place } => match place {
                Place::Stored => ApiError::blocked(&blocked, stored),
                _ => ApiError::blocked(&blocked, sent),
            },
        }
    }
}

impl From<ApiError> for TurnError {
    fn from(e: ApiError) -> Self {
        TurnError::Api(e)
    }
}
