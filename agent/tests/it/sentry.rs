//! Errors to Sentry: an in-tree Sentry receiver (strict envelope parsing, scripted answers
//! such as 429 and `X-Sentry-Rate-Limits`) fed by the real `agent` binary (error lines on
//! stdin) and by the sink's library API; every event it receives must pass Sentry's own
//! normalizer (`sentry_relay.StoreNormalizer`, from the project's `.venv`) without errors.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::metrics::{Metrics, SentryOutcome};
use agent::pipeline::ecs::{SharedTaskInfo, TaskInfo};
use agent::pipeline::event::{Event, Level};
use agent::sinks::sentry::{Dsn, Redacted, SentryConfig, build_with_dsn, fetch_dsn};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Moto, Options, eventually, repo_root};

const KEY: &str = "0b5e55ed1dea4b1d";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    /// The envelope's header and its items, parsed strictly: gzip, a JSON header line, then
    /// per item a JSON header line whose `length` is exactly the payload's, and a newline.
    fn envelope(&self) -> (Value, Vec<(Value, Vec<u8>)>) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..])
            .read_to_end(&mut raw)
            .expect("gzip body");
        let header_line = |rest: &mut &[u8]| -> Value {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .expect("newline after a header");
            let value = serde_json::from_slice(&rest[..end]).expect("JSON header");
            *rest = &rest[end + 1..];
            value
        };
        let mut rest = &raw[..];
        let header = header_line(&mut rest);
        let mut items = Vec::new();
        while !rest.is_empty() {
            let item = header_line(&mut rest);
            let length = item["length"].as_u64().expect("explicit length") as usize;
            assert!(rest.len() >= length, "payload shorter than its length");
            items.push((item, rest[..length].to_vec()));
            rest = &rest[length..];
            match rest.first() {
                None => {}
                Some(b'\n') => rest = &rest[1..],
                Some(_) => panic!("payload longer than its length"),
            }
        }
        (header, items)
    }

    fn event(&self) -> Value {
        let (header, items) = self.envelope();
        assert_eq!(items.len(), 1, "one item per envelope");
        assert_eq!(items[0].0["type"], "event");
        let event: Value = serde_json::from_slice(&items[0].1).expect("JSON event");
        // One id: hyphenated in the header (a serialized Uuid), 32 hex digits in the event.
        let id = |v: &Value| v.as_str().and_then(|s| s.parse::<uuid::Uuid>().ok());
        assert_eq!(id(&header["event_id"]), id(&event["event_id"]));
        assert!(id(&event["event_id"]).is_some());
        event
    }
}

/// An answer: status and headers.
type Reply = (u16, Vec<(&'static str, &'static str)>);

/// The in-tree Sentry receiver.
#[derive(Debug, Clone, Default)]
struct FakeSentry {
    requests: Arc<Mutex<Vec<Request>>>,
    /// Answers to give, in order (status, headers); then 200.
    script: Arc<Mutex<VecDeque<Reply>>>,
}

async fn receive(
    State(fake): State<FakeSentry>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    fake.requests.lock().unwrap().push(Request {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
    let (status, headers) = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, Vec::new()));
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        r#"{"id":"x"}"#.to_owned(),
    )
        .into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl FakeSentry {
    async fn start(&self) -> SocketAddr {
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) {
        let me = self.clone();
        let arrived = eventually(Duration::from_secs(20), move || {
            let me = me.clone();
            async move { me.count() >= n }
        })
        .await;
        assert!(arrived, "expected {n} envelopes, got {}", self.count());
    }
}

/// Every event through `sentry_relay.StoreNormalizer`; returns the normalized events and
/// fails on any normalization error or changed value (`errors`, `_meta`).
fn relay_normalize(events: &[Value]) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
from sentry_relay import StoreNormalizer
normalizer = StoreNormalizer(project_id=42)
print(json.dumps([normalizer.normalize_event(e) for e in json.load(sys.stdin)]))
"#;
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/services.sh install",
        python.display()
    );
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the relay normalizer");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(events).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "sentry_relay failed (run scripts/services.sh install): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let normalized: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    for (event, normal) in events.iter().zip(&normalized) {
        assert!(
            normal.get("errors").is_none() && normal.get("_meta").is_none(),
            "Sentry's normalizer objects:\n{normal:#}\nto\n{event:#}"
        );
    }
    normalized
}

fn line_event(level: Level, line: Value, request_id: Option<&str>) -> Event {
    Event {
        time_ms: agent::pipeline::now_ms(),
        message: line.to_string(),
        level: Some(level),
        container: Some("api".into()),
        request_id: request_id.map(Into::into),
        ack: None,
    }
}

fn sentry_block(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[sinks.sentry]\ndsn = \"http://{KEY}@{addr}/42\"\nenvironment = \"test\"\nrelease = \"api@0.1.0\"\nmax_backoff_ms = 50\nflush_timeout_ms = 5000\n{extra}\n"
    )
}

async fn start_agent(sentry: &str) -> (Agent, FakeCwl) {
    let cwl = FakeCwl::default();
    let (addr, _) = cwl.serve(0).await;
    let mut options = Options::new(format!("http://{addr}"));
    options.extra = sentry.to_owned();
    (Agent::start(&options), cwl)
}

async fn exit(agent: Agent) -> String {
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    logs
}

#[tokio::test(flavor = "multi_thread")]
async fn events_built_by_the_sink_pass_sentrys_normalizer() {
    let fake = FakeSentry::default();
    let addr = fake.start().await;
    let dsn = Dsn::parse(&format!("http://{KEY}@{addr}/42")).unwrap();
    let metrics = Arc::new(Metrics::default());
    let task_info = SharedTaskInfo::default();
    task_info.set(TaskInfo {
        cluster: "prod".into(),
        task_id: "a1b2c3".into(),
        family_revision: "api:7".into(),
        availability_zone: "eu-west-1a".into(),
        app_container: "api".into(),
    });
    let config = SentryConfig {
        dsn: Some(Redacted::new("unused")),
        environment: Some("staging".into()),
        release: Some("api@2.0.0".into()),
        ..SentryConfig::default()
    };
    let (tap, sink) = build_with_dsn(&config, &dsn, metrics.clone(), task_info).unwrap();
    let stop = CancellationToken::new();
    let sink = tokio::spawn(sink.run(stop.clone()));
    let mut batch: Vec<Event> = (0..3)
        .map(|i| {
            line_event(
                Level::Info,
                json!({"level":"info","target":"access","message":"request","route":"/api/items/{id}","status":200,"request_id":"req-1","seq":i}),
                Some("req-1"),
            )
        })
        .collect();
    // Every optional part: exception with frames, breadcrumbs, tags needing sanitizing.
    batch.push(line_event(
        Level::Error,
        json!({
            "level": "error", "target": "api::db", "message": "query failed",
            "error_kind": "db_timeout", "error": "timed out after 2s",
            "stack": "   0: api::db::query\n             at ./src/db.rs:10:5\n   1: api::main",
            "route": format!("/api/{}", "x".repeat(300)), "method": "GET\nPOST", "status": 500,
            "request_id": "req-1", "nested": {"a": [1, 2, {"b": null}]}, "password": "[REDACTED]"
        }),
        Some("req-1"),
    ));
    // Plain: no message field, no error kind.
    batch.push(line_event(
        Level::Fatal,
        json!({"level": "fatal", "text": "out of memory"}),
        None,
    ));
    // A storm of three: one event now, one follow-up carrying the count at shutdown.
    for _ in 0..3 {
        batch.push(line_event(
            Level::Error,
            json!({"level":"error","message":"upstream down","error_kind":"upstream","route":"/pay"}),
            None,
        ));
    }
    tap.observe(&batch);
    fake.wait_for(3).await;
    stop.cancel();
    sink.await.unwrap();

    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_eq!(request.path, "/api/42/envelope/");
        assert_eq!(request.headers["content-encoding"], "gzip");
        assert!(
            request.headers["x-sentry-auth"]
                .to_str()
                .unwrap()
                .contains(&format!("sentry_key={KEY}"))
        );
    }
    let events: Vec<Value> = requests.iter().map(Request::event).collect();
    let normalized = relay_normalize(&events);
    let error = &normalized[0];
    assert_eq!(error["exception"]["values"][0]["type"], "db_timeout");
    assert_eq!(error["breadcrumbs"]["values"].as_array().unwrap().len(), 3);
    assert_eq!(error["environment"], "staging");
    assert_eq!(error["release"], "api@2.0.0");
    assert_eq!(events[0]["server_name"], "a1b2c3");
    // Relay keeps tags as pairs, and moves server_name among them.
    let tags: Vec<(&str, &str)> = error["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t[0].as_str().unwrap(), t[1].as_str().unwrap()))
        .collect();
    assert!(tags.contains(&("server_name", "a1b2c3")), "{tags:?}");
    assert!(tags.contains(&("method", "GET POST")), "{tags:?}");
    let route = tags.iter().find(|(k, _)| *k == "route").unwrap().1;
    assert_eq!(route.chars().count(), 200);
    for tag in ["status", "request_id", "cluster", "service", "container"] {
        assert!(
            tags.iter().any(|(k, _)| *k == tag),
            "{tag} missing from {tags:?}"
        );
    }
    assert_eq!(normalized[1]["level"], "fatal");
    assert_eq!(normalized[3]["extra"]["suppressed_count"], 2);
    assert_eq!(metrics.sentry_events(SentryOutcome::Sent), 4);
    assert_eq!(metrics.sentry_events(SentryOutcome::Deduplicated), 2);
}

// Waits on the wiring in agent/src/lib.rs (the sink spawned, the tap given to the pipeline).
#[tokio::test(flavor = "multi_thread")]
async fn error_lines_reach_sentry_redacted_with_their_breadcrumbs() {
    let fake = FakeSentry::default();
    let addr = fake.start().await;
    let (mut agent, _cwl) = start_agent(&sentry_block(addr, "")).await;
    let mut lines: Vec<String> = (0..25)
        .map(|i| {
            json!({"level":"info","target":"access","message":format!("step {i}"),"route":"/api/users/{id}","request_id":"req-7","token":"s3cr3t-crumb","query":"/x?password=crumb-in-string"}).to_string()
        })
        .collect();
    lines.push(json!({"level":"info","message":"other request","request_id":"req-8"}).to_string());
    lines.push(
        json!({"level":"error","target":"api::users","message":"request failed","error_kind":"db_timeout",
               "error":"pool timed out","route":"/api/users/{id}","method":"GET","status":500,
               "request_id":"req-7","password":"hunter2","user":"bob",
               "body":"{\"api_key\":\"extra-nested-json\"}","upstream":"https://u:extra-userinfo@h/x"})
        .to_string(),
    );
    agent.write_lines(&lines);
    fake.wait_for(1).await;
    agent.close_stdin();
    let logs = exit(agent).await;
    assert!(!logs.contains(KEY), "the DSN key leaked into the logs");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let event = requests[0].event();
    // Level `error` is Sentry's default, left out (Relay fills it in).
    assert!(event.get("level").is_none());
    assert_eq!(event["logger"], "api::users");
    assert_eq!(event["message"], "request failed");
    assert_eq!(event["environment"], "test");
    assert_eq!(event["release"], "api@0.1.0");
    assert_eq!(event["tags"]["route"], "/api/users/{id}");
    assert_eq!(event["tags"]["request_id"], "req-7");
    assert_eq!(event["tags"]["status"], "500");
    assert_eq!(event["exception"]["values"][0]["type"], "db_timeout");
    assert_eq!(event["extra"]["user"], "bob");
    let text = event.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cr3t-crumb"),
        "not redacted: {text}"
    );
    // Secrets inside string values (issue 14, item 1): in extra and in the breadcrumbs.
    assert!(
        ["crumb-in-string", "extra-nested-json", "extra-userinfo"]
            .iter()
            .all(|secret| !text.contains(secret)),
        "a secret inside a string value reached Sentry: {text}"
    );
    let crumbs: Vec<&str> = event["breadcrumbs"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (5..25).map(|i| format!("step {i}")).collect();
    assert_eq!(crumbs, expected);
    relay_normalize(&[event]);
}

// Waits on the wiring in agent/src/lib.rs.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_storm_of_10000_lines_sends_two_events() {
    let fake = FakeSentry::default();
    let addr = fake.start().await;
    let (mut agent, _cwl) = start_agent(&sentry_block(addr, "")).await;
    let lines: Vec<String> = (0..10_000)
        .map(|i| {
            json!({"level":"error","message":"request failed","error_kind":"db_timeout","route":"/api/users/{id}","request_id":format!("req-{i}")}).to_string()
        })
        .collect();
    agent.write_lines(&lines);
    let admin = agent.admin_port;
    let counted = eventually(Duration::from_secs(20), || async move {
        crate::support::http_get(admin, "/metrics")
            .await
            .is_ok_and(|(_, body)| {
                body.contains("agent_sentry_events_total{outcome=\"deduplicated\"} 9999")
            })
    })
    .await;
    assert!(counted, "9,999 repeats must be counted as deduplicated");
    assert_eq!(fake.count(), 1);
    agent.close_stdin();
    exit(agent).await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "the event and one follow-up");
    assert_eq!(requests[1].event()["extra"]["suppressed_count"], 9_999);
}

// Waits on the wiring in agent/src/lib.rs.
#[tokio::test(flavor = "multi_thread")]
async fn a_429_and_rate_limit_headers_are_honoured() {
    let fake = FakeSentry::default();
    fake.script.lock().unwrap().extend([
        (429, vec![("retry-after", "1")]),
        (
            200,
            vec![("x-sentry-rate-limits", "60:error:project:quota")],
        ),
    ]);
    let addr = fake.start().await;
    let (mut agent, _cwl) = start_agent(&sentry_block(addr, "dedup_window_secs = 0")).await;
    let admin = agent.admin_port;
    let error = |kind: &str| {
        json!({"level":"error","message":"failed","error_kind":kind,"route":"/x"}).to_string()
    };
    let metric = |outcome: &'static str, at_least: u64| async move {
        eventually(Duration::from_secs(10), || async move {
            crate::support::http_get(admin, "/metrics")
                .await
                .is_ok_and(|(_, body)| {
                    body.lines().any(|l| {
                        l.strip_prefix(&format!(
                            "agent_sentry_events_total{{outcome=\"{outcome}\"}} "
                        ))
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|v| v >= at_least)
                    })
                })
        })
        .await
    };
    agent.write_lines(&[error("a")]);
    fake.wait_for(1).await;
    assert!(metric("rate_limited", 1).await, "the 429 is counted");
    // Limited for 1 s: dropped and counted, nothing sent.
    agent.write_lines(&[error("b"), error("c")]);
    assert!(metric("rate_limited", 3).await);
    assert_eq!(fake.count(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    agent.write_lines(&[error("d")]);
    fake.wait_for(2).await;
    // The 200 carried a 60 s limit on errors.
    agent.write_lines(&[error("e")]);
    assert!(metric("rate_limited", 4).await);
    assert!(metric("sent", 1).await);
    agent.close_stdin();
    exit(agent).await;
    assert_eq!(fake.count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dsn_comes_from_secrets_manager() {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let moto = Moto::start();
    let fake = FakeSentry::default();
    let addr = fake.start().await;
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&moto.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    let secret = json!({"DATABASE_URL": "postgres://app@db/app", "SENTRY_DSN": format!("http://{KEY}@{addr}/42")});
    client
        .create_secret()
        .name("prod/api")
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap();
    let dsn = fetch_dsn(&client, "prod/api", "SENTRY_DSN").await.unwrap();
    assert_eq!(
        dsn.envelope_url(),
        format!("http://{addr}/api/42/envelope/")
    );
    let missing = fetch_dsn(&client, "prod/nope", "SENTRY_DSN")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), "secret_unavailable");

    let block = format!(
        "[sinks.sentry]\ndsn_secret_id = \"prod/api\"\nsecrets_manager_endpoint = \"{}\"\n",
        moto.endpoint
    );
    let (mut agent, _cwl) = start_agent(&block).await;
    agent.write_lines(&[
        json!({"level":"error","message":"from the secret's DSN","error_kind":"x"}).to_string(),
    ]);
    fake.wait_for(1).await;
    agent.close_stdin();
    let logs = exit(agent).await;
    assert!(!logs.contains(KEY), "the DSN key leaked into the logs");
    assert_eq!(
        fake.requests()[0].event()["message"],
        "from the secret's DSN"
    );
}

// ---------------------------------------------------------------------------------------
// Before/after: the envelopes the hand-written JSON builder sent (recorded once, before the
// sink moved to sentry-types' Event and Envelope) against what the sink sends now.

/// Where the recorded envelopes live.
fn golden_path() -> std::path::PathBuf {
    repo_root().join("agent/tests/fixtures/sentry/hand_written_envelopes.json")
}

/// A line event at a fixed time (`ms` after 1,700,000,000 s: timestamps are compared).
fn fixed_event(ms: i64, level: Level, line: Value, request_id: Option<&str>) -> Event {
    Event {
        time_ms: 1_700_000_000_000 + ms,
        ..line_event(level, line, request_id)
    }
}

/// Fixed inputs that reach every part of an event: breadcrumbs (JSON and not), exception
/// with Rust, Java, JavaScript and Python frames, tags to sanitize, nested `extra`, OTel's
/// flat attributes, a line that is not JSON, whole-second and millisecond timestamps, and a
/// de-duplication follow-up.
fn golden_batch() -> Vec<Event> {
    let mut batch: Vec<Event> = (0..3)
        .map(|i| {
            fixed_event(
                i,
                Level::Info,
                json!({"level":"info","target":"access","message":"request","route":"/api/items/{id}","status":200,"request_id":"req-1","seq":i}),
                Some("req-1"),
            )
        })
        .collect();
    batch.push(fixed_event(
        3,
        Level::Warn,
        json!("not json: a plain crumb"),
        Some("req-1"),
    ));
    batch.last_mut().unwrap().message = "a plain crumb line".into();
    batch.push(fixed_event(
        123,
        Level::Error,
        json!({
            "level": "error", "target": "api::db", "message": "query failed",
            "error_kind": "db_timeout", "error": "timed out after 2s",
            "stack": "   0: api::db::query\n             at ./src/db.rs:10:5\n   1: api::main",
            "route": format!("/api/{}", "x".repeat(300)), "method": "GET\nPOST", "status": 500,
            "request_id": "req-1", "nested": {"a": [1, 2.5, {"b": null}], "z": true},
            "password": "[REDACTED]", "user_id": 42
        }),
        Some("req-1"),
    ));
    batch.push(fixed_event(
        1000,
        Level::Fatal,
        json!({"level": "fatal", "text": "out of memory"}),
        None,
    ));
    let mut plain = fixed_event(2001, Level::Error, json!(null), None);
    plain.message = "panic: plain text line, not JSON".into();
    batch.push(plain);
    batch.push(fixed_event(
        3000,
        Level::Error,
        json!({
            "message": "cache check failed", "exception.type": "ConnectionError",
            "exception.message": "redis unreachable",
            "exception.stacktrace": "Traceback (most recent call last):\n  File \"app.py\", line 3, in handler\nConnectionError: redis unreachable",
            "http.route": "/api/health/redis", "severity_text": "ERROR"
        }),
        None,
    ));
    batch.push(fixed_event(
        4567,
        Level::Error,
        json!({
            "message": "TypeError in handler", "error_kind": "TypeError",
            "stack": "TypeError: x is undefined\n    at query (/app/db.js:10:15)\n    at /app/index.js:3:1\n\tat com.x.Db.query(Db.java:42)\n\tat java.base/Thread.run(Native Method)",
            "route": "/js"
        }),
        None,
    ));
    for i in 0..3 {
        batch.push(fixed_event(
            5000 + i,
            Level::Error,
            json!({"level":"error","message":"upstream down","error_kind":"upstream","route":"/pay","attempt":i}),
            None,
        ));
    }
    batch
}

/// Runs the sink on [`golden_batch`]; each envelope as `{"header", "item", "event"}`.
async fn golden_envelopes() -> Vec<Value> {
    let fake = FakeSentry::default();
    let addr = fake.start().await;
    let dsn = Dsn::parse(&format!("http://{KEY}@{addr}/42")).unwrap();
    let task_info = SharedTaskInfo::default();
    task_info.set(TaskInfo {
        cluster: "prod".into(),
        task_id: "a1b2c3".into(),
        family_revision: "api:7".into(),
        availability_zone: "eu-west-1a".into(),
        app_container: "api".into(),
    });
    let config = SentryConfig {
        dsn: Some(Redacted::new("unused")),
        environment: Some("staging".into()),
        release: Some("api@2.0.0".into()),
        ..SentryConfig::default()
    };
    let metrics = Arc::new(Metrics::default());
    let (tap, sink) = build_with_dsn(&config, &dsn, metrics, task_info).unwrap();
    let stop = CancellationToken::new();
    let sink = tokio::spawn(sink.run(stop.clone()));
    tap.observe(&golden_batch());
    fake.wait_for(6).await;
    stop.cancel();
    sink.await.unwrap();
    fake.requests()
        .iter()
        .map(|request| {
            let (header, mut items) = request.envelope();
            assert_eq!(items.len(), 1);
            let (item, payload) = items.remove(0);
            let event: Value = serde_json::from_slice(&payload).unwrap();
            json!({"header": header, "item": item, "event": event})
        })
        .collect()
}

/// An event as Sentry reads it, to compare the two builders: the event id (random per run)
/// checked and removed, Sentry's defaults filled in (sentry-types leaves out level `error`,
/// platform `other` and the default fingerprint), the legacy `message: {"formatted"}` as the
/// plain string Relay treats the same, timestamps as numbers (a whole second is an integer
/// now, `.0` before), and the SDK version (the crate's) checked and removed.
fn canonical(event: &Value) -> Value {
    let mut event = event.clone();
    let object = event.as_object_mut().unwrap();
    let id = object.remove("event_id").unwrap();
    let id = id.as_str().unwrap();
    assert!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    object.entry("level").or_insert(json!("error"));
    object.entry("platform").or_insert(json!("other"));
    object
        .entry("fingerprint")
        .or_insert(json!(["{{ default }}"]));
    if let Some(formatted) = object["message"].get("formatted").cloned() {
        object.insert("message".into(), formatted);
    }
    let seconds = |t: &mut Value| *t = json!(t.as_f64().expect("a numeric timestamp"));
    seconds(&mut object["timestamp"]);
    if let Some(crumbs) = object.get_mut("breadcrumbs") {
        crumbs["values"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(|c| seconds(&mut c["timestamp"]));
    }
    let sdk = object["sdk"].as_object_mut().unwrap();
    assert_eq!(
        sdk.remove("version"),
        Some(json!(env!("CARGO_PKG_VERSION")))
    );
    event
}

/// Envelope and item headers say the same: one event id (hyphenated in the new header, a
/// serialized `Uuid`), an RFC 3339 `sent_at` in UTC, the SDK, and the item's type and length.
/// (The hand-written item header also carried `content_type: application/json`, Sentry's
/// default for an event; sentry-types leaves it out.)
fn same_framing(before: &Value, after: &Value) {
    let id = |v: &Value| -> uuid::Uuid { v.as_str().unwrap().parse().unwrap() };
    for envelope in [before, after] {
        assert_eq!(
            id(&envelope["header"]["event_id"]),
            id(&envelope["event"]["event_id"])
        );
        let sent_at = envelope["header"]["sent_at"].as_str().unwrap();
        assert!(sent_at.ends_with('Z'), "{sent_at}");
        // Sentry's own header type reads it (RFC 3339).
        serde_json::from_value::<sentry_types::protocol::v7::EnvelopeHeaders>(
            envelope["header"].clone(),
        )
        .expect("an envelope header Sentry reads");
        assert_eq!(envelope["item"]["type"], "event");
        assert!(envelope["item"]["length"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        before["header"]["sdk"]["name"],
        after["header"]["sdk"]["name"]
    );
    assert_eq!(after["header"]["sdk"], after["event"]["sdk"]);
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(keys(&before["header"]), keys(&after["header"]));
}

/// Each event with one fixed id and SDK version, through Relay's normalizer, `received`
/// (the time of normalizing) removed, and an explicit default fingerprint (Relay keeps the
/// `["{{ default }}"]` the hand-written builder sent; sentry-types leaves it out: both mean
/// Sentry's default grouping) removed.
fn relay_view(envelopes: &[Value]) -> Vec<Value> {
    let events: Vec<Value> = envelopes
        .iter()
        .map(|envelope| {
            let mut event = envelope["event"].clone();
            event["event_id"] = json!("0123456789abcdef0123456789abcdef");
            event["sdk"]["version"] = json!("0");
            event
        })
        .collect();
    let mut normalized = relay_normalize(&events);
    for event in &mut normalized {
        let object = event.as_object_mut().unwrap();
        object.remove("received");
        if object.get("fingerprint") == Some(&json!(["{{ default }}"])) {
            object.remove("fingerprint");
        }
    }
    normalized
}

#[tokio::test(flavor = "multi_thread")]
async fn envelopes_say_what_the_hand_written_builders_said() {
    let text = std::fs::read_to_string(golden_path()).unwrap();
    let before: Vec<Value> = serde_json::from_str(&text).unwrap();
    let after = golden_envelopes().await;
    assert_eq!(after.len(), before.len());
    for (old, new) in before.iter().zip(&after) {
        same_framing(old, new);
        assert_eq!(
            canonical(&old["event"]),
            canonical(&new["event"]),
            "before:\n{:#}\nafter:\n{:#}",
            old["event"],
            new["event"]
        );
    }
    // And Sentry reads them the same.
    assert_eq!(relay_view(&before), relay_view(&after));
}
