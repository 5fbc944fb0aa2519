//! A small in-process fake of the CloudWatch Logs JSON API (awsJson1_1): it stores what it
//! receives, checks the PutLogEvents rules on every call, and can be told to throttle, fail
//! or go away, so fault handling is tested without the emulator's limits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
pub(crate) struct Recorded {
    /// (stream, timestamp, message) in arrival order.
    pub(crate) events: Vec<(String, i64, String)>,
    pub(crate) put_calls: usize,
    pub(crate) groups: Vec<String>,
    /// Every CreateLogGroup request body, as sent.
    pub(crate) create_group_requests: Vec<Value>,
    pub(crate) retention: Option<i64>,
    /// Messages sent with `x-amzn-logs-format: json/emf`, by stream.
    pub(crate) emf: Vec<(String, String)>,
    /// Rule violations seen (must stay empty).
    pub(crate) violations: Vec<String>,
}

#[derive(Default)]
pub(crate) struct Behaviour {
    /// Answer this many PutLogEvents with ThrottlingException first.
    pub(crate) throttle_next: AtomicUsize,
    /// Throttle every other call.
    pub(crate) throttle_alternate: AtomicBool,
    /// Answer 503 to everything while set.
    pub(crate) unavailable: AtomicBool,
    /// Delay each PutLogEvents answer by this many ms.
    pub(crate) delay_ms: AtomicUsize,
    /// Answer this many PutLogEvents with AccessDeniedException first (a credential
    /// rotation).
    pub(crate) deny_next: AtomicUsize,
}

#[derive(Clone, Default)]
pub(crate) struct FakeCwl {
    pub(crate) recorded: Arc<Mutex<Recorded>>,
    pub(crate) behaviour: Arc<Behaviour>,
}

impl FakeCwl {
    /// A fake serving on a free loopback port: itself, its endpoint URL and the server task.
    pub(crate) async fn start() -> (Self, String, tokio::task::JoinHandle<()>) {
        let fake = Self::default();
        let (addr, handle) = fake.serve(0).await;
        (fake, format!("http://{addr}"), handle)
    }

    /// Serves on 127.0.0.1:`port` (0 = any); returns the address and a handle to stop it.
    pub(crate) async fn serve(&self, port: u16) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind fake endpoint");
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", post(handle))
            .with_state(self.clone());
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, handle)
    }

    pub(crate) fn messages(&self) -> Vec<String> {
        self.recorded
            .lock()
            .unwrap()
            .events
            .iter()
            .map(|(_, _, m)| m.clone())
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.recorded.lock().unwrap().events.len()
    }
}

fn error(status: StatusCode, kind: &str) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        json!({"__type": kind, "message": kind}).to_string(),
    )
        .into_response()
}

async fn handle(State(fake): State<FakeCwl>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let action = target.rsplit('.').next().unwrap_or_default().to_owned();
    if fake.behaviour.unavailable.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ok = |value: Value| {
        (
            StatusCode::OK,
            [("content-type", "application/x-amz-json-1.1")],
            value.to_string(),
        )
            .into_response()
    };
    match action.as_str() {
        "CreateLogGroup" => {
            let mut recorded = fake.recorded.lock().unwrap();
            recorded.create_group_requests.push(request.clone());
            let name = request["logGroupName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if recorded.groups.contains(&name) {
                return error(StatusCode::BAD_REQUEST, "ResourceAlreadyExistsException");
            }
            recorded.groups.push(name);
            ok(json!({}))
        }
        "PutRetentionPolicy" => {
            fake.recorded.lock().unwrap().retention = request["retentionInDays"].as_i64();
            ok(json!({}))
        }
        "CreateLogStream" => ok(json!({})),
        "PutLogEvents" => {
            let delay = fake.behaviour.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            }
            let throttle = fake
                .behaviour
                .throttle_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let mut recorded = fake.recorded.lock().unwrap();
            recorded.put_calls += 1;
            let alternate = fake.behaviour.throttle_alternate.load(Ordering::SeqCst)
                && recorded.put_calls % 2 == 1;
            if throttle || alternate {
                return error(StatusCode::BAD_REQUEST, "ThrottlingException");
            }
            let denied = fake
                .behaviour
                .deny_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if denied {
                return error(StatusCode::BAD_REQUEST, "AccessDeniedException");
            }
            let stream = request["logStreamName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let events = request["logEvents"].as_array().cloned().unwrap_or_default();
            if headers
                .get("x-amzn-logs-format")
                .and_then(|v| v.to_str().ok())
                == Some("json/emf")
            {
                for event in &events {
                    let message = event["message"].as_str().unwrap_or_default().to_owned();
                    recorded.emf.push((stream.clone(), message));
                }
                return ok(json!({}));
            }
            let mut size = 0;
            let mut last = i64::MIN;
            let (mut first, mut final_time) = (None, 0);
            for event in &events {
                let time = event["timestamp"].as_i64().unwrap_or_default();
                let message = event["message"].as_str().unwrap_or_default();
                size += message.len() + 26;
                if time < last {
                    recorded
                        .violations
                        .push(format!("out of order: {time} after {last}"));
                }
                last = time;
                first.get_or_insert(time);
                final_time = time;
            }
            if events.is_empty() || events.len() > 10_000 {
                recorded
                    .violations
                    .push(format!("{} events in one call", events.len()));
            }
            if size > 1_048_576 {
                recorded.violations.push(format!("batch of {size} bytes"));
            }
            if first.is_some_and(|f| final_time - f > 24 * 3_600_000) {
                recorded
                    .violations
                    .push("batch spans more than 24 h".into());
            }
            for event in events {
                recorded.events.push((
                    stream.clone(),
                    event["timestamp"].as_i64().unwrap_or_default(),
                    event["message"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            ok(json!({"nextSequenceToken": "1"}))
        }
        _ => error(StatusCode::BAD_REQUEST, "UnknownOperationException"),
    }
}
