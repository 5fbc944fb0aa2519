//! Graceful shutdown: in-flight requests finish, new ones are refused, and a deadline
//! bounds the wait.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

use crate::support::http_get;

fn slow_app(delay: Duration) -> Router {
    Router::new().route(
        "/slow",
        get(move || async move {
            tokio::time::sleep(delay).await;
            "done"
        }),
    )
}

async fn start(
    delay: Duration,
    grace: Duration,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::server::serve(
        listener,
        slow_app(delay),
        async move {
            let _ = stopped.await;
        },
        grace,
    ));
    (port, stop, server)
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_starts() {
    let (port, stop, server) = start(Duration::from_millis(700), Duration::from_secs(10)).await;
    let request = tokio::spawn(http_get(port, "/slow", &[]));
    tokio::time::sleep(Duration::from_millis(200)).await; // let the request reach the handler
    stop.send(()).unwrap();
    let response = request.await.unwrap().expect("in-flight request completes");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"done");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        http_get(port, "/slow", &[]).await.is_err(),
        "new connections are refused after shutdown"
    );
}

#[tokio::test]
async fn shutdown_deadline_bounds_stuck_requests() {
    let (port, stop, server) = start(Duration::from_secs(60), Duration::from_millis(300)).await;
    let _request = tokio::spawn(http_get(port, "/slow", &[]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn sigterm_before_the_first_connection_is_still_graceful() {
    // Regression: the handler used to be installed on first poll, after the first connection.
    let services = crate::support::Services::start(&["postgres", "redis"]);
    let mut env = crate::support::app_env(&services);
    env.insert("PORT".into(), crate::support::free_port().to_string());
    let mut child = crate::support::api_command(&env)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the "listening" line, then signal without ever connecting.
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 && !line.contains("\"listening\"") {
        line.clear();
    }
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must stop the server gracefully"
    );
}
