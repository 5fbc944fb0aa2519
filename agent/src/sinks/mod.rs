//! Outputs. Each sink drains the pipeline's receiver until every sender is gone, flushing
//! what it holds before returning.

pub mod cloudwatch_logs;
pub mod cloudwatch_metrics;
pub mod retry;
pub mod sentry;

use std::time::Duration;

use serde::Deserialize;

/// Outputs.
#[derive(Debug, Clone, Deserialize)]
pub struct SinksConfig {
    /// CloudWatch Logs.
    pub cloudwatch_logs: cloudwatch_logs::CloudWatchLogsConfig,
    /// Error events to Sentry; off unless the table is present.
    #[serde(default)]
    pub sentry: Option<sentry::SentryConfig>,
}

/// Longest wait for a TCP (and TLS) connection to an AWS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The AWS SDK configuration every sink starts from: region and endpoint from the config when
/// given, else the standard environment (`AWS_REGION`; `AWS_ENDPOINT_URL_<SERVICE>`, e.g.
/// `AWS_ENDPOINT_URL_CLOUDWATCH`, before `AWS_ENDPOINT_URL`); credentials from
/// the default chain (the ECS task role in production); the SDK's own retries off, because
/// `retry` decides; and every call bounded: an attempt (and so the operation, with retries
/// off) fails with a retryable timeout after `timeout`, whether the endpoint never answers,
/// trickles bytes or never accepts the connection.
pub async fn sdk_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    timeout: Duration,
) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout.min(CONNECT_TIMEOUT))
        .read_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
