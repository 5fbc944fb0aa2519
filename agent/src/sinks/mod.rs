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

/// The AWS SDK configuration of a client with no per-sink keys beyond `region` and
/// `endpoint` (Secrets Manager, `agent provision`): see [`crate::aws::AwsKeys::sdk_config`].
pub async fn sdk_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    timeout: Duration,
) -> aws_config::SdkConfig {
    crate::aws::AwsKeys {
        region,
        endpoint,
        ..crate::aws::AwsKeys::default()
    }
    .sdk_config(timeout)
    .await
}
