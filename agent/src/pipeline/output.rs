//! Where accepted batches go: the [`Output`] port of the pipeline. The in-memory channel
//! ([`MemoryOutput`]) is here; the disk buffer implements it in `buffer`. The pipeline knows
//! neither sinks nor the buffer: the topology plugs one output in.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use super::Batch;
use super::budget::MemoryBudget;
use super::event::Event;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The pipeline has shut down; nothing more is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed;

/// Why a non-waiting send refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// The memory ceiling is reached; try again later.
    #[error("the pipeline is full")]
    Full,
    /// More than the whole budget: it could never be accepted.
    #[error("larger than the memory ceiling")]
    TooLarge,
    /// The pipeline has shut down.
    #[error("the pipeline is closed")]
    Closed,
}

impl From<Closed> for TrySendError {
    fn from(Closed: Closed) -> Self {
        Self::Closed
    }
}

/// Takes processed batches; returning `Ok` is the moment they count as accepted.
///
/// Both methods must be cancel-safe: a future dropped before it resolved has accepted
/// nothing and holds nothing (no budget, no queue slot).
pub trait Output: Send + Sync + std::fmt::Debug {
    /// Queues `events` (`cost` budget bytes), waiting while there is no room.
    fn push(&self, events: Vec<Event>, cost: usize) -> BoxFuture<'_, Result<(), Closed>>;
    /// Queues `events` only if there is room now.
    fn try_push(&self, events: Vec<Event>, cost: usize) -> BoxFuture<'_, Result<(), TrySendError>>;
}

/// Straight to the sink over a bounded channel, each batch holding its budget bytes until
/// the sink has delivered it.
#[derive(Debug)]
pub struct MemoryOutput {
    tx: mpsc::Sender<Batch>,
    budget: MemoryBudget,
}

/// Batches in the channel at most; the budget is what bounds memory.
pub const CHANNEL_BATCHES: usize = 1024;

impl MemoryOutput {
    /// The output and the receiver the sink drains.
    pub fn new(budget: MemoryBudget) -> (Self, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        (Self { tx, budget }, rx)
    }
}

impl Output for MemoryOutput {
    fn push(&self, events: Vec<Event>, cost: usize) -> BoxFuture<'_, Result<(), Closed>> {
        Box::pin(async move {
            // Held (released if this future is dropped) until the batch is in the channel;
            // from then on the sink releases it.
            let held = self.budget.acquire_held(cost).await;
            self.tx.send(Batch { events }).await.map_err(|_| Closed)?;
            held.keep();
            Ok(())
        })
    }

    fn try_push(&self, events: Vec<Event>, cost: usize) -> BoxFuture<'_, Result<(), TrySendError>> {
        Box::pin(async move {
            let held = self
                .budget
                .try_acquire_held(cost)
                .ok_or(TrySendError::Full)?;
            self.tx
                .try_send(Batch { events })
                .map_err(|error| match error {
                    mpsc::error::TrySendError::Full(_) => TrySendError::Full,
                    mpsc::error::TrySendError::Closed(_) => TrySendError::Closed,
                })?;
            held.keep();
            Ok(())
        })
    }
}
