//! The metrics publisher: every period it takes the request aggregates, the probe results
//! and the sidecar's own counters, builds datums (`request_builder`, `self_metrics`), and
//! sends them with PutMetricData (aws-sdk-cloudwatch pinned to 1.99, whose JSON protocol the
//! emulator speaks) or as EMF, retrying with the shared policy for a bounded number of
//! attempts: metrics are periodic, a later period supersedes.

pub mod emf;
pub mod request_builder;
pub mod self_metrics;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tokio_util::sync::CancellationToken;

use self::request_builder::{Datum, Period, Shape, Unit, build, calls, names, sanitize};
use crate::metrics::{Metrics, Snapshot};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::now_ms;
use crate::request_metrics::Recorder;
use crate::request_metrics::config::MetricsConfig;
use crate::sinks::retry::{Backoff, Failure, classify};
use crate::uptime::UptimeState;

/// Attempts per PutMetricData call before the datums are dropped (and counted).
const MAX_ATTEMPTS: u32 = 5;

/// Longest one PutMetricData (or EMF PutLogEvents) attempt may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the CloudWatch client (region, endpoint and role from `[metrics]`; SDK retries
/// off: ours decide; every attempt bounded).
pub async fn client(config: &MetricsConfig) -> Client {
    Client::new(&config.aws().sdk_config(REQUEST_TIMEOUT).await)
}

/// Where a period's datums go.
#[derive(Debug)]
pub enum Output {
    /// PutMetricData.
    PutMetricData(Client),
    /// EMF documents in a CloudWatch Logs stream.
    Emf {
        /// The Logs client.
        logs: aws_sdk_cloudwatchlogs::Client,
        /// Log group of the EMF events.
        group: String,
        /// Log stream of the EMF events.
        stream: String,
    },
    /// Nothing (Prometheus only).
    None,
}

/// The log stream EMF documents are written to.
pub const EMF_STREAM: &str = "emf-metrics";

/// Publishes each period's metrics.
#[derive(Debug)]
pub struct MetricsPublisher {
    output: Output,
    namespace: String,
    shape: Shape,
    period: Duration,
    recorder: Recorder,
    uptime: UptimeState,
    metrics: Arc<Metrics>,
    /// The memory budget, for `BufferedBytes`; absent until [`Self::with_budget`].
    budget: Option<MemoryBudget>,
    /// The counters as last published: each period sends the difference.
    previous: Mutex<Snapshot>,
}

impl MetricsPublisher {
    /// A publisher writing to `output`.
    pub fn new(
        output: Output,
        config: &MetricsConfig,
        recorder: Recorder,
        uptime: UptimeState,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            output,
            namespace: config.namespace.clone(),
            shape: Shape {
                dimensions: config.dimensions.clone(),
                static_dimensions: config.static_dimensions.clone(),
                storage_resolution: if config.period_secs < 60 { 1 } else { 60 },
            },
            period: Duration::from_secs(config.period_secs),
            recorder,
            uptime,
            previous: Mutex::new(metrics.snapshot()),
            metrics,
            budget: None,
        }
    }

    /// Also publishes the budget in use as `BufferedBytes` (the queue depth).
    pub fn with_budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Publishes at the end of every period until `shutdown`, then once more (the partial
    /// last period) and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.period, self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                () = shutdown.cancelled() => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    /// Takes the current period and publishes it.
    pub async fn flush(&self) {
        let requests = self
            .recorder
            .with(|aggregator| aggregator.take_period())
            .unwrap_or_default();
        let period = Period {
            requests,
            probes: self.uptime.take_period(),
            heartbeat: true,
        };
        let timestamp_ms = now_ms();
        let mut datums = build(&period, &self.shape, timestamp_ms);
        let current = self.metrics.snapshot();
        let previous = std::mem::replace(
            &mut *self.previous.lock().unwrap_or_else(PoisonError::into_inner),
            current.clone(),
        );
        let gauges = self_metrics::Gauges {
            buffered_bytes: self.budget.as_ref().map(|b| b.in_use() as u64),
            resident_bytes: crate::metrics::resident_memory_bytes(),
        };
        datums.extend(self_metrics::build(
            &previous,
            &current,
            gauges,
            &self.shape,
            timestamp_ms,
        ));
        let fixed = sanitize(&mut datums);
        if fixed > 0 {
            self.metrics.metric_values_clamped(fixed);
            tracing::warn!(
                values = fixed,
                "metric values CloudWatch would refuse were clamped or dropped"
            );
        }
        // The heartbeat goes in a call of its own: whatever happens to the period's other
        // datums, a missing heartbeat must mean the sidecar is gone (it pages someone).
        let (heartbeat, datums): (Vec<Datum>, Vec<Datum>) =
            datums.into_iter().partition(|d| d.name == names::HEARTBEAT);
        match &self.output {
            Output::PutMetricData(client) => {
                for call in std::iter::once(heartbeat).chain(calls(datums)) {
                    if !call.is_empty() {
                        self.put(client, call).await;
                    }
                }
            }
            Output::Emf {
                logs,
                group,
                stream,
            } => {
                self.put_emf(logs, group, stream, &heartbeat).await;
                self.put_emf(logs, group, stream, &datums).await;
            }
            Output::None => {}
        }
    }

    async fn put_emf(
        &self,
        logs: &aws_sdk_cloudwatchlogs::Client,
        group: &str,
        stream: &str,
        datums: &[Datum],
    ) {
        let documents = emf::documents(datums, &self.namespace);
        if documents.is_empty() {
            return;
        }
        // Idempotent set-up; "already exists" is the normal answer after the first period.
        let _ = logs.create_log_group().log_group_name(group).send().await;
        let _ = logs
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await;
        let timestamp = now_ms();
        // Datums are counted per call by their share of the documents (a datum's values
        // can span documents, so this is the closest honest split).
        let total_documents = documents.len() as u64;
        let mut remaining = datums.len() as u64;
        let batches = emf::batches(documents);
        let last = batches.len() - 1;
        for (i, batch) in batches.into_iter().enumerate() {
            let share = if i == last {
                remaining
            } else {
                (datums.len() as u64 * batch.len() as u64 / total_documents).min(remaining)
            };
            remaining -= share;
            let events: Vec<aws_sdk_cloudwatchlogs::types::InputLogEvent> = batch
                .into_iter()
                .filter_map(|document| {
                    aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                        .timestamp(timestamp)
                        .message(document)
                        .build()
                        .ok()
                })
                .collect();
            self.send_with_retries("EMF PutLogEvents", share, || {
                logs.put_log_events()
                    .log_group_name(group)
                    .log_stream_name(stream)
                    .set_log_events(Some(events.clone()))
                    .customize()
                    .mutate_request(|request| {
                        request
                            .headers_mut()
                            .insert("x-amzn-logs-format", "json/emf");
                    })
                    .send()
            })
            .await;
        }
    }

    async fn put(&self, client: &Client, datums: Vec<Datum>) {
        let count = datums.len() as u64;
        let data: Vec<MetricDatum> = datums.iter().map(to_sdk).collect();
        self.send_with_retries("PutMetricData", count, || {
            client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(data.clone()))
                .send()
        })
        .await;
    }

    /// Runs `call` until it succeeds, at most [`MAX_ATTEMPTS`] times, retrying what the
    /// shared policy calls retryable; counts the `count` datums as sent or dropped.
    async fn send_with_retries<T, E, Fut>(
        &self,
        what: &str,
        count: u64,
        mut call: impl FnMut() -> Fut,
    ) where
        E: aws_sdk_cloudwatch::error::ProvideErrorMetadata,
        Fut: std::future::Future<
                Output = Result<
                    T,
                    aws_sdk_cloudwatch::error::SdkError<
                        E,
                        aws_sdk_cloudwatch::config::http::HttpResponse,
                    >,
                >,
            >,
    {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        for attempt in 1..=MAX_ATTEMPTS {
            let failure = match tokio::time::timeout(REQUEST_TIMEOUT, call()).await {
                Ok(Ok(_)) => {
                    self.metrics.metric_datums(true, count);
                    return;
                }
                Ok(Err(error)) => classify(&error),
                Err(_) => Failure::Retry(crate::metrics::RetryReason::Timeout),
            };
            match failure {
                Failure::Retry(reason) if attempt < MAX_ATTEMPTS => {
                    self.metrics.retried(reason);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => {
                    tracing::error!(failure = ?other, datums = count, "{what} failed; this period's metrics are dropped");
                    self.metrics.metric_datums(false, count);
                    return;
                }
            }
        }
    }
}

fn to_sdk(datum: &Datum) -> MetricDatum {
    let unit = match datum.unit {
        Unit::Count => StandardUnit::Count,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::None => StandardUnit::None,
        Unit::Bytes => StandardUnit::Bytes,
    };
    MetricDatum::builder()
        .metric_name(datum.name)
        .set_dimensions(Some(
            datum
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect(),
        ))
        .set_values(Some(datum.values.iter().map(|(v, _)| *v).collect()))
        .set_counts(Some(datum.values.iter().map(|(_, n)| *n).collect()))
        .unit(unit)
        .timestamp(DateTime::from_millis(datum.timestamp_ms))
        .storage_resolution(datum.storage_resolution)
        .build()
}
