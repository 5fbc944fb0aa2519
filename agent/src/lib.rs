//! The observability sidecar.
//!
//! Architecture: **sources** (`sources/`: Fluent Forward as FireLens speaks it, stdin, file
//! tail, HTTP) hand raw lines to the **pipeline** (`pipeline/`: parse once, redact, ECS
//! metadata, a hard memory ceiling that slows inputs instead of growing), whose receiver
//! feeds the **sinks** (`sinks/`: CloudWatch Logs, batching within the PutLogEvents rules,
//! retrying with backoff). Shutdown flows downstream: SIGTERM makes the agent unready,
//! sources stop, the channel closes, the sink flushes under a deadline.
//! The admin server (`admin`) exposes `/health`, `/ready` and `/metrics`.

pub mod admin;
pub mod buffer;
pub mod config;
pub mod http_client;
pub mod metrics;
pub mod pipeline;
pub mod provision;
pub mod request_metrics;
pub mod sinks;
pub mod sources;
pub mod uptime;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::buffer::DiskBuffer;
use crate::config::Config;
use crate::metrics::{Metrics, SourceKind};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::ecs::SharedTaskInfo;
use crate::pipeline::parse::{ParseFields, TimingFieldNames};
use crate::pipeline::redact::Redactor;
use crate::pipeline::{EventSenders, Processor};
use crate::request_metrics::Recorder;
use crate::sinks::cloudwatch_logs::CloudWatchLogsSink;
use crate::uptime::UptimeState;

/// The agent's version, as reported by `agent --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long sources get to stop after shutdown begins, before the drain.
const SOURCE_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the agent until `shutdown` resolves (SIGTERM in production) or every source has
/// ended (stdin reached EOF), then drains under the configured grace deadline.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let budget = MemoryBudget::new(config.memory_limit_bytes());
    let ready = Arc::new(AtomicBool::new(false));
    let redactor = config
        .pipeline
        .redaction
        .enabled
        .then(|| Redactor::new(&config.pipeline.redaction.keys));
    let processor = Processor::new(
        ParseFields {
            timestamp: config.pipeline.timestamp_field.clone(),
            level: config.pipeline.level_field.clone(),
            timing: (config.metrics.enabled && config.metrics.access_log.enabled).then(|| {
                TimingFieldNames {
                    route: config.metrics.access_log.route.clone(),
                    method: config.metrics.access_log.method.clone(),
                    status: config.metrics.access_log.status.clone(),
                    latency_ms: config.metrics.access_log.latency_ms.clone(),
                }
            }),
        },
        redactor,
        config.sinks.cloudwatch_logs.max_event_bytes,
    );
    let recorder = config
        .metrics
        .enabled
        .then(|| Recorder::new(config.metrics.max_routes));
    let processor = match &recorder {
        Some(recorder) => processor.with_recorder(recorder.clone()),
        None => processor,
    };
    // Sentry: the pipeline shows every batch to its tap; the sink task sends.
    let task_info = SharedTaskInfo::default();
    let (processor, sentry_sink) = sinks::sentry::attach(
        config.sinks.sentry.as_ref(),
        processor,
        &metrics,
        &task_info,
    )
    .await;
    let uptime = UptimeState::default();
    let abandon = CancellationToken::new();
    let (senders, receiver, disk) = match &config.disk_buffer {
        None => {
            let (senders, receiver) = pipeline::channel(processor, budget.clone(), metrics.clone());
            (senders, receiver, None)
        }
        Some(disk) => {
            let buffer = DiskBuffer::open(disk, metrics.clone())
                .map_err(|error| anyhow::anyhow!("disk buffer {}: {error}", disk.path.display()))?;
            let status = buffer.status();
            let (tx, receiver) = tokio::sync::mpsc::channel(1024);
            let (writer, threads) = buffer.start(budget.clone(), tx, abandon.clone())?;
            let senders = pipeline::channel_to_disk(
                processor,
                budget.clone(),
                metrics.clone(),
                writer,
                status.clone(),
            );
            (senders, receiver, Some((status, threads)))
        }
    };

    let admin_listener = tokio::net::TcpListener::bind(&config.admin.address).await?;
    tracing::info!(address = %config.admin.address, "admin server listening");
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn({
        let router = admin::router(admin::AdminState {
            ready: ready.clone(),
            metrics: metrics.clone(),
            budget: budget.clone(),
            recorder: recorder.clone(),
            uptime: uptime.clone(),
            disk: disk.as_ref().map(|(status, _)| status.clone()),
        });
        let stop = admin_stop.clone();
        async move {
            axum::serve(admin_listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
        .instrument(tracing::info_span!("admin"))
    });

    if let Ok(uri) = std::env::var("ECS_CONTAINER_METADATA_URI_V4") {
        tokio::spawn(
            pipeline::ecs::fetch_in_background(uri, task_info.clone())
                .instrument(tracing::info_span!("ecs_metadata")),
        );
    }

    let client = sinks::cloudwatch_logs::client(&config.sinks.cloudwatch_logs).await;
    let sink = CloudWatchLogsSink::new(
        client,
        config.sinks.cloudwatch_logs.clone(),
        budget.clone(),
        metrics.clone(),
        task_info,
        abandon.clone(),
    );
    let mut sink_task = tokio::spawn(
        sink.run(receiver)
            .instrument(tracing::info_span!("sink", kind = "cloudwatch_logs")),
    );
    let stop_sentry = CancellationToken::new();
    let sentry_task = sentry_sink.map(|sink| {
        tokio::spawn(
            sink.run(stop_sentry.clone())
                .instrument(tracing::info_span!("sink", kind = "sentry")),
        )
    });

    let stop_metrics = CancellationToken::new();
    let mut background = JoinSet::new();
    if !config.uptime.urls.is_empty() {
        background.spawn(
            uptime::run(config.uptime.clone(), uptime.clone(), stop_metrics.clone())
                .instrument(tracing::info_span!("uptime")),
        );
    }
    if let Some(recorder) = &recorder {
        use sinks::cloudwatch_metrics::{EMF_STREAM, Output};
        let client = match config.metrics.publish.as_str() {
            "cloudwatch" => {
                Output::PutMetricData(sinks::cloudwatch_metrics::client(&config.metrics).await)
            }
            "emf" => Output::Emf {
                logs: sinks::cloudwatch_logs::client(&config.sinks.cloudwatch_logs).await,
                group: config.sinks.cloudwatch_logs.log_group.clone(),
                stream: EMF_STREAM.to_owned(),
            },
            _ => Output::None,
        };
        let publisher = sinks::cloudwatch_metrics::MetricsPublisher::new(
            client,
            &config.metrics,
            recorder.clone(),
            uptime.clone(),
            metrics.clone(),
        )
        .with_budget(budget.clone());
        background.spawn(
            publisher
                .run(stop_metrics.clone())
                .instrument(tracing::info_span!("sink", kind = "cloudwatch_metrics")),
        );
    }

    let stop_sources = CancellationToken::new();
    let mut sources = spawn_sources(&config, &senders, &recorder, &stop_sources).await?;
    drop(senders);
    ready.store(true, Ordering::Relaxed);
    tracing::info!(version = VERSION, sources = sources.len(), "agent started");

    tokio::pin!(shutdown);
    let mut all_ended = false;
    while !all_ended {
        tokio::select! {
            () = &mut shutdown => break,
            done = sources.join_next() => match done {
                None => all_ended = true,
                Some(Ok(Err(error))) => tracing::error!(error = %format!("{error:#}"), "a source failed"),
                Some(Err(error)) => tracing::error!(error = %error, "a source task panicked"),
                Some(Ok(Ok(()))) => {}
            },
        }
    }

    // Shutdown: unready, stop sources (closing the pipeline), drain the sink in time.
    ready.store(false, Ordering::Relaxed);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    tracing::info!(
        grace_secs = grace.as_secs(),
        buffered_bytes = budget.in_use(),
        "shutting down: stopping inputs, flushing"
    );
    stop_sources.cancel();
    let stop_deadline = tokio::time::Instant::now() + SOURCE_STOP_TIMEOUT.min(grace);
    while let Ok(Some(_)) = tokio::time::timeout_at(stop_deadline, sources.join_next()).await {}
    sources.abort_all();
    // Sentry flushes (bounded by its flush_timeout_ms) while CloudWatch Logs drains.
    stop_sentry.cancel();

    let undelivered = match tokio::time::timeout(grace, &mut sink_task).await {
        Ok(result) => result.unwrap_or(0),
        Err(_) => {
            abandon.cancel();
            sink_task.await.unwrap_or(0)
        }
    };
    if let Some(task) = sentry_task {
        let _ = task.await;
    }
    // The last (partial) metrics period goes out after the logs have drained.
    stop_metrics.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while background.join_next().await.is_some() {}
    })
    .await;
    if let Some((status, threads)) = disk {
        // The writer has stopped with the inputs; wait for the acknowledgements to be
        // recorded so a restart does not send delivered records again.
        let joined = tokio::task::spawn_blocking(move || threads.join());
        let _ = tokio::time::timeout(Duration::from_secs(5), joined).await;
        let kept = status.bytes();
        if kept > 0 {
            tracing::warn!(
                bytes = kept,
                "shutdown deadline passed: undelivered events stay in the disk buffer for the next start"
            );
        } else {
            tracing::info!(sent = metrics.sent_events(), "flushed everything; exiting");
        }
    } else if undelivered > 0 {
        tracing::error!(
            undelivered,
            "shutdown deadline passed: events could not be delivered"
        );
    } else {
        tracing::info!(sent = metrics.sent_events(), "flushed everything; exiting");
    }
    admin_stop.cancel();
    let _ = admin.await;
    Ok(())
}

async fn spawn_sources(
    config: &Config,
    senders: &EventSenders,
    recorder: &Option<Recorder>,
    stop: &CancellationToken,
) -> anyhow::Result<JoinSet<anyhow::Result<()>>> {
    let mut set = JoinSet::new();
    let s = &config.sources;
    if s.stdin.is_some() {
        let out = senders.for_source(SourceKind::Stdin);
        set.spawn(
            sources::stdin::run(out, stop.child_token())
                .instrument(tracing::info_span!("source", kind = "stdin")),
        );
    }
    if let Some(forward) = &s.forward {
        let out = senders.for_source(SourceKind::Forward);
        set.spawn(
            sources::forward::run(forward.clone(), out, stop.child_token())
                .instrument(tracing::info_span!("source", kind = "forward")),
        );
    }
    if let Some(file) = &s.file {
        let out = senders.for_source(SourceKind::File);
        set.spawn(
            sources::file::run(file.clone(), out, stop.child_token())
                .instrument(tracing::info_span!("source", kind = "file")),
        );
    }
    if let Some(otlp) = &s.otlp {
        let out = senders.for_source(SourceKind::Otlp);
        // Timings still flow (to Prometheus only) when publishing is off; with metrics
        // disabled they go to a recorder nobody reads.
        let recorder = recorder.clone().unwrap_or_else(|| Recorder::new(1));
        set.spawn(
            sources::otlp::run(otlp.clone(), out, recorder, stop.child_token())
                .instrument(tracing::info_span!("source", kind = "otlp")),
        );
    }
    if let Some(http) = &s.http {
        let out = senders.for_source(SourceKind::Http);
        set.spawn(
            sources::http::run(http.clone(), out, stop.child_token())
                .instrument(tracing::info_span!("source", kind = "http")),
        );
    }
    Ok(set)
}

/// Installs the agent's own logging: JSON lines on stderr (stdout stays free for data).
pub fn init_logging(level: &str) {
    let level = level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}
