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

use crate::metrics::{Metrics, escape_label, family};
use crate::pipeline::budget::MemoryBudget;
use crate::request_metrics::Recorder;
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

/// The admin routes.
pub fn router(state: AdminState) -> Router {
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

/// Everything `/metrics` shows: the agent's counters, the disk buffer's gauges, request
/// metrics and the latest health probes.
pub fn render(state: &AdminState) -> String {
    use std::fmt::Write as _;
    let mut out = state.metrics.render(state.budget.usage());
    if let Some(disk) = &state.disk {
        for (name, help, value) in [
            (
                "agent_disk_buffer_bytes",
                "Bytes of undelivered events in the disk buffer.",
                disk.bytes(),
            ),
            (
                "agent_disk_buffer_limit_bytes",
                "The disk buffer's size cap.",
                disk.limit(),
            ),
            (
                "agent_disk_buffer_blocked",
                "1 while inputs wait on the disk buffer (cap reached or writes failing).",
                u64::from(disk.blocked()),
            ),
        ] {
            family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    if let Some(recorder) = &state.recorder {
        recorder.with(|aggregator| aggregator.render_prometheus(&mut out));
    }
    let probes = state.uptime.latest();
    if !probes.is_empty() {
        family(
            &mut out,
            "agent_health_check_up",
            "gauge",
            "1 when the endpoint's last probe answered 2xx in time.",
        );
        for (endpoint, result) in &probes {
            let _ = writeln!(
                out,
                "agent_health_check_up{{endpoint=\"{}\"}} {}",
                escape_label(endpoint),
                u8::from(result.healthy)
            );
        }
        family(
            &mut out,
            "agent_health_check_latency_seconds",
            "gauge",
            "The endpoint's last probe latency.",
        );
        for (endpoint, result) in &probes {
            let _ = writeln!(
                out,
                "agent_health_check_latency_seconds{{endpoint=\"{}\"}} {}",
                escape_label(endpoint),
                result.latency_ms / 1000.0
            );
        }
    }
    out
}
