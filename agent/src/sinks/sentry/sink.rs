//! The sink task: takes queued errors one at a time, builds each event, honours the rate
//! limits, sends, retries network errors and 5xx with backoff, and counts every outcome.
//! At shutdown it closes the de-duplication windows (their follow-ups go out too) and
//! flushes the queue under `flush_timeout_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::envelope::{event_envelope, gzip};
use super::event::{EncodeError, EventBuilder, Pending};
use super::rate_limit::RateLimits;
use super::tap::Shared;
use super::transport::Transport;
use crate::metrics::SentryOutcome;
use crate::pipeline::ecs::SharedTaskInfo;
use crate::sinks::retry::Backoff;

/// Sentry's data category of error events.
pub(crate) const ERROR_CATEGORY: &str = "error";
/// How often windows are checked for follow-ups when nothing else wakes the sink.
const TICK: Duration = Duration::from_secs(1);
/// First retry delay (then doubling, with jitter, up to `max_backoff_ms`).
const BASE_BACKOFF: Duration = Duration::from_millis(200);

/// Sends what the tap queued. Run it with [`SentrySink::run`].
#[derive(Debug)]
pub struct SentrySink {
    shared: Arc<Shared>,
    transport: Transport,
    task_info: SharedTaskInfo,
    hostname: String,
    limits: RateLimits,
    /// Dropped under the rate limit now in force (logged when it ends).
    limited: u64,
    in_flight: bool,
}

impl SentrySink {
    pub(crate) fn new(
        shared: Arc<Shared>,
        transport: Transport,
        task_info: SharedTaskInfo,
        hostname: String,
    ) -> Self {
        Self {
            shared,
            transport,
            task_info,
            hostname,
            limits: RateLimits::default(),
            limited: 0,
            in_flight: false,
        }
    }

    /// Sends queued events until `shutdown` fires, then sends what is left (follow-ups of
    /// open de-duplication windows included) and returns, at most `flush_timeout_ms` after
    /// `shutdown` (what is still unsent then is counted as failed). Cancel `shutdown` once
    /// the sources have stopped, so their last errors are flushed too.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::debug!(url = %self.transport.url(), "Sentry sink started");
        let flush = Duration::from_millis(self.shared.config.flush_timeout_ms);
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(flush).await;
        };
        let finished = tokio::select! {
            () = self.work(&shutdown) => true,
            () = deadline => false,
        };
        if !finished {
            let lost = self.shared.abandon() + u64::from(self.in_flight);
            self.shared.metrics.sentry(SentryOutcome::Failed, lost);
            tracing::warn!(
                lost,
                flush_timeout_ms = flush.as_millis() as u64,
                "Sentry flush deadline passed: error events not sent"
            );
        }
        self.log_limit_over();
    }

    async fn work(&mut self, shutdown: &CancellationToken) {
        loop {
            while !shutdown.is_cancelled() {
                let Some(pending) = self.shared.next(Instant::now(), false) else {
                    break;
                };
                self.deliver(pending, Some(shutdown)).await;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
        while let Some(pending) = self.shared.next(Instant::now(), true) {
            self.deliver(pending, None).await;
        }
    }

    /// Where envelopes go (the DSN without its key).
    pub fn url(&self) -> String {
        self.transport.url().to_string()
    }

    /// The proxy envelopes go through, if any (no credentials in it).
    pub fn proxy(&self) -> Option<String> {
        self.transport.proxy().map(ToString::to_string)
    }

    fn count(&self, outcome: SentryOutcome) {
        self.shared.metrics.sentry(outcome, 1);
    }

    fn log_limit_over(&mut self) {
        if self.limited > 0 {
            tracing::info!(
                category = ERROR_CATEGORY,
                dropped = self.limited,
                "error events dropped under Sentry's rate limit"
            );
            self.limited = 0;
        }
    }

    /// The gzipped envelope of `pending`; `None` (counted) when it cannot be sent.
    fn envelope(&self, pending: &Pending) -> Option<Bytes> {
        let task = self.task_info.get();
        let builder = EventBuilder {
            config: &self.shared.config,
            task: task.as_deref(),
            hostname: &self.hostname,
        };
        // Sent at: now, to the millisecond (as the event times are).
        let sent_at = UNIX_EPOCH + Duration::from_millis(crate::pipeline::now_ms() as u64);
        let envelope = builder
            .encode(pending, uuid::Uuid::new_v4())
            .and_then(|event| event_envelope(event, sent_at));
        match envelope {
            Ok(envelope) => Some(Bytes::from(gzip(&envelope))),
            Err(error) => {
                tracing::warn!(error = %error, "Sentry event dropped");
                self.count(match error {
                    EncodeError::TooLarge => SentryOutcome::TooLarge,
                    EncodeError::Invalid(_) => SentryOutcome::Failed,
                });
                None
            }
        }
    }

    /// Builds, sends and retries one event; every path counts exactly one outcome.
    async fn deliver(&mut self, pending: Pending, shutdown: Option<&CancellationToken>) {
        let now = Instant::now();
        if self.limits.is_limited(ERROR_CATEGORY, now) {
            self.limited += 1;
            self.count(SentryOutcome::RateLimited);
            return;
        }
        self.log_limit_over();
        let Some(body) = self.envelope(&pending) else {
            return;
        };
        let config = &self.shared.config;
        let mut backoff = Backoff::new(BASE_BACKOFF, Duration::from_millis(config.max_backoff_ms));
        self.in_flight = true;
        loop {
            let result = self.transport.send(body.clone()).await;
            let now = Instant::now();
            let problem = match result {
                Ok(reply) => {
                    let too_many = reply.status == 429;
                    self.limits.update(
                        reply.rate_limits.as_deref(),
                        reply.retry_after.as_deref(),
                        too_many,
                        now,
                    );
                    match reply.status {
                        200..=299 => {
                            self.count(SentryOutcome::Sent);
                            break;
                        }
                        429 => {
                            let secs = self
                                .limits
                                .until(ERROR_CATEGORY, now)
                                .map_or(0, |until| (until - now).as_secs());
                            tracing::warn!(
                                retry_after_secs = secs,
                                "Sentry rate limit: dropping error events until it ends"
                            );
                            self.limited += 1;
                            self.count(SentryOutcome::RateLimited);
                            break;
                        }
                        413 => {
                            tracing::warn!("Sentry refused an event as too large");
                            self.count(SentryOutcome::TooLarge);
                            break;
                        }
                        status @ 500..=599 => format!("HTTP {status}"),
                        status => {
                            tracing::warn!(status, "Sentry refused an event");
                            self.count(SentryOutcome::Failed);
                            break;
                        }
                    }
                }
                Err(error) => format!("{} ({error})", error.kind()),
            };
            if backoff.attempts() >= config.max_retries {
                tracing::warn!(
                    error = %problem,
                    attempts = backoff.attempts() + 1,
                    "Sentry event not sent after retries"
                );
                self.count(SentryOutcome::Failed);
                break;
            }
            let delay = backoff.next_delay();
            tracing::debug!(error = %problem, delay_ms = delay.as_millis() as u64, "Sentry send failed; retrying");
            match shutdown {
                // Shutdown cuts the wait short; the flush deadline bounds the rest.
                Some(token) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = token.cancelled() => {}
                    }
                }
                None => tokio::time::sleep(delay).await,
            }
        }
        self.in_flight = false;
    }
}
