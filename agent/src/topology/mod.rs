//! The topology: every component of the agent and every edge between them, built in one
//! place from a validated configuration, and the one shutdown that takes them down.
//!
//! ```text
//!  sources (forward, stdin, file, http, otlp)
//!     │ EventSender::send / try_send  (waits on the memory budget: back-pressure)
//!     ▼
//!  pipeline: parse once, redact, truncate ── observers: Sentry tap, request-timing recorder
//!     │ Output
//!     ▼
//!  MemoryOutput (bounded channel) │ DiskOutput (disk buffer → its reader thread)
//!     ▼
//!  CloudWatch Logs sink (PutLogEvents)          Sentry tap ──▶ Sentry sink (envelopes)
//!  recorder + uptime probes + self-metrics ──▶ metrics publisher (PutMetricData │ EMF)
//!  admin server: /health /ready /metrics (reads metrics, budget, recorder, probes, buffer)
//! ```
//!
//! Components never import each other across this picture: the pipeline owns its ports
//! (`Output`, `Observer`, `Ack`) and the topology plugs the implementations in.

mod inputs;
pub mod shutdown;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::inputs::Inputs;
use self::shutdown::{Phase, Shutdown};
use crate::buffer::{DiskBuffer, DiskOutput, Status, Threads};
use crate::config::{Config, Publish};
use crate::metrics::Metrics;
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::ecs::SharedTaskInfo;
use crate::pipeline::filter::Filters;
use crate::pipeline::multiline::Multiline;
use crate::pipeline::parse::{ParseFields, TimingFieldNames};
use crate::pipeline::redact::Redactor;
use crate::pipeline::{Batch, EventSenders, MemoryOutput, Processor};
use crate::request_metrics::Recorder;
use crate::sinks::cloudwatch_logs::CloudWatchLogsSink;
use crate::sinks::cloudwatch_metrics::{EMF_STREAM, MetricsPublisher, Output as MetricsOutput};
use crate::sinks::sentry::{SentrySink, SentryTap};
use crate::uptime::UptimeState;
use crate::{admin, sinks, uptime};

/// What every component shares: counters, the memory ceiling, readiness, task metadata.
#[derive(Debug, Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    budget: MemoryBudget,
    ready: Arc<AtomicBool>,
    task_info: SharedTaskInfo,
    uptime: UptimeState,
    /// Fires at the drain deadline: in-flight deliveries give up, disk records stay.
    abandon: CancellationToken,
}

/// The running agent.
#[derive(Debug)]
pub struct Topology {
    shared: Shared,
    grace: Duration,
    linger: Duration,
    inputs: Inputs,
    logs: JoinHandle<u64>,
    sentry: Option<(JoinHandle<()>, CancellationToken)>,
    publishers: JoinSet<()>,
    stop_publishers: CancellationToken,
    disk: Option<(Status, Threads)>,
    admin: (JoinHandle<std::io::Result<()>>, CancellationToken),
}

/// Builds and starts every component of `config`; the agent is ready when this returns.
pub async fn build(config: &Config) -> anyhow::Result<Topology> {
    let shared = Shared {
        metrics: Arc::new(Metrics::default()),
        budget: MemoryBudget::new(config.memory_limit_bytes()),
        ready: Arc::new(AtomicBool::new(false)),
        task_info: SharedTaskInfo::default(),
        uptime: UptimeState::default(),
        abandon: CancellationToken::new(),
    };
    let recorder = config
        .metrics
        .enabled
        .then(|| Recorder::from_config(&config.metrics));
    let sentry = attach_sentry(config, &shared).await;
    let processor = processor(
        config,
        recorder.as_ref(),
        sentry.as_ref().map(|(tap, _)| tap),
    );
    let processor = match multiline(config)? {
        Some(multiline) => processor.with_multiline(multiline),
        None => processor,
    };
    let stop_inputs = CancellationToken::new();
    let (senders, receiver, disk) = outputs(config, processor, &shared, &stop_inputs)?;
    let admin = serve_admin(config, &shared, &recorder, disk.as_ref()).await?;
    if let Ok(uri) = std::env::var("ECS_CONTAINER_METADATA_URI_V4") {
        tokio::spawn(
            crate::pipeline::ecs::fetch_in_background(uri, shared.task_info.clone())
                .instrument(tracing::info_span!("ecs_metadata")),
        );
    }
    let logs = spawn_logs_sink(config, &shared, receiver).await;
    let sentry = sentry.map(|(_, sink)| spawn_sentry_sink(sink));
    let stop_publishers = CancellationToken::new();
    let publishers = spawn_publishers(config, &shared, recorder.as_ref(), &stop_publishers).await;
    let inputs = Inputs::spawn(config, &senders, recorder.as_ref(), stop_inputs);
    drop(senders);
    shared.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        version = crate::VERSION,
        sources = inputs.len(),
        "agent started"
    );
    Ok(Topology {
        shared,
        grace: Duration::from_secs(config.shutdown_grace_secs),
        linger: config.input_linger(),
        inputs,
        logs,
        sentry,
        publishers,
        stop_publishers,
        disk,
        admin,
    })
}

/// Parsing, redaction and the observers.
fn processor(
    config: &Config,
    recorder: Option<&Recorder>,
    sentry: Option<&SentryTap>,
) -> Processor {
    let pipeline = &config.pipeline;
    let access_log = &config.metrics.access_log;
    let fields = ParseFields {
        timestamp: pipeline.timestamp_field.clone(),
        level: pipeline.level_field.clone(),
        timing: (config.metrics.enabled && access_log.enabled).then(|| TimingFieldNames {
            route: access_log.route.clone(),
            method: access_log.method.clone(),
            status: access_log.status.clone(),
            latency_ms: access_log.latency_ms.clone(),
        }),
    };
    let redactor = pipeline
        .redaction
        .enabled
        .then(|| Redactor::new(&pipeline.redaction.keys));
    let mut processor = Processor::new(
        fields,
        redactor,
        config.sinks.cloudwatch_logs.max_event_bytes,
    )
    .with_filters(Filters::new(&pipeline.filters));
    if let Some(recorder) = recorder {
        processor = processor.with_observer(Arc::new(recorder.clone()));
    }
    if let (Some(tap), Some(sentry)) = (sentry, &config.sinks.sentry) {
        processor = processor
            .with_observer(Arc::new(tap.clone()))
            .with_request_id_field(sentry.request_id_field.clone());
    }
    processor
}

/// The compiled `[pipeline.multiline]` rules, when it is on.
fn multiline(config: &Config) -> anyhow::Result<Option<Arc<Multiline>>> {
    let table = &config.pipeline.multiline;
    if !table.enabled {
        return Ok(None);
    }
    // Validation compiled the same patterns: an error here is a bug, not a bad config.
    let multiline = Multiline::new(table)
        .map_err(|errors| anyhow::anyhow!("multiline rules: {}", errors.join("; ")))?;
    Ok(Some(Arc::new(multiline)))
}

/// The Sentry sink and its tap; the DSN fetch (Secrets Manager) is bounded, so a stalled
/// endpoint delays the start by at most the sink's request timeout.
async fn attach_sentry(config: &Config, shared: &Shared) -> Option<(SentryTap, SentrySink)> {
    let sentry = config.sinks.sentry.as_ref()?;
    let timeout = Duration::from_millis(sentry.request_timeout_ms);
    sinks::sentry::attach(Some(sentry), &shared.metrics, &shared.task_info, timeout).await
}

/// The pipeline's two ends, and the disk buffer's status and threads when it is on.
type Outputs = (
    EventSenders,
    tokio::sync::mpsc::Receiver<Batch>,
    Option<(Status, Threads)>,
);

/// The pipeline's senders and the sink's receiver: through memory, or through the disk
/// buffer (whose threads are returned with its status).
fn outputs(
    config: &Config,
    processor: Processor,
    shared: &Shared,
    stop_inputs: &CancellationToken,
) -> anyhow::Result<Outputs> {
    let Some(disk) = &config.disk_buffer else {
        let (output, receiver) = MemoryOutput::new(shared.budget.clone());
        let senders = senders(processor, shared, Box::new(output), stop_inputs);
        return Ok((senders, receiver, None));
    };
    let buffer = DiskBuffer::open(disk, shared.metrics.clone())
        .map_err(|error| anyhow::anyhow!("disk buffer {}: {error}", disk.path.display()))?;
    let status = buffer.status();
    let (tx, receiver) = tokio::sync::mpsc::channel(crate::pipeline::output::CHANNEL_BATCHES);
    let (writer, threads) = buffer.start(shared.budget.clone(), tx, shared.abandon.clone())?;
    let output = DiskOutput::new(writer, status.clone());
    let senders = senders(processor, shared, Box::new(output), stop_inputs);
    Ok((senders, receiver, Some((status, threads))))
}

fn senders(
    processor: Processor,
    shared: &Shared,
    output: Box<dyn crate::pipeline::Output>,
    stop_inputs: &CancellationToken,
) -> EventSenders {
    EventSenders::new(
        processor,
        shared.budget.clone(),
        shared.metrics.clone(),
        output,
        stop_inputs.clone(),
    )
}

/// The admin server runs on a thread of its own with a one-thread runtime: `/health` and
/// `/ready` must answer however busy the data plane's workers are (a client flooding the
/// forward input once kept a /health request waiting for its whole burst).
async fn serve_admin(
    config: &Config,
    shared: &Shared,
    recorder: &Option<Recorder>,
    disk: Option<&(Status, Threads)>,
) -> anyhow::Result<(JoinHandle<std::io::Result<()>>, CancellationToken)> {
    let listener = std::net::TcpListener::bind(&config.admin.address)?;
    listener.set_nonblocking(true)?;
    tracing::info!(address = %config.admin.address, "admin server listening");
    let router = admin::router(admin::AdminState {
        ready: shared.ready.clone(),
        metrics: shared.metrics.clone(),
        budget: shared.budget.clone(),
        recorder: recorder.clone(),
        uptime: shared.uptime.clone(),
        disk: disk.map(|(status, _)| status.clone()),
    });
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let (done, finished) = tokio::sync::oneshot::channel();
    let span = tracing::info_span!("admin");
    std::thread::Builder::new()
        .name("agent-admin".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(
                        async move {
                            let listener = tokio::net::TcpListener::from_std(listener)?;
                            axum::serve(listener, router)
                                .with_graceful_shutdown(async move { stopped.cancelled().await })
                                .await
                        }
                        .instrument(span),
                    )
                });
            let _ = done.send(served);
        })?;
    let task = tokio::spawn(async move { finished.await.unwrap_or(Ok(())) });
    Ok((task, stop))
}

async fn spawn_logs_sink(
    config: &Config,
    shared: &Shared,
    receiver: tokio::sync::mpsc::Receiver<Batch>,
) -> JoinHandle<u64> {
    let logs = &config.sinks.cloudwatch_logs;
    let sink = CloudWatchLogsSink::new(
        sinks::cloudwatch_logs::client(logs).await,
        logs.clone(),
        shared.budget.clone(),
        shared.metrics.clone(),
        shared.task_info.clone(),
        shared.abandon.clone(),
    );
    tokio::spawn(
        sink.run(receiver)
            .instrument(tracing::info_span!("sink", kind = "cloudwatch_logs")),
    )
}

fn spawn_sentry_sink(sink: SentrySink) -> (JoinHandle<()>, CancellationToken) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        sink.run(stop.clone())
            .instrument(tracing::info_span!("sink", kind = "sentry")),
    );
    (task, stop)
}

/// The periodic publishers: health probes, and request metrics with the sidecar's own.
async fn spawn_publishers(
    config: &Config,
    shared: &Shared,
    recorder: Option<&Recorder>,
    stop: &CancellationToken,
) -> JoinSet<()> {
    let mut publishers = JoinSet::new();
    if !config.uptime.urls.is_empty() {
        publishers.spawn(
            uptime::run(config.uptime.clone(), shared.uptime.clone(), stop.clone())
                .instrument(tracing::info_span!("uptime")),
        );
    }
    let Some(recorder) = recorder else {
        return publishers;
    };
    let logs = &config.sinks.cloudwatch_logs;
    let output = match config.metrics.publish {
        Publish::Cloudwatch => {
            MetricsOutput::PutMetricData(sinks::cloudwatch_metrics::client(&config.metrics).await)
        }
        Publish::Emf => MetricsOutput::Emf {
            logs: sinks::cloudwatch_logs::client(logs).await,
            group: logs.log_group.clone(),
            stream: EMF_STREAM.to_owned(),
        },
        Publish::None | Publish::Invalid => MetricsOutput::None,
    };
    let publisher = MetricsPublisher::new(
        output,
        &config.metrics,
        recorder.clone(),
        shared.uptime.clone(),
        shared.metrics.clone(),
    )
    .with_budget(shared.budget.clone());
    publishers.spawn(
        publisher
            .run(stop.clone())
            .instrument(tracing::info_span!("sink", kind = "cloudwatch_metrics")),
    );
    publishers
}

impl Topology {
    /// Runs until `signal` resolves (SIGTERM) or every input has ended (stdin at EOF), then
    /// shuts down within the grace period.
    pub async fn run(mut self, signal: impl std::future::Future<Output = ()>) {
        self.inputs.until_stopped(signal).await;
        let (shutdown, _watchdog) = Shutdown::begin(self.grace, self.linger);
        self.shared.ready.store(false, Ordering::Relaxed);
        tracing::info!(
            grace_secs = self.grace.as_secs(),
            linger_ms = self.linger.as_millis() as u64,
            buffered_bytes = self.shared.budget.in_use(),
            "shutting down: inputs accept the last lines, then stop; flushing"
        );
        self.inputs.stop(&shutdown).await;
        let undelivered = self.drain(&shutdown).await;
        self.stop_publishers.cancel();
        let publishers = &mut self.publishers;
        let finished = shutdown
            .phase(
                Phase::FinalMetrics,
                shutdown.final_metrics_deadline(),
                async { while publishers.join_next().await.is_some() {} },
            )
            .await;
        if finished.is_none() {
            publishers.abort_all();
        }
        self.finish(&shutdown, undelivered).await;
    }

    /// Drains the sinks until the drain deadline, then abandons what is still in flight;
    /// returns the events the CloudWatch Logs sink could not deliver.
    async fn drain(&mut self, shutdown: &Shutdown) -> u64 {
        // Sentry flushes (bounded by its flush_timeout_ms) while CloudWatch Logs drains.
        if let Some((_, stop)) = &self.sentry {
            stop.cancel();
        }
        let logs = &mut self.logs;
        let drained = shutdown
            .phase(Phase::DrainOutputs, shutdown.drain_deadline(), async {
                (&mut *logs).await.unwrap_or(0)
            })
            .await;
        let undelivered = match drained {
            Some(undelivered) => undelivered,
            None => {
                // In-flight calls give up at once and count what they held.
                self.shared.abandon.cancel();
                let abandoned = tokio::time::timeout_at(shutdown.final_metrics_deadline(), logs);
                abandoned.await.map_or(0, |joined| joined.unwrap_or(0))
            }
        };
        if let Some((task, _)) = self.sentry.take() {
            let _ = tokio::time::timeout_at(shutdown.drain_deadline(), task).await;
        }
        undelivered
    }

    /// Joins the disk buffer's threads, reports what was not delivered, stops the admin
    /// server.
    async fn finish(self, shutdown: &Shutdown, undelivered: u64) {
        let metrics = &self.shared.metrics;
        if let Some((status, threads)) = self.disk {
            // The writer has stopped with the inputs; wait for the acknowledgements to be
            // recorded so a restart does not send delivered records again.
            let joined = tokio::task::spawn_blocking(move || threads.join());
            let _ = shutdown
                .phase(Phase::JoinThreads, shutdown.join_deadline(), joined)
                .await;
            let kept = status.bytes();
            if kept > 0 || undelivered > 0 {
                tracing::warn!(
                    undelivered,
                    kept_bytes = kept,
                    "shutdown deadline passed: undelivered events stay in the disk buffer for the next start"
                );
            } else {
                tracing::info!(
                    sent = metrics.sent_events(),
                    undelivered = 0,
                    "flushed everything; exiting"
                );
            }
        } else if undelivered > 0 {
            tracing::error!(
                undelivered,
                "shutdown deadline passed: events could not be delivered"
            );
        } else {
            tracing::info!(
                sent = metrics.sent_events(),
                undelivered = 0,
                "flushed everything; exiting"
            );
        }
        let (admin, stop) = self.admin;
        stop.cancel();
        let _ = tokio::time::timeout_at(shutdown.exit_deadline(), admin).await;
    }
}
