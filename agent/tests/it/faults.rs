//! Faults against the in-process fake endpoint: throttling, outages, shutdown mid-stream,
//! and the memory ceiling. Every test checks that each accepted line arrives exactly once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Options, assert_exactly_once, eventually, numbered_lines};

fn assert_no_violations(fake: &FakeCwl) {
    let recorded = fake.recorded.lock().unwrap();
    assert!(
        recorded.violations.is_empty(),
        "PutLogEvents rules broken: {:?}",
        recorded.violations
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_calls_are_retried_until_everything_is_delivered_once() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    fake.behaviour.throttle_next.store(6, Ordering::SeqCst);
    let mut agent = Agent::start(&Options::new(endpoint));
    agent.write_lines(&numbered_lines(0, 5_000));
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_exactly_once(&fake.messages(), 5_000);
    assert_no_violations(&fake);
    let recorded = fake.recorded.lock().unwrap();
    assert!(
        recorded.put_calls > 6,
        "throttled calls must have been retried"
    );
    assert_eq!(recorded.groups, ["/test/agent"]);
    assert_eq!(recorded.retention, Some(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_storm_on_every_other_call_loses_nothing() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    fake.behaviour
        .throttle_alternate
        .store(true, Ordering::SeqCst);
    let mut agent = Agent::start(&Options::new(endpoint));
    let admin = agent.admin_port;
    agent.write_lines(&numbered_lines(0, 30_000));
    let throttled = eventually(Duration::from_secs(10), || async move {
        crate::support::http_get(admin, "/metrics")
            .await
            .is_ok_and(|(_, body)| {
                body.lines().any(|l| {
                    l.starts_with("agent_retries_total{reason=\"throttled\"}") && !l.ends_with(" 0")
                })
            })
    })
    .await;
    assert!(throttled, "the throttle retries must show in /metrics");
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_exactly_once(&fake.messages(), 30_000);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_then_recovery_drains_the_backlog() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    fake.behaviour.unavailable.store(true, Ordering::SeqCst);
    let mut agent = Agent::start(&Options::new(endpoint));
    agent.write_lines(&numbered_lines(0, 2_000));
    let retried = eventually(Duration::from_secs(10), || {
        let agent = &agent;
        async move {
            agent
                .metric("agent_retries_total{reason=\"server_error\"}")
                .await
                .unwrap_or(0.0)
                >= 3.0
        }
    })
    .await;
    assert!(retried, "503s must be retried");
    assert_eq!(fake.count(), 0);
    assert!(
        agent.metric("agent_buffer_bytes").await.unwrap() > 0.0,
        "the backlog is held in the buffer"
    );

    fake.behaviour.unavailable.store(false, Ordering::SeqCst);
    let drained = eventually(Duration::from_secs(15), || async { fake.count() >= 2_000 }).await;
    assert!(drained, "backlog not drained: {} of 2000", fake.count());
    let released = eventually(Duration::from_secs(5), || {
        let agent = &agent;
        async move { agent.metric("agent_buffer_bytes").await == Some(0.0) }
    })
    .await;
    assert!(
        released,
        "the budget is given back once CloudWatch stored the events"
    );
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_exactly_once(&fake.messages(), 2_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_stream_flushes_what_was_accepted_within_the_grace() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    // Slow answers, so that a backlog is in flight when SIGTERM arrives.
    fake.behaviour.delay_ms.store(300, Ordering::SeqCst);
    let mut options = Options::new(endpoint);
    options.shutdown_grace_secs = 8;
    let mut agent = Agent::start(&options);
    agent.write_lines(&numbered_lines(0, 20_000));
    let admin = agent.admin_port;
    let accepted = eventually(Duration::from_secs(10), || async move {
        crate::support::http_get(admin, "/metrics")
            .await
            .is_ok_and(|(_, body)| {
                body.contains("agent_events_received_total{source=\"stdin\"} 20000")
            })
    })
    .await;
    assert!(accepted);
    agent.terminate();
    let (code, logs, took) =
        tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_exactly_once(&fake.messages(), 20_000);
    assert!(logs.contains("flushed everything"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_deadline_reports_what_could_not_be_sent() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    fake.behaviour.unavailable.store(true, Ordering::SeqCst);
    let mut options = Options::new(endpoint);
    options.shutdown_grace_secs = 2;
    let mut agent = Agent::start(&options);
    agent.write_lines(&numbered_lines(0, 500));
    let admin = agent.admin_port;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            crate::support::http_get(admin, "/metrics")
                .await
                .is_ok_and(|(_, b)| b.contains("agent_events_received_total{source=\"stdin\"} 500"))
        })
        .await
    );
    agent.terminate();
    let (code, logs, took) =
        tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        took < Duration::from_secs(6),
        "the grace deadline bounds shutdown: {took:?}"
    );
    assert!(
        logs.contains("\"undelivered\":500"),
        "the loss is reported with its count: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_ceiling_slows_the_input_instead_of_growing() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    fake.behaviour.unavailable.store(true, Ordering::SeqCst);
    let mut options = Options::new(endpoint);
    options.memory_limit_mib = 4;
    let mut agent = Agent::start(&options);
    let admin = agent.admin_port;
    // ~28 MB of lines: seven times the ceiling. The writer must block, not the agent grow.
    let total = 100_000;
    let lines = numbered_lines(0, total);
    let mut stdin = agent.child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for line in lines {
            stdin.write_all(line.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    });
    let full = eventually(Duration::from_secs(15), || async move {
        let Ok((_, body)) = crate::support::http_get(admin, "/metrics").await else {
            return false;
        };
        let value = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        value("agent_buffer_bytes ") > 3.0 * 1024.0 * 1024.0
    })
    .await;
    assert!(full, "the buffer should fill up to the ceiling");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the writer must be blocked by back-pressure"
    );
    let buffered = agent.metric("agent_buffer_bytes").await.unwrap();
    assert!(
        buffered <= 4.0 * 1024.0 * 1024.0,
        "buffer {buffered} above the 4 MiB ceiling"
    );
    let rss = agent.metric("agent_resident_memory_bytes").await.unwrap();
    assert!(
        rss < 64.0 * 1024.0 * 1024.0,
        "RSS {rss} grew with the backlog"
    );

    fake.behaviour.unavailable.store(false, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_exactly_once(&fake.messages(), total);
    assert_no_violations(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn emf_output_writes_spec_valid_documents_with_the_emf_header() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let mut options = Options::new(endpoint);
    options.metrics =
        "[metrics]\npublish = \"emf\"\nperiod_secs = 10\nnamespace = \"Test/Emf\"\n".into();
    let mut agent = Agent::start(&options);
    let lines: Vec<String> = (0..250)
        .map(|i| {
            format!(
                r#"{{"method":"GET","route":"/health","status":{},"latency_ms":{}}}"#,
                if i % 50 == 0 { 500 } else { 200 },
                1 + i
            )
        })
        .collect();
    agent.write_lines(&lines);
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let emf = fake.recorded.lock().unwrap().emf.clone();
    assert!(
        !emf.is_empty(),
        "EMF events must be sent with the json/emf header: {logs}"
    );
    let (mut requests, mut errors, mut latencies) = (0.0, 0.0, 0);
    for (stream, document) in &emf {
        assert_eq!(stream, "emf-metrics");
        agent::sinks::cloudwatch_metrics::emf::check_against_spec(document)
            .unwrap_or_else(|e| panic!("{e}: {document}"));
        let value: serde_json::Value = serde_json::from_str(document).unwrap();
        if value["Route"] == "/health" {
            requests += value["RequestCount"].as_f64().unwrap_or(0.0);
            errors += value["ErrorCount"].as_f64().unwrap_or(0.0);
            // A distribution is {Values, Counts, Max, Min, Count, Sum}: count by Counts.
            latencies += match &value["Latency"] {
                serde_json::Value::Object(histogram) => histogram["Counts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_f64().unwrap() as usize)
                    .sum(),
                serde_json::Value::Null => 0,
                _ => 1,
            };
        }
    }
    assert_eq!((requests, errors, latencies), (250.0, 5.0, 250));
    // The access lines themselves still went to the log stream, not the EMF one.
    assert_eq!(fake.count(), 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_are_retried_and_keep_their_disk_records() {
    // Regression: two AccessDenied answers (a credential rotation) dropped 200 of 300
    // lines with the disk buffer on, and deleted their records.
    let (fake, endpoint, _server) = FakeCwl::start().await;
    fake.behaviour.deny_next.store(2, Ordering::SeqCst);
    let buffer = tempfile::tempdir().unwrap();
    let mut options = Options::new(endpoint);
    options.extra = format!(
        "[disk_buffer]\npath = \"{}\"\nsegment_size_mib = 1\nmax_size_mib = 16\n",
        buffer.path().display()
    );
    let mut agent = Agent::start(&options);
    for chunk in 0..3 {
        agent.write_lines(&numbered_lines(chunk * 100, 100));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let admin = agent.admin_port;
    let counted = eventually(Duration::from_secs(10), || async move {
        crate::support::http_get(admin, "/metrics")
            .await
            .is_ok_and(|(_, body)| body.contains("agent_retries_total{reason=\"auth\"} 2"))
    })
    .await;
    assert!(counted, "both refusals must be counted as auth retries");
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("refuses the credentials"), "{logs}");
    assert_exactly_once(&fake.messages(), 300);
    let leftover: u64 = std::fs::read_dir(buffer.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(
        leftover, 0,
        "every record was delivered, so acknowledged and deleted"
    );
}
