//! OpenTelemetry export of the real binary to an OTLP/HTTP receiver started here (protobuf
//! decoded with the OTLP messages the sidecar uses): SERVER spans, the duration histogram,
//! the unchanged access log, and nothing at all without `OTEL_EXPORTER_OTLP_ENDPOINT`.

use std::collections::HashMap;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::otel::{OtelConfig, SHUTDOWN_TIMEOUT};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tower::ServiceExt as _;

use crate::support::{Services, api_command, app_env, eventually, free_port, http_get};

/// What the receiver got, decoded.
#[derive(Clone, Default)]
struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

impl Received {
    fn spans(&self) -> Vec<Span> {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    /// Points of `http.server.request.duration` (unit checked), in arrival order.
    fn duration_points(&self) -> Vec<HistogramDataPoint> {
        let mut points = Vec::new();
        for request in self.metrics.lock().unwrap().iter() {
            for metric in request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == "http.server.request.duration")
            {
                assert_eq!(metric.unit, "s");
                let Some(Data::Histogram(histogram)) = &metric.data else {
                    panic!("not a histogram: {metric:?}");
                };
                points.extend(histogram.data_points.iter().cloned());
            }
        }
        points
    }

    fn is_empty(&self) -> bool {
        self.traces.lock().unwrap().is_empty() && self.metrics.lock().unwrap().is_empty()
    }
}

fn protobuf(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

async fn traces(State(received): State<Received>, body: Bytes) -> Response {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            received.traces.lock().unwrap().push(request);
            protobuf(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn metrics(State(received): State<Received>, body: Bytes) -> Response {
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            received.metrics.lock().unwrap().push(request);
            protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// A minimal OTLP/HTTP protobuf receiver on a free loopback port.
async fn start_receiver() -> (u16, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, received)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key)? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// `api serve` with `env` on a free port, once it answers GET /health.
async fn start_api(env: &HashMap<String, String>) -> (Child, u16) {
    let port = free_port();
    let mut env = env.clone();
    env.insert("PORT".into(), port.to_string());
    let child = api_command(&env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start api serve");
    let up = eventually(Duration::from_secs(10), || async move {
        http_get(port, "/health", &[]).await.is_ok()
    })
    .await;
    assert!(up, "api did not start listening");
    (child, port)
}

/// SIGTERM, then the output of a clean exit and how long the exit took.
async fn stop(child: Child) -> (Output, Duration) {
    let start = Instant::now();
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "exit after SIGTERM: {output:?}");
    (output, start.elapsed())
}

/// Every stdout line is one JSON object.
fn stdout_events(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
        })
        .collect()
}

#[tokio::test]
async fn server_spans_and_the_duration_histogram_reach_an_otlp_receiver() {
    let services = Services::start(&["postgres", "redis"]);
    let (otlp_port, received) = start_receiver().await;
    let mut env = app_env(&services);
    env.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://127.0.0.1:{otlp_port}"),
    );
    env.insert("OTEL_METRIC_EXPORT_INTERVAL".into(), "500".into());
    let (child, port) = start_api(&env).await;

    const HEALTH_REQUESTS: usize = 3;
    for i in 0..HEALTH_REQUESTS {
        let id = format!("req-otel-{i}");
        let response = http_get(port, "/health", &[("x-request-id", &id)])
            .await
            .unwrap();
        assert_eq!(response.status, 200);
    }
    let unknown = http_get(port, "/api/users/123?token=abc", &[])
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);

    // The periodic reader exports on its own (500 ms), before any shutdown flush.
    let health_count = |received: &Received| {
        received
            .duration_points()
            .iter()
            .filter(|p| text(&p.attributes, "http.route") == Some("/health"))
            .map(|p| p.count)
            .max()
            .unwrap_or(0)
    };
    let exported = eventually(Duration::from_secs(10), || {
        let received = received.clone();
        async move { health_count(&received) >= HEALTH_REQUESTS as u64 }
    })
    .await;
    assert!(exported, "no periodic metric export");

    let (output, took) = stop(child).await;
    assert!(took < Duration::from_secs(10), "exit took {took:?}");

    // Access log: unchanged, one JSON line per request.
    let events = stdout_events(&output);
    let access: Vec<_> = events.iter().filter(|e| e["target"] == "access").collect();
    let health_access = access.iter().filter(|e| e["route"] == "/health").count();
    assert_eq!(access.len(), health_access + 1, "{access:?}");
    assert!(
        health_access > HEALTH_REQUESTS,
        "the readiness poll and the requests"
    );
    let last = access.last().unwrap();
    assert_eq!(last["route"], "unmatched");
    assert_eq!(last["status"], 404);
    assert!(
        events
            .iter()
            .all(|e| !e["target"].as_str().unwrap().starts_with("opentelemetry")),
        "the SDK's internal logs stay off"
    );
    assert!(!events.iter().any(|e| e["level"] == "warn"), "{events:?}");

    // Spans: the shutdown flushed every one; one SERVER span per request.
    let spans = received.spans();
    assert!(spans.iter().all(|s| s.kind == SpanKind::Server as i32));
    let health: Vec<_> = spans.iter().filter(|s| s.name == "GET /health").collect();
    assert_eq!(health.len(), health_access, "one span per /health request");
    for span in &health {
        assert_eq!(text(&span.attributes, "http.route"), Some("/health"));
        assert_eq!(text(&span.attributes, "http.request.method"), Some("GET"));
        assert_eq!(
            int(&span.attributes, "http.response.status_code"),
            Some(200)
        );
        assert!(text(&span.attributes, "request_id").is_some_and(|id| !id.is_empty()));
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    for i in 0..HEALTH_REQUESTS {
        let id = format!("req-otel-{i}");
        assert!(
            health
                .iter()
                .any(|s| text(&s.attributes, "request_id") == Some(id.as_str())),
            "{id}"
        );
    }
    let unmatched: Vec<_> = spans
        .iter()
        .filter(|s| int(&s.attributes, "http.response.status_code") == Some(404))
        .collect();
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0].name, "GET");
    assert_eq!(
        text(&unmatched[0].attributes, "http.route"),
        Some("unmatched")
    );
    for span in &spans {
        assert!(!span.name.contains("/api/users"));
        for kv in &span.attributes {
            let value = format!("{:?}", kv.value);
            assert!(
                !value.contains("/api/users/123") && !value.contains("token=abc"),
                "raw path in span attribute {}: {value}",
                kv.key
            );
        }
    }
    let traces = received.traces.lock().unwrap().clone();
    let resource = traces[0].resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(text(&resource.attributes, "service.name"), Some("api"));
    assert_eq!(
        text(&resource.attributes, "service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        text(&resource.attributes, "deployment.environment"),
        Some("dev")
    );

    // The histogram: cumulative, so the last point of a series holds every request.
    let points = received.duration_points();
    let health_point = points
        .iter()
        .rev()
        .find(|p| text(&p.attributes, "http.route") == Some("/health"))
        .unwrap();
    assert_eq!(health_point.count as usize, health_access);
    assert_eq!(
        text(&health_point.attributes, "http.request.method"),
        Some("GET")
    );
    assert_eq!(
        int(&health_point.attributes, "http.response.status_code"),
        Some(200)
    );
    assert!(health_point.sum.is_some_and(|sum| sum > 0.0 && sum < 10.0));
    let unmatched_point = points
        .iter()
        .rev()
        .find(|p| text(&p.attributes, "http.route") == Some("unmatched"))
        .unwrap();
    assert_eq!(unmatched_point.count, 1);
    assert_eq!(
        int(&unmatched_point.attributes, "http.response.status_code"),
        Some(404)
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_startup_is_unchanged() {
    let services = Services::start(&["postgres", "redis"]);
    let (otlp_port, received) = start_receiver().await;
    let mut env = app_env(&services);
    // Per-signal variables alone do not turn export on.
    for signal in ["TRACES", "METRICS"] {
        env.insert(
            format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"),
            format!("http://127.0.0.1:{otlp_port}/v1/{}", signal.to_lowercase()),
        );
    }
    env.insert("OTEL_METRIC_EXPORT_INTERVAL".into(), "100".into());
    let (child, port) = start_api(&env).await;
    assert_eq!(http_get(port, "/health", &[]).await.unwrap().status, 200);
    assert_eq!(http_get(port, "/nope", &[]).await.unwrap().status, 404);
    let (output, _) = stop(child).await;

    assert!(received.is_empty(), "something was exported");
    let events = stdout_events(&output);
    let messages: Vec<_> = events
        .iter()
        .filter(|e| e["target"] != "access")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["listening", "shutting down: no new connections", "stopped"]
    );
    let access = events.iter().filter(|e| e["target"] == "access").count();
    assert!(access >= 3, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_receiver_never_answers() {
    // Accepts connections and never reads or answers them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let vars: HashMap<String, String> = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL".to_owned(), "60000".to_owned()),
    ]
    .into();
    let guard = OtelConfig::from_env(&vars)
        .unwrap()
        .expect("export on")
        .build(&tokio::runtime::Handle::current())
        .unwrap();
    let handles = guard.handles();
    let app = api::with_layers_and_otel(
        Router::new().route("/ping", get(|| async { "pong" })),
        api::REQUEST_TIMEOUT,
        Some(&handles),
    );
    let request = axum::http::Request::get("/ping")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "telemetry never affects requests");

    // The guard's drop blocks (bounded): off the runtime's workers, as in `main`.
    let took = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        drop(guard);
        start.elapsed()
    })
    .await
    .unwrap();
    // It did wait for the hung export (so the deadline, not a quick failure, ended it).
    assert!(
        took >= SHUTDOWN_TIMEOUT - Duration::from_millis(100)
            && took <= SHUTDOWN_TIMEOUT + Duration::from_millis(500),
        "shutdown took {took:?}"
    );
    accepted.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traces_off_only_the_histogram_is_exported() {
    let (otlp_port, received) = start_receiver().await;
    let vars: HashMap<String, String> = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://127.0.0.1:{otlp_port}/"),
        ),
        ("OTEL_TRACES_EXPORTER".to_owned(), "none".to_owned()),
    ]
    .into();
    let guard = OtelConfig::from_env(&vars)
        .unwrap()
        .expect("export on")
        .build(&tokio::runtime::Handle::current())
        .unwrap();
    assert!(
        guard
            .tracing_layer::<tracing_subscriber::Registry>()
            .is_none()
    );
    let app = api::with_layers_and_otel(
        Router::new().route("/items/{id}", get(|| async { "item" })),
        api::REQUEST_TIMEOUT,
        Some(&guard.handles()),
    );
    for path in ["/items/1", "/items/2", "/items/3/extra"] {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    // The flush on drop exports what the (10 s) periodic reader has not yet.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    assert!(received.traces.lock().unwrap().is_empty());
    let points = received.duration_points();
    let route = |p: &HistogramDataPoint| text(&p.attributes, "http.route").unwrap().to_owned();
    let item = points.iter().find(|p| route(p) == "/items/{id}").unwrap();
    assert_eq!(item.count, 2);
    let unmatched = points.iter().find(|p| route(p) == "unmatched").unwrap();
    assert_eq!(unmatched.count, 1);
    assert_eq!(
        int(&unmatched.attributes, "http.response.status_code"),
        Some(404)
    );
    assert_eq!(points.len(), 2, "no raw path becomes a series: {points:?}");
}
