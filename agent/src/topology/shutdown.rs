//! One shutdown clock. It starts at SIGTERM and every phase after it (unready, stop inputs,
//! drain outputs, final metrics, join threads) is bounded by one of its two deadlines:
//! outputs drain until `grace` has passed, and the process exits by `grace` + 1 s whatever
//! any component or endpoint does (a watchdog thread enforces the second, should an await
//! not be bounded after all).

use std::future::Future;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use tokio::time::Instant;

/// The time between the drain deadline and the exit deadline: final metrics, joining the
/// disk buffer's threads and the exit itself happen in it.
pub const EXIT_MARGIN: Duration = Duration::from_secs(1);

/// Part of the margin kept for the steps after the final metrics (joins, exit).
const FINAL_STEPS: Duration = Duration::from_millis(300);

/// The named phases, for the agent's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Inputs keep accepting the application's last lines.
    Linger,
    /// Inputs stop accepting and their tasks end.
    StopInputs,
    /// Sinks flush what they hold.
    DrainOutputs,
    /// The last (partial) metrics period is published.
    FinalMetrics,
    /// The disk buffer's threads record the last acknowledgements.
    JoinThreads,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Linger => "linger",
            Self::StopInputs => "stop_inputs",
            Self::DrainOutputs => "drain_outputs",
            Self::FinalMetrics => "final_metrics",
            Self::JoinThreads => "join_threads",
        }
    }
}

/// The shutdown clock, started at SIGTERM (or when every input has ended).
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    started: Instant,
    grace: Duration,
    linger: Duration,
}

impl Shutdown {
    /// Starts the clock now and arms the watchdog, which stands down when the returned
    /// guard is dropped (the shutdown finished in time).
    pub fn begin(grace: Duration, linger: Duration) -> (Self, Watchdog) {
        let shutdown = Self {
            started: Instant::now(),
            grace,
            linger: linger.min(grace),
        };
        let watchdog = shutdown.arm_watchdog();
        (shutdown, watchdog)
    }

    /// When outputs must have drained: SIGTERM + grace.
    pub fn drain_deadline(&self) -> Instant {
        self.started + self.grace
    }

    /// When the process must have exited: SIGTERM + grace + [`EXIT_MARGIN`].
    pub fn exit_deadline(&self) -> Instant {
        self.drain_deadline() + EXIT_MARGIN
    }

    /// Until when inputs keep accepting (the application's last lines).
    pub fn linger_deadline(&self) -> Instant {
        self.started + self.linger
    }

    /// When inputs must have stopped after the linger: a small share of what is left of the
    /// grace, so draining gets most.
    pub fn inputs_deadline(&self) -> Instant {
        let left = self.grace.saturating_sub(self.linger);
        self.linger_deadline() + (left / 4).min(Duration::from_secs(2))
    }

    /// When the final metrics must be out: what the drain left of the margin.
    pub fn final_metrics_deadline(&self) -> Instant {
        self.exit_deadline() - FINAL_STEPS
    }

    /// When the buffer's threads must have been joined.
    pub fn join_deadline(&self) -> Instant {
        self.exit_deadline() - FINAL_STEPS / 3
    }

    /// Waits until `deadline` unless `work` ends first; neither is a failure.
    pub async fn wait<F: Future>(&self, phase: Phase, deadline: Instant, work: F) {
        let ended = tokio::time::timeout_at(deadline, work).await.is_ok();
        tracing::debug!(
            phase = phase.as_str(),
            ended_early = ended,
            "shutdown phase done"
        );
    }

    /// Runs one phase until `deadline`; `None` (logged) when the deadline cut it short.
    pub async fn phase<F: Future>(
        &self,
        phase: Phase,
        deadline: Instant,
        work: F,
    ) -> Option<F::Output> {
        let start = Instant::now();
        let outcome = tokio::time::timeout_at(deadline, work).await.ok();
        let elapsed_ms = start.elapsed().as_millis() as u64;
        match outcome {
            Some(_) => tracing::debug!(phase = phase.as_str(), elapsed_ms, "shutdown phase done"),
            None => tracing::warn!(
                phase = phase.as_str(),
                elapsed_ms,
                "shutdown phase cut short by its deadline"
            ),
        }
        outcome
    }

    /// A thread that ends the process at the exit deadline if it is still running: the
    /// promise to ECS (stop within the grace, before its SIGKILL) must hold even if some
    /// await turned out unbounded. Exits 1: reaching it is a bug.
    fn arm_watchdog(&self) -> Watchdog {
        let left = self
            .exit_deadline()
            .saturating_duration_since(Instant::now());
        let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("shutdown-watchdog".into())
            .spawn(move || {
                if disarmed.recv_timeout(left) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
                tracing::error!(
                    "shutdown watchdog: still running at the exit deadline; exiting now (undelivered events are lost unless the disk buffer holds them)"
                );
                std::process::exit(1);
            });
        if let Err(error) = spawned {
            tracing::warn!(error = %error, "cannot start the shutdown watchdog");
        }
        Watchdog { _disarm: disarm }
    }
}

/// Keeps the watchdog armed while held.
#[derive(Debug)]
pub struct Watchdog {
    _disarm: std::sync::mpsc::Sender<()>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_deadline_falls_inside_grace_plus_one_second_in_order() {
        let (shutdown, _watchdog) = Shutdown::begin(Duration::from_secs(9), Duration::from_secs(3));
        let start = shutdown.started;
        let order = [
            shutdown.linger_deadline(),
            shutdown.inputs_deadline(),
            shutdown.drain_deadline(),
            shutdown.final_metrics_deadline(),
            shutdown.join_deadline(),
            shutdown.exit_deadline(),
        ];
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        assert_eq!(order[0] - start, Duration::from_secs(3));
        assert_eq!(
            order[1] - start,
            Duration::from_millis(4500),
            "a quarter of what is left"
        );
        assert_eq!(order[5] - start, Duration::from_secs(10));
        // A linger longer than the grace is held to it.
        let (long, _watchdog) = Shutdown::begin(Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(long.linger_deadline(), long.drain_deadline());
    }

    #[tokio::test]
    async fn a_phase_is_cut_at_its_deadline() {
        let (shutdown, _watchdog) = Shutdown::begin(Duration::from_secs(1), Duration::ZERO);
        let forever = std::future::pending::<()>();
        let cut = shutdown
            .phase(Phase::DrainOutputs, shutdown.drain_deadline(), forever)
            .await;
        assert!(cut.is_none());
        let done = shutdown
            .phase(Phase::FinalMetrics, shutdown.exit_deadline(), async { 7 })
            .await;
        assert_eq!(done, Some(7));
    }
}
