//! A small in-process cache in front of store reads (API keys, tenants' MCP
//! server registrations): an entry is reused while younger than its TTL,
//! concurrent misses of one key share one read, a failed read reaches every
//! waiter and is not kept, and [`ReadCache::forget`] drops an entry at once
//! (a change made through this process), including a read under way.
//!
//! The TTL is the staleness bound of a change made elsewhere (another
//! process or Lambda environment): it takes effect here at most that late.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

/// One read, shared by every lookup that wants it meanwhile.
type Flight<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

/// A key's place in the cache: its value as read at an instant, or the read
/// under way.
enum Slot<V, E> {
    Ready(Instant, V),
    Reading(Flight<V, E>),
}

/// Values read through `read` functions, kept per key for a TTL.
pub struct ReadCache<K, V, E> {
    slots: Mutex<HashMap<K, Slot<V, E>>>,
    /// Entries past this many are dropped wholesale (a bound on memory; the
    /// cache only saves reads, so dropping it is safe).
    max: usize,
}

impl<K, V, E> ReadCache<K, V, E>
where
    K: Hash + Eq,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// An empty cache of at most `max` keys.
    pub fn new(max: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// The value of `key`: cached if younger than `ttl(&value)`, else read
    /// once by `read` for every caller waiting on it.
    pub async fn get<Q>(
        &self,
        key: &Q,
        ttl: impl Fn(&V) -> Duration,
        read: impl FnOnce() -> BoxFuture<'static, Result<V, E>>,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let flight = {
            let mut slots = self.slots();
            match slots.get(key) {
                Some(Slot::Ready(at, v)) if at.elapsed() < ttl(v) => return Ok(v.clone()),
                Some(Slot::Reading(flight)) => flight.clone(),
                _ => {
                    if slots.len() >= self.max {
                        slots.clear();
                    }
                    let flight = read().shared();
                    slots.insert(key.to_owned(), Slot::Reading(flight.clone()));
                    flight
                }
            }
        };
        // Whoever polls the read drives it: a caller that goes away leaves
        // it to the others.
        let read = flight.clone().await;
        let mut slots = self.slots();
        // The first to finish files the result, unless the slot was
        // forgotten or cleared meanwhile; a failed read is not kept, so the
        // next lookup reads again (every waiter got the error).
        if let Some(Slot::Reading(f)) = slots.get(key)
            && f.ptr_eq(&flight)
        {
            match &read {
                Ok(v) => {
                    slots.insert(key.to_owned(), Slot::Ready(Instant::now(), v.clone()));
                }
                Err(_) => {
                    slots.remove(key);
                }
            }
        }
        read
    }

    /// Forgets `key` at once (this process only); a read under way is then
    /// not kept either.
    pub fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.slots().remove(key);
    }

    /// How many handles share the read of `key` under way (0 when none is):
    /// the slot's, and two per waiter (its own and the one it awaits).
    #[cfg(test)]
    pub(crate) fn sharing<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.slots().get(key) {
            Some(Slot::Reading(f)) => f.strong_count().unwrap_or(0),
            _ => 0,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<K, Slot<V, E>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Cache = ReadCache<String, u32, String>;

    /// A read of `value` that counts itself in `reads`.
    fn reader(
        reads: &Arc<AtomicUsize>,
        value: Result<u32, String>,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<u32, String>> {
        let reads = reads.clone();
        move || {
            async move {
                reads.fetch_add(1, Ordering::SeqCst);
                value
            }
            .boxed()
        }
    }

    // Within the TTL a key is read once however often it is asked; a TTL of
    // zero reads every time; `forget` reads again at once; keys never share
    // entries; a failed read is not kept.
    #[tokio::test]
    async fn entries_live_for_their_ttl_and_go_when_forgotten() {
        let cache = Cache::new(100);
        let reads = Arc::new(AtomicUsize::new(0));
        let hour = |_: &u32| Duration::from_secs(3600);
        for _ in 0..5 {
            let v = cache.get("a", hour, reader(&reads, Ok(1))).await;
            assert_eq!(v, Ok(1));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Another key is its own entry.
        assert_eq!(cache.get("b", hour, reader(&reads, Ok(2))).await, Ok(2));
        assert_eq!(cache.get("a", hour, reader(&reads, Ok(9))).await, Ok(1));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // Past its TTL (zero here) an entry is read again.
        let zero = |_: &u32| Duration::ZERO;
        assert_eq!(cache.get("a", zero, reader(&reads, Ok(3))).await, Ok(3));
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        // Forgotten: read again at once, whatever the TTL.
        cache.forget("a");
        assert_eq!(cache.get("a", hour, reader(&reads, Ok(4))).await, Ok(4));
        assert_eq!(reads.load(Ordering::SeqCst), 4);
        // A failure is not kept.
        cache.forget("a");
        let failed = cache.get("a", hour, reader(&reads, Err("down".into())));
        assert_eq!(failed.await, Err("down".to_owned()));
        assert_eq!(cache.get("a", hour, reader(&reads, Ok(5))).await, Ok(5));
        assert_eq!(reads.load(Ordering::SeqCst), 6);
    }

    // Past `max` keys the cache starts over rather than grow.
    #[tokio::test]
    async fn the_cache_is_bounded() {
        let cache = Cache::new(2);
        let reads = Arc::new(AtomicUsize::new(0));
        let hour = |_: &u32| Duration::from_secs(3600);
        for k in ["a", "b", "c", "a"] {
            cache.get(k, hour, reader(&reads, Ok(1))).await.unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 4);
        assert!(cache.slots().len() <= 2);
    }
}
