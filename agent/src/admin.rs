//! The admin HTTP server: `/health` (alive), `/ready` (accepting and shipping), `/metrics`
//! (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGauge, IntGaugeVec, Opts};

use crate::metrics::names::{self, labels};
use crate::metrics::{Metrics, clamp_i64};
use crate::pipeline::budget::MemoryBudget;
use crate::request_metrics::{Recorder, RecorderCollector};
use crate::uptime::UptimeState;

/// The admin HTTP server.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminConfig {
    /// Listen address (default 127.0.0.1:9880).
    #[serde(default = "default_admin_address")]
    pub address: String,
}

impl AdminConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    /// (The address stays a string in the file's type so that a bad one is reported with
    /// every other problem rather than stopping the parse.)
    pub fn validate(&self, path: &str) -> Vec<String> {
        match self.address.parse::<SocketAddr>() {
            Ok(_) => Vec::new(),
            Err(_) => vec![format!("{path}.address: must be IP:port")],
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: default_admin_address(),
        }
    }
}

fn default_admin_address() -> String {
    "127.0.0.1:9880".into()
}

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// False while starting and once shutting down.
    pub ready: Arc<AtomicBool>,
    /// The agent's counters.
    pub metrics: Arc<Metrics>,
    /// The memory ceiling, for the buffer gauges.
    pub budget: MemoryBudget,
    /// Request metrics, when on.
    pub recorder: Option<Recorder>,
    /// Latest probe results.
    pub uptime: UptimeState,
    /// The disk buffer, when on.
    pub disk: Option<crate::buffer::Status>,
}

/// The admin routes. Registers the disk buffer's and the probes' gauges, and the request
/// metrics, with the agent's registry (once per `Metrics`: a second router over the same
/// one logs and shows them once).
pub fn router(state: AdminState) -> Router {
    if let Err(error) = state
        .metrics
        .registry()
        .register(Box::new(AdminCollector::new(&state)))
    {
        tracing::warn!(%error, "admin metrics already registered");
    }
    Router::new()
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    if state
        .disk
        .as_ref()
        .is_some_and(crate::buffer::Status::blocked)
    {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: disk buffer full or not writable\n",
        )
    } else if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
}

/// Everything `/metrics` shows: the agent's registry (its counters, and what
/// [`router`] registered: the disk buffer's gauges, request metrics, the latest probes).
pub fn render(state: &AdminState) -> String {
    state.metrics.render(state.budget.usage())
}

/// The gauges read from other components at scrape time.
#[derive(Debug)]
struct AdminCollector {
    /// The disk buffer and its bytes, limit and blocked gauges.
    disk: Option<(crate::buffer::Status, [IntGauge; 3])>,
    uptime: UptimeState,
    up: IntGaugeVec,
    latency: GaugeVec,
    requests: Option<RecorderCollector>,
}

impl AdminCollector {
    fn new(state: &AdminState) -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric name");
        Self {
            disk: state.disk.clone().map(|status| {
                (
                    status,
                    [
                        gauge(
                            names::DISK_BUFFER_BYTES,
                            "Bytes of undelivered events in the disk buffer.",
                        ),
                        gauge(
                            names::DISK_BUFFER_LIMIT_BYTES,
                            "The disk buffer's size cap.",
                        ),
                        gauge(
                            names::DISK_BUFFER_BLOCKED,
                            "1 while inputs wait on the disk buffer (cap reached or writes failing).",
                        ),
                    ],
                )
            }),
            uptime: state.uptime.clone(),
            up: IntGaugeVec::new(
                Opts::new(
                    names::HEALTH_CHECK_UP,
                    "1 when the endpoint's last probe answered 2xx in time.",
                ),
                &[labels::ENDPOINT],
            )
            .expect("valid metric name"),
            latency: GaugeVec::new(
                Opts::new(
                    names::HEALTH_CHECK_LATENCY,
                    "The endpoint's last probe latency.",
                ),
                &[labels::ENDPOINT],
            )
            .expect("valid metric name"),
            requests: state.recorder.as_ref().map(Recorder::collector),
        }
    }
}

impl Collector for AdminCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = Vec::new();
        if let Some((_, gauges)) = &self.disk {
            descs.extend(gauges.iter().flat_map(Collector::desc));
        }
        descs.extend(self.up.desc());
        descs.extend(self.latency.desc());
        if let Some(requests) = &self.requests {
            descs.extend(requests.desc());
        }
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        if let Some((status, [bytes, limit, blocked])) = &self.disk {
            bytes.set(clamp_i64(status.bytes()));
            limit.set(clamp_i64(status.limit()));
            blocked.set(i64::from(status.blocked()));
            for gauge in [bytes, limit, blocked] {
                families.extend(gauge.collect());
            }
        }
        // Probed endpoints are fixed by the configuration: a series once set stays.
        for (endpoint, result) in self.uptime.latest() {
            self.up
                .with_label_values(&[endpoint.as_str()])
                .set(i64::from(result.healthy));
            self.latency
                .with_label_values(&[endpoint.as_str()])
                .set(result.latency_ms / 1000.0);
        }
        families.extend(self.up.collect());
        families.extend(self.latency.collect());
        if let Some(requests) = &self.requests {
            families.extend(requests.collect());
        }
        families
    }
}
