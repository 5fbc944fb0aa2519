//! The CloudWatch calls of provisioning, one at a time. Each kind of call is paced under its
//! documented rate (PutDashboard about 10 per second, PutMetricAlarm about 3) and a
//! throttled call widens that pace; throttling, 5xx, timeouts and connection errors are
//! retried with jittered exponential backoff (the shared policy of `sinks::retry`).

use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::http::HttpResponse;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{AlarmType, MetricAlarm};
#[cfg(feature = "preview")]
use aws_sdk_cloudwatch::types::{DimensionFilter, Metric, MetricDataQuery, MetricDataResult};
#[cfg(feature = "preview")]
use aws_smithy_types::DateTime;
use tokio::time::Instant;

use super::AlarmSpec;
use crate::metrics::RetryReason;
use crate::sinks::retry::{Backoff, Failure, classify};

/// Attempts per call before giving up.
const MAX_ATTEMPTS: u32 = 8;
/// Attempts per read of a preview.
#[cfg(feature = "preview")]
pub(super) const PREVIEW_ATTEMPTS: u32 = 2;
/// One call's deadline.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Spacing of reads (GetDashboard, ListDashboards, DescribeAlarms, GetMetricData,
/// ListMetrics).
pub(super) const READ_INTERVAL: Duration = Duration::from_millis(100);
/// PutDashboard and DeleteDashboards: about 10 per second.
const DASHBOARD_INTERVAL: Duration = Duration::from_millis(100);
/// PutMetricAlarm and DeleteAlarms: about 3 per second.
const ALARM_INTERVAL: Duration = Duration::from_millis(340);
/// The widest a throttled pace grows.
const MAX_INTERVAL: Duration = Duration::from_secs(5);
/// Names per DeleteDashboards / DeleteAlarms call.
const MAX_NAMES_PER_DELETE: usize = 100;

/// A call that failed for good.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {target}: {message}")]
pub struct ProvisionError {
    /// The API operation.
    pub operation: &'static str,
    /// What it was about (a name or a prefix).
    pub target: String,
    /// The error code (`ThrottlingException`, `timeout`, ...).
    pub code: String,
    /// The details.
    pub message: String,
}

impl ProvisionError {
    /// A fixed label for the failure (the AWS error code or `timeout`/`connection`).
    pub fn kind(&self) -> &str {
        &self.code
    }

    fn is_not_found(&self) -> bool {
        self.code.contains("NotFound")
    }
}

/// Keeps calls of one kind at least `interval` apart.
#[derive(Debug)]
pub(super) struct Pacer {
    interval: Duration,
    next: Option<Instant>,
    /// Attempts per call before giving up.
    attempts: u32,
}

impl Pacer {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: None,
            attempts: MAX_ATTEMPTS,
        }
    }

    /// The same pace with fewer attempts: a preview's reads draw a picture, and a call the
    /// data source cannot answer (the emulator fails percentiles with a 500) should not hold
    /// it up for a minute of backoff.
    #[cfg(feature = "preview")]
    pub(super) fn attempts(self, attempts: u32) -> Self {
        Self { attempts, ..self }
    }

    async fn wait(&mut self) {
        if let Some(next) = self.next {
            tokio::time::sleep_until(next).await;
        }
        self.next = Some(Instant::now() + self.interval);
    }

    fn slow_down(&mut self) {
        self.interval = (self.interval * 2).min(MAX_INTERVAL);
    }
}

/// CloudWatch, paced and retried.
#[derive(Debug)]
pub struct Api {
    client: Client,
    reads: Pacer,
    dashboards: Pacer,
    alarms: Pacer,
}

/// Runs `call` until it succeeds or fails for good.
pub(super) async fn call<T, E, Fut>(
    pacer: &mut Pacer,
    operation: &'static str,
    target: &str,
    mut call: impl FnMut() -> Fut,
) -> Result<T, ProvisionError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(20));
    let mut attempt = 0;
    loop {
        attempt += 1;
        pacer.wait().await;
        let (failure, code, message) = match tokio::time::timeout(CALL_TIMEOUT, call()).await {
            Ok(Ok(output)) => return Ok(output),
            Ok(Err(error)) => {
                let code = error.code().unwrap_or("error").to_owned();
                let message = match error.message() {
                    Some(message) => format!("{code}: {message}"),
                    None => DisplayErrorContext(&error).to_string(),
                };
                (classify(&error), code, message)
            }
            Err(_) => (
                Failure::Retry(RetryReason::Timeout),
                "timeout".to_owned(),
                format!("no answer within {CALL_TIMEOUT:?}"),
            ),
        };
        match failure {
            // Refused credentials are the operator's to fix: say so at once.
            Failure::Retry(reason) if attempt < pacer.attempts && reason != RetryReason::Auth => {
                if reason == RetryReason::Throttled {
                    pacer.slow_down();
                }
                let delay = backoff.next_delay();
                tracing::warn!(
                    operation,
                    resource = target,
                    attempt,
                    reason = reason.as_str(),
                    delay_ms = delay.as_millis() as u64,
                    "retrying"
                );
                tokio::time::sleep(delay).await;
            }
            _ => {
                return Err(ProvisionError {
                    operation,
                    target: target.to_owned(),
                    code,
                    message,
                });
            }
        }
    }
}

impl Api {
    /// A client for `region` and `endpoint` (each defaulting to the environment).
    pub async fn new(region: Option<&str>, endpoint: Option<&str>) -> Self {
        Self::from_client(Client::new(
            &crate::sinks::sdk_config(region, endpoint, CALL_TIMEOUT).await,
        ))
    }

    /// Around an existing client, for a preview: reads retried twice at most.
    #[cfg(feature = "preview")]
    pub(super) fn for_preview(client: Client) -> Self {
        Self {
            reads: Pacer::new(READ_INTERVAL).attempts(PREVIEW_ATTEMPTS),
            ..Self::from_client(client)
        }
    }

    /// Around an existing client.
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            reads: Pacer::new(READ_INTERVAL),
            dashboards: Pacer::new(DASHBOARD_INTERVAL),
            alarms: Pacer::new(ALARM_INTERVAL),
        }
    }

    /// Names of the dashboards starting with `prefix`.
    pub async fn list_dashboards(&mut self, prefix: &str) -> Result<Vec<String>, ProvisionError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let client = &self.client;
            let page = call(&mut self.reads, "ListDashboards", prefix, || {
                client
                    .list_dashboards()
                    .dashboard_name_prefix(prefix)
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            names.extend(
                page.dashboard_entries()
                    .iter()
                    .filter_map(|d| d.dashboard_name())
                    .map(str::to_owned),
            );
            match page.next_token() {
                Some(next) if !next.is_empty() && token.as_deref() != Some(next) => {
                    token = Some(next.to_owned());
                }
                _ => return Ok(names),
            }
        }
    }

    /// A dashboard's body; `None` if it does not exist.
    pub async fn get_dashboard(&mut self, name: &str) -> Result<Option<String>, ProvisionError> {
        let client = &self.client;
        match call(&mut self.reads, "GetDashboard", name, || {
            client.get_dashboard().dashboard_name(name).send()
        })
        .await
        {
            Ok(output) => Ok(Some(output.dashboard_body().unwrap_or_default().to_owned())),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The metric alarms whose names start with `prefix`.
    pub async fn describe_alarms(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<MetricAlarm>, ProvisionError> {
        let mut alarms = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let client = &self.client;
            let page = call(&mut self.reads, "DescribeAlarms", prefix, || {
                client
                    .describe_alarms()
                    .alarm_name_prefix(prefix)
                    .alarm_types(AlarmType::MetricAlarm)
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            alarms.extend(page.metric_alarms().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() && token.as_deref() != Some(next) => {
                    token = Some(next.to_owned());
                }
                _ => return Ok(alarms),
            }
        }
    }

    /// The states of the named alarms (name, state), at most 100 names per call.
    #[cfg(feature = "preview")]
    pub async fn alarm_states(
        &mut self,
        names: &[String],
    ) -> Result<Vec<(String, String)>, ProvisionError> {
        let mut states = Vec::new();
        for chunk in names.chunks(MAX_NAMES_PER_DELETE) {
            let client = &self.client;
            let page = call(&mut self.reads, "DescribeAlarms", &chunk.join(","), || {
                client
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .send()
            })
            .await?;
            for alarm in page.metric_alarms() {
                if let (Some(name), Some(state)) = (alarm.alarm_name(), alarm.state_value()) {
                    states.push((name.to_owned(), state.as_str().to_owned()));
                }
            }
            for alarm in page.composite_alarms() {
                if let (Some(name), Some(state)) = (alarm.alarm_name(), alarm.state_value()) {
                    states.push((name.to_owned(), state.as_str().to_owned()));
                }
            }
        }
        Ok(states)
    }

    /// GetMetricData from `start` to `end` (Unix seconds), every page.
    #[cfg(feature = "preview")]
    pub async fn metric_data(
        &mut self,
        queries: Vec<MetricDataQuery>,
        start: i64,
        end: i64,
    ) -> Result<Vec<MetricDataResult>, ProvisionError> {
        let mut results = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let client = &self.client;
            let page = call(&mut self.reads, "GetMetricData", "widget", || {
                client
                    .get_metric_data()
                    .set_metric_data_queries(Some(queries.clone()))
                    .start_time(DateTime::from_secs(start))
                    .end_time(DateTime::from_secs(end))
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            results.extend(page.metric_data_results().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() && token.as_deref() != Some(next) => {
                    token = Some(next.to_owned());
                }
                _ => return Ok(results),
            }
        }
    }

    /// ListMetrics of `namespace` (and `name`, with dimension filters), up to `limit`.
    #[cfg(feature = "preview")]
    pub async fn list_metrics(
        &mut self,
        namespace: &str,
        name: Option<&str>,
        filters: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Metric>, ProvisionError> {
        let mut metrics = Vec::new();
        let mut token: Option<String> = None;
        let filters: Vec<DimensionFilter> = filters
            .iter()
            .map(|(key, value)| DimensionFilter::builder().name(key).value(value).build())
            .collect();
        loop {
            let client = &self.client;
            let page = call(&mut self.reads, "ListMetrics", namespace, || {
                client
                    .list_metrics()
                    .namespace(namespace)
                    .set_metric_name(name.map(str::to_owned))
                    .set_dimensions((!filters.is_empty()).then(|| filters.clone()))
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            metrics.extend(page.metrics().iter().cloned());
            match page.next_token() {
                Some(next)
                    if !next.is_empty()
                        && token.as_deref() != Some(next)
                        && metrics.len() < limit =>
                {
                    token = Some(next.to_owned());
                }
                _ => {
                    metrics.truncate(limit);
                    return Ok(metrics);
                }
            }
        }
    }

    /// Creates or replaces a dashboard; returns CloudWatch's validation messages.
    pub async fn put_dashboard(
        &mut self,
        name: &str,
        body: &str,
    ) -> Result<Vec<String>, ProvisionError> {
        let client = &self.client;
        let output = call(&mut self.dashboards, "PutDashboard", name, || {
            client
                .put_dashboard()
                .dashboard_name(name)
                .dashboard_body(body)
                .send()
        })
        .await?;
        Ok(output
            .dashboard_validation_messages()
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    m.data_path().unwrap_or("$"),
                    m.message().unwrap_or_default()
                )
            })
            .collect())
    }

    /// Creates or replaces an alarm.
    pub async fn put_alarm(&mut self, alarm: &AlarmSpec) -> Result<(), ProvisionError> {
        let client = &self.client;
        call(
            &mut self.alarms,
            "PutMetricAlarm",
            &alarm.alarm_name,
            || alarm.to_request(client.put_metric_alarm()).send(),
        )
        .await
        .map(|_| ())
    }

    /// Deletes dashboards.
    pub async fn delete_dashboards(&mut self, names: &[String]) -> Result<(), ProvisionError> {
        for chunk in names.chunks(MAX_NAMES_PER_DELETE) {
            let client = &self.client;
            call(
                &mut self.dashboards,
                "DeleteDashboards",
                &chunk.join(","),
                || {
                    client
                        .delete_dashboards()
                        .set_dashboard_names(Some(chunk.to_vec()))
                        .send()
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes alarms.
    pub async fn delete_alarms(&mut self, names: &[String]) -> Result<(), ProvisionError> {
        for chunk in names.chunks(MAX_NAMES_PER_DELETE) {
            let client = &self.client;
            call(&mut self.alarms, "DeleteAlarms", &chunk.join(","), || {
                client
                    .delete_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .send()
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_sdk_cloudwatch::error::ErrorMetadata;
    use aws_sdk_cloudwatch::operation::put_dashboard::PutDashboardError;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn error(code: &str, status: u16) -> SdkError<PutDashboardError, HttpResponse> {
        SdkError::service_error(
            PutDashboardError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("from the test")
                    .build(),
            ),
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        )
    }

    #[tokio::test]
    async fn throttling_is_retried_and_widens_the_pace() {
        let mut pacer = Pacer::new(Duration::from_millis(5));
        let attempts = AtomicU32::new(0);
        let result = call(&mut pacer, "PutDashboard", "d", || {
            let n = attempts.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 2 {
                    Err(error("Throttling", 400))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(pacer.interval, Duration::from_millis(20), "doubled twice");
    }

    #[tokio::test]
    async fn a_rejected_call_fails_at_once_with_its_code() {
        let mut pacer = Pacer::new(Duration::from_millis(5));
        let attempts = AtomicU32::new(0);
        let result: Result<(), _> = call(&mut pacer, "PutDashboard", "d", || {
            attempts.fetch_add(1, Ordering::Relaxed);
            async { Err(error("InvalidParameterInput", 400)) }
        })
        .await;
        let error = result.unwrap_err();
        assert_eq!(attempts.load(Ordering::Relaxed), 1);
        assert_eq!(error.kind(), "InvalidParameterInput");
        assert_eq!(
            error.to_string(),
            "PutDashboard d: InvalidParameterInput: from the test"
        );
    }

    #[tokio::test]
    async fn the_pacer_keeps_calls_apart() {
        let mut pacer = Pacer::new(Duration::from_millis(30));
        let start = Instant::now();
        for _ in 0..4 {
            pacer.wait().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(90));
    }
}
