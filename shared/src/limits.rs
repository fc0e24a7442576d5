//! Rate limits and budgets, enforced atomically in the store so they hold
//! across concurrent Lambda instances.
//!
//! - Requests per minute per tenant and key (or token subject): a fixed
//!   one-minute window counter, incremented only while under the limit.
//! - Tokens (and cost) per tenant per UTC day: before the provider call a
//!   reservation of the call's worst case (its prompt plus the most output
//!   it may produce) is added only if it fits; a request without its own
//!   output cap gets one cut to what the budget has left. After the call,
//!   the reservation is settled to the real usage (refunded entirely on a
//!   failure that generated nothing). A reservation dropped before its call
//!   was sent is refunded in the background, so none ever leaks; one whose
//!   call was sent is kept (see [`crate::meter`]).

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::{Config, Price, Quotas};
use crate::store::{CounterKey, CounterStore, Store, StoreError};
use crate::usage;
use crate::usage::flush::UsageBatcher;

/// A refused request.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Too many requests this minute.
    #[error("rate limit of {limit} requests per minute exceeded")]
    RateLimited {
        /// The limit.
        limit: u32,
        /// Seconds until the window resets.
        retry_after: i64,
    },
    /// A daily budget would be exceeded.
    #[error("daily {what} budget exceeded")]
    BudgetExceeded {
        /// `tokens` or `cost`.
        what: &'static str,
        /// Seconds until the budget resets (UTC midnight).
        retry_after: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counts one request against the principal's per-minute limit.
pub async fn check_rate(
    store: &dyn CounterStore,
    principal: &Principal,
    config: &Config,
    now: i64,
) -> Result<(), LimitError> {
    let limit = principal.rpm.unwrap_or(config.limits.requests_per_minute);
    if limit == 0 {
        return Ok(());
    }
    let window = now.div_euclid(60);
    // Keyed by tenant as well: a JWT subject (or a token without `sub`) is
    // only unique within its issuer's tenant.
    let key = CounterKey {
        pk: format!("R#{}#{}", principal.tenant, principal.key_id),
        sk: window.to_string(),
    };
    if store
        .counter_add(&key, 1, Some(i64::from(limit)), Some(now + 120))
        .await?
    {
        Ok(())
    } else {
        Err(LimitError::RateLimited {
            limit,
            retry_after: 60 - now.rem_euclid(60),
        })
    }
}

fn budget_key(tenant: &str, day: &str, what: &str) -> CounterKey {
    CounterKey {
        pk: format!("T#{tenant}#B"),
        sk: format!("{day}#{what}"),
    }
}

/// A budget reservation awaiting settlement.
pub struct Reservation {
    store: Arc<dyn CounterStore>,
    /// Where the settlement goes once the call is metered: written after
    /// the answer (see [`Reservation::defer_to`]).
    deferred: Option<Arc<UsageBatcher>>,
    tokens: Option<(CounterKey, i64)>,
    cost: Option<(CounterKey, i64)>,
    settled: bool,
}

/// A tenant's daily budgets as counter limits: the quotas raised by the
/// configured tolerance (a share of each budget).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// Tokens per day, if limited.
    pub tokens: Option<i64>,
    /// Micro-USD per day, if limited.
    pub cost_micro: Option<i64>,
}

impl Budget {
    /// The budget of `quotas` with `tolerance` (0 to 1) on top.
    pub fn new(quotas: &Quotas, tolerance: f64) -> Self {
        let raise = |limit: f64| (limit * (1.0 + tolerance)).floor().min(i64::MAX as f64) as i64;
        Self {
            tokens: quotas.tokens_per_day.map(|t| raise(t as f64)),
            cost_micro: quotas
                .cost_per_day_usd
                .map(|usd| raise((usd * 1e6).round())),
        }
    }

    /// Whether anything is limited.
    pub fn is_limited(&self) -> bool {
        self.tokens.is_some() || self.cost_micro.is_some()
    }
}

/// How much output a call may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The client's own cap: reserved whole, or the request is refused.
    Capped(u32),
    /// No cap from the client: the model's maximum, cut to what the budget
    /// has left (and that cut is then sent upstream as the cap).
    UpTo(u32),
}

/// What a prompt estimated at `estimate` tokens reserves: the estimate plus
/// 30%, above the estimator's worst measured error (26%, see docs/api.md), so
/// that a provider counting more than the gateway estimated does not carry a
/// tenant past its budget.
pub fn prompt_reserve(estimate: u64) -> u64 {
    estimate.saturating_add(estimate.div_ceil(10) * 3)
}

/// Cost in micro-USD of `prompt` uncached input and `output` tokens.
pub fn worst_cost(price: Option<&Price>, prompt: u64, output: u64) -> u64 {
    price.map_or(0, |p| {
        (prompt as f64 * p.input + output as f64 * p.output)
            .round()
            .max(0.0) as u64
    })
}

/// Reserves a call's worst case, `prompt` tokens plus its output, against
/// the tenant's budget; returns the reservation (`None` when unlimited) and
/// the output tokens reserved, which the call must not exceed.
pub async fn reserve_call(
    store: &Arc<dyn Store>,
    tenant: &str,
    budget: Budget,
    price: Option<&Price>,
    prompt: u64,
    output: Output,
    now: i64,
) -> Result<(Option<Reservation>, u32), LimitError> {
    // The prompt plus `out` output tokens, at the worst price of the chain.
    let hold = |out: u64| {
        reserve_within(
            store,
            tenant,
            budget,
            prompt + out,
            worst_cost(price, prompt, out),
            now,
        )
    };
    let max = match output {
        Output::Capped(n) => {
            let out = u64::from(n);
            let r = hold(out).await?;
            return Ok((r, n));
        }
        Output::UpTo(n) => n,
    };
    if !budget.is_limited() {
        return Ok((None, max));
    }
    // Usually the whole maximum fits: one conditional write, no reads.
    let whole = u64::from(max);
    match hold(whole).await {
        Err(LimitError::BudgetExceeded { .. }) => {}
        other => return other.map(|r| (r, max)),
    }
    let day = usage::day(now);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut out = u64::from(max);
        let mut short = None;
        if let Some(limit) = budget.tokens {
            let spent = store
                .counter_get(&budget_key(tenant, &day, "tokens"))
                .await?;
            let left = u64::try_from(limit.saturating_sub(spent)).unwrap_or(0);
            out = out.min(left.saturating_sub(prompt));
            short = short.or((out == 0).then_some("token"));
        }
        if let (Some(limit), Some(p)) = (budget.cost_micro, price) {
            let spent = store.counter_get(&budget_key(tenant, &day, "cost")).await?;
            let left = u64::try_from(limit.saturating_sub(spent)).unwrap_or(0);
            let left = left.saturating_sub(worst_cost(Some(p), prompt, 0));
            if p.output > 0.0 {
                out = out.min((left as f64 / p.output).floor() as u64);
            }
            if left == 0 || out == 0 {
                short = short.or(Some("cost"));
            }
        }
        if let Some(what) = short {
            return Err(LimitError::BudgetExceeded {
                what,
                retry_after: usage::seconds_to_midnight(now),
            });
        }
        match hold(out).await {
            // Another request took part of what was left meanwhile: look again.
            Err(LimitError::BudgetExceeded { .. }) if attempt < 3 => continue,
            Err(e) => return Err(e),
            Ok(r) => return Ok((r, u32::try_from(out).unwrap_or(max))),
        }
    }
}

/// Reserves `tokens` and `cost_micro` against the tenant's daily quotas;
/// `None` when the tenant has no quota.
pub async fn reserve(
    store: &Arc<dyn Store>,
    tenant: &str,
    quotas: &Quotas,
    tokens: u64,
    cost_micro: u64,
    now: i64,
) -> Result<Option<Reservation>, LimitError> {
    reserve_within(
        store,
        tenant,
        Budget::new(quotas, 0.0),
        tokens,
        cost_micro,
        now,
    )
    .await
}

async fn reserve_within(
    store: &Arc<dyn Store>,
    tenant: &str,
    budget: Budget,
    tokens: u64,
    cost_micro: u64,
    now: i64,
) -> Result<Option<Reservation>, LimitError> {
    if !budget.is_limited() {
        return Ok(None);
    }
    let day = usage::day(now);
    let expires = Some(now + 3 * 86_400);
    let retry_after = usage::seconds_to_midnight(now);
    let mut r = Reservation {
        store: store.clone(),
        deferred: None,
        tokens: None,
        cost: None,
        settled: false,
    };
    if let Some(limit) = budget.tokens {
        let key = budget_key(tenant, &day, "tokens");
        let amount = i64::try_from(tokens).unwrap_or(i64::MAX);
        if !store
            .counter_add(&key, amount, Some(limit), expires)
            .await?
        {
            r.settled = true;
            return Err(LimitError::BudgetExceeded {
                what: "token",
                retry_after,
            });
        }
        r.tokens = Some((key, amount));
    }
    if let Some(limit) = budget.cost_micro {
        let key = budget_key(tenant, &day, "cost");
        let amount = i64::try_from(cost_micro).unwrap_or(i64::MAX);
        if !store
            .counter_add(&key, amount, Some(limit), expires)
            .await?
        {
            // Give back the token part before refusing.
            r.settle(0, 0).await;
            return Err(LimitError::BudgetExceeded {
                what: "cost",
                retry_after,
            });
        }
        r.cost = Some((key, amount));
    }
    Ok(Some(r))
}

impl Reservation {
    /// Keeps the whole reservation as the charge: the call was sent and what
    /// it generated cannot be known, so its worst case is what it cost.
    pub fn keep(mut self) {
        self.settled = true;
    }

    /// Settles through `usage` from now on: the difference between the
    /// reservation and the real usage is added in the batcher's next flush,
    /// after the answer. The reservation stays on the counter until then,
    /// which can only refuse a request early, never let one overspend; a
    /// call that cost more than it reserved wakes the flusher at once.
    pub fn defer_to(&mut self, usage: Arc<UsageBatcher>) {
        self.deferred = Some(usage);
    }

    /// Replaces the reservation with the real usage (0, 0 refunds it).
    pub async fn settle(&mut self, tokens: u64, cost_micro: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        for (slot, actual) in [(&self.tokens, tokens), (&self.cost, cost_micro)] {
            if let Some((key, reserved)) = slot {
                let delta = i64::try_from(actual)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(*reserved);
                if let Some(usage) = &self.deferred {
                    usage.adjust(key, delta);
                } else if delta != 0
                    && let Err(e) = self.store.counter_add(key, delta, None, None).await
                {
                    tracing::error!(error = %e, "budget settlement failed");
                }
            }
        }
    }

    /// Refunds the whole reservation into the batcher, at once.
    fn refund_deferred(&mut self, usage: &UsageBatcher) {
        self.settled = true;
        for (key, reserved) in [self.tokens.take(), self.cost.take()].into_iter().flatten() {
            usage.adjust(&key, -reserved);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Some(usage) = self.deferred.take() {
            self.refund_deferred(&usage);
            return;
        }
        // Cancelled mid-request (client disconnected): refund in the background.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut orphan = Reservation {
            store: self.store.clone(),
            deferred: None,
            tokens: self.tokens.take(),
            cost: self.cost.take(),
            settled: false,
        };
        self.settled = true;
        handle.spawn(async move { orphan.settle(0, 0).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tolerance_raises_each_budget_by_its_share() {
        // Issue 12, point 3: one tolerance past the budget, no more.
        let q = Quotas {
            tokens_per_day: Some(1000),
            cost_per_day_usd: Some(0.5),
        };
        assert_eq!(
            Budget::new(&q, 0.1),
            Budget {
                tokens: Some(1100),
                cost_micro: Some(550_000)
            }
        );
        assert_eq!(Budget::new(&q, 0.0).tokens, Some(1000));
        assert!(!Budget::new(&Quotas::default(), 0.5).is_limited());
        let p = Price::new(1.0, 2.0);
        assert_eq!(worst_cost(Some(&p), 10, 5), 20);
        assert_eq!(worst_cost(None, 10, 5), 0);
        assert_eq!(
            (prompt_reserve(0), prompt_reserve(10), prompt_reserve(11)),
            (0, 13, 17)
        );
    }
}
