//! Long-running operation polling (the SDKs' `DeleteRecoverPollingMethod`): after a delete or a
//! recover, poll a resource until the operation has completed, with backoff, bounded by a
//! timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use super::VaultError;

/// What one poll said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollState {
    Done,
    Pending,
}

/// First delay: short, because `rm` waits for the deletion and a local vault finishes fast.
pub const POLL_INITIAL_DELAY: Duration = Duration::from_millis(50);
/// Longest delay between polls. The real service takes seconds to tens of seconds; a waiting
/// `rm` finishes at most this late, at two requests a second.
pub const POLL_MAX_DELAY: Duration = Duration::from_millis(500);

/// The delay after poll number `n` (0-based) before the next: 50 ms doubling up to 500 ms.
pub fn poll_delay(n: u32) -> Duration {
    POLL_INITIAL_DELAY
        .saturating_mul(1u32 << n.min(16))
        .min(POLL_MAX_DELAY)
}

/// The deletion rule of the SDKs' delete poller, applied to `GET /deletedsecrets/{name}`:
/// 200 → done, 404 → not yet, 403 → done (we may not read deleted secrets: nothing to wait on).
/// A poll that is throttled or fails transiently (after its own retries) is "not yet" too: the
/// operation itself was accepted, so only the poll's time bound should end the wait.
pub fn deleted_resource_state<T>(result: Result<T, VaultError>) -> Result<PollState, VaultError> {
    match result {
        Ok(_) => Ok(PollState::Done),
        Err(VaultError::NotFound { .. })
        | Err(VaultError::Throttled { .. })
        | Err(VaultError::Unavailable { .. })
        | Err(VaultError::Timeout { .. }) => Ok(PollState::Pending),
        Err(VaultError::Forbidden { .. }) | Err(VaultError::SecretDisabled { .. }) => {
            Ok(PollState::Done)
        }
        Err(e) => Err(e),
    }
}

/// Calls `poll` at once (as the SDKs' pollers do: a local vault, or one that finished fast, costs
/// no wait), then after delays backing off, until it says done, it fails, or `timeout` passes (→ [`VaultError::Timeout`] naming `what`). A poll still running at the
/// deadline is abandoned.
pub async fn poll_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut poll: F,
) -> Result<(), VaultError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PollState, VaultError>>,
{
    let started = Instant::now();
    let deadline = super::pipeline::deadline_after(timeout);
    let timed_out = || VaultError::Timeout {
        what: format!(
            "{what} did not complete within {}",
            humantime::format_duration(timeout)
        ),
    };
    let mut n = 0;
    loop {
        if n > 0 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(poll_delay(n - 1).min(remaining)).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out());
        }
        match tokio::time::timeout(remaining, poll()).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(PollState::Done)) => {
                tracing::debug!(what, polls = n + 1, elapsed = ?started.elapsed(), "poll: done");
                return Ok(());
            }
            Ok(Ok(PollState::Pending)) => {}
            Ok(Err(e)) => return Err(e),
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_start_fast_and_are_capped() {
        assert_eq!(poll_delay(0), Duration::from_millis(50));
        assert_eq!(poll_delay(1), Duration::from_millis(100));
        assert_eq!(poll_delay(3), Duration::from_millis(400));
        assert_eq!(poll_delay(4), Duration::from_millis(500));
        assert_eq!(poll_delay(100), Duration::from_millis(500));
    }

    #[test]
    fn deleted_resource_rule() {
        let nf = || VaultError::NotFound { name: "n".into() };
        assert_eq!(deleted_resource_state(Ok(())), Ok(PollState::Done));
        assert_eq!(
            deleted_resource_state::<()>(Err(nf())),
            Ok(PollState::Pending)
        );
        assert_eq!(
            deleted_resource_state::<()>(Err(VaultError::Forbidden {
                name: "n".into(),
                message: "m".into()
            })),
            Ok(PollState::Done)
        );
        let unavailable = VaultError::Unavailable {
            name: "n".into(),
            message: "m".into(),
        };
        assert_eq!(
            deleted_resource_state::<()>(Err(unavailable)),
            Ok(PollState::Pending)
        );
        let auth = VaultError::Auth {
            message: "m".into(),
        };
        assert_eq!(deleted_resource_state::<()>(Err(auth.clone())), Err(auth));
    }

    #[tokio::test]
    async fn polls_until_done() {
        let calls = AtomicU32::new(0);
        poll_until(Duration::from_secs(10), "deletion of x", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok(if n < 2 {
                PollState::Pending
            } else {
                PollState::Done
            })
        })
        .await
        .expect("done");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn times_out_naming_the_operation() {
        let err = poll_until(Duration::from_millis(300), "deletion of x", || async {
            Ok(PollState::Pending)
        })
        .await
        .expect_err("timeout");
        assert!(matches!(&err, VaultError::Timeout { what } if what.contains("deletion of x")));
    }
}
