//! The sources: started from the configuration, stopped by the shutdown's first phase.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::shutdown::{Phase, Shutdown};
use crate::config::Config;
use crate::metrics::SourceKind;
use crate::pipeline::EventSenders;
use crate::request_metrics::Recorder;
use crate::sources;

/// The running sources.
#[derive(Debug)]
pub(super) struct Inputs {
    tasks: JoinSet<anyhow::Result<()>>,
    /// Stops the sources and closes the pipeline (a source waiting for room gives up).
    stop: CancellationToken,
}

impl Inputs {
    /// Starts every configured source, each with its own sender.
    pub(super) fn spawn(
        config: &Config,
        senders: &EventSenders,
        recorder: Option<&Recorder>,
        stop: CancellationToken,
    ) -> Self {
        let mut tasks = JoinSet::new();
        let s = &config.sources;
        let out = |kind| senders.for_source(kind);
        if s.stdin.is_some() {
            let run = sources::stdin::run(out(SourceKind::Stdin), stop.child_token());
            tasks.spawn(run.instrument(tracing::info_span!("source", kind = "stdin")));
        }
        if let Some(forward) = &s.forward {
            let run = sources::forward::run(
                forward.clone(),
                out(SourceKind::Forward),
                stop.child_token(),
            );
            tasks.spawn(run.instrument(tracing::info_span!("source", kind = "forward")));
        }
        if let Some(file) = &s.file {
            let run = sources::file::run(file.clone(), out(SourceKind::File), stop.child_token());
            tasks.spawn(run.instrument(tracing::info_span!("source", kind = "file")));
        }
        if let Some(otlp) = &s.otlp {
            // Timings still flow (to Prometheus only) when publishing is off; with metrics
            // disabled they go to a recorder nobody reads.
            let recorder = recorder.cloned().unwrap_or_else(|| Recorder::new(1));
            let run = sources::otlp::run(
                otlp.clone(),
                out(SourceKind::Otlp),
                recorder,
                stop.child_token(),
            );
            tasks.spawn(run.instrument(tracing::info_span!("source", kind = "otlp")));
        }
        if let Some(http) = &s.http {
            let run = sources::http::run(http.clone(), out(SourceKind::Http), stop.child_token());
            tasks.spawn(run.instrument(tracing::info_span!("source", kind = "http")));
        }
        Self { tasks, stop }
    }

    /// How many sources run.
    pub(super) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Waits for `signal`, or for every source to end by itself (stdin at EOF).
    pub(super) async fn until_stopped(&mut self, signal: impl std::future::Future<Output = ()>) {
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => return,
                done = self.tasks.join_next() => match done {
                    None => return,
                    Some(Ok(Err(error))) => tracing::error!(error = %format!("{error:#}"), "a source failed"),
                    Some(Err(error)) => tracing::error!(error = %error, "a source task panicked"),
                    Some(Ok(Ok(()))) => {}
                },
            }
        }
    }

    /// Lets the sources accept the application's last lines until the linger deadline (or
    /// until they have all ended), then stops them; those still running at the inputs'
    /// deadline are aborted, which drops their senders and so closes the pipeline.
    pub(super) async fn stop(&mut self, shutdown: &Shutdown) {
        let tasks = &mut self.tasks;
        shutdown
            .wait(Phase::Linger, shutdown.linger_deadline(), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        self.stop.cancel();
        let tasks = &mut self.tasks;
        let stopped = shutdown
            .phase(Phase::StopInputs, shutdown.inputs_deadline(), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        if stopped.is_none() {
            self.tasks.abort_all();
        }
    }
}
