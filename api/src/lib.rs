//! The backend HTTP API watched by the sidecar.
//!
//! `app(state)` is the whole HTTP surface: the routes ([`routes`]) wrapped in the common
//! layers ([`with_layers`]): per-request access log and request id, time budget, panic
//! catching and a body-size limit; with [`app_with_otel`], also an OpenTelemetry SERVER span
//! and duration sample per request, exported to the sidecar over OTLP ([`otel`]). When
//! `SENTRY_DSN` is set, panics and 5xx responses go to Sentry with their route and request
//! id ([`reporting`]).
//! Everything it logs is one JSON object per line on stdout
//! ([`telemetry`]), the input of the sidecar. Configuration comes from the environment and
//! optionally Secrets Manager ([`config`], [`secrets`]); the schema is managed by
//! versioned, reversible migrations ([`migrate`]).

pub mod access_log;
pub mod config;
pub mod error;
pub mod health;
pub mod migrate;
pub mod otel;
pub mod reporting;
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
    app_with_otel(state, None)
}

/// [`app`], plus the OpenTelemetry span and histogram of each request when `otel` is given.
pub fn app_with_otel(state: AppState, otel: Option<&otel::OtelHandles>) -> Router {
    with_layers_and_otel(routes().with_state(state), REQUEST_TIMEOUT, otel)
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
/// request id, request time budget, the request's Sentry scope (a pass-through without a
/// Sentry client), panic → fixed 500, body-size limit.
pub fn with_layers(router: Router, request_timeout: Duration) -> Router {
    with_layers_and_otel(router, request_timeout, None)
}

/// [`with_layers`], with the OpenTelemetry middleware ([`otel::layer`]) outermost when
/// `otel` is given, so it sees the final status and request id. Without it, no span or
/// histogram code runs at all.
pub fn with_layers_and_otel(
    router: Router,
    request_timeout: Duration,
    otel: Option<&otel::OtelHandles>,
) -> Router {
    let access = access_log::AccessLogConfig { request_timeout };
    let router = router
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(reporting::layer))
        .layer(axum::middleware::from_fn_with_state(
            access,
            access_log::layer,
        ));
    match otel {
        Some(handles) => router.layer(axum::middleware::from_fn_with_state(
            handles.clone(),
            otel::layer,
        )),
        None => router,
    }
}

/// The panic hook (see `main`) already logged the message and location (and the Sentry
/// SDK's hook reported it, when configured).
fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    error::internal_error_response("panic")
}
