//! The CloudWatch Logs sink: per-stream batching within the PutLogEvents rules, several
//! calls in flight, retries with backoff, and the memory budget released only once
//! CloudWatch has stored (or definitively refused) each event.
//!
//! Split as Vector splits its sinks: `request_builder` (pure batching and the limits),
//! `service` (the AWS calls); `sinks::retry` classifies errors and paces retries.

pub mod body;
mod config;
pub mod request_builder;
pub mod router;
pub mod service;
pub mod template;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::config::{
    CLOUDWATCH_MAX_EVENT_BYTES, CloudWatchLogsConfig, LogGroupClass, RetentionPolicy,
    VALID_RETENTION_DAYS,
};
use self::request_builder::{Batcher, MAX_AGE_MS, ReadyBatch};
use self::router::Router;
use self::service::{Delivery, Destination, GroupSettings, LogsService};
use crate::metrics::{DropReason, Metrics};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::ecs::SharedTaskInfo;
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
            GroupSettings::of(&config),
            Duration::from_millis(config.request_timeout_ms),
            Duration::from_millis(config.max_backoff_ms),
            metrics.clone(),
        );
        Self {
            service,
            config,
            budget,
            metrics,
            task_info,
            abandon,
        }
    }

    /// Drains `input` until every sender is dropped, then flushes everything it holds and
    /// waits for the calls in flight. Returns the number of events it could not deliver
    /// (non-zero only when `abandon` fired).
    pub async fn run(self, mut input: mpsc::Receiver<Batch>) -> u64 {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let mut router = Router::new(&self.config, hostname, self.metrics.clone());
        // A plain group name is set up now; templated ones when first seen.
        if let Some(group) = router.fixed_group() {
            let ensured = tokio::select! {
                ensured = self.service.ensure_group(group) => ensured,
                () = self.abandon.cancelled() => Err(service::LogsError::Cancelled),
            };
            if let Err(error) = ensured {
                // Not fatal: the first send sets it up again.
                tracing::warn!(kind = error.kind(), error = %error, group, "cannot set up the log group yet; will retry on first send");
            }
        }
        let timeout = Duration::from_millis(self.config.batch_timeout_ms);
        let mut batchers: HashMap<Destination, Batcher> = HashMap::new();
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
                    router.refresh(&self.task_info);
                    for event in batch.events {
                        let to = router.route(&event);
                        let ready = batchers.entry(to.clone()).or_default().push(event);
                        if let Some(ready) = ready {
                            undelivered += self.dispatch(&mut in_flight, to, ready).await;
                        }
                    }
                }
                _ = tick.tick() => {
                    prune_idle(&mut batchers);
                    router.prune();
                    let due: Vec<Destination> = batchers
                        .iter()
                        .filter(|(_, b)| b.opened_at().is_some_and(|t| t.elapsed() >= timeout))
                        .map(|(s, _)| s.clone())
                        .collect();
                    for to in due {
                        if let Some(ready) = batchers.get_mut(&to).and_then(Batcher::take) {
                            undelivered += self.dispatch(&mut in_flight, to, ready).await;
                        }
                    }
                }
            }
        }
        // Inputs are closed: flush every stream, then wait for everything in flight.
        for (to, mut batcher) in batchers {
            if let Some(ready) = batcher.take() {
                undelivered += self.dispatch(&mut in_flight, to, ready).await;
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
        to: Destination,
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
        let span = tracing::debug_span!("put_log_events", group = %to.group, stream = %to.stream, events = count);
        in_flight.spawn(
            async move {
                let outcome = service.deliver(&to, batch.events, &abandon).await;
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

/// Drops the batchers holding nothing once there are more than a few.
fn prune_idle(batchers: &mut HashMap<Destination, Batcher>) {
    if batchers.len() > MAX_IDLE_BATCHERS {
        batchers.retain(|_, batcher| !batcher.is_empty());
    }
}

/// A finished call: the budget bytes it held and what happened.
#[derive(Debug)]
struct Settled {
    cost: usize,
    /// Delivered (maybe partly rejected), or the number of events given up at the deadline.
    outcome: Result<Delivery, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(stream: &str) -> Destination {
        Destination {
            group: "g".into(),
            stream: stream.into(),
        }
    }

    #[test]
    fn idle_batchers_are_pruned() {
        let mut batchers: HashMap<Destination, Batcher> = HashMap::new();
        for i in 0..1000 {
            batchers.entry(destination(&format!("c{i}"))).or_default();
        }
        let busy = destination("busy");
        let _ = batchers.entry(busy.clone()).or_default().push(Event {
            time_ms: crate::pipeline::now_ms(),
            message: "x".into(),
            level: None,
            container: None,
            request_id: None,
            ack: None,
        });
        prune_idle(&mut batchers);
        assert_eq!(batchers.len(), 1, "only the batcher holding events stays");
        assert!(batchers.contains_key(&busy));
    }
}
