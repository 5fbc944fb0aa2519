//! Uptime: probes the application's health routes on an interval. Each result feeds
//! `HealthCheck` (1 healthy, 0 not) and `ProbeLatency` per endpoint; the publisher adds a
//! `Heartbeat` of its own, so an alarm that treats missing data as breaching fires when
//! the whole task is gone. `agent probe` runs the same check once (deploy smoke tests).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use serde::Deserialize;

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Answered 2xx within the timeout.
    pub healthy: bool,
    /// The status code, when there was an answer.
    pub status: Option<u16>,
    /// Time to the full answer (or to the failure), in ms.
    pub latency_ms: f64,
    /// Why it failed, for humans (`connection refused`, `status 503`, ...).
    pub error: Option<String>,
}

/// Probes `url` once.
pub async fn probe(url: &str, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let outcome = crate::http_client::get(url, timeout).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(response) if (200..300).contains(&response.status) => ProbeResult {
            healthy: true,
            status: Some(response.status),
            latency_ms,
            error: None,
        },
        Ok(response) => ProbeResult {
            healthy: false,
            status: Some(response.status),
            latency_ms,
            error: Some(format!("status {}", response.status)),
        },
        Err(error) => ProbeResult {
            healthy: false,
            status: None,
            latency_ms,
            error: Some(error.to_string()),
        },
    }
}

/// The endpoint label of a URL: its path (`/api/health/db`), never host details.
pub fn endpoint_label(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.find('/').map_or_else(
        || "/".to_owned(),
        |at| rest[at..].split('?').next().unwrap_or("/").to_owned(),
    )
}

/// Results gathered since the publisher last took them, and the latest per endpoint.
#[derive(Debug, Clone, Default)]
pub struct UptimeState {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    period: BTreeMap<String, Vec<ProbeResult>>,
    latest: BTreeMap<String, ProbeResult>,
}

impl UptimeState {
    fn push(&self, endpoint: String, result: ProbeResult) {
        if let Ok(mut state) = self.inner.lock() {
            state.latest.insert(endpoint.clone(), result.clone());
            state.period.entry(endpoint).or_default().push(result);
        }
    }

    /// Every result since the last call, per endpoint.
    pub fn take_period(&self) -> BTreeMap<String, Vec<ProbeResult>> {
        self.inner
            .lock()
            .map(|mut state| std::mem::take(&mut state.period))
            .unwrap_or_default()
    }

    /// The latest result per endpoint (for Prometheus).
    pub fn latest(&self) -> BTreeMap<String, ProbeResult> {
        self.inner
            .lock()
            .map(|state| state.latest.clone())
            .unwrap_or_default()
    }
}

/// Probes every URL each interval until `shutdown`.
pub async fn run(config: UptimeConfig, state: UptimeState, shutdown: CancellationToken) {
    let timeout = Duration::from_millis(config.timeout_ms);
    let mut tick = tokio::time::interval(Duration::from_secs(config.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let probes = config
            .urls
            .iter()
            .cloned()
            .map(|url| async move { (endpoint_label(&url), probe(&url, timeout).await) });
        for (endpoint, result) in futures_join_all(probes).await {
            if !result.healthy {
                tracing::warn!(endpoint = %endpoint, error = result.error.as_deref().unwrap_or(""), "health probe failed");
            }
            state.push(endpoint, result);
        }
    }
}

/// Runs futures concurrently and collects their outputs in order (a tiny join_all).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}

/// Health probes: each URL is fetched every interval; `HealthCheck` is 1 when it answers
/// 2xx in time, else 0. A `Heartbeat` of 1 is published every period while the agent runs.
#[derive(Debug, Clone, Deserialize)]
pub struct UptimeConfig {
    /// URLs to probe (plain http, e.g. http://127.0.0.1:8080/health); empty = no probes.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Seconds between probes.
    #[serde(default = "default_probe_interval")]
    pub interval_secs: u64,
    /// Timeout of one probe in ms.
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
}

impl Default for UptimeConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            interval_secs: default_probe_interval(),
            timeout_ms: default_probe_timeout(),
        }
    }
}

fn default_probe_interval() -> u64 {
    15
}
fn default_probe_timeout() -> u64 {
    3000
}

impl UptimeConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, url) in self.urls.iter().enumerate() {
            if !(url.starts_with("http://") && url.len() > 7) {
                errors.push(format!("{path}.urls[{i}]: must be an http:// URL"));
            }
        }
        if !(1..=3600).contains(&self.interval_secs) {
            errors.push(format!("{path}.interval_secs: must be 1..=3600"));
        }
        if !((50..=60_000).contains(&self.timeout_ms)
            && self.timeout_ms < self.interval_secs * 1000)
        {
            errors.push(format!(
                "{path}.timeout_ms: must be 50..=60000 and below the interval"
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    async fn server() -> u16 {
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/api/health/redis",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    #[tokio::test]
    async fn healthy_unhealthy_slow_and_down() {
        let port = server().await;
        let timeout = Duration::from_millis(300);
        let ok = probe(&format!("http://127.0.0.1:{port}/health"), timeout).await;
        assert!(ok.healthy && ok.status == Some(200), "{ok:?}");
        let unhealthy = probe(
            &format!("http://127.0.0.1:{port}/api/health/redis"),
            timeout,
        )
        .await;
        assert_eq!((unhealthy.healthy, unhealthy.status), (false, Some(503)));
        let slow = probe(&format!("http://127.0.0.1:{port}/slow"), timeout).await;
        assert!(
            !slow.healthy && slow.status.is_none() && slow.latency_ms < 1000.0,
            "{slow:?}"
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = probe(&format!("http://127.0.0.1:{closed}/health"), timeout).await;
        assert!(!down.healthy && down.error.is_some());
    }

    #[tokio::test]
    async fn the_prober_records_every_result_per_endpoint() {
        let port = server().await;
        let config = UptimeConfig {
            urls: vec![
                format!("http://127.0.0.1:{port}/health"),
                format!("http://127.0.0.1:{port}/api/health/redis"),
            ],
            interval_secs: 1,
            timeout_ms: 300,
        };
        let state = UptimeState::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(config, state.clone(), stop.clone()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.latest().len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
        let latest = state.latest();
        assert!(latest["/health"].healthy);
        assert!(!latest["/api/health/redis"].healthy);
        let period = state.take_period();
        assert!(!period["/health"].is_empty());
        assert!(state.take_period().is_empty());
    }

    #[test]
    fn endpoint_labels_are_paths() {
        assert_eq!(
            endpoint_label("http://127.0.0.1:8080/api/health/db"),
            "/api/health/db"
        );
        assert_eq!(endpoint_label("http://api:8080"), "/");
        assert_eq!(endpoint_label("http://api/health?x=1"), "/health");
    }
}
