//! Tap → queue → envelope against an in-process receiver: framing, headers, every event
//! field, breadcrumbs, de-duplication, the queue bound, retries, timeouts and rate limits.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::SentryOutcome;
use crate::pipeline::ecs::TaskInfo;
use crate::pipeline::event::{Event, Level};

/// What the receiver answers: status and headers.
type Reply = (u16, Vec<(&'static str, &'static str)>);

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A parsed envelope: its header and each item's header and payload.
#[derive(Debug)]
struct Envelope {
    header: Value,
    items: Vec<(Value, Vec<u8>)>,
}

impl Received {
    /// Gunzips and parses strictly: every item needs a `length` and exactly that many
    /// bytes, then a newline (or the end).
    fn envelope(&self) -> Envelope {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..])
            .read_to_end(&mut raw)
            .expect("the body is gzip");
        let mut rest = &raw[..];
        let line = |rest: &mut &[u8]| -> Value {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .expect("a header line");
            let value = serde_json::from_slice(&rest[..end]).expect("a JSON header line");
            *rest = &rest[end + 1..];
            value
        };
        let header = line(&mut rest);
        let mut items = Vec::new();
        while !rest.is_empty() {
            let item = line(&mut rest);
            let length = item["length"].as_u64().expect("item length") as usize;
            let payload = rest[..length].to_vec();
            rest = &rest[length..];
            if !rest.is_empty() {
                assert_eq!(rest[0], b'\n', "payload not followed by a newline");
                rest = &rest[1..];
            }
            items.push((item, payload));
        }
        Envelope { header, items }
    }

    fn event(&self) -> Value {
        let envelope = self.envelope();
        assert_eq!(envelope.items.len(), 1);
        assert_eq!(envelope.items[0].0["type"], "event");
        serde_json::from_slice(&envelope.items[0].1).expect("the event is JSON")
    }
}

#[derive(Debug, Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Never answers (to test timeouts).
    hang: bool,
}

async fn envelope_handler(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    receiver.received.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
    });
    if receiver.hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let (status, headers) = receiver
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, Vec::new()));
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        r#"{"id":"ok"}"#.to_owned(),
    )
        .into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Receiver {
    async fn serve(&self) -> SocketAddr {
        let router = axum::Router::new()
            .route(
                "/api/{project}/envelope/",
                axum::routing::post(envelope_handler),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn script(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().extend(replies);
    }
}

const KEY: &str = "f00dfeedcafe4242";

struct Harness {
    tap: SentryTap,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    sink: Option<tokio::task::JoinHandle<()>>,
    pending_sink: Option<SentrySink>,
}

impl Harness {
    async fn new(receiver: &Receiver, config: SentryConfig) -> Self {
        let addr = receiver.serve().await;
        let dsn = Dsn::parse(&format!("http://{KEY}@{addr}/42")).unwrap();
        let metrics = Arc::new(Metrics::default());
        let task_info = SharedTaskInfo::default();
        task_info.set(TaskInfo {
            cluster: "prod-cluster".into(),
            task_id: "0123456789abcdef".into(),
            family_revision: "api:42".into(),
            availability_zone: "us-east-1b".into(),
            app_container: "api".into(),
        });
        let (tap, sink) = build_with_dsn(&config, &dsn, metrics.clone(), task_info).unwrap();
        Self {
            tap,
            metrics,
            stop: CancellationToken::new(),
            sink: None,
            pending_sink: Some(sink),
        }
    }

    fn start(&mut self) {
        if let Some(sink) = self.pending_sink.take() {
            self.sink = Some(tokio::spawn(sink.run(self.stop.clone())));
        }
    }

    async fn stop(&mut self) {
        self.start();
        self.stop.cancel();
        if let Some(sink) = self.sink.take() {
            tokio::time::timeout(Duration::from_secs(10), sink)
                .await
                .expect("the sink returns after shutdown")
                .unwrap();
        }
    }

    fn outcome(&self, outcome: SentryOutcome) -> u64 {
        self.metrics.sentry_events(outcome)
    }

    /// Waits until `outcome` reaches `n`: the sink counts after the receiver has answered.
    async fn wait_outcome(&self, outcome: SentryOutcome, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.outcome(outcome) < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn config() -> SentryConfig {
    SentryConfig {
        dsn: Some(Redacted::new("unused")),
        environment: Some("prod".into()),
        release: Some("api@1.2.3".into()),
        request_timeout_ms: 2000,
        max_backoff_ms: 20,
        flush_timeout_ms: 3000,
        ..SentryConfig::default()
    }
}

fn event(level: Level, line: Value, request_id: Option<&str>) -> Event {
    Event {
        time_ms: 1_700_000_000_123,
        message: line.to_string(),
        level: Some(level),
        container: Some("api".into()),
        request_id: request_id.map(Into::into),
        ack: None,
    }
}

fn error(kind: &str, route: &str, request_id: &str) -> Event {
    event(
        Level::Error,
        json!({"level": "error", "message": "request failed", "error_kind": kind, "route": route, "request_id": request_id}),
        Some(request_id),
    )
}

async fn wait_for(receiver: &Receiver, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.count() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} envelopes, got {}",
            receiver.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_error_becomes_one_envelope_with_every_field() {
    let receiver = Receiver::default();
    let mut h = Harness::new(&receiver, config()).await;
    h.start();
    let crumbs: Vec<Event> = (0..25)
        .map(|i| {
            event(
                Level::Info,
                json!({"level": "info", "target": "access", "message": format!("step {i}"), "route": "/api/users/{id}", "request_id": "req-1"}),
                Some("req-1"),
            )
        })
        .collect();
    let other = event(
        Level::Info,
        json!({"level": "info", "message": "someone else's request"}),
        Some("req-2"),
    );
    let failing = event(
        Level::Error,
        json!({
            "timestamp": "2023-11-14T22:13:20.123Z", "level": "error", "target": "api::db",
            "message": "request failed", "error_kind": "db_timeout",
            "error": "pool timed out after 2s", "stack": "0: api::db::query\n at ./src/db.rs:10:5\n1: api::handler\n at ./src/main.rs:20:9",
            "route": "/api/users/{id}", "method": "GET", "status": 500, "request_id": "req-1",
            "user_id": 42, "password": "[REDACTED]"
        }),
        Some("req-1"),
    );
    let mut batch = crumbs.clone();
    batch.insert(3, other);
    batch.push(failing);
    h.tap.observe(&batch);
    wait_for(&receiver, 1).await;
    h.stop().await;

    let received = receiver.all();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    let auth: sentry_types::Auth = headers["x-sentry-auth"].to_str().unwrap().parse().unwrap();
    assert_eq!(auth.public_key(), KEY);
    assert_eq!(auth.version(), 7);
    assert_eq!(
        auth.client_agent(),
        Some(format!("agent/{}", crate::VERSION).as_str())
    );
    assert_eq!((auth.secret_key(), auth.timestamp()), (None, None));
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["content-type"], "application/x-sentry-envelope");
    let envelope = received[0].envelope();
    let event = received[0].event();
    let id = event["event_id"].as_str().unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    // One id: hyphenated in the envelope header (a serialized Uuid), 32 hex digits in the event.
    let header_id = envelope.header["event_id"].as_str().unwrap();
    assert_eq!(header_id.parse::<uuid::Uuid>(), id.parse::<uuid::Uuid>());
    assert!(envelope.header["sent_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(event["timestamp"], 1_700_000_000.123);
    // sentry-types leaves out Sentry's defaults (platform `other`, level `error`); Relay
    // fills them in (tests/it/sentry.rs checks the normalized events).
    assert!(event.get("platform").is_none() && event.get("level").is_none());
    assert_eq!(event["logger"], "api::db");
    assert_eq!(event["message"], "request failed");
    assert_eq!(event["environment"], "prod");
    assert_eq!(event["release"], "api@1.2.3");
    assert_eq!(event["server_name"], "0123456789abcdef");
    assert_eq!(
        event["tags"],
        json!({
            "request_id": "req-1", "route": "/api/users/{id}", "method": "GET", "status": "500",
            "cluster": "prod-cluster", "service": "api", "container": "api"
        })
    );
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "db_timeout");
    assert_eq!(exception["value"], "pool timed out after 2s");
    let frames = exception["stacktrace"]["frames"].as_array().unwrap();
    assert_eq!(frames[0]["function"], "api::handler");
    assert_eq!(frames[1]["function"], "api::db::query");
    assert_eq!(frames[1]["lineno"], 10);
    assert_eq!(
        event["extra"],
        json!({"user_id": 42, "password": "[REDACTED]"})
    );
    assert_eq!(
        event["fingerprint"],
        json!(["error_kind=db_timeout", "route=/api/users/{id}"])
    );
    // The last 20 of the request's 25 events, in order; not the other request's.
    let crumbs = event["breadcrumbs"]["values"].as_array().unwrap();
    let messages: Vec<&str> = crumbs
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (5..25).map(|i| format!("step {i}")).collect();
    assert_eq!(messages, expected);
    assert_eq!(crumbs[0]["category"], "access");
    // Sentry's Breadcrumb leaves out the default level (info) and type (default).
    assert!(crumbs[0].get("level").is_none_or(|level| level == "info"));
    assert_eq!(crumbs[0]["data"]["route"], "/api/users/{id}");
    assert_eq!(event["sdk"]["name"], SDK_NAME);
    assert_eq!(h.outcome(SentryOutcome::Sent), 1);
}

#[tokio::test]
async fn lines_below_the_level_and_without_errors_are_not_sent() {
    let receiver = Receiver::default();
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            min_level: super::config::MinLevel::Fatal,
            ..config()
        },
    )
    .await;
    h.tap.observe(&[
        error("db_timeout", "/a", "r1"),
        event(Level::Warn, json!({"message": "careful"}), None),
        event(Level::Fatal, json!({"message": "dying"}), None),
    ]);
    h.stop().await;
    assert_eq!(receiver.count(), 1);
    let event = receiver.all()[0].event();
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["message"], "dying");
    assert!(event.get("exception").is_none());
    // Sentry's default grouping: left out of the JSON, as sentry-types does for defaults.
    assert!(event.get("fingerprint").is_none());
}

#[tokio::test]
async fn an_error_storm_of_10000_sends_one_event_and_one_follow_up_with_the_count() {
    let receiver = Receiver::default();
    let mut h = Harness::new(&receiver, config()).await;
    h.start();
    for chunk in 0..20 {
        let batch: Vec<Event> = (0..500)
            .map(|i| error("db_timeout", "/api/users/{id}", &format!("req-{chunk}-{i}")))
            .collect();
        h.tap.observe(&batch);
    }
    wait_for(&receiver, 1).await;
    assert_eq!(h.outcome(SentryOutcome::Deduplicated), 9_999);
    h.stop().await;
    let received = receiver.all();
    assert_eq!(
        received.len(),
        2,
        "one event, then one follow-up at shutdown"
    );
    assert!(
        received[0].event()["extra"]
            .get("suppressed_count")
            .is_none()
    );
    let follow_up = received[1].event();
    assert_eq!(follow_up["extra"]["suppressed_count"], 9_999);
    assert_eq!(follow_up["extra"]["dedup_window_secs"], 60);
    assert_eq!(follow_up["fingerprint"], received[0].event()["fingerprint"]);
    assert_eq!(h.outcome(SentryOutcome::Sent), 2);
}

#[tokio::test]
async fn a_closed_window_sends_its_follow_up_without_waiting_for_shutdown() {
    let receiver = Receiver::default();
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            dedup_window_secs: 1,
            ..config()
        },
    )
    .await;
    h.start();
    let batch: Vec<Event> = (0..50)
        .map(|i| error("boom", "/x", &format!("r{i}")))
        .collect();
    h.tap.observe(&batch);
    wait_for(&receiver, 2).await;
    let follow_up = receiver.all()[1].event();
    assert_eq!(follow_up["extra"]["suppressed_count"], 49);
    h.stop().await;
    assert_eq!(receiver.count(), 2);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_counts_it() {
    let receiver = Receiver::default();
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            queue_capacity: 100,
            dedup_window_secs: 0,
            ..config()
        },
    )
    .await;
    // The sink is not running yet: the tap must not wait for it.
    let batch: Vec<Event> = (0..150)
        .map(|i| error(&format!("kind-{i}"), "/x", "r"))
        .collect();
    let start = std::time::Instant::now();
    h.tap.observe(&batch);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(h.outcome(SentryOutcome::QueueFull), 50);
    h.stop().await;
    let received = receiver.all();
    assert_eq!(received.len(), 100);
    assert_eq!(received[0].event()["tags"]["request_id"], "r");
    assert_eq!(
        received[0].event()["exception"]["values"][0]["type"],
        "kind-50"
    );
    assert_eq!(h.outcome(SentryOutcome::Sent), 100);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_given_up() {
    let receiver = Receiver::default();
    receiver.script(vec![(503, vec![]), (500, vec![])]);
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            max_retries: 2,
            dedup_window_secs: 0,
            ..config()
        },
    )
    .await;
    h.start();
    h.tap.observe(&[error("a", "/x", "r")]);
    wait_for(&receiver, 3).await;
    let received = receiver.all();
    // The same envelope each time.
    assert_eq!(
        received[0].event()["event_id"],
        received[2].event()["event_id"]
    );
    h.wait_outcome(SentryOutcome::Sent, 1).await;
    assert_eq!(h.outcome(SentryOutcome::Sent), 1);

    receiver.script(vec![(502, vec![]), (502, vec![]), (502, vec![])]);
    h.tap.observe(&[error("b", "/x", "r")]);
    wait_for(&receiver, 6).await;
    h.stop().await;
    assert_eq!(h.outcome(SentryOutcome::Failed), 1);
    assert_eq!(receiver.count(), 6);

    // A 4xx other than 413/429 is not retried.
    let receiver = Receiver::default();
    receiver.script(vec![(403, vec![])]);
    let mut h = Harness::new(&receiver, config()).await;
    h.tap.observe(&[error("c", "/x", "r")]);
    h.stop().await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(h.outcome(SentryOutcome::Failed), 1);
}

#[tokio::test]
async fn a_silent_receiver_times_out() {
    let receiver = Receiver {
        hang: true,
        ..Receiver::default()
    };
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            request_timeout_ms: 200,
            max_retries: 0,
            ..config()
        },
    )
    .await;
    h.start();
    let start = std::time::Instant::now();
    h.tap.observe(&[error("a", "/x", "r")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.outcome(SentryOutcome::Failed) == 0 {
        assert!(std::time::Instant::now() < deadline, "no timeout");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    h.stop().await;
}

#[tokio::test]
async fn a_429_then_rate_limit_headers_drop_and_count_while_limited() {
    let receiver = Receiver::default();
    receiver.script(vec![
        (429, vec![("retry-after", "1")]),
        (
            200,
            vec![("x-sentry-rate-limits", "60:error:project:quota")],
        ),
    ]);
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            dedup_window_secs: 0,
            ..config()
        },
    )
    .await;
    h.start();
    h.tap.observe(&[error("a", "/x", "r")]);
    wait_for(&receiver, 1).await;
    // Limited for 1 s: dropped without a request, never retried.
    h.tap
        .observe(&[error("b", "/x", "r"), error("c", "/x", "r")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.outcome(SentryOutcome::RateLimited) < 3 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.count(), 1);
    // After the limit: sent; the 200 carries a new 60 s limit for errors.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.tap.observe(&[error("d", "/x", "r")]);
    wait_for(&receiver, 2).await;
    h.tap.observe(&[error("e", "/x", "r")]);
    h.stop().await;
    assert_eq!(receiver.count(), 2);
    assert_eq!(h.outcome(SentryOutcome::Sent), 1);
    assert_eq!(h.outcome(SentryOutcome::RateLimited), 4);
}

#[tokio::test]
async fn a_bare_429_means_60_seconds_for_everything() {
    let receiver = Receiver::default();
    receiver.script(vec![(429, vec![])]);
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            dedup_window_secs: 0,
            ..config()
        },
    )
    .await;
    h.start();
    h.tap.observe(&[error("a", "/x", "r")]);
    wait_for(&receiver, 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.tap.observe(&[error("b", "/x", "r")]);
    h.stop().await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(h.outcome(SentryOutcome::RateLimited), 2);
}

#[tokio::test]
async fn the_dsn_key_never_appears_in_the_logs() {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests run in parallel without a subscriber; their callsites may have cached
    // "not interested". Re-ask, so this thread's subscriber sees every event.
    tracing::callsite::rebuild_interest_cache();

    // Nothing listens on this port: connection refused, retried, given up, logged.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dsn = Dsn::parse(&format!("http://{KEY}@127.0.0.1:{port}/42")).unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = SentryConfig {
        max_retries: 1,
        // Long enough for the retry to finish on a loaded machine, so the give-up is the
        // retries' (with the transport error in the log), not the flush deadline's.
        flush_timeout_ms: 30_000,
        ..config()
    };
    let (tap, sink) =
        build_with_dsn(&config, &dsn, metrics.clone(), SharedTaskInfo::default()).unwrap();
    tap.observe(&[error("a", "/x", "r")]);
    let stop = CancellationToken::new();
    stop.cancel();
    sink.run(stop).await;
    assert_eq!(metrics.sentry_events(SentryOutcome::Failed), 1);
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // The sink's failure lines (with the transport error and the host) were captured.
    // (Which of them is racy under parallel tests: tracing's per-callsite interest cache
    // can skip a scoped subscriber for a callsite another test registered first.)
    assert!(
        logs.contains("Sentry send failed; retrying")
            || logs.contains("Sentry event not sent after retries"),
        "{logs}"
    );
    assert!(logs.contains("127.0.0.1"), "{logs}");
    assert!(!logs.contains(KEY), "{logs}");
    assert!(!format!("{dsn:?} {config:?}").contains(KEY));
}

#[test]
fn oversized_events_are_trimmed_to_sentrys_limit() {
    let fields: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("field{i}"), Value::String("x".repeat(15_000))))
        .collect();
    let mut line = fields;
    line.insert("message".into(), "big".into());
    let pending = event::Pending {
        event: event(Level::Error, Value::Object(line), None),
        crumbs: Vec::new(),
        fingerprint: Vec::new(),
        suppressed: 0,
    };
    let config = config();
    let builder = event::EventBuilder {
        config: &config,
        task: None,
        hostname: "host-1",
    };
    let event = builder.encode(&pending, uuid::Uuid::new_v4()).unwrap();
    let payload = serde_json::to_vec(&event).unwrap();
    assert!(payload.len() <= MAX_EVENT_BYTES);
    assert_eq!(event::serialized_len(&event), Ok(payload.len()));
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert!(event.get("extra").is_none());
    assert_eq!(event["message"], "big");
    assert_eq!(event["server_name"], "host-1");
}

#[tokio::test]
async fn otlp_error_records_become_events_with_their_exception() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Otlp;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    let text = |s: &str| {
        Some(AnyValue {
            value: Some(Otlp::StringValue(s.to_owned())),
        })
    };
    let attribute = |key: &str, value: &str| KeyValue {
        key: key.to_owned(),
        value: text(value),
        ..KeyValue::default()
    };
    let record = |severity_number: i32, body: &str| LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        severity_number,
        body: text(body),
        attributes: vec![
            attribute("exception.type", "ConnectionError"),
            attribute("exception.message", "redis unreachable"),
            attribute(
                "exception.stacktrace",
                "Traceback (most recent call last):\n  File \"app.py\", line 3, in handler\nConnectionError: redis unreachable",
            ),
            attribute("http.route", "/api/health/redis"),
        ],
        ..LogRecord::default()
    };
    // What the OTLP source hands the pipeline, parsed as the pipeline parses it.
    let processor = crate::pipeline::Processor::new(
        crate::pipeline::parse::ParseFields {
            timestamp: "timestamp".into(),
            level: "level".into(),
            timing: None,
        },
        None,
        1 << 20,
    );
    let metrics = Metrics::default();
    let events: Vec<Event> = [(17, "cache check failed"), (9, "all good")]
        .into_iter()
        .map(|(severity, body)| {
            let line =
                crate::sources::otlp::convert::log_line(&record(severity, body), Some("api"), None);
            processor.process(line, 0, &metrics)
        })
        .collect();
    assert_eq!(events[0].level, Some(Level::Error));
    assert_eq!(events[1].level, Some(Level::Info));

    let receiver = Receiver::default();
    let mut h = Harness::new(&receiver, config()).await;
    h.tap.observe(&events);
    h.stop().await;
    assert_eq!(receiver.count(), 1, "only the ERROR record");
    let event = receiver.all()[0].event();
    assert_eq!(event["message"], "cache check failed");
    // A whole second is written as an integer.
    assert_eq!(event["timestamp"].as_f64(), Some(1_700_000_000.0));
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "ConnectionError");
    assert_eq!(exception["value"], "redis unreachable");
    assert_eq!(exception["stacktrace"]["frames"][0]["function"], "handler");
    assert_eq!(event["tags"]["service"], "api");
    assert_eq!(event["tags"]["http.route"], "/api/health/redis");
    assert_eq!(
        event["fingerprint"],
        json!([
            "exception.type=ConnectionError",
            "http.route=/api/health/redis"
        ])
    );
}

#[tokio::test]
async fn the_queue_has_a_byte_ceiling_too() {
    let receiver = Receiver::default();
    let mut h = Harness::new(
        &receiver,
        SentryConfig {
            queue_max_bytes: 65_536,
            dedup_window_secs: 0,
            ..config()
        },
    )
    .await;
    let big = "x".repeat(10_000);
    let batch: Vec<Event> = (0..20)
        .map(|i| {
            event(
                Level::Error,
                json!({"message": format!("big {i}"), "error_kind": format!("k{i}"), "blob": big}),
                None,
            )
        })
        .collect();
    h.tap.observe(&batch);
    let dropped = h.outcome(SentryOutcome::QueueFull);
    assert!((14..20).contains(&dropped), "{dropped}");
    h.stop().await;
    let received = receiver.all();
    assert_eq!(received.len() as u64, 20 - dropped);
    // The newest survive.
    assert_eq!(received.last().unwrap().event()["message"], "big 19");
}

#[tokio::test]
async fn follow_up_samples_are_small_but_keep_the_fingerprint() {
    let receiver = Receiver::default();
    let mut h = Harness::new(&receiver, config()).await;
    let huge = "y".repeat(100_000);
    let batch: Vec<Event> = (0..3)
        .map(|i| {
            event(
                Level::Error,
                json!({"message": "huge", "error_kind": "big", "route": "/r", "request_id": format!("r{i}"), "blob": huge}),
                Some(&format!("r{i}")),
            )
        })
        .collect();
    h.tap.observe(&batch);
    h.stop().await;
    let received = receiver.all();
    assert_eq!(received.len(), 2);
    let first = received[0].event();
    let follow_up = received[1].event();
    assert_eq!(first["message"], "huge");
    assert_eq!(follow_up["fingerprint"], first["fingerprint"]);
    assert_eq!(follow_up["extra"]["suppressed_count"], 2);
    assert!(follow_up["message"].as_str().unwrap().len() <= super::tap::SAMPLE_MAX_BYTES);
}
