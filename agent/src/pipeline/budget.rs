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

    /// What `/metrics` shows of the budget.
    pub fn usage(&self) -> crate::metrics::BufferUsage {
        crate::metrics::BufferUsage {
            in_use: self.in_use(),
            limit: self.limit(),
        }
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

    /// Like [`acquire`](Self::acquire), but the bytes come back by themselves when the
    /// returned guard is dropped, unless [`Held::keep`] hands them on: a caller cancelled
    /// between taking and queueing leaks nothing.
    pub async fn acquire_held(&self, bytes: usize) -> Held<'_> {
        let bytes = self.acquire(bytes).await;
        Held {
            budget: self,
            bytes,
        }
    }

    /// [`try_acquire`](Self::try_acquire) with a guard, as [`acquire_held`](Self::acquire_held).
    pub fn try_acquire_held(&self, bytes: usize) -> Option<Held<'_>> {
        let bytes = self.try_acquire(bytes)?;
        Some(Held {
            budget: self,
            bytes,
        })
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

/// Budget bytes taken and given back on drop unless kept.
#[derive(Debug)]
#[must_use = "dropping it gives the bytes back at once"]
pub struct Held<'a> {
    budget: &'a MemoryBudget,
    bytes: usize,
}

impl Held<'_> {
    /// Keeps the bytes taken (whoever now holds the events releases them); returns how many.
    pub fn keep(mut self) -> usize {
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
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
    async fn a_held_acquisition_dropped_before_it_is_kept_gives_the_bytes_back() {
        let budget = MemoryBudget::new(100);
        drop(budget.acquire_held(40).await);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.acquire_held(40).await.keep(), 40);
        assert_eq!(budget.in_use(), 40);
        // A waiter cancelled while it waits takes nothing.
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.acquire_held(80).await.keep() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        let _ = waiting.await;
        budget.release(40);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.try_acquire(100), Some(100));
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
