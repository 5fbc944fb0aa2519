//! Error responses: fixed JSON bodies for clients, details only in the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Attached to a response to tell the access log why it failed. A short, fixed label
/// (usable as a metric dimension), never a message with details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind(pub &'static str);

/// The one body every 500 carries, whatever went wrong.
pub fn internal_error_response(kind: &'static str) -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal server error",
        Some(kind),
    )
}

/// A JSON error body `{"error": code, "message": message}`; `kind` labels 5xx in the log.
pub fn error_response(
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    kind: Option<&'static str>,
) -> Response {
    let mut response = (status, Json(json!({ "error": code, "message": message }))).into_response();
    if let Some(kind) = kind {
        response.extensions_mut().insert(ErrorKind(kind));
    }
    response
}

/// A handler failure. Converting it into a response logs the details and returns the fixed
/// 500 body.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {source}")]
pub struct AppError {
    /// The label the access log and metrics see.
    pub kind: &'static str,
    /// The cause, logged and never sent to the client.
    #[source]
    pub source: anyhow::Error,
}

impl AppError {
    /// Wraps `source` under a fixed `kind` label.
    pub fn new(kind: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error_kind = self.kind, error = %format!("{:#}", self.source), "internal error");
        internal_error_response(self.kind)
    }
}

/// Unknown routes: a JSON 404 that does not echo the path.
pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no route matches this request",
        None,
    )
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
        None,
    )
}
