//! Outputs. Each sink drains the pipeline's receiver until every sender is gone, flushing
//! what it holds before returning.

pub mod cloudwatch_logs;
pub mod cloudwatch_metrics;
pub mod retry;
pub mod sentry;

/// The AWS SDK configuration every sink starts from: region and endpoint from the config when
/// given, else the standard environment (`AWS_REGION`; `AWS_ENDPOINT_URL_<SERVICE>`, e.g.
/// `AWS_ENDPOINT_URL_CLOUDWATCH`, before `AWS_ENDPOINT_URL`); credentials from
/// the default chain (the ECS task role in production); the SDK's own retries off, because
/// `retry` decides.
pub async fn sdk_config(region: Option<&str>, endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
