//! A remote value cached in-process (the issuer's JWKS, the provider keys
//! secret) and refetched without storms: one fetch in flight at a time
//! (waiters take its result), failures retried with exponential backoff
//! rather than once per request, and the last good value served for a
//! bounded time past its TTL while the source is failing.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where "now" comes from (tests move a [`ManualClock`] by hand).
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The process's monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<Instant>);

impl Default for ManualClock {
    fn default() -> Self {
        Self(Mutex::new(Instant::now()))
    }
}

impl ManualClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a cached value is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// How long a fetched value is used without asking again.
    pub ttl: Duration,
    /// How long past `ttl` the last good value is still served while fetches fail.
    pub max_stale: Duration,
    /// Wait after the first failed fetch; doubled after each further failure.
    pub min_backoff: Duration,
    /// Longest wait between two failed fetches.
    pub max_backoff: Duration,
    /// Least time between two fetches a caller forces while the value is
    /// fresh (an unknown JWT `kid`), so forged input cannot hammer the source.
    pub force_interval: Duration,
}

impl RefreshPolicy {
    /// A policy with the default backoff (1 s doubling up to 60 s).
    pub fn new(ttl: Duration, max_stale: Duration, force_interval: Duration) -> Self {
        Self {
            ttl,
            max_stale,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            force_interval,
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.min_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// What the caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Any value within its TTL.
    Fresh,
    /// A newer value than the cached one (it lacks something), at most once
    /// per [`RefreshPolicy::force_interval`].
    Newer,
}

struct State<T> {
    value: Option<Arc<T>>,
    fetched: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Fetches started so far: a waiter seeing it move knows one just ran.
    attempts: u64,
}

impl<T> State<T> {
    fn fresh(&self, now: Instant, p: &RefreshPolicy) -> bool {
        self.fetched
            .is_some_and(|t| now.saturating_duration_since(t) < p.ttl)
    }

    fn usable(&self, now: Instant, p: &RefreshPolicy) -> Option<Arc<T>> {
        let age = now.saturating_duration_since(self.fetched?);
        (age < p.ttl.saturating_add(p.max_stale))
            .then(|| self.value.clone())
            .flatten()
    }

    /// The cached value when no fetch is due for `want`.
    fn settled(&self, now: Instant, want: Want, p: &RefreshPolicy) -> Option<Arc<T>> {
        if !self.fresh(now, p) {
            return None;
        }
        let cooling = self
            .last_attempt
            .is_some_and(|t| now.saturating_duration_since(t) < p.force_interval);
        match want {
            Want::Fresh => self.value.clone(),
            Want::Newer if cooling => self.value.clone(),
            Want::Newer => None,
        }
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }
}

/// A cached remote value; see the module documentation.
pub struct Cached<T> {
    policy: RefreshPolicy,
    clock: Arc<dyn Clock>,
    state: Mutex<State<T>>,
    flight: tokio::sync::Mutex<()>,
}

impl<T: Send + Sync> Cached<T> {
    /// An empty cache; nothing is fetched until the first [`Cached::get`].
    pub fn new(policy: RefreshPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            policy,
            clock,
            state: Mutex::new(State {
                value: None,
                fetched: None,
                failures: 0,
                retry_at: None,
                last_attempt: None,
                attempts: 0,
            }),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value, fetched with `fetch` when due and allowed. `Err(Some(e))`:
    /// the fetch failed and no good value is left; `Err(None)`: no good value
    /// and no fetch allowed yet (backing off after failures).
    pub async fn get<E, F, Fut>(&self, want: Want, fetch: F) -> Result<Arc<T>, Option<E>>
    where
        E: std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let p = self.policy;
        let (seen, usable) = {
            let st = self.lock();
            let now = self.clock.now();
            if let Some(v) = st.settled(now, want, &p) {
                return Ok(v);
            }
            (st.attempts, st.usable(now, &p))
        };
        // While a refresh runs, a caller content with a still usable value
        // takes it rather than wait for a slow or hanging source.
        let _flight = match (want, usable, self.flight.try_lock()) {
            (_, _, Ok(guard)) => guard,
            (Want::Fresh, Some(v), Err(_)) => return Ok(v),
            (_, _, Err(_)) => self.flight.lock().await,
        };
        {
            let mut st = self.lock();
            let now = self.clock.now();
            // Someone fetched while we waited: take their outcome.
            if st.attempts != seen || st.backing_off(now) {
                return st.usable(now, &p).ok_or(None);
            }
            if let Some(v) = st.settled(now, want, &p) {
                return Ok(v);
            }
            st.attempts += 1;
            st.last_attempt = Some(now);
        }
        let result = fetch().await;
        let mut st = self.lock();
        let now = self.clock.now();
        match result {
            Ok(v) => {
                let v = Arc::new(v);
                st.value = Some(v.clone());
                st.fetched = Some(now);
                st.failures = 0;
                st.retry_at = None;
                Ok(v)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let wait = p.backoff(st.failures);
                st.retry_at = Some(now + wait);
                tracing::warn!(
                    error = %e,
                    failures = st.failures,
                    retry_in_ms = wait.as_millis() as u64,
                    "refresh failed"
                );
                st.usable(now, &p).ok_or(Some(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cache(clock: &Arc<ManualClock>) -> Cached<u32> {
        let p = RefreshPolicy::new(
            Duration::from_secs(10),
            Duration::from_secs(100),
            Duration::from_secs(5),
        );
        Cached::new(p, clock.clone())
    }

    async fn get(c: &Cached<u32>, want: Want, ok: bool, calls: &AtomicUsize) -> Option<u32> {
        c.get(want, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            if ok { Ok(7) } else { Err("down") }
        })
        .await
        .ok()
        .map(|v| *v)
    }

    // Issue 12, point 12: a failing source is retried with backoff, not once
    // per request, and the last good value is served for a bounded time.
    #[tokio::test]
    async fn failures_back_off_and_stale_values_are_bounded() {
        let clock = Arc::new(ManualClock::default());
        let c = cache(&clock);
        let calls = AtomicUsize::new(0);
        assert_eq!(get(&c, Want::Fresh, true, &calls).await, Some(7));
        for _ in 0..50 {
            assert_eq!(get(&c, Want::Fresh, false, &calls).await, Some(7));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "fresh values need no fetch"
        );
        clock.advance(Duration::from_secs(10));
        for _ in 0..50 {
            assert_eq!(get(&c, Want::Fresh, false, &calls).await, Some(7));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one failed refetch, then backoff"
        );
        // Backoff doubles: 1, 2, 4, 8... seconds.
        let mut expected = 2;
        for wait in [1, 2, 4, 8, 16] {
            clock.advance(Duration::from_millis(wait * 1000 - 1));
            get(&c, Want::Fresh, false, &calls).await;
            assert_eq!(calls.load(Ordering::SeqCst), expected, "still backing off");
            clock.advance(Duration::from_millis(1));
            get(&c, Want::Fresh, false, &calls).await;
            expected += 1;
            assert_eq!(calls.load(Ordering::SeqCst), expected);
        }
        // 10 s TTL + 100 s staleness: at 41 s the value is still served; past 110 s it is not.
        clock.advance(Duration::from_secs(69));
        assert_eq!(get(&c, Want::Fresh, false, &calls).await, None);
        // Recovery resets the backoff once it is allowed to try.
        clock.advance(Duration::from_secs(60));
        assert_eq!(get(&c, Want::Fresh, true, &calls).await, Some(7));
    }

    // Issue 12, point 12: a caller asking for a newer value (unknown kid)
    // causes at most one fetch per force interval.
    #[tokio::test]
    async fn forced_refetches_are_rate_limited() {
        let clock = Arc::new(ManualClock::default());
        let c = cache(&clock);
        let calls = AtomicUsize::new(0);
        get(&c, Want::Fresh, true, &calls).await;
        for _ in 0..20 {
            get(&c, Want::Newer, true, &calls).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(5));
        for _ in 0..20 {
            get(&c, Want::Newer, true, &calls).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    // Issue 12, point 12: concurrent callers share one in-flight fetch.
    #[tokio::test]
    async fn one_fetch_in_flight() {
        let clock = Arc::new(ManualClock::default());
        let c = Arc::new(cache(&clock));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, calls, gate) = (c.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                c.get(Want::Fresh, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Err::<u32, _>("down")
                })
                .await
                .is_err()
            }));
        }
        // Wait until the one fetch started, then let it fail.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    // Issue 12, point 12: while a refresh hangs, callers with a usable value
    // are served at once instead of queueing behind it.
    #[tokio::test]
    async fn a_hanging_refresh_does_not_hold_up_callers() {
        let clock = Arc::new(ManualClock::default());
        let c = Arc::new(cache(&clock));
        let calls = Arc::new(AtomicUsize::new(0));
        get(&c, Want::Fresh, true, &calls).await;
        clock.advance(Duration::from_secs(10));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (c2, calls2, gate2) = (c.clone(), calls.clone(), gate.clone());
        let hanging = tokio::spawn(async move {
            c2.get(Want::Fresh, || async move {
                calls2.fetch_add(1, Ordering::SeqCst);
                gate2.notified().await;
                Ok::<u32, &str>(8)
            })
            .await
            .map(|v| *v)
        });
        while calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..20 {
            assert_eq!(get(&c, Want::Fresh, true, &calls).await, Some(7));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "no second fetch while one runs"
        );
        gate.notify_one();
        assert_eq!(hanging.await.unwrap().ok(), Some(8));
        assert_eq!(get(&c, Want::Fresh, true, &calls).await, Some(8));
    }
}
