//! The Sentry sink: error events (level ≥ `min_level`) become Sentry events, with the
//! request's breadcrumbs, fingerprinted and de-duplicated, sent as envelopes within Sentry's
//! rate limits. Never blocks the log pipeline: a full queue drops its oldest event.
//!
//! Split as the other sinks: `config` (keys, validation, the DSN), `tap` (the pipeline's
//! hot-path side: breadcrumbs, de-duplication, the bounded queue), `event` + `stack` (the
//! pure request builder), `envelope` (framing), `transport` (HTTPS), `rate_limit`, and
//! `sink` (the task that sends, retries and counts). Outcomes are counted in
//! `agent_sentry_events_total{outcome}`.

mod breadcrumbs;
mod config;
mod dedup;
mod envelope;
mod event;
mod proxy;
mod rate_limit;
mod secret;
mod sink;
mod stack;
mod tap;
mod transport;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use self::config::{Dsn, DsnError, MinLevel, Redacted, Scheme, SentryConfig};
pub use self::event::{MAX_EVENT_BYTES, SDK_NAME};
pub use self::rate_limit::DEFAULT_RETRY_AFTER;
pub use self::secret::{SentryError, dsn_from_secret, fetch_dsn};
pub use self::sink::SentrySink;
pub use self::tap::SentryTap;
pub use self::transport::TlsError;
use crate::metrics::Metrics;
use crate::pipeline::ecs::SharedTaskInfo;

/// Resolves the DSN (from `dsn`, or from Secrets Manager when `dsn_secret_id` is set, with
/// the standard AWS configuration), sets up the HTTPS client, and returns the pipeline's
/// tap and the sink task. `task_info` gives `server_name` (the task id) and the `cluster`
/// and `service` tags once the ECS metadata is known. Errors never contain the DSN.
pub async fn build(
    config: &SentryConfig,
    metrics: Arc<Metrics>,
    task_info: SharedTaskInfo,
) -> Result<(SentryTap, SentrySink), SentryError> {
    let dsn = match (&config.dsn, &config.dsn_secret_id) {
        (Some(dsn), _) => Dsn::parse(dsn.expose())?,
        (None, Some(id)) => {
            let sdk = crate::sinks::sdk_config(
                config.secrets_manager_region.as_deref(),
                config.secrets_manager_endpoint.as_deref(),
                Duration::from_millis(config.request_timeout_ms),
            )
            .await;
            let client = aws_sdk_secretsmanager::Client::new(&sdk);
            fetch_dsn(&client, id, &config.dsn_secret_key).await?
        }
        (None, None) => return Err(SentryError::InvalidDsn(DsnError::Scheme)),
    };
    build_with_dsn(config, &dsn, metrics, task_info)
}

/// [`build`] with the DSN already resolved.
pub fn build_with_dsn(
    config: &SentryConfig,
    dsn: &Dsn,
    metrics: Arc<Metrics>,
    task_info: SharedTaskInfo,
) -> Result<(SentryTap, SentrySink), SentryError> {
    let transport =
        transport::Transport::new(dsn, Duration::from_millis(config.request_timeout_ms))?;
    let shared = Arc::new(tap::Shared::new(config.clone(), metrics));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    Ok((
        SentryTap::new(shared.clone()),
        SentrySink::new(shared, transport, task_info, hostname),
    ))
}

/// What the topology calls: with `[sinks.sentry]`, builds the sink and its tap (which the
/// pipeline observes with); without it, or when the DSN cannot be had (Secrets Manager down
/// or stalled: the fetch is bounded by `timeout`; logged as an error), the agent runs
/// without Sentry rather than not at all.
pub async fn attach(
    config: Option<&SentryConfig>,
    metrics: &Arc<Metrics>,
    task_info: &SharedTaskInfo,
    timeout: Duration,
) -> Option<(SentryTap, SentrySink)> {
    let config = config?;
    match tokio::time::timeout(timeout, build(config, metrics.clone(), task_info.clone())).await {
        Ok(Ok((tap, sink))) => {
            let proxy = sink.proxy().unwrap_or_else(|| "none".into());
            tracing::info!(url = %sink.url(), proxy, "error events go to Sentry");
            Some((tap, sink))
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error, kind = error.kind(), "Sentry disabled");
            None
        }
        Err(_) => {
            tracing::error!(
                timeout_ms = timeout.as_millis() as u64,
                kind = "timeout",
                "Sentry disabled: the DSN could not be had in time"
            );
            None
        }
    }
}
