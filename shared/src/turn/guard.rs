//! What a turn holds while it runs: the provider call's metering (its budget
//! reservation), the idempotency claim, a summary being written beside the
//! call, and the request's rate count until the reservation makes it.
//! Dropped before the turn is settled, it gives them back: the summary
//! stops, the claim is released so a retry runs, the meter charges what the
//! call may have cost (see [`crate::meter`]), and an uncounted request is
//! counted.

use std::sync::Arc;

use crate::limits::RateCount;
use crate::meter::Meter;
use crate::model::Usage;
use crate::provider::ProviderError;
use crate::{AppState, idempotency, summary};

/// Owns a turn's reservation, claim and pending summary; see the module docs.
pub struct Guard {
    state: Arc<AppState>,
    tenant: String,
    /// The call's metering; `None` once handed to the commit.
    pub(super) meter: Option<Meter>,
    claim: Option<idempotency::Claim>,
    summary: Option<summary::Pending>,
    /// The request's rate count until the reservation makes it.
    pub(super) rate: Option<RateCount>,
}

impl Guard {
    /// A guard over a turn's claim; the meter joins once the budget is reserved.
    pub(super) fn new(
        state: Arc<AppState>,
        tenant: &str,
        claim: Option<idempotency::Claim>,
    ) -> Self {
        Self {
            state,
            tenant: tenant.to_owned(),
            meter: None,
            claim,
            summary: None,
            rate: None,
        }
    }

    /// Keeps a summary being written beside the call.
    pub(super) fn hold_summary(&mut self, pending: summary::Pending) {
        self.summary = Some(pending);
    }

    /// The summary, for the commit to wait on.
    pub(super) fn take_summary(&mut self) -> Option<summary::Pending> {
        self.summary.take()
    }

    /// The claim, for the commit to complete.
    pub(super) fn claim(&self) -> Option<&idempotency::Claim> {
        self.claim.as_ref()
    }

    /// The call is going out: abandoning it from now on charges its worst case.
    pub(super) fn sent(&mut self) {
        if let Some(m) = self.meter.as_mut() {
            m.sent();
        }
    }

    /// The provider call failed before answering: metered as the failure
    /// warrants, then everything given back.
    pub(super) async fn failed(mut self, e: &ProviderError) {
        if let Some(m) = self.meter.as_mut() {
            m.failed(e).await;
        }
        self.release().await;
    }

    /// The answer was cut (upstream failure mid-stream, a blocked answer):
    /// `usage` is what it cost so far (estimated or not), recorded on its
    /// own; everything else is given back.
    pub(super) async fn cut(mut self, model: &str, usage: Usage, estimated: bool) {
        if let Some(mut m) = self.meter.take() {
            m.answered(model, &usage, estimated).await;
            m.record().await;
        }
        self.release().await;
    }

    /// Stops the summary and releases the claim.
    pub(super) async fn release(&mut self) {
        if let Some(p) = self.summary.take() {
            p.cancel();
        }
        if let Some(c) = self.claim.take() {
            release_claim(&self.state, &self.tenant, &c).await;
        }
    }

    /// The turn is settled: nothing is left to give back.
    pub(super) fn disarm(&mut self) {
        self.claim = None;
        self.summary = None;
    }
}

async fn release_claim(state: &AppState, tenant: &str, c: &idempotency::Claim) {
    idempotency::release(&*state.store, tenant, c).await;
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.summary.take() {
            p.cancel();
        }
        let (claim, rate) = (self.claim.take(), self.rate.take());
        if claim.is_none() && rate.is_none() {
            return;
        }
        // Abandoned before its reservation (the client left): the claim is
        // given back and the request still counted, in the background.
        let (state, tenant) = (self.state.clone(), std::mem::take(&mut self.tenant));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(claim) = claim {
                    release_claim(&state, &tenant, &claim).await;
                }
                if let Some(rate) = rate {
                    let _ = rate.count(&*state.store).await;
                }
            });
        }
    }
}
