//! Metering of one provider call: its budget reservation and its usage row,
//! settled exactly once.
//!
//! The handler settles with the real usage (or the gateway's estimate when
//! the provider reported none) and then records the row, in the turn's
//! transaction or on its own. Both the settlement and a row on its own go to
//! the process's [`UsageBatcher`], written after the answer: only the
//! reservation, made before the call, is on the critical path. A call
//! abandoned once it was sent (client gone, summary cut off, task aborted)
//! cannot be asked what it generated, so on drop it is charged its reserved
//! worst case and its row is marked estimated. A row settled but not yet
//! recorded when the handler goes away is recorded too. So every call that
//! ran is metered, and none twice.

use std::sync::Arc;

use crate::config::Config;
use crate::limits::Reservation;
use crate::model::Usage;
use crate::provider::ProviderError;
use crate::store::UsageRow;
use crate::usage;
use crate::usage::flush::UsageBatcher;

enum Stage {
    /// Reserved; the call has not gone out (dropping refunds).
    Reserved,
    /// The call went out; no answer yet.
    Sent,
    /// Settled; the row is still to be recorded.
    Answered(UsageRow),
    /// Recorded (or refunded).
    Done,
}

/// One provider call's metering; see the module docs.
pub struct Meter {
    usage: Arc<UsageBatcher>,
    config: Arc<Config>,
    tenant: String,
    model: String,
    now: i64,
    worst: Usage,
    reservation: Option<Reservation>,
    stage: Stage,
}

impl Meter {
    /// A meter for a call of `model` whose worst case is `worst` (prompt
    /// estimate plus the output reserved), holding its budget `reservation`
    /// (whose settlement then goes to `usage` too).
    pub fn new(
        usage: Arc<UsageBatcher>,
        config: Arc<Config>,
        tenant: &str,
        model: &str,
        now: i64,
        worst: Usage,
        mut reservation: Option<Reservation>,
    ) -> Self {
        if let Some(r) = reservation.as_mut() {
            r.defer_to(usage.clone());
        }
        Self {
            usage,
            config,
            tenant: tenant.to_owned(),
            model: model.to_owned(),
            now,
            worst,
            reservation,
            stage: Stage::Reserved,
        }
    }

    /// The call is going out: from now on, abandoning it charges its worst case.
    pub fn sent(&mut self) {
        if matches!(self.stage, Stage::Reserved) {
            self.stage = Stage::Sent;
        }
    }

    /// The call failed. A refusal generated nothing and is refunded; a call
    /// that may have run (timed out, or answered 2xx with an unreadable body)
    /// is charged its worst case, as estimated.
    pub async fn failed(&mut self, error: &ProviderError) {
        if may_have_run(error) {
            self.sent();
            if let Stage::Sent = self.stage {
                let worst = self.worst;
                let model = self.model.clone();
                self.answered(&model, &worst, true).await;
                self.record().await;
            }
            return;
        }
        if let Some(r) = self.reservation.as_mut() {
            r.settle(0, 0).await;
        }
        self.stage = Stage::Done;
    }

    /// The call answered (`model` may be a fallback): settles the budget to
    /// `usage` and returns its row, to be recorded with [`Meter::recorded`]
    /// (in a turn's transaction) or [`Meter::record`].
    pub async fn answered(&mut self, model: &str, usage: &Usage, estimated: bool) -> UsageRow {
        let prices = &self.config.prices;
        let day = usage::day(self.now);
        let row = if estimated {
            usage::estimated_row(prices, day, model, usage)
        } else {
            usage::row(prices, day, model, usage)
        };
        if let Some(r) = self.reservation.as_mut() {
            r.settle(row.total_tokens, row.cost_micro_usd).await;
        }
        self.stage = Stage::Answered(row.clone());
        row
    }

    /// The row was written with the turn.
    pub fn recorded(&mut self) {
        self.stage = Stage::Done;
    }

    /// Records the settled row on its own (stateless turns, blocked answers,
    /// turns that could not be stored): into the batcher, written later.
    pub async fn record(&mut self) {
        if let Stage::Answered(row) = std::mem::replace(&mut self.stage, Stage::Done) {
            add(&self.usage, &self.tenant, &row);
        }
    }
}

/// Whether a failed call may have had the provider generate (and bill) an answer.
fn may_have_run(error: &ProviderError) -> bool {
    matches!(
        error,
        ProviderError::Timeout { .. } | ProviderError::Deadline | ProviderError::BadResponse { .. }
    )
}

fn add(usage: &UsageBatcher, tenant: &str, row: &UsageRow) {
    if row.total_tokens > 0 {
        usage.add(tenant, row);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let row = match std::mem::replace(&mut self.stage, Stage::Done) {
            // Nothing went out: the reservation's own drop refunds it.
            Stage::Reserved | Stage::Done => return,
            Stage::Sent => {
                if let Some(r) = self.reservation.take() {
                    r.keep();
                }
                usage::estimated_row(
                    &self.config.prices,
                    usage::day(self.now),
                    &self.model,
                    &self.worst,
                )
            }
            Stage::Answered(row) => row,
        };
        add(&self.usage, &self.tenant, &row);
    }
}
