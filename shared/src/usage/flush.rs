//! Usage rows and budget settlements kept off a turn's critical path:
//! aggregated in memory per tenant, day and model (a usage row's key) and per
//! budget counter, then written in batches: at an interval, as soon as a
//! batch fills, on demand ([`UsageBatcher::flush`]), after a streamed
//! response on Lambda, and when the process shuts down. Other writes that
//! follow an answer (an MCP call's audit row) run on their own tasks, and
//! every flush waits for them.
//!
//! A batch is written once: it carries an id, the store applies it
//! atomically and remembers the id (DynamoDB: a marker item in the same
//! transaction, written only if new), and a batch whose write failed is kept
//! as it was, id and all, and retried first. So a flush whose outcome is
//! unknown (a timeout after DynamoDB applied it) is retried without counting
//! twice, and nothing is dropped while the process lives.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::{CounterKey, CounterStore, MAX_BATCH_ITEMS, StoreError, UsageBatch, UsageRow};

/// What is waiting to be written, aggregated.
#[derive(Default)]
struct Pending {
    /// By (tenant, day, model).
    rows: HashMap<(String, String, String), UsageRow>,
    /// Budget counters' deltas.
    counters: HashMap<CounterKey, i64>,
}

impl Pending {
    fn len(&self) -> usize {
        self.rows.len() + self.counters.len()
    }
}

/// The process's usage batcher, built once (in `AppState`); see the module docs.
pub struct UsageBatcher {
    store: Arc<dyn CounterStore>,
    pending: Mutex<Pending>,
    /// Batches taken for writing and not yet written, oldest first; the
    /// lock also makes flushes run one at a time.
    unwritten: tokio::sync::Mutex<VecDeque<UsageBatch>>,
    wake: Arc<Notify>,
    interval: Duration,
    after_response: bool,
    /// Batch ids: this process's random prefix and a sequence number.
    prefix: String,
    next: AtomicU64,
    /// Writes after an answer running on their own tasks ([`UsageBatcher::spawn_write`]).
    writes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Batches written.
    pub batches: usize,
    /// Rows and counters they held.
    pub items: usize,
}

impl UsageBatcher {
    /// A batcher writing to `store` every `interval` (and when a batch
    /// fills); `after_response`: also after every streamed response (Lambda).
    /// The interval's task starts when a Tokio runtime is running and ends
    /// with the batcher.
    pub fn new(
        store: Arc<dyn CounterStore>,
        interval: Duration,
        after_response: bool,
    ) -> Arc<Self> {
        let batcher = Arc::new(Self {
            store,
            pending: Mutex::new(Pending::default()),
            unwritten: tokio::sync::Mutex::new(VecDeque::new()),
            wake: Arc::new(Notify::new()),
            interval,
            after_response,
            prefix: crate::ids::random_token::<12>("ub_"),
            next: AtomicU64::new(0),
            writes: Mutex::new(Vec::new()),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(run(
                Arc::downgrade(&batcher),
                batcher.wake.clone(),
                interval,
            ));
        }
        batcher
    }

    /// Adds a row to its tenant's aggregate (written at the next flush).
    pub fn add(&self, tenant: &str, row: &UsageRow) {
        let mut p = self.lock();
        let key = (tenant.to_owned(), row.day.clone(), row.model.clone());
        p.rows
            .entry(key)
            .or_insert_with(|| UsageRow {
                day: row.day.clone(),
                model: row.model.clone(),
                ..UsageRow::default()
            })
            .add(row);
        self.full(&p);
    }

    /// Adds `delta` to a counter at the next flush (a budget settlement). A
    /// charge (positive: a call cost more than it reserved) wakes the
    /// flusher at once, so the budget sees it as soon as it can.
    pub fn adjust(&self, key: &CounterKey, delta: i64) {
        if delta == 0 {
            return;
        }
        let mut p = self.lock();
        let d = p.counters.entry(key.clone()).or_default();
        *d = d.saturating_add(delta);
        if delta > 0 {
            self.wake.notify_one();
        } else {
            self.full(&p);
        }
    }

    /// Runs `write` (a record of what was just answered: a federated MCP
    /// call's audit row) on its own task, off the answer's path. Every flush
    /// waits for the writes spawned before it, so the shutdown flush (and
    /// Lambda's after a streamed response) ends with them done.
    pub fn spawn_write(&self, write: impl Future<Output = ()> + Send + 'static) {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes.retain(|w| !w.is_finished());
        writes.push(tokio::spawn(write));
    }

    /// Writes everything pending and every batch an earlier flush could not
    /// write. On a failure the unwritten batches stay, to be retried as they
    /// are by the next flush, and the error is returned.
    pub async fn flush(&self) -> Result<Flushed, StoreError> {
        self.spawned_writes().await;
        let mut unwritten = self.unwritten.lock().await;
        let taken = std::mem::take(&mut *self.lock());
        unwritten.extend(self.batches(taken));
        let mut done = Flushed::default();
        while let Some(batch) = unwritten.front() {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.store.add_usage_batch(batch).await {
                    Ok(()) => break,
                    // Another write raced on one of its rows: try again now.
                    Err(StoreError::Conflict) if attempt < 4 => continue,
                    Err(e) => return Err(e),
                }
            }
            done.batches += 1;
            done.items += batch.len();
            unwritten.pop_front();
        }
        Ok(done)
    }

    /// Waits for the writes [`UsageBatcher::spawn_write`] started so far. A
    /// wait given up midway leaves the rest running (a dropped handle
    /// detaches its task).
    pub async fn spawned_writes(&self) {
        let writes = std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()));
        for w in writes {
            let _ = w.await;
        }
    }

    /// After a response went out: on Lambda, flushes within the invocation
    /// (a frozen process writes nothing); elsewhere the interval does it.
    pub async fn after_response(&self) {
        if self.after_response
            && let Err(e) = self.flush().await
        {
            tracing::warn!(error = %e, "usage flush failed; kept for the next one");
        }
    }

    /// Rows and counters waiting (not yet in a batch being written).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// The flush interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves the aggregate whole (every
        // update is one insert or add), so keep using it.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn full(&self, p: &Pending) {
        if p.len() >= MAX_BATCH_ITEMS {
            self.wake.notify_one();
        }
    }

    fn batches(&self, taken: Pending) -> Vec<UsageBatch> {
        let mut out: Vec<UsageBatch> = Vec::new();
        let mut current = UsageBatch::default();
        let rows = taken
            .rows
            .into_iter()
            .map(|((tenant, _, _), row)| (Some((tenant, row)), None));
        let counters = taken
            .counters
            .into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|c| (None, Some(c)));
        for (row, counter) in rows.chain(counters) {
            if current.len() == MAX_BATCH_ITEMS {
                out.push(std::mem::take(&mut current));
            }
            current.rows.extend(row);
            current.counters.extend(counter);
        }
        if !current.is_empty() {
            out.push(current);
        }
        for b in &mut out {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            b.id = format!("{}-{n}", self.prefix);
        }
        out
    }
}

/// The interval's task: flushes every `interval`, or sooner when woken (a
/// batch filled, a charge came), until the batcher is gone.
async fn run(batcher: Weak<UsageBatcher>, wake: Arc<Notify>, interval: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
        let Some(b) = batcher.upgrade() else {
            return;
        };
        if let Err(e) = b.flush().await {
            tracing::warn!(error = %e, "usage flush failed; kept for the next one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CounterAdd;
    use async_trait::async_trait;

    /// A store that fails on demand and counts what it applied, by batch id.
    #[derive(Default)]
    struct Flaky {
        fail: Mutex<u32>,
        /// Fails after applying (the answer lost): the id is then known.
        lose_answer: Mutex<bool>,
        applied: Mutex<Vec<UsageBatch>>,
    }

    #[async_trait]
    impl CounterStore for Flaky {
        async fn counter_add(
            &self,
            _: &CounterKey,
            _: i64,
            _: Option<i64>,
            _: Option<i64>,
        ) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn counters_add(&self, _: &[CounterAdd]) -> Result<Option<usize>, StoreError> {
            Ok(None)
        }
        async fn counter_get(&self, _: &CounterKey) -> Result<i64, StoreError> {
            Ok(0)
        }
        async fn add_usage(&self, _: &str, _: &UsageRow) -> Result<(), StoreError> {
            Ok(())
        }
        async fn add_usage_batch(&self, batch: &UsageBatch) -> Result<(), StoreError> {
            {
                let mut f = self.fail.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    return Err(StoreError::Backend("down".into()));
                }
            }
            let mut applied = self.applied.lock().unwrap();
            if !applied.iter().any(|b| b.id == batch.id) {
                applied.push(batch.clone());
            }
            if std::mem::take(&mut *self.lock_answer()) {
                return Err(StoreError::Backend("timed out".into()));
            }
            Ok(())
        }
        async fn usage(&self, _: &str, _: &str, _: &str) -> Result<Vec<UsageRow>, StoreError> {
            Ok(Vec::new())
        }
    }

    impl Flaky {
        fn lock_answer(&self) -> std::sync::MutexGuard<'_, bool> {
            self.lose_answer.lock().unwrap()
        }
        fn total(&self, tenant: &str) -> (u64, i64) {
            let applied = self.applied.lock().unwrap();
            let requests = applied
                .iter()
                .flat_map(|b| &b.rows)
                .filter(|(t, _)| t == tenant)
                .map(|(_, r)| r.requests)
                .sum();
            let counters = applied
                .iter()
                .flat_map(|b| &b.counters)
                .map(|(_, d)| *d)
                .sum();
            (requests, counters)
        }
    }

    fn row(model: &str, tokens: u64) -> UsageRow {
        UsageRow {
            day: "2026-11-30".into(),
            model: model.into(),
            requests: 1,
            total_tokens: tokens,
            ..UsageRow::default()
        }
    }

    fn key(sk: &str) -> CounterKey {
        CounterKey {
            pk: "T#a#B".into(),
            sk: sk.into(),
        }
    }

    // Issue 19, point 1: rows aggregate per tenant, day and model; a failed
    // flush keeps them, and a retry of a batch whose answer was lost counts
    // it once.
    // Issue 19: writes after an answer (an audit row) are done once a
    // flush returns, as the shutdown flush relies on.
    #[tokio::test]
    async fn a_flush_waits_for_the_writes_spawned_before_it() {
        let b = UsageBatcher::new(Arc::new(Flaky::default()), Duration::from_secs(3600), false);
        let done = Arc::new(AtomicU64::new(0));
        for _ in 0..3 {
            let done = done.clone();
            b.spawn_write(async move {
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        b.flush().await.unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn rows_aggregate_and_a_failed_flush_is_retried_once() {
        let store = Arc::new(Flaky::default());
        let b = UsageBatcher::new(store.clone(), Duration::from_secs(3600), false);
        for _ in 0..5 {
            b.add("a", &row("m", 10));
        }
        b.add("b", &row("m", 1));
        b.adjust(&key("d#tokens"), -7);
        b.adjust(&key("d#tokens"), 2);
        assert_eq!(b.pending(), 3);
        *store.fail.lock().unwrap() = 1;
        assert!(b.flush().await.is_err());
        assert_eq!(store.total("a"), (0, 0));
        // More rows meanwhile go into a batch of their own.
        b.add("a", &row("m", 10));
        *store.lose_answer.lock().unwrap() = true;
        assert!(b.flush().await.is_err());
        let flushed = b.flush().await.unwrap();
        assert_eq!(flushed.batches, 2);
        assert_eq!(store.total("a"), (6, -5));
        assert_eq!(store.total("b").0, 1);
        let applied = store.applied.lock().unwrap();
        let a: Vec<&UsageRow> = applied
            .iter()
            .flat_map(|b| &b.rows)
            .filter(|(t, _)| t == "a")
            .map(|(_, r)| r)
            .collect();
        assert_eq!(a[0].total_tokens, 50);
    }

    #[tokio::test]
    async fn batches_hold_at_most_a_transaction() {
        let store = Arc::new(Flaky::default());
        let b = UsageBatcher::new(store.clone(), Duration::from_secs(3600), false);
        for i in 0..(MAX_BATCH_ITEMS * 2 + 1) {
            b.add(&format!("t{i}"), &row("m", 1));
        }
        let flushed = b.flush().await.unwrap();
        assert_eq!(flushed.batches, 3);
        assert_eq!(flushed.items, MAX_BATCH_ITEMS * 2 + 1);
        assert!(
            store
                .applied
                .lock()
                .unwrap()
                .iter()
                .all(|b| b.len() <= MAX_BATCH_ITEMS)
        );
    }

    // A full batch wakes the interval's task, which writes it long before
    // the interval.
    #[tokio::test]
    async fn a_full_batch_is_written_without_waiting_for_the_interval() {
        let store = Arc::new(Flaky::default());
        let b = UsageBatcher::new(store.clone(), Duration::from_secs(3600), false);
        for i in 0..MAX_BATCH_ITEMS {
            b.add(&format!("t{i}"), &row("m", 1));
        }
        while store.applied.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.pending(), 0);
    }
}
