//! The CloudWatch Logs sink: per-stream batching within the PutLogEvents rules, several
//! calls in flight, retries with backoff, and the memory budget released only once
//! CloudWatch has stored (or definitively refused) each event.
//!
//! Split as Vector splits its sinks: `request_builder` (pure batching and the limits),
//! `service` (the AWS calls); `sinks::retry` classifies errors and paces retries.

pub mod body;
mod config;
pub mod request_builder;
pub mod service;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::config::{CLOUDWATCH_MAX_EVENT_BYTES, CloudWatchLogsConfig, VALID_RETENTION_DAYS};
use self::request_builder::{Batcher, MAX_AGE_MS, ReadyBatch};
use self::service::{Delivery, LogsService};
use crate::metrics::{DropReason, Metrics};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::ecs::{SharedTaskInfo, TaskInfo, render_stream_name};
use crate::pipeline::event::Event;
use crate::pipeline::{Batch, now_ms};

/// The sink and what it shares with the rest of the agent.
#[derive(Debug)]
pub struct CloudWatchLogsSink {
    service: LogsService,
    config: CloudWatchLogsConfig,
    budget: MemoryBudget,
    metrics: Arc<Metrics>,
    task_info: SharedTaskInfo,
    hostname: String,
    /// Fires when the shutdown deadline has passed: in-flight retries give up.
    abandon: CancellationToken,
}

/// Builds the SDK client: region, endpoint (or FIPS / dual-stack) and role from the config
/// or the standard environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, ...), the SDK's own retries
/// off (ours decide).
pub async fn client(config: &CloudWatchLogsConfig) -> Client {
    Client::new(
        &config
            .aws()
            .sdk_config(Duration::from_millis(config.request_timeout_ms))
            .await,
    )
}

impl CloudWatchLogsSink {
    /// A sink that ships to `config.log_group`.
    pub fn new(
        client: Client,
        config: CloudWatchLogsConfig,
        budget: MemoryBudget,
        metrics: Arc<Metrics>,
        task_info: SharedTaskInfo,
        abandon: CancellationToken,
    ) -> Self {
        let service = LogsService::new(
            client,
            &config.log_group,
            config.retention_days,
            Duration::from_millis(config.request_timeout_ms),
            Duration::from_millis(config.max_backoff_ms),
            metrics.clone(),
        );
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            service,
            config,
            budget,
            metrics,
            task_info,
            hostname,
            abandon,
        }
    }

    /// Drains `input` until every sender is dropped, then flushes everything it holds and
    /// waits for the calls in flight. Returns the number of events it could not deliver
    /// (non-zero only when `abandon` fired).
    pub async fn run(self, mut input: mpsc::Receiver<Batch>) -> u64 {
        let ensured = tokio::select! {
            ensured = self.service.ensure_group() => ensured,
            () = self.abandon.cancelled() => Err(service::LogsError::Cancelled),
        };
        if let Err(error) = ensured {
            // Not fatal: PutLogEvents creates the group when it finds it missing.
            tracing::warn!(kind = error.kind(), error = %error, group = %self.config.log_group, "cannot set up the log group yet; will retry on first send");
        }
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let mut batchers: HashMap<Arc<str>, Batcher> = HashMap::new();
        let mut names = StreamNames::default();
        let mut in_flight: JoinSet<Settled> = JoinSet::new();
        let mut undelivered = 0u64;
        let mut tick = tokio::time::interval(
            timeout
                .min(Duration::from_millis(100))
                .max(Duration::from_millis(10)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    undelivered += self.settle(done);
                }
                batch = input.recv(), if in_flight.len() < self.config.max_in_flight => {
                    let Some(batch) = batch else { break };
                    names.refresh(&self.task_info);
                    for event in batch.events {
                        let stream = names.get(&self.config, event.container.as_deref(), &self.hostname);
                        let ready = batchers.entry(stream.clone()).or_default().push(event);
                        if let Some(ready) = ready {
                            undelivered += self.dispatch(&mut in_flight, stream, ready).await;
                        }
                    }
                }
                _ = tick.tick() => {
                    prune_idle(&mut batchers, &mut names);
                    let due: Vec<Arc<str>> = batchers
                        .iter()
                        .filter(|(_, b)| b.opened_at().is_some_and(|t| t.elapsed() >= timeout))
                        .map(|(s, _)| s.clone())
                        .collect();
                    for stream in due {
                        if let Some(ready) = batchers.get_mut(&stream).and_then(Batcher::take) {
                            undelivered += self.dispatch(&mut in_flight, stream, ready).await;
                        }
                    }
                }
            }
        }
        // Inputs are closed: flush every stream, then wait for everything in flight.
        for (stream, mut batcher) in batchers {
            if let Some(ready) = batcher.take() {
                undelivered += self.dispatch(&mut in_flight, stream, ready).await;
            }
        }
        while let Some(done) = in_flight.join_next().await {
            undelivered += self.settle(done);
        }
        undelivered
    }

    /// Starts one call, first waiting for a free in-flight slot.
    async fn dispatch(
        &self,
        in_flight: &mut JoinSet<Settled>,
        stream: Arc<str>,
        mut batch: ReadyBatch,
    ) -> u64 {
        let mut undelivered = 0;
        while in_flight.len() >= self.config.max_in_flight {
            match in_flight.join_next().await {
                Some(done) => undelivered += self.settle(done),
                None => break,
            }
        }
        let max_age = MAX_AGE_MS.min(i64::from(self.config.retention_days) * 86_400_000);
        let (too_old, too_new) = batch.split_unacceptable(now_ms(), max_age);
        self.drop_events(DropReason::TooOld, &too_old);
        self.drop_events(DropReason::TooNew, &too_new);
        if batch.events.is_empty() {
            return undelivered;
        }
        let cost = batch.cost();
        let count = batch.events.len();
        let service = self.service.clone();
        let abandon = self.abandon.clone();
        let span = tracing::debug_span!("put_log_events", stream = %stream, events = count);
        in_flight.spawn(
            async move {
                let outcome = service.deliver(&stream, batch.events, &abandon).await;
                Settled { cost, outcome }
            }
            .instrument(span),
        );
        undelivered
    }

    /// Releases the budget of a finished call (its events are stored, or definitively
    /// dropped and counted); returns events left undelivered at the deadline.
    fn settle(&self, done: Result<Settled, tokio::task::JoinError>) -> u64 {
        match done {
            Ok(Settled { cost, outcome }) => {
                self.budget.release(cost);
                match outcome {
                    Ok(_) => 0,
                    Err(events) => {
                        self.metrics
                            .dropped(DropReason::ShutdownDeadline, events as u64);
                        events as u64
                    }
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "a PutLogEvents task failed");
                0
            }
        }
    }

    fn drop_events(&self, reason: DropReason, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        self.metrics.dropped(reason, events.len() as u64);
        self.budget.release(events.iter().map(Event::cost).sum());
        // A final outcome: their disk buffer records may be reclaimed.
        for event in events {
            if let Some(ack) = &event.ack {
                ack.settled(1);
            }
        }
        tracing::warn!(
            reason = reason.as_str(),
            count = events.len(),
            "events outside CloudWatch's time window were not sent"
        );
    }
}

/// Streams kept in the batcher map beyond which empty batchers are dropped: a container
/// that stopped (or a client inventing container names) must not grow the map for good.
const MAX_IDLE_BATCHERS: usize = 64;

/// Rendered stream names cached per container at most.
const MAX_CACHED_NAMES: usize = 256;

/// Drops the batchers holding nothing once there are more than a few, and forgets cached
/// stream names when there are too many (they are rendered again on demand).
fn prune_idle(batchers: &mut HashMap<Arc<str>, Batcher>, names: &mut StreamNames) {
    if batchers.len() > MAX_IDLE_BATCHERS {
        batchers.retain(|_, batcher| !batcher.is_empty());
    }
    if names.by_container.len() > MAX_CACHED_NAMES {
        names.by_container.clear();
    }
}

/// A finished call: the budget bytes it held and what happened.
#[derive(Debug)]
struct Settled {
    cost: usize,
    /// Delivered (maybe partly rejected), or the number of events given up at the deadline.
    outcome: Result<Delivery, usize>,
}

/// Rendered stream names per container, re-rendered when the task metadata changes.
#[derive(Debug, Default)]
struct StreamNames {
    info: Option<Arc<TaskInfo>>,
    /// Names of events without a container.
    default: Option<Arc<str>>,
    /// Names by container; looked up by `&str`, so the hot path allocates nothing.
    by_container: HashMap<Arc<str>, Arc<str>>,
}

impl StreamNames {
    /// Forgets rendered names when the task metadata changed (checked once per batch, not
    /// per event).
    fn refresh(&mut self, shared: &SharedTaskInfo) {
        let info = shared.get();
        if !same(&info, &self.info) {
            self.info = info;
            self.default = None;
            self.by_container.clear();
        }
    }

    fn get(
        &mut self,
        config: &CloudWatchLogsConfig,
        container: Option<&str>,
        hostname: &str,
    ) -> Arc<str> {
        let cached = match container {
            Some(container) => self.by_container.get(container),
            None => self.default.as_ref(),
        };
        if let Some(name) = cached {
            return name.clone();
        }
        let fallback = self
            .info
            .as_ref()
            .map(|i| i.app_container.as_str())
            .filter(|c| !c.is_empty())
            .unwrap_or(&config.default_container);
        let name: Arc<str> = render_stream_name(
            &config.log_stream,
            self.info.as_deref(),
            container.unwrap_or(fallback),
            hostname,
        )
        .into();
        match container {
            Some(container) => {
                self.by_container.insert(container.into(), name.clone());
            }
            None => self.default = Some(name.clone()),
        }
        name
    }
}

fn same(a: &Option<Arc<TaskInfo>>, b: &Option<Arc<TaskInfo>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CloudWatchLogsConfig {
        toml::from_str("log_group = \"g\"").unwrap()
    }

    #[test]
    fn idle_batchers_and_cached_names_are_pruned() {
        let config = config();
        let mut names = StreamNames::default();
        let mut batchers: HashMap<Arc<str>, Batcher> = HashMap::new();
        for i in 0..1000 {
            let stream = names.get(&config, Some(&format!("c{i}")), "h");
            batchers.entry(stream).or_default();
        }
        let busy = names.get(&config, Some("busy"), "h");
        let _ = batchers.entry(busy.clone()).or_default().push(Event {
            time_ms: crate::pipeline::now_ms(),
            message: "x".into(),
            level: None,
            container: None,
            request_id: None,
            ack: None,
        });
        prune_idle(&mut batchers, &mut names);
        assert_eq!(batchers.len(), 1, "only the batcher holding events stays");
        assert!(batchers.contains_key(&busy));
        assert!(names.by_container.is_empty());
    }

    #[test]
    fn stream_names_per_container_follow_the_task_metadata() {
        let config = config();
        let shared = SharedTaskInfo::default();
        let mut names = StreamNames::default();
        names.refresh(&shared);
        assert_eq!(&*names.get(&config, None, "host-1"), "app/host-1");
        assert_eq!(&*names.get(&config, Some("api"), "host-1"), "api/host-1");
        shared.set(TaskInfo {
            task_id: "abc123".into(),
            app_container: "web".into(),
            ..TaskInfo::default()
        });
        // Cached until the next batch refreshes.
        assert_eq!(&*names.get(&config, Some("api"), "host-1"), "api/host-1");
        names.refresh(&shared);
        assert_eq!(&*names.get(&config, Some("api"), "host-1"), "api/abc123");
        assert_eq!(
            &*names.get(&config, None, "host-1"),
            "web/abc123",
            "the app container is the default"
        );
    }
}
