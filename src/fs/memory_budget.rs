//! The bound on what the mount holds in memory that is not cache and cannot be evicted:
//! editors' scratch files, created files not yet written (placeholders) and unsaved writes.
//! Without it, 128 scratch files of 16 MiB took a daemon to 2.3 GB. Beyond the bound a write
//! or create answers ENOSPC, and `statfs` reports the space as the filesystem's size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What one in-memory file costs besides its content (name, inode, maps), so that a million
/// empty files are bounded too.
pub(crate) const FILE_OVERHEAD: u64 = 512;

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub(crate) fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Take `bytes` if they fit under the limit.
    fn try_take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Take `bytes` whatever the limit (memory that already exists, moved between files).
    fn take(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::SeqCst);
    }

    fn give_back(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// The bytes one in-memory file holds against the budget, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<MemoryBudget>,
    overhead: u64,
    content: AtomicU64,
}

impl Charge {
    /// A new file: its overhead is taken now, or `None` when the budget is spent.
    pub(crate) fn for_new_file(budget: &Arc<MemoryBudget>) -> Option<Charge> {
        budget.try_take(FILE_OVERHEAD).then(|| Charge {
            budget: budget.clone(),
            overhead: FILE_OVERHEAD,
            content: AtomicU64::new(0),
        })
    }

    /// Content that exists already (a secret's value copied for editing, a file renamed):
    /// counted whatever the limit, so that the bound sees it and later growth is refused.
    pub(crate) fn for_existing(budget: &Arc<MemoryBudget>, content_len: usize) -> Charge {
        let content = content_len as u64;
        budget.take(FILE_OVERHEAD + content);
        Charge {
            budget: budget.clone(),
            overhead: FILE_OVERHEAD,
            content: AtomicU64::new(content),
        }
    }

    /// The content becomes `len` bytes long. Growing fails (nothing changes) when the budget
    /// is spent; shrinking always succeeds.
    pub(crate) fn resize(&self, len: usize) -> bool {
        let new = len as u64;
        let old = self.content.load(Ordering::SeqCst);
        if new > old {
            if !self.budget.try_take(new - old) {
                return false;
            }
        } else {
            self.budget.give_back(old - new);
        }
        self.content.store(new, Ordering::SeqCst);
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget
            .give_back(self.overhead + self.content.load(Ordering::SeqCst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_and_given_back_when_dropped() {
        let budget = MemoryBudget::new(4 * FILE_OVERHEAD);
        let a = Charge::for_new_file(&budget).expect("fits");
        assert!(a.resize(2 * FILE_OVERHEAD as usize));
        assert!(!a.resize(4 * FILE_OVERHEAD as usize), "beyond the limit");
        assert_eq!(budget.used(), 3 * FILE_OVERHEAD);
        let b = Charge::for_new_file(&budget).expect("fits");
        assert!(Charge::for_new_file(&budget).is_none(), "spent");
        assert!(a.resize(0));
        assert_eq!(budget.used(), 2 * FILE_OVERHEAD);
        drop((a, b));
        assert_eq!(budget.used(), 0);
        let moved = Charge::for_existing(&budget, 10 * FILE_OVERHEAD as usize);
        assert!(
            budget.used() > budget.limit(),
            "existing content is counted"
        );
        drop(moved);
        assert_eq!(budget.used(), 0);
    }
}
