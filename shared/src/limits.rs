//! Rate limits and budgets, enforced atomically in the store so they hold
//! across concurrent Lambda instances.
//!
//! - Requests per minute per tenant and key (or token subject): a fixed
//!   one-minute window counter, incremented only while under the limit.
//!   A turn counts its request in the same conditional write as its first
//!   reservation (one `UpdateItem` or `TransactWriteItems`, all or none), so
//!   a key with limits makes one write before its answer, and a request
//!   refused by either limit changes neither.
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
use crate::store::{CounterAdd, CounterKey, CounterStore, Store, StoreError};
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

/// A request's count against its caller's per-minute limit, not yet made:
/// alone ([`RateCount::count`]), or in the same conditional write as a
/// turn's budget reservation ([`Ask::rate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCount {
    key: CounterKey,
    limit: u32,
    now: i64,
}

impl RateCount {
    /// The count a request of `principal` makes at `now`; `None` when its
    /// key has no limit.
    pub fn of(principal: &Principal, config: &Config, now: i64) -> Option<Self> {
        let limit = principal.rpm.unwrap_or(config.limits.requests_per_minute);
        if limit == 0 {
            return None;
        }
        // Keyed by tenant as well: a JWT subject (or a token without `sub`) is
        // only unique within its issuer's tenant.
        let key = CounterKey {
            pk: format!("R#{}#{}", principal.tenant, principal.key_id),
            sk: now.div_euclid(60).to_string(),
        };
        Some(Self { key, limit, now })
    }

    /// Counts the request on its own: one conditional write.
    pub async fn count(&self, store: &dyn CounterStore) -> Result<(), LimitError> {
        match store.counters_add(&[self.add()]).await? {
            None => Ok(()),
            Some(_) => Err(self.refused()),
        }
    }

    /// One more request in the window, while under the limit.
    fn add(&self) -> CounterAdd {
        CounterAdd {
            key: self.key.clone(),
            delta: 1,
            limit: Some(i64::from(self.limit)),
            expires_at: Some(self.now + 120),
        }
    }

    fn refused(&self) -> LimitError {
        LimitError::RateLimited {
            limit: self.limit,
            retry_after: 60 - self.now.rem_euclid(60),
        }
    }
}

/// Counts one request against the principal's per-minute limit.
pub async fn check_rate(
    store: &dyn CounterStore,
    principal: &Principal,
    config: &Config,
    now: i64,
) -> Result<(), LimitError> {
    match RateCount::of(principal, config, now) {
        Some(rate) => rate.count(store).await,
        None => Ok(()),
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

/// What one model call asks of its tenant's limits.
pub struct Ask<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Its daily budgets.
    pub budget: Budget,
    /// The worst price of the call's chain, if priced.
    pub price: Option<&'a Price>,
    /// Prompt tokens to reserve.
    pub prompt: u64,
    /// The output the call may produce.
    pub output: Output,
    /// The request's rate count, made in the same conditional write as the
    /// reservation (a turn's first call): a request refused by either limit
    /// changes neither counter.
    pub rate: Option<&'a RateCount>,
    /// The time (epoch seconds).
    pub now: i64,
}

/// Reserves a call's worst case, its prompt plus its output, against the
/// tenant's budget (and counts the request against its rate limit, when
/// asked, in the same write); returns the reservation (`None` when the
/// budget is unlimited) and the output tokens reserved, which the call must
/// not exceed.
pub async fn reserve_call(
    store: &Arc<dyn Store>,
    ask: Ask<'_>,
) -> Result<(Option<Reservation>, u32), LimitError> {
    let Ask {
        tenant,
        budget,
        price,
        prompt,
        output,
        rate,
        now,
    } = ask;
    // The prompt plus `out` output tokens, at the worst price of the chain.
    let hold = |out: u64| {
        let worst = Worst {
            tokens: prompt + out,
            cost_micro: worst_cost(price, prompt, out),
        };
        reserve_within(store, tenant, budget, worst, rate, now)
    };
    let max = match output {
        Output::Capped(n) => {
            let r = hold(u64::from(n)).await?;
            return Ok((r, n));
        }
        Output::UpTo(n) => n,
    };
    // Usually the whole maximum fits: one conditional write, no reads.
    match hold(u64::from(max)).await {
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
    let worst = Worst { tokens, cost_micro };
    reserve_within(store, tenant, Budget::new(quotas, 0.0), worst, None, now).await
}

/// The most a call may cost: tokens, and micro-USD.
#[derive(Clone, Copy)]
struct Worst {
    tokens: u64,
    cost_micro: u64,
}

/// Reserves `worst` against the limited budgets, with `rate` counted in the
/// same write: one conditional write of every counter, or none.
async fn reserve_within(
    store: &Arc<dyn Store>,
    tenant: &str,
    budget: Budget,
    worst: Worst,
    rate: Option<&RateCount>,
    now: i64,
) -> Result<Option<Reservation>, LimitError> {
    if !budget.is_limited() {
        if let Some(rate) = rate {
            rate.count(&**store).await?;
        }
        return Ok(None);
    }
    let day = usage::day(now);
    let expires = Some(now + 3 * 86_400);
    let mut adds = Vec::with_capacity(3);
    // The rate count first: a request over both limits is told of its rate.
    adds.extend(rate.map(RateCount::add));
    let mut tokens = None;
    let mut cost = None;
    if let Some(limit) = budget.tokens {
        let amount = i64::try_from(worst.tokens).unwrap_or(i64::MAX);
        let key = budget_key(tenant, &day, "tokens");
        adds.push(CounterAdd {
            key: key.clone(),
            delta: amount,
            limit: Some(limit),
            expires_at: expires,
        });
        tokens = Some((key, amount));
    }
    if let Some(limit) = budget.cost_micro {
        let amount = i64::try_from(worst.cost_micro).unwrap_or(i64::MAX);
        let key = budget_key(tenant, &day, "cost");
        adds.push(CounterAdd {
            key: key.clone(),
            delta: amount,
            limit: Some(limit),
            expires_at: expires,
        });
        cost = Some((key, amount));
    }
    if let Some(i) = store.counters_add(&adds).await? {
        let refused = &adds[i].key;
        return Err(match rate {
            Some(rate) if *refused == rate.key => rate.refused(),
            _ => LimitError::BudgetExceeded {
                what: if tokens.as_ref().is_some_and(|(k, _)| k == refused) {
                    "token"
                } else {
                    "cost"
                },
                retry_after: usage::seconds_to_midnight(now),
            },
        });
    }
    Ok(Some(Reservation {
        store: store.clone(),
        deferred: None,
        tokens,
        cost,
        settled: false,
    }))
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
