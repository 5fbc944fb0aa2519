//! Health endpoints: the process itself, PostgreSQL and Redis.
//!
//! Each dependency check is bounded by [`CHECK_TIMEOUT`], so a dead or black-holed
//! dependency yields a 503 in well under 3 s instead of a hanging probe.

use std::time::SystemTime;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::access_log::RequestId;
use crate::error::ErrorKind;
use crate::state::{AppState, CHECK_TIMEOUT};

/// `GET /health`: the process is up. Touches no dependency, so it is safe for the load
/// balancer and the container health check.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    }))
}

/// `GET /api/health/db`: `SELECT 1` on the pool.
pub async fn database(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
) -> Response {
    let check = sqlx::query("SELECT 1").execute(&state.db);
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    dependency_response("database", "database_unavailable", outcome, request_id)
}

/// `GET /api/health/redis`: `PING`.
pub async fn redis(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
) -> Response {
    let mut connection = state.redis.clone();
    let ping = redis::cmd("PING");
    let check = ping.query_async::<String>(&mut connection);
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(reply)) if reply == "PONG" => Ok(()),
        Ok(Ok(_)) => Err("unexpected reply to PING".to_owned()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    dependency_response("redis", "redis_unavailable", outcome, request_id)
}

fn dependency_response(
    name: &'static str,
    kind: &'static str,
    outcome: Result<(), String>,
    request_id: Option<Extension<RequestId>>,
) -> Response {
    match outcome {
        Ok(()) => Json(json!({ "status": "healthy", name: "connected" })).into_response(),
        Err(detail) => {
            // With the request id, so log readers (and the sidecar's Sentry breadcrumbs) tie
            // the cause to the 503 the access log reports next.
            let request_id = request_id.map(|Extension(RequestId(id))| id);
            tracing::warn!(
                dependency = name,
                error = %detail,
                request_id = request_id.as_deref().unwrap_or(""),
                "health check failed"
            );
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unhealthy", name: "disconnected" })),
            )
                .into_response();
            response.extensions_mut().insert(ErrorKind(kind));
            response
        }
    }
}
