//! The per-request layer: request id, time budget, and one JSON access-log event.
//!
//! The event is the contract with the sidecar, which turns it into request metrics:
//! `method`, `route` (the template, e.g. `/api/users/{id}`, never the raw path), `status`,
//! `latency_ms` (float), `request_id`, `bytes`; 5xx responses log at `error` with
//! `error_kind` (and are reported to Sentry when it is configured). `method` is one of the
//! registered methods or `_OTHER` (OpenTelemetry's rule): an invented method (`BREW`) must
//! not become a metric series downstream.

use std::time::{Duration, Instant};

use axum::body::HttpBody;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{ErrorKind, error_response};

/// The header that carries the request id in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id accepted from a client; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The `route` of requests that matched no route: the raw path never becomes a label.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The id of the current request, for handlers that want to log it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Settings of the layer.
#[derive(Debug, Clone, Copy)]
pub struct AccessLogConfig {
    /// A request still running after this gets a 503 with `error_kind = "timeout"`.
    pub request_timeout: Duration,
}

/// Accepts a client's id only if it is short and made of safe characters, so the id can
/// neither forge log fields nor blow up a log line.
fn client_request_id(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= MAX_REQUEST_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(text)
}

/// The middleware; install with `axum::middleware::from_fn_with_state`.
pub async fn layer(
    axum::extract::State(config): axum::extract::State<AccessLogConfig>,
    mut request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(client_request_id)
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let method = crate::otel::method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE.to_owned(), |path| path.as_str().to_owned());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));

    let mut response = match tokio::time::timeout(config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
            Some("timeout"),
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let status = response.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    // Every body we produce has a known length; a streamed one logs its lower bound.
    let bytes = response.body().size_hint().lower();
    if status >= 500 {
        let kind = response
            .extensions()
            .get::<ErrorKind>()
            .map_or("http_5xx", |kind| kind.0);
        tracing::error!(
            target: "access",
            method, route, status, latency_ms, request_id, bytes, error_kind = kind,
            "request failed"
        );
        // A panic was reported by the SDK's panic hook, with its stack trace.
        if kind != "panic" {
            crate::reporting::report_server_error(method, &route, status, &request_id, kind);
        }
    } else {
        tracing::info!(target: "access", method, route, status, latency_ms, request_id, bytes, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_checked() {
        let ok = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(client_request_id(&ok), Some("abc-123_x.y:z"));
        for bad in ["", "has space", "quote\"", "{\"level\":\"error\"}"] {
            let value = HeaderValue::from_str(bad).unwrap();
            assert_eq!(client_request_id(&value), None, "{bad}");
        }
        let long = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID_LEN + 1)).unwrap();
        assert_eq!(client_request_id(&long), None);
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn invented_methods_are_logged_as_other() {
        // Regression: `BREW /health` was logged as `"method":"BREW"`, a new series downstream.
        use tower::ServiceExt as _;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let config = AccessLogConfig {
            request_timeout: Duration::from_secs(5),
        };
        let app = axum::Router::new()
            .route("/health", axum::routing::any(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(config, layer));
        for method in ["BREW", "GET", "patch"] {
            let request = Request::builder()
                .method(method)
                .uri("/health")
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let methods: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|e| e["method"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(methods, ["_OTHER", "GET", "_OTHER"], "{text}");
    }
}
