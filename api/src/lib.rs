//! The backend HTTP API watched by the sidecar.
//!
//! `app(state)` is the whole HTTP surface: the routes ([`routes`]) wrapped in the common
//! layers ([`with_layers`]): per-request access log and request id, time budget, panic
//! catching and a body-size limit. Everything it logs is one JSON object per line on stdout
//! ([`telemetry`]), the input of the sidecar. Configuration comes from the environment and
//! optionally Secrets Manager ([`config`], [`secrets`]); the schema is managed by
//! versioned, reversible migrations ([`migrate`]).

pub mod access_log;
pub mod config;
pub mod error;
pub mod health;
pub mod migrate;
pub mod secrets;
pub mod server;
pub mod state;
pub mod telemetry;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

pub use crate::state::AppState;

/// Largest request body accepted; larger ones get 413 before a handler runs.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default time budget of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The API with all its layers.
pub fn app(state: AppState) -> Router {
    with_layers(routes().with_state(state), REQUEST_TIMEOUT)
}

/// The API's routes, without layers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/api/health/db", get(health::database))
        .route("/api/health/redis", get(health::redis))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
}

/// Wraps any router in the API's common layers (the outermost runs first): access log and
/// request id, request time budget, panic → fixed 500, body-size limit.
pub fn with_layers(router: Router, request_timeout: Duration) -> Router {
    let access = access_log::AccessLogConfig { request_timeout };
    router
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            access,
            access_log::layer,
        ))
}

/// The panic hook (see `main`) already logged the message and location.
fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    error::internal_error_response("panic")
}
