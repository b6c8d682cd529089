//! Value, listing and negative caches (TTL, LRU by bytes, coalesced misses). Nothing of FUSE or
//! HTTP.
//!
//! One [`Cache`] maps a key to either a value (`Some`) or a remembered absence (`None`, the
//! negative cache). Rules:
//! - a value is fresh for `ttl`, an absence for `negative_ttl`;
//! - values are weighed ([`Weigh`]) and the least recently used are evicted once the total
//!   passes `capacity_bytes`; values zero themselves on drop (they hold `Zeroizing` buffers), so
//!   eviction zeroes them as soon as no reader holds them any more;
//! - concurrent misses for one key share one load (a per-key `OnceCell`), and no lock is held
//!   across an await, so a slow load for one key never blocks another key;
//! - a load that fails with a transient error may be answered from an expired value up to
//!   `stale_if_error` old (and says so, so the caller can log a warning); that stale value then
//!   answers without a load for [`STALE_RETRY`], so the kernel's lookup, getattr, open and read
//!   of one access do not each wait out the vault's deadline again;
//! - `insert`/`invalidate` supersede a load in flight, so a write is never overwritten by an
//!   older read that finishes after it (read-your-writes).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

/// How long entries stay fresh and how much they may weigh in total.
#[derive(Clone, Copy, Debug)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    /// Sum of [`Weigh::weight`] over cached values before the least recently used are evicted.
    pub capacity_bytes: usize,
    /// Serve an expired value up to this age when a reload fails with a transient error.
    pub stale_if_error: Option<Duration>,
}

/// Approximate memory held by a cached value, in bytes.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// After a stale answer, how long the stale value answers before the vault is asked again.
pub const STALE_RETRY: Duration = Duration::from_secs(1);

/// Weight charged for a remembered absence (key and bookkeeping).
const ABSENT_WEIGHT: usize = 64;

/// The answer of the cache for one key.
#[derive(Debug)]
pub struct Fetched<V, E> {
    /// `None`: the key is known not to exist.
    pub value: Option<Arc<V>>,
    /// How much longer this answer may be trusted (for kernel entry/attr TTLs).
    pub valid_for: Duration,
    /// Set when this was served from an expired entry because the reload failed with this
    /// error (`stale_if_error`).
    pub stale_because: Option<E>,
}

impl<V, E: Clone> Clone for Fetched<V, E> {
    fn clone(&self) -> Self {
        Fetched {
            value: self.value.clone(),
            valid_for: self.valid_for,
            stale_because: self.stale_because.clone(),
        }
    }
}

struct Slot<V> {
    value: Option<Arc<V>>,
    stored_at: Instant,
    weight: usize,
    /// Set when an expired value was served because a reload failed: until then it answers
    /// without a load.
    stale_until: Option<Instant>,
    /// Set when a background revalidation confirmed the value: fresh this long from
    /// `stored_at` instead of the policy's TTL.
    confirmed_for: Option<Duration>,
}

/// One load in flight, shared by every concurrent miss of its key.
struct Flight<V, E> {
    result: OnceCell<Result<Fetched<V, E>, E>>,
    /// Set when a write or an invalidation happened after this load started: its result must
    /// not be cached.
    superseded: AtomicBool,
}

struct Inner<V, E> {
    lru: LruCache<String, Slot<V>>,
    bytes: usize,
    in_flight: HashMap<String, Arc<Flight<V, E>>>,
}

pub struct Cache<V, E> {
    policy: CachePolicy,
    inner: Mutex<Inner<V, E>>,
}

impl<V, E> Cache<V, E>
where
    V: Weigh + Send + Sync,
    E: Clone + Send + Sync,
{
    pub fn new(policy: CachePolicy) -> Self {
        Cache {
            policy,
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                in_flight: HashMap::new(),
            }),
        }
    }

    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    fn ttl_of(&self, slot: &Slot<V>) -> Duration {
        if slot.value.is_some() {
            slot.confirmed_for.unwrap_or(self.policy.ttl)
        } else {
            self.policy.negative_ttl
        }
    }

    /// A background revalidation found the value of `key` still current (`unchanged` says so
    /// of the held value): fresh for `fresh_for` from now. `false` when there is no value to
    /// renew, or it changed.
    pub fn renew(
        &self,
        key: &str,
        fresh_for: Duration,
        unchanged: impl FnOnce(&V) -> bool,
    ) -> bool {
        let mut inner = self.inner.lock();
        let Some(slot) = inner.lru.peek_mut(key) else {
            return false;
        };
        match &slot.value {
            Some(value) if unchanged(value) => {
                slot.stored_at = Instant::now();
                slot.confirmed_for = Some(fresh_for);
                slot.stale_until = None;
                true
            }
            _ => false,
        }
    }

    /// Every key held, with whether it holds a value (not an absence).
    pub fn keys(&self) -> Vec<(String, bool)> {
        self.inner
            .lock()
            .lru
            .iter()
            .map(|(key, slot)| (key.clone(), slot.value.is_some()))
            .collect()
    }

    /// The fresh entry for `key`, if any (no load).
    pub fn peek(&self, key: &str) -> Option<Fetched<V, E>> {
        let mut inner = self.inner.lock();
        let ttl_of = |slot: &Slot<V>| self.ttl_of(slot);
        let slot = inner.lru.get(key)?;
        let remaining = ttl_of(slot)
            .checked_sub(slot.stored_at.elapsed())
            .filter(|r| !r.is_zero())
            .or_else(|| {
                slot.stale_until
                    .and_then(|until| until.checked_duration_since(Instant::now()))
                    .filter(|r| !r.is_zero())
            })?;
        Some(Fetched {
            value: slot.value.clone(),
            valid_for: remaining,
            stale_because: None,
        })
    }

    /// The value held for `key`, fresh or expired (no load): for entries whose freshness the
    /// caller checks itself (a rendered file, valid while its inputs are unchanged).
    pub fn peek_stale(&self, key: &str) -> Option<Arc<V>> {
        self.inner.lock().lru.get(key)?.value.clone()
    }

    /// The fresh entry for `key`, or the result of `load` (shared with every concurrent caller
    /// for the same key). `load` answers `Ok(None)` for "does not exist" (negative-cached).
    /// `is_transient` says which errors may be answered from a stale value.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &str,
        load: F,
        is_transient: impl Fn(&E) -> bool,
    ) -> Result<Fetched<V, E>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(fresh) = self.peek(key) {
            return Ok(fresh);
        }
        let flight = {
            let mut inner = self.inner.lock();
            inner
                .in_flight
                .entry(key.to_owned())
                .or_insert_with(|| {
                    Arc::new(Flight {
                        result: OnceCell::new(),
                        superseded: AtomicBool::new(false),
                    })
                })
                .clone()
        };
        let result = flight
            .result
            .get_or_init(|| async {
                let loaded = load().await;
                self.complete_load(key, &flight, loaded, &is_transient)
            })
            .await
            .clone();
        let mut inner = self.inner.lock();
        if inner
            .in_flight
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &flight))
        {
            inner.in_flight.remove(key);
        }
        result
    }

    fn complete_load(
        &self,
        key: &str,
        flight: &Flight<V, E>,
        loaded: Result<Option<V>, E>,
        is_transient: &impl Fn(&E) -> bool,
    ) -> Result<Fetched<V, E>, E> {
        let mut inner = self.inner.lock();
        match loaded {
            Ok(value) => {
                let value = value.map(Arc::new);
                let valid_for = if value.is_some() {
                    self.policy.ttl
                } else {
                    self.policy.negative_ttl
                };
                // Checked under the lock that `insert`/`invalidate` take to set it.
                if !flight.superseded.load(Ordering::SeqCst) {
                    Self::store(&mut inner, &self.policy, key, value.clone());
                }
                Ok(Fetched {
                    value,
                    valid_for,
                    stale_because: None,
                })
            }
            Err(error) => {
                if let (true, Some(max_age)) = (is_transient(&error), self.policy.stale_if_error) {
                    if let Some(slot) = inner.lru.get_mut(key) {
                        if slot.value.is_some() && slot.stored_at.elapsed() <= max_age {
                            // Ask again soon (the vault may be back), not at once.
                            slot.stale_until = Some(Instant::now() + STALE_RETRY);
                            return Ok(Fetched {
                                value: slot.value.clone(),
                                valid_for: STALE_RETRY,
                                stale_because: Some(error.clone()),
                            });
                        }
                    }
                }
                Err(error)
            }
        }
    }

    fn store(inner: &mut Inner<V, E>, policy: &CachePolicy, key: &str, value: Option<Arc<V>>) {
        let weight = key.len()
            + value
                .as_ref()
                .map_or(ABSENT_WEIGHT, |value| value.weight() + ABSENT_WEIGHT);
        if let Some(old) = inner.lru.pop(key) {
            inner.bytes -= old.weight;
        }
        if weight > policy.capacity_bytes {
            // Larger than the whole cache: serve it, never keep it.
            return;
        }
        inner.lru.put(
            key.to_owned(),
            Slot {
                value,
                stored_at: Instant::now(),
                weight,
                stale_until: None,
                confirmed_for: None,
            },
        );
        inner.bytes += weight;
        while inner.bytes > policy.capacity_bytes {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.weight,
                None => break,
            }
        }
        // Entries nobody can use any more (expired, and past what `stale_if_error` may serve)
        // go from the least recently used end, so a long-running daemon does not keep an
        // absence for every name it was ever asked (one step per store: amortised O(1)).
        while inner
            .lru
            .peek_lru()
            .is_some_and(|(_, slot)| Self::useless(policy, slot))
        {
            if let Some((_, expired)) = inner.lru.pop_lru() {
                inner.bytes -= expired.weight;
            }
        }
    }

    /// Expired, and too old to be served stale.
    fn useless(policy: &CachePolicy, slot: &Slot<V>) -> bool {
        let keep_for = match slot.value {
            Some(_) => slot
                .confirmed_for
                .unwrap_or(policy.ttl)
                .max(policy.ttl)
                .max(policy.stale_if_error.unwrap_or(Duration::ZERO)),
            None => policy.negative_ttl,
        };
        slot.stored_at.elapsed() > keep_for
            && slot.stale_until.is_none_or(|until| until <= Instant::now())
    }

    fn supersede_in_flight(inner: &mut Inner<V, E>, key: &str) {
        if let Some(flight) = inner.in_flight.remove(key) {
            flight.superseded.store(true, Ordering::SeqCst);
        }
    }

    /// Remember `value` (or an absence) for `key` as of now, superseding any load in flight.
    pub fn insert(&self, key: &str, value: Option<V>) -> Option<Arc<V>> {
        let value = value.map(Arc::new);
        let mut inner = self.inner.lock();
        Self::supersede_in_flight(&mut inner, key);
        Self::store(&mut inner, &self.policy, key, value.clone());
        value
    }

    /// Forget `key` and supersede any load in flight for it.
    pub fn invalidate(&self, key: &str) {
        let mut inner = self.inner.lock();
        Self::supersede_in_flight(&mut inner, key);
        if let Some(old) = inner.lru.pop(key) {
            inner.bytes -= old.weight;
        }
    }

    /// Forget everything (SIGHUP).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        let keys: Vec<String> = inner.in_flight.keys().cloned().collect();
        for key in keys {
            Self::supersede_in_flight(&mut inner, &key);
        }
        inner.lru.clear();
        inner.bytes = 0;
    }

    /// Total weight held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Number of entries held (values and absences, fresh or not).
    pub fn len(&self) -> usize {
        self.inner.lock().lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use zeroize::Zeroizing;

    struct Blob(Zeroizing<Vec<u8>>);
    impl Weigh for Blob {
        fn weight(&self) -> usize {
            self.0.len()
        }
    }

    fn policy(capacity_bytes: usize) -> CachePolicy {
        CachePolicy {
            ttl: Duration::from_millis(200),
            negative_ttl: Duration::from_millis(100),
            capacity_bytes,
            stale_if_error: None,
        }
    }

    fn blob(n: usize) -> Blob {
        Blob(Zeroizing::new(vec![b'x'; n]))
    }

    #[tokio::test]
    async fn a_renewed_value_stays_fresh_past_its_ttl_and_a_changed_one_does_not() {
        let cache: Cache<Blob, String> = Cache::new(policy(1 << 20));
        cache.insert("same", Some(blob(1)));
        cache.insert("changed", Some(blob(1)));
        assert!(cache.renew("same", Duration::from_secs(5), |b| b.0.len() == 1));
        assert!(!cache.renew("changed", Duration::from_secs(5), |b| b.0.len() == 2));
        assert!(!cache.renew("absent", Duration::from_secs(5), |_| true));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(cache.peek("same").is_some(), "renewed past the 200 ms TTL");
        assert!(cache.peek("changed").is_none(), "expired as usual");
        let mut keys = cache.keys();
        keys.sort();
        assert_eq!(
            keys,
            vec![("changed".to_owned(), true), ("same".to_owned(), true)]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_share_one_load() {
        let cache: Arc<Cache<Blob, String>> = Arc::new(Cache::new(policy(1 << 20)));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let cache = cache.clone();
            let loads = loads.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(
                        "k",
                        || async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(Some(blob(10)))
                        },
                        |_| false,
                    )
                    .await
            }));
        }
        for task in tasks {
            let fetched = task.await.expect("join").expect("load");
            assert_eq!(fetched.value.expect("value").0.len(), 10);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_slow_load_does_not_block_other_keys() {
        let cache: Arc<Cache<Blob, String>> = Arc::new(Cache::new(policy(1 << 20)));
        let slow_cache = cache.clone();
        let slow = tokio::spawn(async move {
            slow_cache
                .get_or_load(
                    "slow",
                    || async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(Some(blob(1)))
                    },
                    |_| false,
                )
                .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let fast = tokio::time::timeout(
            Duration::from_millis(500),
            cache.get_or_load("fast", || async { Ok(Some(blob(1))) }, |_| false),
        )
        .await
        .expect("not blocked by the slow key")
        .expect("load");
        assert!(fast.value.is_some());
        slow.abort();
    }

    #[tokio::test]
    async fn entries_expire_and_absences_are_remembered() {
        let cache: Cache<Blob, String> = Cache::new(policy(1 << 20));
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        };
        assert!(cache
            .get_or_load("gone", load, |_| false)
            .await
            .expect("l")
            .value
            .is_none());
        assert!(cache
            .get_or_load("gone", load, |_| false)
            .await
            .expect("l")
            .value
            .is_none());
        assert_eq!(loads.load(Ordering::SeqCst), 1, "negative cache hit");
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache.get_or_load("gone", load, |_| false).await.expect("l");
        assert_eq!(loads.load(Ordering::SeqCst), 2, "negative entry expired");
    }

    #[tokio::test]
    async fn expired_entries_go_as_new_ones_are_stored() {
        let cache: Cache<Blob, String> = Cache::new(policy(1 << 20));
        for i in 0..100 {
            cache.insert(&format!("absent-{i}"), None);
        }
        assert_eq!(cache.len(), 100);
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache.insert("fresh", Some(blob(10)));
        assert_eq!(cache.len(), 1, "expired absences went: {}", cache.len());
    }

    #[tokio::test]
    async fn least_recently_used_values_are_evicted_by_weight() {
        let cache: Cache<Blob, String> = Cache::new(policy(1000));
        cache.insert("a", Some(blob(300)));
        cache.insert("b", Some(blob(300)));
        assert!(cache.peek("a").is_some()); // a is now the most recently used
        cache.insert("c", Some(blob(300)));
        assert!(cache.peek("b").is_none(), "b was least recently used");
        assert!(cache.peek("a").is_some());
        assert!(cache.peek("c").is_some());
        assert!(cache.bytes() <= 1000);
        cache.insert("huge", Some(blob(5000)));
        assert!(
            cache.peek("huge").is_none(),
            "larger than the cache: never kept"
        );
    }

    #[tokio::test]
    async fn stale_values_answer_transient_errors_within_max_age() {
        let mut p = policy(1 << 20);
        p.ttl = Duration::from_millis(20);
        p.stale_if_error = Some(Duration::from_secs(60));
        let cache: Cache<Blob, String> = Cache::new(p);
        cache.insert("k", Some(blob(3)));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let fetched = cache
            .get_or_load("k", || async { Err("down".to_owned()) }, |_| true)
            .await
            .expect("stale answer");
        assert_eq!(fetched.stale_because.as_deref(), Some("down"));
        // For a while the stale value answers without asking the vault again.
        let again = cache
            .get_or_load("k", || async { panic!("loaded again at once") }, |_| true)
            .await
            .expect("stale answer");
        assert!(again.value.is_some());
        assert!(again.valid_for <= STALE_RETRY);

        cache.insert("j", Some(blob(3)));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let error = cache
            .get_or_load("j", || async { Err("denied".to_owned()) }, |_| false)
            .await;
        assert!(error.is_err(), "non-transient errors are not masked");
    }

    #[tokio::test]
    async fn a_write_supersedes_an_older_load_in_flight() {
        let cache: Arc<Cache<Blob, String>> = Arc::new(Cache::new(policy(1 << 20)));
        let reader_cache = cache.clone();
        let reader = tokio::spawn(async move {
            reader_cache
                .get_or_load(
                    "k",
                    || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Some(blob(1)))
                    },
                    |_| false,
                )
                .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cache.insert("k", Some(blob(2)));
        reader.await.expect("join").expect("load");
        let now = cache.peek("k").expect("cached").value.expect("value");
        assert_eq!(now.0.len(), 2, "the older read did not overwrite the write");
    }
}
