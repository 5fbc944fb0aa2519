//! One shutdown deadline, whatever the endpoints do: with CloudWatch Logs stalled, trickling
//! one byte a second or resetting mid-answer, with the metrics endpoint stalled and with a
//! stalled Secrets Manager, the real binary exits 0 within `shutdown_grace_secs` + 1 s of
//! SIGTERM and logs what it could not deliver; with the disk buffer those events are
//! delivered after a restart.

use std::time::Duration;

use crate::fake_cwl::FakeCwl;
use crate::fault_proxy::{Fault, FaultProxy};
use crate::support::{
    Agent, Options, assert_exactly_once, eventually, numbered_lines, undelivered,
};

const GRACE_SECS: u64 = 3;

/// The promise: exit 0 by grace + 1 s after SIGTERM.
fn assert_exits_in_time(agent: Agent) -> String {
    agent.terminate();
    let (code, logs, took) = agent.wait(Duration::from_secs(GRACE_SECS + 20));
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        took < Duration::from_secs(GRACE_SECS + 1),
        "exited {took:?} after SIGTERM; the deadline is {GRACE_SECS} s + 1 s\n{logs}"
    );
    logs
}

fn options(endpoint: &str) -> Options {
    let mut options = Options::new(endpoint.to_owned());
    options.shutdown_grace_secs = GRACE_SECS;
    options
}

/// Starts an agent whose CloudWatch Logs endpoint misbehaves as `fault`, feeds it 200
/// lines, and checks the deadline and the undelivered count.
async fn shutdown_meets_the_deadline_when_logs(fault: Fault) {
    let proxy = FaultProxy::start(None, fault).await;
    let mut agent = Agent::start(&options(&proxy.endpoint));
    agent.write_lines(&numbered_lines(0, 200));
    let requests = proxy.requests.clone();
    let reached = eventually(Duration::from_secs(10), || {
        let requests = requests.clone();
        async move { requests.load(std::sync::atomic::Ordering::SeqCst) > 0 }
    })
    .await;
    assert!(reached, "the agent must have called the endpoint");
    let logs = assert_exits_in_time(agent);
    assert_eq!(undelivered(&logs), Some(200), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_meets_the_deadline_when_cloudwatch_never_answers() {
    shutdown_meets_the_deadline_when_logs(Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_meets_the_deadline_when_cloudwatch_answers_one_byte_a_second() {
    shutdown_meets_the_deadline_when_logs(Fault::Trickle(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_meets_the_deadline_when_cloudwatch_resets_mid_answer() {
    shutdown_meets_the_deadline_when_logs(Fault::CutMidResponse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_endpoint_at_shutdown_keeps_events_on_disk_for_the_next_start() {
    let buffer = tempfile::tempdir().unwrap();
    let disk = format!(
        "[disk_buffer]\npath = \"{}\"\nsegment_size_mib = 1\nmax_size_mib = 16\n",
        buffer.path().display()
    );
    let proxy = FaultProxy::start(None, Fault::Stall).await;
    let mut stalled = options(&proxy.endpoint);
    stalled.extra = disk.clone();
    let mut agent = Agent::start(&stalled);
    agent.write_lines(&numbered_lines(0, 300));
    let requests = proxy.requests.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let requests = requests.clone();
            async move { requests.load(std::sync::atomic::Ordering::SeqCst) > 0 }
        })
        .await
    );
    let logs = assert_exits_in_time(agent);
    assert!(logs.contains("stay in the disk buffer"), "{logs}");

    let (fake, endpoint, _server) = FakeCwl::start().await;
    let mut healthy = options(&endpoint);
    healthy.extra = disk;
    let mut agent = Agent::start(&healthy);
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_exactly_once(&fake.messages(), 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_meets_the_deadline_when_the_metrics_endpoint_stalls() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let stalled = FaultProxy::start(None, Fault::Stall).await;
    let mut options = options(&endpoint);
    options.metrics = format!(
        "[metrics]\npublish = \"cloudwatch\"\nperiod_secs = 10\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
        stalled.endpoint
    );
    let mut agent = Agent::start(&options);
    agent.write_lines(&numbered_lines(0, 500));
    let fake_ref = fake.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let fake = fake_ref.clone();
            async move { fake.messages().len() >= 500 }
        })
        .await,
        "the logs must flow while metrics stall"
    );
    let logs = assert_exits_in_time(agent);
    assert_eq!(undelivered(&logs), Some(0), "{logs}");
    assert!(
        stalled.requests.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the final period must have been attempted"
    );
    assert_exactly_once(&fake.messages(), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_secrets_manager_delays_the_start_by_a_bounded_time() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let stalled = FaultProxy::start(None, Fault::Stall).await;
    let mut options = options(&endpoint);
    options.extra = format!(
        "[sinks.sentry]\ndsn_secret_id = \"sentry-dsn\"\nsecrets_manager_endpoint = \"{}\"\nsecrets_manager_region = \"us-east-1\"\nrequest_timeout_ms = 1000\n",
        stalled.endpoint
    );
    let mut agent = Agent::start(&options);
    let admin = agent.admin_port;
    let ready = eventually(Duration::from_secs(5), || async move {
        crate::support::http_get(admin, "/ready")
            .await
            .is_ok_and(|(status, _)| status == 200)
    })
    .await;
    assert!(ready, "startup must complete despite the stalled DSN fetch");
    assert!(stalled.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    agent.write_lines(&numbered_lines(0, 100));
    let fake_ref = fake.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let fake = fake_ref.clone();
            async move { fake.messages().len() >= 100 }
        })
        .await
    );
    let logs = assert_exits_in_time(agent);
    assert!(logs.contains("Sentry disabled"), "{logs}");
    assert!(
        !logs.contains("sentry-dsn\""),
        "no secret id echoed as a value: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_then_resetting_endpoint_loses_nothing_through_the_proxy() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let upstream = endpoint.trim_start_matches("http://").to_owned();
    let proxy = FaultProxy::start(Some(upstream), Fault::Latency(300)).await;
    let mut agent = Agent::start(&options(&proxy.endpoint));
    agent.write_lines(&numbered_lines(0, 1_000));
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.set(Fault::ResetAfterRequest);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set(Fault::Pass);
    agent.write_lines(&numbered_lines(1_000, 1_000));
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(undelivered(&logs), Some(0), "{logs}");
    assert_exactly_once(&fake.messages(), 2_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_applications_last_lines_after_sigterm_still_arrive() {
    // FireLens' failure: at task stop the app keeps flushing its shutdown logs after the
    // sidecar's SIGTERM. The forward input keeps accepting for input_linger_secs.
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let port = crate::support::free_port();
    let mut options = Options::new(endpoint);
    options.shutdown_grace_secs = 8;
    options.extra = format!("[sources.forward]\naddress = \"127.0.0.1:{port}\"\n");
    options.prelude = "input_linger_secs = 4\n".into();
    let agent = Agent::start(&options);
    let mut stream = loop {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            break stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    crate::hostile::send_frame(&mut stream, "before SIGTERM", "c0").await;
    agent.terminate();
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(3) {
        sent += 1;
        crate::hostile::send_frame(
            &mut stream,
            &format!("last words {sent}"),
            &format!("c{sent}"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stream);
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let messages = fake.messages();
    assert!(messages.iter().any(|m| m == "before SIGTERM"));
    for i in 1..=sent {
        let line = format!("last words {i}");
        assert_eq!(
            messages.iter().filter(|m| **m == line).count(),
            1,
            "{line} of {sent}\n{logs}"
        );
    }
    assert!(sent >= 20, "the client kept sending for 3 s ({sent} lines)");
}
