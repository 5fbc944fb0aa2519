//! The calls to CloudWatch Logs: group and stream set-up, and one PutLogEvents with
//! retries. Errors are classified by `retry.rs`; the SDK's own retries are off so that one
//! policy (ours) decides.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::body::SdkBody;
use tokio_util::sync::CancellationToken;

use super::config::{CloudWatchLogsConfig, LogGroupClass, RetentionPolicy};
use crate::metrics::{DropReason, Metrics, RetryReason};
use crate::pipeline::event::{Ack, Event};
use crate::sinks::retry::{Backoff, Failure, classify};

/// Where a batch goes: a log group and one of its streams.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The log group.
    pub group: Arc<str>,
    /// The stream in it.
    pub stream: Arc<str>,
}

/// How the agent creates a group (CreateLogGroup's parameters) and keeps its retention.
#[derive(Debug, Clone, Default)]
pub struct GroupSettings {
    /// Retention in days.
    pub retention_days: u32,
    /// `enforce` also applies the retention to groups that already exist.
    pub retention_policy: RetentionPolicy,
    /// KMS key ARN.
    pub kms_key_id: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Group class.
    pub class: Option<LogGroupClass>,
}

impl GroupSettings {
    /// The settings of `config`.
    pub fn of(config: &CloudWatchLogsConfig) -> Self {
        Self {
            retention_days: config.retention_days,
            retention_policy: config.retention_policy,
            kms_key_id: config.kms_key_id.clone(),
            tags: config.tags.clone(),
            class: config.log_group_class,
        }
    }
}

/// Shared by every request of the sink.
#[derive(Debug, Clone)]
pub struct LogsService {
    client: Client,
    settings: Arc<GroupSettings>,
    request_timeout: Duration,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
    /// Permanent error kinds already logged (each is logged once).
    logged: Arc<Mutex<HashSet<String>>>,
    /// Groups set up (created, retention applied) by this process.
    groups: Arc<Mutex<HashSet<Arc<str>>>>,
    /// Streams known to exist.
    streams: Arc<Mutex<HashSet<Destination>>>,
    /// When refused credentials were last said in the log.
    auth_warned: Arc<Mutex<Option<Instant>>>,
}

/// Streams remembered as created, at most.
const MAX_KNOWN_STREAMS: usize = 10_000;

/// Refused credentials are said in the log at most this often.
const AUTH_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// How one batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Stored by CloudWatch.
    pub sent: usize,
    /// Counted as dropped (rejected, or a permanent error).
    pub dropped: usize,
}

impl LogsService {
    /// A service creating groups with `settings`.
    pub fn new(
        client: Client,
        settings: GroupSettings,
        request_timeout: Duration,
        max_backoff: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            settings: Arc::new(settings),
            request_timeout,
            max_backoff,
            metrics,
            logged: Arc::default(),
            groups: Arc::default(),
            streams: Arc::default(),
            auth_warned: Arc::default(),
        }
    }

    /// Creates `group` when missing (with the key, tags and class) and applies the
    /// retention to it when the agent created it or the policy is `enforce`; idempotent.
    pub async fn ensure_group(&self, group: &str) -> Result<(), LogsError> {
        let settings = &*self.settings;
        let created = self
            .client
            .create_log_group()
            .log_group_name(group)
            .set_kms_key_id(settings.kms_key_id.clone())
            .set_tags(
                (!settings.tags.is_empty()).then(|| settings.tags.clone().into_iter().collect()),
            )
            .set_log_group_class(settings.class.map(|c| c.as_str().into()))
            .send()
            .await;
        let created = match created {
            Ok(_) => true,
            Err(error) if error.code() == Some("ResourceAlreadyExistsException") => false,
            Err(error) => return Err(self.setup_failed(&error)),
        };
        let apply = created || settings.retention_policy == RetentionPolicy::Enforce;
        if apply {
            self.client
                .put_retention_policy()
                .log_group_name(group)
                .retention_in_days(settings.retention_days as i32)
                .send()
                .await
                .map_err(|e| self.setup_failed(&e))?;
        }
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(group.into());
        }
        tracing::info!(
            group,
            created,
            retention_days = apply.then_some(settings.retention_days),
            "log group ready"
        );
        Ok(())
    }

    /// A set-up call failed: counted as a retry when it will be retried.
    fn setup_failed<E: ProvideErrorMetadata + std::fmt::Debug>(
        &self,
        error: &SdkError<E, aws_sdk_cloudwatchlogs::config::http::HttpResponse>,
    ) -> LogsError {
        if let Failure::Retry(reason) = classify(error) {
            self.metrics.retried(reason);
        }
        LogsError::from_sdk(error)
    }

    fn group_ready(&self, group: &str) -> bool {
        self.groups.lock().is_ok_and(|g| g.contains(group))
    }

    async fn ensure_stream(&self, to: &Destination) -> Result<(), LogsError> {
        if self.streams.lock().is_ok_and(|s| s.contains(to)) {
            return Ok(());
        }
        // A group first seen gets its retention (and is created with its settings).
        if !self.group_ready(&to.group) {
            self.ensure_group(&to.group).await?;
        }
        let created = self
            .client
            .create_log_stream()
            .log_group_name(&*to.group)
            .log_stream_name(&*to.stream)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(error) if error.code() == Some("ResourceAlreadyExistsException") => {}
            Err(error) if error.code() == Some("ResourceNotFoundException") => {
                self.ensure_group(&to.group).await?;
                return Box::pin(self.ensure_stream(to)).await;
            }
            Err(error) => return Err(self.setup_failed(&error)),
        }
        if let Ok(mut streams) = self.streams.lock() {
            // Bounded: forgetting a stream costs one CreateLogStream answered "exists".
            if streams.len() >= MAX_KNOWN_STREAMS {
                streams.clear();
            }
            streams.insert(to.clone());
        }
        Ok(())
    }

    /// Sends one sorted, rule-abiding batch to `to`, retrying what is retryable until it
    /// succeeds or `cancel` fires; then the error carries the number of undelivered events.
    pub async fn deliver(
        &self,
        to: &Destination,
        mut events: Vec<Event>,
        cancel: &CancellationToken,
    ) -> Result<Delivery, usize> {
        // Disk buffer acknowledgements are confirmed only once this call has settled for
        // good (stored, or refused for a reason retrying cannot fix); events abandoned at
        // the deadline, or lost with a dying task, stay on disk.
        let mut acks: Vec<(Ack, usize)> = Vec::new();
        for event in &mut events {
            if let Some(ack) = event.ack.take() {
                match acks.last_mut() {
                    Some((last, n)) if last.same_record(&ack) => *n += 1,
                    _ => acks.push((ack, 1)),
                }
            }
        }
        let result = self.deliver_events(to, events, cancel).await;
        if result.is_ok() {
            for (ack, events) in &acks {
                ack.settled(*events);
            }
        }
        result
    }

    async fn deliver_events(
        &self,
        to: &Destination,
        events: Vec<Event>,
        cancel: &CancellationToken,
    ) -> Result<Delivery, usize> {
        let count = events.len();
        if cancel.is_cancelled() || self.ensure_stream_with_retry(to, cancel).await.is_err() {
            return Err(count);
        }
        let bytes: u64 = events.iter().map(|e| e.message.len() as u64).sum();
        // Serialised once; the messages are freed (the body holds them) and every attempt
        // sends the same bytes, signed by the SDK.
        let body = super::body::put_log_events_body(&to.group, &to.stream, &events);
        drop(events);
        let mut backoff = Backoff::new(Duration::from_millis(100), self.max_backoff);
        let mut missing_resource_retries = 0;
        loop {
            let start = Instant::now();
            let attempt = body.clone();
            let call = self
                .client
                .put_log_events()
                .log_group_name(&*to.group)
                .log_stream_name(&*to.stream)
                .customize()
                .mutate_request(move |request| {
                    request
                        .headers_mut()
                        .insert("content-length", attempt.len().to_string());
                    *request.body_mut() = SdkBody::from(attempt.clone());
                })
                .send();
            let result = tokio::select! {
                result = tokio::time::timeout(self.request_timeout, call) => result,
                () = cancel.cancelled() => return Err(count),
            };
            let failure = match result {
                Ok(Ok(output)) => {
                    self.metrics.request(true, start.elapsed());
                    let rejected = output.rejected_log_events_info().map_or(0, |info| {
                        rejected_count(
                            count,
                            info.too_old_log_event_end_index(),
                            info.expired_log_event_end_index(),
                            info.too_new_log_event_start_index(),
                        )
                    });
                    if rejected > 0 {
                        self.metrics.dropped(DropReason::Rejected, rejected as u64);
                        self.log_once(
                            "rejected_log_events",
                            "CloudWatch rejected events for their timestamps",
                        );
                    }
                    let sent = count - rejected;
                    self.metrics.sent(sent as u64, bytes);
                    return Ok(Delivery {
                        sent,
                        dropped: rejected,
                    });
                }
                Ok(Err(error)) => {
                    self.metrics.request(false, start.elapsed());
                    classify(&error)
                }
                Err(_) => {
                    self.metrics.request(false, start.elapsed());
                    Failure::Retry(RetryReason::Timeout)
                }
            };
            match failure {
                Failure::Retry(reason) => {
                    self.metrics.retried(reason);
                    if reason == RetryReason::Auth {
                        self.warn_auth_at_most_once_a_minute();
                    }
                    tracing::debug!(
                        reason = reason.as_str(),
                        attempt = backoff.attempts(),
                        "PutLogEvents failed; retrying"
                    );
                }
                Failure::MissingResource if missing_resource_retries < 3 => {
                    missing_resource_retries += 1;
                    self.metrics.retried(RetryReason::ResourceNotFound);
                    if let Ok(mut streams) = self.streams.lock() {
                        streams.remove(to);
                    }
                    let _ = until_cancelled(cancel, self.ensure_group(&to.group)).await;
                    if self.ensure_stream_with_retry(to, cancel).await.is_err() {
                        return Err(count);
                    }
                    continue;
                }
                Failure::MissingResource => {
                    return Ok(self.permanent("ResourceNotFoundException", count));
                }
                Failure::Permanent { code } => return Ok(self.permanent(&code, count)),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = cancel.cancelled() => return Err(count),
            }
        }
    }

    async fn ensure_stream_with_retry(
        &self,
        to: &Destination,
        cancel: &CancellationToken,
    ) -> Result<(), ()> {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.max_backoff);
        loop {
            match until_cancelled(cancel, self.ensure_stream(to)).await {
                Ok(()) => return Ok(()),
                Err(LogsError::Cancelled) => return Err(()),
                Err(error) => {
                    tracing::debug!(kind = error.kind(), error = %error, group = %to.group, stream = %to.stream, "cannot create log stream yet; retrying")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = cancel.cancelled() => return Err(()),
            }
        }
    }

    fn permanent(&self, kind: &str, events: usize) -> Delivery {
        self.metrics
            .dropped(DropReason::PermanentError, events as u64);
        self.log_once(kind, "PutLogEvents failed permanently; events dropped");
        Delivery {
            sent: 0,
            dropped: events,
        }
    }

    /// Refused credentials are retried (their events kept, on disk too), and said in the
    /// log at most once a minute.
    fn warn_auth_at_most_once_a_minute(&self) {
        let now = Instant::now();
        let due = self.auth_warned.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|at| now.duration_since(at) >= AUTH_WARNING_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        });
        if due {
            tracing::warn!(
                retries = self.metrics.retries(RetryReason::Auth),
                "CloudWatch Logs refuses the credentials (AccessDenied, expired or unrecognized); retrying, events are kept (said once a minute; see agent_retries_total{{reason=\"auth\"}})"
            );
        }
    }

    fn log_once(&self, kind: &str, message: &str) {
        let first = self
            .logged
            .lock()
            .map(|mut logged| logged.insert(kind.to_owned()))
            .unwrap_or(false);
        if first {
            tracing::error!(
                kind,
                "{message} (logged once per kind; see agent_events_dropped_total)"
            );
        }
    }
}

/// Runs a set-up call unless the shutdown deadline fires first.
async fn until_cancelled(
    cancel: &CancellationToken,
    call: impl std::future::Future<Output = Result<(), LogsError>>,
) -> Result<(), LogsError> {
    tokio::select! {
        result = call => result,
        () = cancel.cancelled() => Err(LogsError::Cancelled),
    }
}

/// Events of a batch of `len` rejected according to `rejectedLogEventsInfo`.
fn rejected_count(
    len: usize,
    too_old_end: Option<i32>,
    expired_end: Option<i32>,
    too_new_start: Option<i32>,
) -> usize {
    let old = too_old_end
        .into_iter()
        .chain(expired_end)
        .map(|end| (end + 1).max(0) as usize)
        .max()
        .unwrap_or(0)
        .min(len);
    let new = too_new_start.map_or(len, |start| (start.max(0) as usize).max(old).min(len));
    old + (len - new)
}

/// Why a set-up call (CreateLogGroup, PutRetentionPolicy, CreateLogStream) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsError {
    /// CloudWatch Logs answered with an error code.
    #[error("CloudWatch Logs refused the call: {code}")]
    Service {
        /// The error code (`AccessDeniedException`, ...).
        code: String,
        /// Whether retrying can help (throttling, 5xx).
        retriable: bool,
    },
    /// The attempt timed out (the endpoint stalled, trickled or never connected).
    #[error("the call timed out")]
    Timeout,
    /// No connection could be made.
    #[error("the connection failed")]
    Connection,
    /// The answer could not be read (cut connection, garbled body).
    #[error("the response was unreadable")]
    Response,
    /// The shutdown deadline stopped it.
    #[error("cancelled by the shutdown deadline")]
    Cancelled,
    /// Anything else the SDK reports (a request it could not build, ...).
    #[error("the request failed")]
    Other,
}

impl LogsError {
    /// Classifies an SDK error.
    pub fn from_sdk<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
        error: &SdkError<E, R>,
    ) -> Self {
        match error {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("service error").to_owned();
                let retriable = matches!(
                    crate::sinks::retry::classify_code(&code, 0),
                    Failure::Retry(_) | Failure::MissingResource
                );
                Self::Service { code, retriable }
            }
            SdkError::TimeoutError(_) => Self::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => Self::Timeout,
            SdkError::DispatchFailure(_) => Self::Connection,
            SdkError::ResponseError(_) => Self::Response,
            _ => Self::Other,
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Service { retriable, .. } => *retriable,
            Self::Timeout | Self::Connection | Self::Response => true,
            Self::Cancelled | Self::Other => false,
        }
    }

    /// A short fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Service { .. } => "service",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Response => "response",
            Self::Cancelled => "cancelled",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_errors_say_whether_to_retry() {
        let throttled = LogsError::Service {
            code: "ThrottlingException".into(),
            retriable: true,
        };
        assert!(throttled.is_retriable());
        assert!(LogsError::Timeout.is_retriable());
        assert!(!LogsError::Cancelled.is_retriable());
        assert_eq!(LogsError::Timeout.kind(), "timeout");
        assert_eq!(
            LogsError::Timeout.to_string(),
            "the call timed out",
            "a message for the log, no internals"
        );
    }

    #[test]
    fn rejected_counts_union_of_ranges() {
        assert_eq!(rejected_count(10, None, None, None), 0);
        assert_eq!(rejected_count(10, Some(2), None, None), 3);
        assert_eq!(rejected_count(10, Some(2), Some(4), None), 5);
        assert_eq!(rejected_count(10, None, None, Some(8)), 2);
        assert_eq!(rejected_count(10, Some(4), None, Some(2)), 5 + 5);
        assert_eq!(rejected_count(3, Some(10), None, None), 3);
    }
}
