//! Every endpoint the agent calls (CloudWatch Logs, CloudWatch Metrics, Sentry) behind the
//! fault-injecting proxy, each fault held during a steady stream and through SIGTERM:
//! nothing accepted is lost silently (delivered, or counted as undelivered at the
//! deadline), duplicates stay bounded, stdin is never held up (the stream is far below the
//! memory ceiling, so no back-pressure is due), and the agent exits 0 by grace + 1 s.

use std::time::{Duration, Instant};

use crate::fake_cwl::FakeCwl;
use crate::fault_proxy::{Fault, FaultProxy};
use crate::support::{Agent, Options, numbered_lines, undelivered};

const GRACE_SECS: u64 = 3;
const LINES: usize = 1_500;

/// Which endpoint gets the fault.
#[derive(Debug, Clone, Copy)]
enum Target {
    Logs,
    Metrics,
    Sentry,
}

/// Per-`seq` delivery counts of what the fake received.
fn counts(messages: &[String]) -> Vec<u32> {
    let mut seen = vec![0u32; LINES];
    for message in messages {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(message)
            && let Some(seq) = value["seq"].as_u64()
        {
            seen[seq as usize] += 1;
        }
    }
    seen
}

async fn steady_stream_then_sigterm(target: Target, fault: Fault) {
    let (fake, fake_endpoint, _server) = FakeCwl::start().await;
    let upstream = match target {
        Target::Logs => Some(fake_endpoint.trim_start_matches("http://").to_owned()),
        Target::Metrics | Target::Sentry => None,
    };
    let proxy = FaultProxy::start(upstream, fault).await;
    let logs_endpoint = match target {
        Target::Logs => proxy.endpoint.clone(),
        _ => fake_endpoint,
    };
    let mut options = Options::new(logs_endpoint);
    options.shutdown_grace_secs = GRACE_SECS;
    match target {
        Target::Logs => {}
        Target::Metrics => {
            options.metrics = format!(
                "[metrics]\npublish = \"cloudwatch\"\nperiod_secs = 10\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
                proxy.endpoint
            );
        }
        Target::Sentry => {
            let address = proxy.endpoint.trim_start_matches("http://");
            options.extra = format!(
                "[sinks.sentry]\ndsn = \"http://key@{address}/1\"\nrequest_timeout_ms = 1000\nflush_timeout_ms = 1000\ndedup_window_secs = 0\n"
            );
        }
    }
    let mut agent = Agent::start(&options);
    let lines = numbered_lines(0, LINES);
    let started = Instant::now();
    for (i, chunk) in lines.chunks(100).enumerate() {
        let mut chunk = chunk.to_vec();
        if matches!(target, Target::Sentry) && i % 3 == 0 {
            // Some errors, so the Sentry sink has something to send.
            chunk[0] = chunk[0].replace("\"level\":\"info\"", "\"level\":\"error\"");
        }
        agent.write_lines(&chunk);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writing = started.elapsed();
    assert!(
        writing < Duration::from_secs(5),
        "{target:?} {fault:?}: stdin was held up ({writing:?} for {LINES} lines)"
    );
    assert!(
        proxy.requests.load(std::sync::atomic::Ordering::SeqCst) > 0
            || matches!(target, Target::Metrics),
        "{target:?} {fault:?}: the faulty endpoint was called"
    );
    agent.terminate();
    let (code, logs, took) =
        tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(GRACE_SECS + 20)))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{target:?} {fault:?}\n{logs}");
    assert!(
        took < Duration::from_secs(GRACE_SECS + 1),
        "{target:?} {fault:?}: exited {took:?} after SIGTERM\n{logs}"
    );
    let seen = counts(&fake.messages());
    let delivered = seen.iter().filter(|c| **c > 0).count() as u64;
    let duplicates: u64 = seen.iter().map(|c| u64::from(c.saturating_sub(1))).sum();
    let undelivered = undelivered(&logs).expect("the final log line says what was undelivered");
    // A call the endpoint stored but whose answer never came in time counts as undelivered
    // too (the agent cannot know): so at least every line, never fewer.
    assert!(
        delivered + undelivered >= LINES as u64 && undelivered <= LINES as u64,
        "{target:?} {fault:?}: every accepted line is delivered or counted ({delivered} + {undelivered})\n{logs}"
    );
    assert!(
        duplicates <= LINES as u64 / 2,
        "{target:?} {fault:?}: {duplicates} duplicates"
    );
    if !matches!(target, Target::Logs) {
        assert_eq!(
            (delivered, undelivered),
            (LINES as u64, 0),
            "{target:?} {fault:?}: a fault elsewhere never costs a log line"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_endpoint_stalled() {
    steady_stream_then_sigterm(Target::Logs, Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_endpoint_trickling() {
    steady_stream_then_sigterm(Target::Logs, Fault::Trickle(64)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_endpoint_resetting_after_the_request() {
    steady_stream_then_sigterm(Target::Logs, Fault::ResetAfterRequest).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_endpoint_cutting_answers() {
    steady_stream_then_sigterm(Target::Logs, Fault::CutMidResponse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_endpoint_slow() {
    steady_stream_then_sigterm(Target::Logs, Fault::Latency(700)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_stalled() {
    steady_stream_then_sigterm(Target::Metrics, Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_cutting_answers() {
    steady_stream_then_sigterm(Target::Metrics, Fault::CutMidResponse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sentry_endpoint_stalled() {
    steady_stream_then_sigterm(Target::Sentry, Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sentry_endpoint_resetting_after_the_request() {
    steady_stream_then_sigterm(Target::Sentry, Fault::ResetAfterRequest).await;
}
