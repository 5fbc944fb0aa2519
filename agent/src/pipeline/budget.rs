//! The memory ceiling: every accepted event holds bytes of a fixed budget until a sink has
//! delivered (or definitively dropped) it. When the budget is spent, sources wait, which is
//! how back-pressure reaches the application (forward withholds acks and stops reading,
//! stdin blocks, file tail pauses, HTTP answers 503): memory does not grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// A shared byte budget. Cloning shares it.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    semaphore: Semaphore,
    limit: usize,
    in_use: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                semaphore: Semaphore::new(limit),
                limit,
                in_use: AtomicUsize::new(0),
            }),
        }
    }

    /// The ceiling in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes currently held by accepted, undelivered events.
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::Relaxed)
    }

    /// Waits until `bytes` are free and takes them. A request larger than the whole budget
    /// takes the whole budget (so one huge line cannot deadlock the pipeline).
    /// Returns the number of bytes actually taken, to pass back to [`release`](Self::release).
    pub async fn acquire(&self, bytes: usize) -> usize {
        let bytes = self.clamp(bytes);
        // The semaphore is never closed, so acquire cannot fail.
        if let Ok(permit) = self.inner.semaphore.acquire_many(bytes as u32).await {
            permit.forget();
        }
        self.inner.in_use.fetch_add(bytes, Ordering::Relaxed);
        bytes
    }

    /// Takes `bytes` if they are free now; `None` when the budget is spent.
    pub fn try_acquire(&self, bytes: usize) -> Option<usize> {
        let bytes = self.clamp(bytes);
        let permit = self.inner.semaphore.try_acquire_many(bytes as u32).ok()?;
        permit.forget();
        self.inner.in_use.fetch_add(bytes, Ordering::Relaxed);
        Some(bytes)
    }

    /// Gives back bytes taken by `acquire`/`try_acquire`.
    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.inner.in_use.fetch_sub(bytes, Ordering::Relaxed);
            self.inner.semaphore.add_permits(bytes);
        }
    }

    fn clamp(&self, bytes: usize) -> usize {
        bytes.clamp(1, self.inner.limit.min(u32::MAX as usize))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn acquire_waits_for_release() {
        let budget = MemoryBudget::new(100);
        assert_eq!(budget.acquire(60).await, 60);
        assert_eq!(budget.try_acquire(50), None);
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.acquire(50).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "must wait while the budget is spent");
        budget.release(60);
        assert_eq!(waiter.await.unwrap(), 50);
        assert_eq!(budget.in_use(), 50);
    }

    #[tokio::test]
    async fn oversized_requests_take_the_whole_budget() {
        let budget = MemoryBudget::new(100);
        assert_eq!(budget.acquire(1_000).await, 100);
        assert_eq!(budget.try_acquire(1), None);
        budget.release(100);
        assert_eq!(budget.try_acquire(1), Some(1));
    }
}
