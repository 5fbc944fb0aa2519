//! Health endpoints and the common layers, through `app(state).oneshot(..)`.

use std::time::{Duration, Instant};

use api::config::Secret;
use api::{AppState, app};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{Services, eventually};

/// State whose dependencies are never reached (only for routes that do not touch them).
fn detached_state() -> AppState {
    AppState::connect_lazy(
        &Secret::new("postgres://app@127.0.0.1:1/app"),
        &Secret::new("redis://127.0.0.1:1"),
    )
    .unwrap()
}

fn state_for(services: &Services) -> AppState {
    let db = services
        .env()
        .get("DATABASE_URL")
        .map_or("postgres://app@127.0.0.1:1/app", String::as_str);
    let redis = services
        .env()
        .get("REDIS_URL")
        .map_or("redis://127.0.0.1:1", String::as_str);
    AppState::connect_lazy(&Secret::new(db), &Secret::new(redis)).unwrap()
}

async fn get_json(app: &Router, path: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    (status, body)
}

#[tokio::test]
async fn health_reports_status_version_and_utc_time() {
    let (status, body) = get_json(&app(detached_state()), "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    let parsed = humantime::parse_rfc3339(timestamp).expect("RFC 3339");
    let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
    assert!(age < Duration::from_secs(60));
    assert_eq!(body.as_object().unwrap().len(), 3);
}

/// 200 while up; 503 within 3 s once stopped; 200 again once it is back.
async fn outage_and_recovery(service: &str, path: &str, field: &str) {
    let mut services = Services::start(&[service]);
    let app = app(state_for(&services));

    let (status, body) = get_json(&app, path).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"status": "healthy", field: "connected"})
        )
    );

    services.stop(service);
    let start = Instant::now();
    let (status, body) = get_json(&app, path).await;
    let elapsed = start.elapsed();
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unhealthy", field: "disconnected"})
        )
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    services.restart(service);
    let recovered = eventually(Duration::from_secs(15), || {
        let app = app.clone();
        async move { get_json(&app, path).await.0 == StatusCode::OK }
    })
    .await;
    assert!(
        recovered,
        "{path} did not recover after {service} came back"
    );
}

#[tokio::test]
async fn database_outage_gives_503_then_recovers() {
    outage_and_recovery("postgres", "/api/health/db", "database").await;
}

#[tokio::test]
async fn redis_outage_gives_503_then_recovers() {
    outage_and_recovery("redis", "/api/health/redis", "redis").await;
}

#[tokio::test]
async fn unreachable_dependencies_answer_503_within_3s() {
    // Nothing listens on port 1; a blackholed address would be caught by the same timeout.
    let app = app(detached_state());
    for (path, field) in [
        ("/api/health/db", "database"),
        ("/api/health/redis", "redis"),
    ] {
        let start = Instant::now();
        let (status, body) = get_json(&app, path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body[field], "disconnected");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn unknown_route_is_a_json_404_without_the_path() {
    let (status, body) = get_json(&app(detached_state()), "/api/secret-admin-panel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "not_found", "message": "no route matches this request"})
    );
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let response = app(detached_state())
        .oneshot(Request::post("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

async fn panicking_handler() -> &'static str {
    panic!("database password is hunter2")
}

fn test_routes() -> Router {
    Router::new()
        .route("/panic", get(panicking_handler))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
}

#[tokio::test]
async fn panic_becomes_a_fixed_500_body() {
    let app = api::with_layers(test_routes(), Duration::from_secs(5));
    let (status, body) = get_json(&app, "/panic").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"error": "internal_error", "message": "internal server error"})
    );
}

#[tokio::test]
async fn slow_request_hits_the_time_budget() {
    let app = api::with_layers(test_routes(), Duration::from_millis(200));
    let start = Instant::now();
    let (status, body) = get_json(&app, "/slow").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "timeout");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn oversized_body_is_rejected_with_413() {
    let app = api::with_layers(test_routes(), Duration::from_secs(5));
    let small = app
        .clone()
        .oneshot(
            Request::post("/echo")
                .body(Body::from(vec![b'x'; 1000]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(small.status(), StatusCode::OK);
    let big = vec![b'x'; api::MAX_BODY_BYTES + 1];
    let response = app
        .oneshot(Request::post("/echo").body(Body::from(big)).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let app = app(detached_state());
    let response = app
        .clone()
        .oneshot(
            Request::get("/health")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app
        .oneshot(
            Request::get("/health")
                .header("x-request-id", "bad id with spaces")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
}
