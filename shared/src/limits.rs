//! Rate limits and budgets, enforced atomically in the store so they hold
//! across concurrent Lambda instances.
//!
//! - Requests per minute per key: a fixed one-minute window counter,
//!   incremented only while under the limit.
//! - Tokens (and cost) per tenant per UTC day: before the provider call a
//!   reservation of the request's estimate is added only if it fits; after
//!   it, the reservation is settled to the real usage (refunded entirely on
//!   failure). A reservation dropped unsettled (client gone, task cancelled)
//!   is refunded in the background, so none ever leaks.

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::{Config, Quotas};
use crate::store::{CounterKey, Store, StoreError};
use crate::usage;

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
    store: &dyn Store,
    principal: &Principal,
    config: &Config,
    now: i64,
) -> Result<(), LimitError> {
    let limit = principal.rpm.unwrap_or(config.limits.requests_per_minute);
    if limit == 0 {
        return Ok(());
    }
    let window = now.div_euclid(60);
    let key = CounterKey {
        pk: format!("R#{}", principal.key_id),
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
    store: Arc<dyn Store>,
    tokens: Option<(CounterKey, i64)>,
    cost: Option<(CounterKey, i64)>,
    settled: bool,
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
    if quotas.tokens_per_day.is_none() && quotas.cost_per_day_usd.is_none() {
        return Ok(None);
    }
    let day = usage::day(now);
    let expires = Some(now + 3 * 86_400);
    let retry_after = usage::seconds_to_midnight(now);
    let mut r = Reservation {
        store: store.clone(),
        tokens: None,
        cost: None,
        settled: false,
    };
    if let Some(limit) = quotas.tokens_per_day {
        let key = budget_key(tenant, &day, "tokens");
        let amount = i64::try_from(tokens).unwrap_or(i64::MAX);
        if !store
            .counter_add(
                &key,
                amount,
                Some(i64::try_from(limit).unwrap_or(i64::MAX)),
                expires,
            )
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
    if let Some(usd) = quotas.cost_per_day_usd {
        let key = budget_key(tenant, &day, "cost");
        let amount = i64::try_from(cost_micro).unwrap_or(i64::MAX);
        let limit = (usd * 1e6).round() as i64;
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
                if delta != 0
                    && let Err(e) = self.store.counter_add(key, delta, None, None).await
                {
                    tracing::error!(error = %e, "budget settlement failed");
                }
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Cancelled mid-request (client disconnected): refund in the background.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut orphan = Reservation {
            store: self.store.clone(),
            tokens: self.tokens.take(),
            cost: self.cost.take(),
            settled: false,
        };
        self.settled = true;
        handle.spawn(async move { orphan.settle(0, 0).await });
    }
}
