//! The admin HTTP server: `/health` (alive), `/ready` (accepting and shipping), `/metrics`
//! (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::pipeline::budget::MemoryBudget;
use crate::request_metrics::Recorder;
use crate::uptime::UptimeState;

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
    if state.ready.load(Ordering::Relaxed) {
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
        state.metrics.render(&state.budget),
    )
}
