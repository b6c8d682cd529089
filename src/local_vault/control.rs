//! Server-side test controls and limits: the vault clock (advanceable), request counters, fault
//! rules and throttling. All cheap, in memory, behind short `parking_lot` locks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::Rng;

use super::admin::{Counters, FaultSpec};

/// Wall clock plus an offset moved by `POST /_akvfs/clock/advance`. Everything time-based in the
/// vault (created/updated, deletion completion, purge schedule, token expiry) reads this clock.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock by `seconds`, within ±1,000 years so no time arithmetic can overflow.
    pub fn advance(&self, seconds: i64) {
        const LIMIT_MS: i64 = 1_000 * 366 * 86_400 * 1_000;
        let delta = seconds.saturating_mul(1000);
        let _ = self
            .offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(old.saturating_add(delta).clamp(-LIMIT_MS, LIMIT_MS))
            });
    }
}

#[derive(Debug, Default)]
pub struct CounterRegistry {
    inner: Mutex<Counters>,
}

impl CounterRegistry {
    pub fn record(&self, operation: &str, status: u16) {
        let mut counters = self.inner.lock();
        *counters
            .operations
            .entry(operation.to_owned())
            .or_default()
            .entry(status)
            .or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> Counters {
        self.inner.lock().clone()
    }

    pub fn reset(&self) {
        *self.inner.lock() = Counters::default();
    }
}

/// What a firing fault does to a request.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultAction {
    pub latency: Option<Duration>,
    pub drop_connection: bool,
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
}

#[derive(Debug, Default)]
pub struct FaultTable {
    rules: Mutex<Vec<FaultSpec>>,
}

impl FaultTable {
    pub fn add(&self, spec: FaultSpec) {
        self.rules.lock().push(spec);
    }

    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    /// The first matching rule that fires for this request, if any; spends one of its `count`.
    pub fn pick(&self, operation: &str) -> Option<FaultAction> {
        let mut rules = self.rules.lock();
        let mut rng = rand::thread_rng();
        let mut fired = None;
        for (i, rule) in rules.iter_mut().enumerate() {
            let matches = match &rule.operation {
                Some(op) => op == operation,
                None => operation != "token",
            };
            if !matches || rule.count == Some(0) {
                continue;
            }
            if rule.rate < 1.0 && rng.gen::<f64>() >= rule.rate {
                continue;
            }
            if let Some(count) = rule.count.as_mut() {
                *count -= 1;
            }
            fired = Some((
                i,
                FaultAction {
                    latency: rule.latency_ms.map(Duration::from_millis),
                    drop_connection: rule.drop_connection,
                    status: rule.status,
                    retry_after: rule.retry_after,
                },
            ));
            break;
        }
        // Spent rules go away so the table does not grow in long runs.
        if let Some((i, _)) = fired {
            if rules[i].count == Some(0) {
                rules.remove(i);
            }
        }
        fired.map(|(_, action)| action)
    }
}

/// Fixed 10-second windows, as the service publishes its limits ("N transactions per 10 s").
#[derive(Debug)]
pub struct Throttle {
    all_limit: Option<u32>,
    set_limit: Option<u32>,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    all: u32,
    sets: u32,
}

const WINDOW: Duration = Duration::from_secs(10);

impl Throttle {
    pub fn new(all_limit: Option<u32>, set_limit: Option<u32>) -> Self {
        Throttle {
            all_limit,
            set_limit: all_limit.and(set_limit),
            state: Mutex::new(Window {
                start: Instant::now(),
                all: 0,
                sets: 0,
            }),
        }
    }

    /// `Err(retry_after_secs)` when this request is over a limit; otherwise counts it.
    pub fn admit(&self, is_set: bool) -> Result<(), u64> {
        let Some(all_limit) = self.all_limit else {
            return Ok(());
        };
        let mut w = self.state.lock();
        let now = Instant::now();
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.all = 0;
            w.sets = 0;
        }
        let retry_after = || {
            let left = WINDOW.saturating_sub(now.duration_since(w.start));
            left.as_secs() + u64::from(left.subsec_nanos() > 0)
        };
        if w.all >= all_limit {
            return Err(retry_after().max(1));
        }
        if is_set {
            if let Some(set_limit) = self.set_limit {
                if w.sets >= set_limit {
                    return Err(retry_after().max(1));
                }
            }
            w.sets += 1;
        }
        w.all += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_with_count_fires_exactly_count_times() {
        let table = FaultTable::default();
        table.add(FaultSpec::status(503).times(2));
        assert!(table.pick("get_secret").is_some());
        assert!(table.pick("set_secret").is_some());
        assert!(table.pick("get_secret").is_none());
    }

    #[test]
    fn fault_without_operation_spares_token_endpoint() {
        let table = FaultTable::default();
        table.add(FaultSpec::status(500));
        assert!(table.pick("token").is_none());
        assert!(table.pick("list_secrets").is_some());
        table.clear();
        table.add(FaultSpec::status(500).for_operation("token"));
        assert!(table.pick("token").is_some());
        assert!(table.pick("list_secrets").is_none());
    }

    #[test]
    fn throttle_limits_transactions_and_sets_per_window() {
        let t = Throttle::new(Some(5), Some(2));
        assert!(t.admit(true).is_ok());
        assert!(t.admit(true).is_ok());
        assert!(t.admit(true).is_err());
        assert!(t.admit(false).is_ok());
        assert!(t.admit(false).is_ok());
        assert!(t.admit(false).is_ok());
        let retry = t.admit(false).expect_err("over the limit");
        assert!((1..=10).contains(&retry));
        let off = Throttle::new(None, Some(1));
        for _ in 0..100 {
            assert!(off.admit(true).is_ok());
        }
    }

    #[test]
    fn absurd_clock_advances_are_clamped_not_overflowing() {
        let c = Clock::default();
        c.advance(i64::MAX);
        c.advance(i64::MAX);
        assert!(c.now_secs() > 0);
        c.advance(i64::MIN);
        c.advance(i64::MIN);
        let _ = c.now_ms();
    }

    #[test]
    fn clock_advance_moves_now() {
        let c = Clock::default();
        let before = c.now_secs();
        c.advance(86_400);
        assert!(c.now_secs() >= before + 86_400);
    }
}
