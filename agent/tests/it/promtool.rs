//! `promtool check metrics` on a live `/metrics`: every family the agent can show (its
//! counters, the PutLogEvents histogram, request metrics, probe and disk-buffer gauges, an
//! the latest probes) must pass Prometheus's own linter with no findings.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Options, eventually, free_port, http_get, numbered_lines};

/// `promtool`, or `None` when it is missing outside CI (where `CI` set means it must be there).
#[allow(clippy::print_stderr, reason = "a skipped test says so")]
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool is not installed (scripts/services.sh install adds it) and CI is set"
    );
    eprintln!("skipped: promtool is not installed (run scripts/services.sh install)");
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn live_metrics_pass_promtool_check_metrics_with_no_findings() {
    let Some(promtool) = promtool() else { return };
    let (_fake, endpoint, _server) = FakeCwl::start().await;
    let disk = tempfile::tempdir().unwrap();
    let refused = free_port();
    let mut options = Options::new(endpoint.clone());
    options.extra = format!(
        "[disk_buffer]\npath = \"{}\"\nsegment_size_mib = 1\nmax_size_mib = 16\n\
         [uptime]\nurls = [\"{endpoint}/health\", \"http://127.0.0.1:{refused}/ready\"]\n\
         interval_secs = 1\ntimeout_ms = 500\n",
        disk.path().display()
    );
    let mut agent = Agent::start(&options);
    let admin = agent.admin_port;
    agent.write_lines(&numbered_lines(0, 200));
    agent.write_lines(&[
        r#"{"level":"error","target":"access","message":"request","method":"BREW","route":"/api/health/db","status":503,"latency_ms":3001.5}"#.to_owned(),
        "not json at all, with a \"quote\" and a back\\slash".to_owned(),
    ]);
    let shown = eventually(Duration::from_secs(15), || async {
        let Ok((_, body)) = http_get(admin, "/metrics").await else {
            return false;
        };
        agent.metric("agent_events_sent_total").await >= Some(202.0)
            && [
                "http_server_request_duration_seconds_bucket{",
                "agent_health_check_up{endpoint=",
                "agent_disk_buffer_bytes ",
                "agent_put_log_events_duration_seconds_count ",
            ]
            .iter()
            .all(|needle| body.contains(needle))
    })
    .await;
    let (status, body) = http_get(admin, "/metrics").await.unwrap();
    assert!(shown, "every family must show on /metrics:\n{body}");
    assert_eq!(status, 200);

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics found problems:\n{findings}\n--- /metrics:\n{body}"
    );
    // Every family, from every component, was part of what promtool read.
    for name in [
        "agent_events_received_total",
        "agent_put_log_events_duration_seconds",
        "agent_buffer_bytes",
        "agent_disk_buffer_blocked",
        "agent_health_check_latency_seconds",
        "http_server_requests_total",
        "http_server_request_duration_seconds",
        "agent_routes_folded_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{body}"
        );
    }
    agent.close_stdin();
}
