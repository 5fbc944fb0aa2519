//! Sentry from the API: panics (with their stack trace) and 5xx responses are reported with
//! the request's route, method and request id, `environment` from APP_ENV and the crate's
//! release. In process with a collecting transport, and from the real binary through the
//! SDK's reqwest/rustls transport to a local receiver.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::config::{AppEnv, Secret};
use api::reporting::{RELEASE, client_options};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use sentry::protocol::Event;
use sentry::{Envelope, Hub, SentryFutureExt as _};
use tower::ServiceExt as _;

use crate::support::{
    FAKE_JWT_SECRET, FAKE_OPENAI_KEY, api_command, eventually, free_port, http_get,
};

/// Keeps every envelope the client sends.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Envelope>>);

impl sentry::Transport for Collect {
    fn send_envelope(&self, envelope: Envelope) {
        self.0.lock().unwrap().push(envelope);
    }
}

impl Collect {
    fn events(&self) -> Vec<Event<'static>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e.event().cloned())
            .collect()
    }
}

/// A hub with the API's client options and a collecting transport, bound only to the
/// futures a test gives it (never the process-wide hub).
fn hub(transport: &Arc<Collect>) -> Arc<Hub> {
    let options = client_options(
        &Secret::new("https://publickey@sentry.example/42"),
        AppEnv::Staging,
    )
    .unwrap()
    .transport(transport.clone());
    let client = sentry::Client::from(sentry::apply_defaults(options));
    Arc::new(Hub::new(
        Some(Arc::new(client)),
        Arc::new(sentry::Scope::default()),
    ))
}

fn routes() -> Router {
    Router::new()
        .route(
            "/api/boom/{id}",
            get(|| async {
                if true {
                    panic!("kaboom");
                }
                "unreachable"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/ok", get(|| async { "fine" }))
}

async fn call(app: &Router, hub: &Arc<Hub>, path: &str, request_id: &str) -> StatusCode {
    let request = Request::get(path)
        .header("x-request-id", request_id)
        .body(Body::empty())
        .unwrap();
    app.clone()
        .oneshot(request)
        .bind_hub(hub.clone())
        .await
        .unwrap()
        .status()
}

fn tag<'a>(event: &'a Event<'static>, key: &str) -> Option<&'a str> {
    event.tags.get(key).map(String::as_str)
}

#[tokio::test]
async fn panics_and_5xx_are_reported_with_route_and_request_id() {
    let transport = Arc::new(Collect::default());
    let hub = hub(&transport);
    let app = api::with_layers(routes(), Duration::from_millis(200));

    assert_eq!(
        call(&app, &hub, "/api/boom/7", "req-panic").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        call(&app, &hub, "/slow", "req-slow").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Neither a success nor a client error is reported.
    assert_eq!(call(&app, &hub, "/ok", "req-ok").await, StatusCode::OK);
    assert_eq!(
        call(&app, &hub, "/nowhere", "req-404").await,
        StatusCode::NOT_FOUND
    );
    hub.client().unwrap().flush(Some(Duration::from_secs(2)));

    let events = transport.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let panic = &events[0];
    let exception = &panic.exception.values[0];
    assert_eq!(exception.ty, "panic");
    assert_eq!(exception.value.as_deref(), Some("kaboom"));
    let frames = &exception.stacktrace.as_ref().expect("a stack trace").frames;
    assert!(!frames.is_empty());
    assert_eq!(tag(panic, "route"), Some("/api/boom/{id}"));
    assert_eq!(tag(panic, "method"), Some("GET"));
    assert_eq!(tag(panic, "request_id"), Some("req-panic"));
    assert_eq!(panic.environment.as_deref(), Some("staging"));
    assert_eq!(panic.release.as_deref(), Some(RELEASE));
    // No request headers, cookies or IP addresses.
    assert!(panic.request.is_none() && panic.user.is_none());

    let timeout = &events[1];
    assert_eq!(timeout.message.as_deref(), Some("request failed: timeout"));
    assert_eq!(timeout.level, sentry::Level::Error);
    assert_eq!(tag(timeout, "route"), Some("/slow"));
    assert_eq!(tag(timeout, "status"), Some("503"));
    assert_eq!(tag(timeout, "request_id"), Some("req-slow"));
    assert_eq!(&timeout.fingerprint[..], ["timeout", "/slow"]);
}

#[tokio::test]
async fn without_a_client_the_layer_only_passes_requests_on() {
    // The test thread's hub has no client, as in a process without SENTRY_DSN.
    assert!(Hub::current().client().is_none());
    let app = api::with_layers(routes(), Duration::from_millis(200));
    let response = app
        .oneshot(Request::get("/ok").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
}

/// What the local receiver got: headers and the envelope body.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receiver() -> (u16, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/api/42/envelope/",
            post(
                |State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    received.lock().unwrap().push((headers, body));
                    (StatusCode::OK, r#"{"id":"x"}"#)
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, received)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_reports_a_5xx_through_the_sdk_transport() {
    let (sentry_port, received) = receiver().await;
    let port = free_port();
    let key = "publickey0123abcd";
    let env: HashMap<String, String> = [
        ("OPENAI_API_KEY", FAKE_OPENAI_KEY.to_owned()),
        ("REPLICATE_API_KEY", "r8_fake".to_owned()),
        ("SUNO_API_KEY", "suno_fake".to_owned()),
        ("JWT_SECRET", FAKE_JWT_SECRET.to_owned()),
        // Lazy connections: nothing listens there, so the Redis check answers 503.
        (
            "DATABASE_URL",
            format!("postgres://app@127.0.0.1:{}/app", free_port()),
        ),
        ("REDIS_URL", format!("redis://127.0.0.1:{}", free_port())),
        ("PORT", port.to_string()),
        ("APP_ENV", "staging".to_owned()),
        (
            "SENTRY_DSN",
            format!("http://{key}@127.0.0.1:{sentry_port}/42"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
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
    let redis = http_get(
        port,
        "/api/health/redis",
        &[("x-request-id", "req-redis-down")],
    )
    .await
    .unwrap();
    assert_eq!(redis.status, 503);
    let arrived = eventually(Duration::from_secs(10), || {
        let received = received.clone();
        async move { !received.lock().unwrap().is_empty() }
    })
    .await;
    assert!(arrived, "no envelope reached the receiver");

    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "exit: {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("reporting errors to Sentry"), "{logs}");
    assert!(
        !logs.contains(key),
        "the DSN key leaked into the logs: {logs}"
    );

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    let auth = headers["x-sentry-auth"].to_str().unwrap();
    assert!(auth.contains(&format!("sentry_key={key}")), "{auth}");
    let envelope = Envelope::from_slice(body).expect("an envelope");
    let event = envelope.event().expect("an event item");
    assert_eq!(
        event.message.as_deref(),
        Some("request failed: redis_unavailable")
    );
    assert_eq!(tag(event, "route"), Some("/api/health/redis"));
    assert_eq!(tag(event, "request_id"), Some("req-redis-down"));
    assert_eq!(tag(event, "status"), Some("503"));
    assert_eq!(event.environment.as_deref(), Some("staging"));
    assert_eq!(event.release.as_deref(), Some(RELEASE));
}
